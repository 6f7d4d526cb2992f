"Tests of mask_fastai.losses against hand computations (numpy, explicit formulas)."
import pickle
import numpy as np, pytest, torch, torch.nn as nn, torch.nn.functional as F
from fastai.layers import NoneReduce
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.callback.mixup import CutMix, MixUp
from mask_fastai.core import N_CLASSES, TASKS, TASK_SIZES, encode_class, decode_class
from mask_fastai.model import combine_task_logits, task_log_probs
from mask_fastai.losses import MultiTaskLoss, FocalLossLS, inverse_frequency_weights

def np_log_softmax(x, axis=-1):
    x = x - x.max(axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis, keepdims=True))

def np_task_logp(out):
    "Per-task log marginals of (bs,18) logits by summing probabilities in numpy."
    p = np.exp(np_log_softmax(out.astype(np.float64))).reshape(-1, *TASK_SIZES)
    return [np.log(p.sum((2, 3))), np.log(p.sum((1, 3))), np.log(p.sum((1, 2)))]

@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    out = rng.normal(size=(7, N_CLASSES)).astype(np.float32) * 2
    y = np.array([0, 5, 7, 11, 12, 17, 3])
    return out, y

def hand_terms(out, y):
    "Per task (log-probs (bs,n), targets (bs,)) in numpy."
    return list(zip(np_task_logp(out), decode_class(y)))

def test_task_log_probs(batch):
    out, y = batch
    lp = task_log_probs(torch.tensor(out))
    for t, ref in zip(TASKS, np_task_logp(out)): np.testing.assert_allclose(lp[t].numpy(), ref, atol=1e-5)

def test_ce_sum_and_task_weights(batch):
    out, y = batch
    per = [-lp[np.arange(len(y)), yy] for lp, yy in hand_terms(out, y)]
    got = MultiTaskLoss()(torch.tensor(out), torch.tensor(y))
    np.testing.assert_allclose(got.item(), sum(p.mean() for p in per), rtol=1e-5)
    got = MultiTaskLoss(task_weights=(2, 0.5, 0))(torch.tensor(out), torch.tensor(y))
    np.testing.assert_allclose(got.item(), 2 * per[0].mean() + 0.5 * per[1].mean(), rtol=1e-5)

def test_last_task_losses(batch):
    out, y = batch
    lf = MultiTaskLoss(task_weights=(1, 2, 3))
    lf(torch.tensor(out), torch.tensor(y))
    assert set(lf.last_task_losses) == set(TASKS)
    for t, (lp, yy) in zip(TASKS, hand_terms(out, y)):
        assert isinstance(lf.last_task_losses[t], float)
        np.testing.assert_allclose(lf.last_task_losses[t], (-lp[np.arange(len(y)), yy]).mean(), rtol=1e-5)

def test_label_smoothing(batch):
    out, y = batch
    eps = 0.2
    lf = MultiTaskLoss(label_smoothing=eps, reduction='none')
    exp = sum(-(1 - eps) * lp[np.arange(len(y)), yy] - eps / lp.shape[1] * lp.sum(1) for lp, yy in hand_terms(out, y))
    np.testing.assert_allclose(lf(torch.tensor(out), torch.tensor(y)).numpy(), exp, rtol=1e-5)

def test_class_weights_ce(batch):
    out, y = batch
    ws = [np.array([1., 2., .5]), None, np.array([.3, 1., 3.])]
    lf = MultiTaskLoss(class_weights=[None if w is None else torch.tensor(w) for w in ws], reduction='none')
    exp = sum((1. if w is None else w[yy]) * -lp[np.arange(len(y)), yy] for w, (lp, yy) in zip(ws, hand_terms(out, y)))
    np.testing.assert_allclose(lf(torch.tensor(out), torch.tensor(y)).numpy(), exp, rtol=1e-5)
    # 'mean' is the mean of the per-sample weighted losses (not divided by the sum of weights)
    lf.reduction = 'mean'
    np.testing.assert_allclose(lf(torch.tensor(out), torch.tensor(y)).item(), exp.mean(), rtol=1e-5)

def test_focal(batch):
    out, y = batch
    ce = MultiTaskLoss(reduction='none')(torch.tensor(out), torch.tensor(y))
    f0 = MultiTaskLoss(loss='focal', gamma=0., reduction='none')(torch.tensor(out), torch.tensor(y))
    np.testing.assert_allclose(f0.numpy(), ce.numpy(), rtol=1e-6)
    w = np.array([1., 2., .5])
    lf = MultiTaskLoss(loss=('focal', 'ce', 'focal'), gamma=(2., 0., 1.5), class_weights=[torch.tensor(w), None, None], reduction='none')
    (lm, ym), (lg, yg), (la, ya) = hand_terms(out, y)
    i = np.arange(len(y))
    pm, pa = np.exp(lm[i, ym]), np.exp(la[i, ya])
    exp = -w[ym] * (1 - pm)**2 * np.log(pm) - lg[i, yg] - (1 - pa)**1.5 * np.log(pa)
    np.testing.assert_allclose(lf(torch.tensor(out), torch.tensor(y)).numpy(), exp, rtol=1e-5)

def test_focal_module_matches_fastai_unweighted():
    from fastai.losses import FocalLoss
    torch.manual_seed(0)
    x, y = torch.randn(10, 3), torch.randint(0, 3, (10,))
    np.testing.assert_allclose(FocalLossLS(2.)(x, y).item(), FocalLoss(2.)(x, y).item(), rtol=1e-6)

def test_inverse_frequency_weights():
    y = encode_class(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 1, 1, 1]), np.array([0, 1, 2, 2, 2, 2]))
    cw = inverse_frequency_weights(y)
    for w, counts in zip(cw, ([2, 1, 3], [1, 5], [1, 1, 4])):
        inv = 1 / np.array(counts, dtype=float)
        np.testing.assert_allclose(w.numpy(), inv / inv.mean(), rtol=1e-6)
        np.testing.assert_allclose(w.mean().item(), 1., rtol=1e-6)
    with pytest.raises(ValueError, match=r"age_group class\(es\) \['>=60'\]"): inverse_frequency_weights(encode_class(np.array([0, 1, 2]), np.array([0, 1, 0]), np.array([0, 1, 1])))
    with pytest.raises(ValueError, match='0..17'): inverse_frequency_weights([1, -1])
    lf = MultiTaskLoss(class_weights='inverse', labels=y)
    np.testing.assert_allclose(lf.losses['mask'].weight.numpy(), cw[0].numpy())

def test_reduction_and_none_reduce(batch):
    out, y = batch
    lf = MultiTaskLoss(loss='focal', label_smoothing=0.1, class_weights='inverse', labels=np.arange(N_CLASSES))
    o, t = torch.tensor(out), torch.tensor(y)
    with NoneReduce(lf) as nr: per = nr(o, t)
    assert per.shape == (len(y),)
    assert lf.reduction == 'mean'
    np.testing.assert_allclose(lf(o, t).item(), per.mean().item(), rtol=1e-6)
    lf.reduction = 'sum'
    np.testing.assert_allclose(lf(o, t).item(), per.sum().item(), rtol=1e-6)
    with pytest.raises(ValueError, match='reduction must be one of'): lf.reduction = 'batchmean'

def test_activation_decodes(batch):
    out, _ = batch
    lf, o = MultiTaskLoss(), torch.tensor(out)
    np.testing.assert_allclose(lf.activation(o).numpy(), np.exp(np_log_softmax(out)), atol=1e-6)
    np.testing.assert_array_equal(lf.decodes(o).numpy(), out.argmax(1))
    assert lf.y_int is True

def test_multihead_joint_is_sum_of_head_ce():
    torch.manual_seed(1)
    m, g, a = torch.randn(6, 3), torch.randn(6, 2), torch.randn(6, 3)
    ym, yg, ya = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 1, 1, 0, 0, 1]), torch.tensor([2, 1, 0, 0, 1, 2])
    lf = MultiTaskLoss(reduction='none')
    exp = F.cross_entropy(m, ym, reduction='none') + F.cross_entropy(g, yg, reduction='none') + F.cross_entropy(a, ya, reduction='none')
    np.testing.assert_allclose(lf(combine_task_logits(m, g, a), encode_class(ym, yg, ya)).numpy(), exp.numpy(), rtol=1e-5)

def test_mixup_lerp(batch):
    out, y = batch
    o, t1, t2 = torch.tensor(out), torch.tensor(y), torch.tensor(y[::-1].copy())
    lam = torch.linspace(0, 1, len(y))
    lf = MultiTaskLoss()
    with NoneReduce(lf) as nr: got = torch.lerp(nr(o, t1), nr(o, t2), lam).mean()
    per = lambda yy: sum(-lp[np.arange(len(yy)), ty] for lp, ty in hand_terms(out, yy))
    np.testing.assert_allclose(got.item(), ((1 - lam.numpy()) * per(y) + lam.numpy() * per(y[::-1])).mean(), rtol=1e-5)

def test_pickle_and_buffers(batch):
    out, y = batch
    lf = MultiTaskLoss(loss='focal', class_weights='inverse', labels=np.arange(N_CLASSES))
    assert {'losses.mask.weight', 'losses.gender.weight', 'losses.age_group.weight'} <= set(dict(lf.named_buffers()))
    lf2 = pickle.loads(pickle.dumps(lf))
    o, t = torch.tensor(out), torch.tensor(y)
    assert lf2(o, t).item() == lf(o, t).item()

def test_errors():
    with pytest.raises(ValueError, match="'ce' or 'focal'"): MultiTaskLoss(loss=('ce', 'ce', 'dice'))
    with pytest.raises(ValueError, match='needs the training `labels`'): MultiTaskLoss(class_weights='inverse')
    with pytest.raises(ValueError, match='age_group must have 3 entries'): MultiTaskLoss(class_weights=[None, None, torch.ones(2)])
    with pytest.raises(ValueError, match='one value per task'): MultiTaskLoss(gamma=(1., 2.))
    with pytest.raises(ValueError, match=r'label_smoothing of mask must be in \[0, 1\)'): MultiTaskLoss(label_smoothing=1.)

@pytest.mark.parametrize('cb', [CutMix, MixUp])
def test_learner_mix_callbacks(cb):
    torch.manual_seed(0)
    ds = [(torch.randn(3, 16, 16), torch.tensor(i % N_CLASSES)) for i in range(32)]
    dls = DataLoaders.from_dsets(ds[:24], ds[24:], bs=8)
    lf = MultiTaskLoss(loss='focal', label_smoothing=0.1)
    learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, N_CLASSES)), loss_func=lf, cbs=cb())
    learn.fit(1, 1e-3)
    assert np.isfinite(learn.recorder.values[-1][:2]).all()
    assert learn.loss_func is lf and lf.reduction == 'mean'
    _, _, losses = learn.get_preds(with_loss=True)
    assert losses.shape == (8,) and torch.isfinite(losses).all()
