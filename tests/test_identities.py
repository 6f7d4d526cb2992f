"""End-to-end input of identity grouping: the model embeddings that `identities.identity_groups` can add come from one `inference.predict_probs` pass.

Everything else about ensembles and identities is specified in nbs/19_ensemble.ipynb and nbs/20_identities.ipynb."""
import numpy as np, torch
from fastai.data.core import DataLoader
from mask_fastai.model import create_mask_model
from mask_fastai.inference import predict_probs


def test_predict_probs_embeddings_match_model():
    "One pass gives the probabilities and the body's features that identity grouping clusters (inference.predict_probs)."
    torch.manual_seed(0)
    mdl = create_mask_model(pretrained=False, head='joint').eval()
    xs = torch.randn(5, 3, 32, 32)
    p, e = predict_probs(mdl, DataLoader(list(zip(xs)), bs=2), embeddings=True)
    with torch.no_grad():
        np.testing.assert_allclose(p.numpy(), mdl(xs).softmax(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(e.numpy(), mdl.body(xs).numpy(), atol=1e-5)
    pt, et = predict_probs(mdl, DataLoader(list(zip(xs)), bs=2), tta=True, embeddings=True)
    with torch.no_grad(): np.testing.assert_allclose(et.numpy(), ((mdl.body(xs) + mdl.body(xs.flip(-1))) / 2).numpy(), atol=1e-4)
