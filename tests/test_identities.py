"""End-to-end input of identity grouping: the model embeddings that `identities.identity_groups` adds come from the same
`get_preds` pass that gives the probabilities (`learner.GatherExtras`), flip-averaged with TTA.

Everything else about ensembles and identities is specified in nbs/14_ensemble.ipynb and nbs/15_identities.ipynb."""
import numpy as np, torch
from mask_fastai.model import create_mask_model
from mask_fastai.dataloaders import DecodedDL
from mask_fastai.learner import MaskLearner, RunInput
from mask_fastai.losses import MultiTaskLoss


def test_embeddings_come_with_the_probabilities():
    torch.manual_seed(0)
    mdl = create_mask_model(pretrained=False, head='joint').eval()
    learn = MaskLearner(None, mdl, RunInput((32, 32), crop=False, device='cpu'), loss_func=MultiTaskLoss())
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    xs = torch.from_numpy(x).float() / 255
    p, _, ex = learn.get_preds(dl=DecodedDL(x, bs=2, device='cpu'), extras=True)
    with torch.no_grad():
        np.testing.assert_allclose(p.numpy(), mdl(xs).softmax(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(ex['features'].numpy(), mdl.body(xs).numpy(), atol=1e-5)
    pt, _, et = learn.get_preds(dl=DecodedDL(x, bs=2, device='cpu'), tta=True, extras=True)
    with torch.no_grad():
        np.testing.assert_allclose(et['features'].numpy(), ((mdl.body(xs) + mdl.body(xs.flip(-1))) / 2).numpy(), atol=1e-4)
        np.testing.assert_allclose(pt.numpy(), ((mdl(xs).softmax(-1) + mdl(xs.flip(-1)).softmax(-1)) / 2).numpy(), atol=1e-5)
