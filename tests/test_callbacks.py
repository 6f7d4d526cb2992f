import json, pickle, subprocess, sys, time
import numpy as np, pytest, torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.torch_core import set_seed
from mask_fastai.core import TASKS, TASK_NAMES, N_CLASSES, CLASS_NAMES, decode_class
from mask_fastai.losses import MultiTaskLoss
from mask_fastai.metrics import mask_metrics, TASK_SHORT_NAMES
from mask_fastai.model import ModelConfig, MaskHead, MaskModel, task_log_probs
from mask_fastai.callbacks import *
from mask_fastai.callbacks import _format_config_value_safe
from mask_fastai.test_utils import *

H, W = 32, 24


def synth_dls(n_train=36, n_valid=18, bs=9, n_labels=N_CLASSES):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(n_train + n_valid, 3, H, W, generator=g), torch.arange(n_train + n_valid) % n_labels
    ds = list(zip(x, y))
    return DataLoaders.from_dsets(ds[:n_train], ds[n_train:], bs=bs, device='cpu', num_workers=0)


def tiny_learner(cbs=None, dls=None, **kwargs):
    set_seed(0)
    body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    cfg = ModelConfig(pretrained=False, dropout=0.)
    return Learner(dls or synth_dls(), MaskModel(body, MaskHead(8, cfg), cfg), loss_func=MultiTaskLoss(), cbs=cbs, **kwargs)


def apply_cb(cb, x, y, loss_func=None):
    "Run `before_train` and `before_batch` of `cb` on batch `(x, y)` as `fit` would."
    learn = tiny_learner(cbs=cb)
    if loss_func is not None: learn.loss_func = loss_func
    learn.xb, learn.yb, learn.training = (x,), (y,), True
    cb.before_train(); cb.before_batch()
    return learn


def mixed_by_hand(pred, y, y1, lam, w):
    "Per task `lam*nll(task of y) + (1-lam)*nll(task of y1)` on the marginal log-probs, weighted, averaged."
    lps, res = task_log_probs(pred), 0.
    for i, t in enumerate(TASKS):
        nll = lambda yy: -lps[t].gather(1, decode_class(yy)[i][:, None])[:, 0]
        res = res + w[i] * (lam * nll(y) + (1 - lam) * nll(y1))
    return res.mean()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 3, H, W, generator=g), torch.randperm(N_CLASSES, generator=g)[:8]


# ---------- mixing callbacks ----------

def test_cutmix_random_box(batch):
    x, y = batch
    x0 = x.clone()
    torch.manual_seed(0)
    cb = CutMix(p=1.)
    learn = apply_cb(cb, x, y)
    xm, (x1, y1, x2, y2) = learn.xb[0], cb.patch
    assert xm.shape == x.shape and (x2 - x1) * (y2 - y1) > 0
    assert torch.equal(xm[..., y1:y2, x1:x2], x[cb.shuffle][..., y1:y2, x1:x2])
    keep = torch.ones(H, W, dtype=torch.bool); keep[y1:y2, x1:x2] = False
    assert torch.equal(xm[..., keep], x[..., keep])
    assert cb.lam.item() == pytest.approx(1 - (x2 - x1) * (y2 - y1) / (H * W))
    assert torch.equal(cb.yb1[0], y[cb.shuffle]) and torch.equal(learn.yb[0], y)
    assert torch.equal(x, x0)  # the loader's batch is not written into


def test_halfcutmix_pixels_and_lam(batch):
    x, y = batch
    cb = HalfCutMix(p=1.)
    learn = apply_cb(cb, x, y)
    xm = learn.xb[0]
    assert cb.patch == (W // 2, 0, W, H)
    assert torch.equal(xm[..., :W // 2], x[..., :W // 2])
    assert torch.equal(xm[..., W // 2:], x[cb.shuffle][..., W // 2:])
    assert cb.lam.item() == 0.5
    assert sorted(cb.shuffle.tolist()) == list(range(8))


def test_halfcutmix_jitter(batch):
    x, y = batch
    torch.manual_seed(0)
    cb = HalfCutMix(p=1., jitter=0.1)
    learn = apply_cb(cb, x, y)
    cuts = set()
    for _ in range(40):
        learn.xb = (x,); cb.before_batch()
        cx = cb.patch[0]; cuts.add(cx)
        assert cb.lam.item() == pytest.approx(cx / W)
        assert torch.equal(learn.xb[0][..., :cx], x[..., :cx])
        assert torch.equal(learn.xb[0][..., cx:], x[cb.shuffle][..., cx:])
    assert len(cuts) > 2 and min(cuts) >= W // 2 - round(0.1 * W) and max(cuts) <= W // 2 + round(0.1 * W)


@pytest.mark.parametrize('make', [lambda: CutMix(p=1.), lambda: HalfCutMix(p=1., jitter=0.2)])
@pytest.mark.parametrize('w', [(1., 0., 0.), (0., 1., 0.), (0., 0., 1.), (1., 2., 3.)])
def test_box_mix_loss_is_mixed_per_task(make, w, batch):
    x, y = batch
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(8, N_CLASSES, generator=g)
    torch.manual_seed(3)
    cb = make()
    learn = apply_cb(cb, x, y, MultiTaskLoss(task_weights=w))
    assert learn.loss_func == cb.lf
    lam = cb.lam.item()
    assert 0 < lam < 1
    got = cb.lf(pred, y)
    assert got.item() == pytest.approx(mixed_by_hand(pred, y, y[cb.shuffle], lam, w).item(), rel=1e-5)
    # the partners' labels of the weighted task differ, so the mix is not trivially the plain loss
    i = int(np.argmax(w))
    assert (decode_class(y)[i] != decode_class(y[cb.shuffle])[i]).any()
    assert got.item() != pytest.approx(MultiTaskLoss(task_weights=w)(pred, y).item(), rel=1e-4)


def test_mixup_loss_and_pixels(batch):
    x, y = batch
    torch.manual_seed(4)
    cb = MixUp()
    learn = apply_cb(cb, x, y, MultiTaskLoss(task_weights=(1., 2., 3.)))
    shuffle = torch.tensor([(y == v).nonzero().item() for v in cb.yb1[0]])  # labels are distinct
    lam = cb.lam
    assert lam.shape == (8,) and (lam >= 0.5).all()
    l4 = lam[:, None, None, None]
    assert torch.allclose(learn.xb[0], l4 * x + (1 - l4) * x[shuffle], atol=1e-6)
    pred = torch.randn(8, N_CLASSES)
    assert cb.lf(pred, y).item() == pytest.approx(mixed_by_hand(pred, y, y[shuffle], lam, (1., 2., 3.)).item(), rel=1e-5)


@pytest.mark.parametrize('make', [lambda: CutMix(p=0.), lambda: HalfCutMix(p=0.), lambda: SameLabelCutMix(p=0.), lambda: MixUp(p=0.)])
def test_p0_leaves_batch_and_loss(make, batch):
    x, y = batch
    cb = make()
    learn = apply_cb(cb, x, y)
    assert torch.equal(learn.xb[0], x) and cb.applied is False
    pred = torch.randn(8, N_CLASSES)
    assert cb.lf(pred, y).item() == pytest.approx(MultiTaskLoss()(pred, y).item(), rel=1e-6)


def test_p_is_per_batch_chance(batch):
    x, y = batch
    torch.manual_seed(0)
    cb = HalfCutMix(p=0.25)
    learn = apply_cb(cb, x, y)
    n = 0
    for _ in range(400):
        learn.xb = (x,); cb.before_batch(); n += cb.applied
    assert 60 < n < 140


def test_bad_args():
    for f, msg in [(lambda: CutMix(p=-0.1), 'p must be in'), (lambda: MixUp(p=2), 'p must be in'),
                   (lambda: HalfCutMix(jitter=0.6), 'jitter'), (lambda: SameLabelCutMix('square'), "box must be 'half' or 'random'")]:
        with pytest.raises(ValueError, match=msg): f()


def test_same_label_partners():
    torch.manual_seed(0)
    y = torch.tensor([3, 5, 3, 3, 7, 5, 9, 3, 5])
    for _ in range(30):
        s = same_label_partners(y)
        assert torch.equal(y[s], y)
        assert sorted(s.tolist()) == list(range(len(y)))
        assert s[4] == 4 and s[6] == 6  # alone in the batch
        others = torch.tensor([0, 1, 2, 3, 5, 7, 8])
        assert (s[others] != others).all()


@pytest.mark.parametrize('box', ['half', 'random'])
def test_same_label_cutmix(box):
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(8, 3, H, W, generator=g), torch.tensor([3, 5, 3, 3, 7, 5, 9, 3])
    torch.manual_seed(0)
    cb = SameLabelCutMix(box, p=1.)
    learn = apply_cb(cb, x, y)
    assert torch.equal(y[cb.shuffle], y) and torch.equal(cb.yb1[0], y)
    x1, y1, x2, y2 = cb.patch
    if box == 'half': assert cb.patch == (W // 2, 0, W, H)
    assert torch.equal(learn.xb[0][..., y1:y2, x1:x2], x[cb.shuffle][..., y1:y2, x1:x2])
    assert torch.equal(learn.xb[0][[4, 6]], x[[4, 6]])
    pred = torch.randn(8, N_CLASSES)
    assert cb.lf(pred, y).item() == pytest.approx(MultiTaskLoss()(pred, y).item(), rel=1e-6)


class SeenBatches(Callback):
    order, run_valid = 90, True
    def before_fit(self): self.seen = {True: [], False: []}
    def before_batch(self): self.seen[self.training].append((self.x.clone(), self.y.clone()))


@pytest.mark.parametrize('make', [lambda: CutMix(), lambda: HalfCutMix(p=1.), lambda: SameLabelCutMix('half', p=1.),
                                  lambda: SameLabelCutMix('random', p=1.), lambda: MixUp()])
def test_fit_mixes_train_not_valid(make):
    dls = synth_dls(n_labels=2)  # every batch has repeated labels
    learn = tiny_learner(cbs=[make(), SeenBatches()], dls=dls)
    learn.fit(1, 1e-2)
    assert np.isfinite(learn.recorder.values[-1][:2]).all()
    assert isinstance(learn.loss_func, MultiTaskLoss)  # given back after training
    raw_valid = [b[0] for b in dls.valid]
    seen_valid = [x for x, _ in learn.seen_batches.seen[False]]
    assert len(seen_valid) == len(raw_valid) and all(torch.equal(a, b) for a, b in zip(seen_valid, raw_valid))
    xs_tr, ys_tr = map(torch.stack, zip(*dls.train_ds))
    flat = xs_tr.flatten(1)
    n_mixed = n = 0
    for xb, yb in learn.seen_batches.seen[True]:
        for x, yy in zip(xb, yb):
            n += 1; n_mixed += not bool((flat == x.flatten()).all(1).any())
            if isinstance(learn.cbs[-2], SameLabelCutMix) and learn.cbs[-2].box == 'half':
                left = (xs_tr[..., :W // 2] == x[..., :W // 2]).flatten(1).all(1).nonzero().view(-1)
                right = (xs_tr[..., W // 2:] == x[..., W // 2:]).flatten(1).all(1).nonzero().view(-1)
                assert ys_tr[left[0]] == yy and ys_tr[right[0]] == yy
    assert n_mixed > n // 2, (n_mixed, n)


# ---------- wandb ----------

def test_import_and_off_start_nothing(tmp_path):
    wb = tmp_path/'wb'
    # `wandb` itself may be imported by timm (timm.utils.summary); fastai's wandb module must not be, nor a run started
    code = "\n".join(["import sys", "from mask_fastai.callbacks import *", "assert 'fastai.callback.wandb' not in sys.modules",
                      f"assert wandb_callbacks('off', dir=r'{wb}') == []",
                      f"with wandb_run('off', dir=r'{wb}') as cbs: assert cbs == []",
                      "assert 'fastai.callback.wandb' not in sys.modules",
                      "assert 'wandb' not in sys.modules or sys.modules['wandb'].run is None"])
    subprocess.run([sys.executable, '-c', code], check=True, cwd=tmp_path, timeout=120)
    assert not wb.exists() and not (tmp_path/'wandb').exists()
    with pytest.raises(ValueError, match='wandb mode must be one of'): wandb_callbacks('disabled')


def test_format_config_value_safe():
    assert _format_config_value_safe(3) == 3 and _format_config_value_safe('cuda') == 'cuda' and _format_config_value_safe(None) is None
    assert _format_config_value_safe(list(range(100))) == 'list of 100'
    assert _format_config_value_safe([1, 'a']) == [1, 'a']
    assert _format_config_value_safe(HalfCutMix(p=.3)) == {'p': .3, 'jitter': 0., '_name': 'HalfCutMix'}


def test_mask_wandb_callback_pickles():
    cb = MaskWandbCallback(log_preds=False)
    cb2 = pickle.loads(pickle.dumps(cb))
    assert type(cb2) is type(cb) and cb2.log_preds is False and cb.name == 'mask_wandb'


def test_wandb_offline_fit(tmp_path):
    import wandb
    t0 = time.time()
    cbs = wandb_callbacks('offline', config={'lr': 1e-2, 'mix': 'half'}, dir=tmp_path, n_misclassified=5, n_batch_images=4)
    assert wandb.run is not None and wandb.run.settings.mode == 'offline'
    learn = tiny_learner(cbs=[HalfCutMix(p=1.)] + cbs, metrics=mask_metrics())
    learn.fit(2, 1e-2)
    assert wandb.run is None  # finished at the end of fit
    run_dir, = (tmp_path/'wandb').glob('offline-run-*')
    log = offline_run_log(run_dir)
    elapsed = time.time() - t0
    assert log['finished']
    keys = set().union(*log['history'])
    for k in ('train_loss', 'valid_loss', 'f1_macro', 'mask_acc', 'gender_f1', 'age_acc', 'epoch', 'lr_0'): assert k in keys, k
    for k in ('train_batch', 'task_accuracy_table', 'mask_class_accuracy_table', 'gender_class_accuracy_table',
              'age_group_class_accuracy_table', 'misclassified'): assert f'{k}/_type' in keys, k
    assert log['history'][0]['train_batch/count'] == 4
    s = log['summary']
    assert s['misclassified/nrows'] == 5 and s['epoch'] == 2
    names = learn.recorder.metric_names[1:-1]
    for t in TASKS:
        assert s[f'final_{TASK_SHORT_NAMES[t]}_acc'] == pytest.approx(learn.recorder.values[-1][names.index(f'{TASK_SHORT_NAMES[t]}_acc')])
    assert log['config']['lr'] == 1e-2 and log['config']['mix'] == 'half'
    assert log['config']['HalfCutMix'] == {'p': 1., 'jitter': 0.}
    media = run_dir/'files'/'media'
    assert len(list((media/'images').glob('train_batch_*.png'))) == 4
    tbl = json.loads(next((media/'table').glob('misclassified_*.table.json')).read_text())
    assert tbl['columns'][:4] == ['image', 'true', 'pred', 'prob'] and len(tbl['data']) == 5
    for row in tbl['data']:
        assert row[1] in CLASS_NAMES and row[2] in CLASS_NAMES and row[1] != row[2]
        assert row[1] == '/'.join(row[4:7]) and row[2] == '/'.join(row[7:10])
    bars = json.loads(next((media/'table').glob('task_accuracy_table_*.table.json')).read_text())
    assert [r[0] for r in bars['data']] == list(TASKS)
    age = json.loads(next((media/'table').glob('age_group_class_accuracy_table_*.table.json')).read_text())
    assert {r[0] for r in age['data']} <= set(TASK_NAMES['age_group'])
    assert elapsed < 20, f'offline wandb fit took {elapsed:.1f} s'


def test_wandb_run_spans_fits_and_lr_find(tmp_path):
    import wandb
    with wandb_run('offline', dir=tmp_path, n_batch_images=2) as cbs:
        learn = tiny_learner(cbs=cbs)
        learn.lr_find(num_it=6, show_plot=False)
        assert wandb.run is not None  # lr_find does not finish the run
        learn.fit(1, 1e-2)
        learn.fit(1, 1e-3)
        assert wandb.run is not None
    assert wandb.run is None
    run_dir, = (tmp_path/'wandb').glob('offline-run-*')
    log = offline_run_log(run_dir)
    assert log['finished']
    assert sum('valid_loss' in h for h in log['history']) == 2
    assert sum('train_batch/count' in h for h in log['history']) == 2  # first batch of each fit

def test_wandb_config_formatting_leaves_callbacks_alone():
    "Formatting the config for wandb must not replace a callback's schedule functions by text (it broke one-cycle training)."
    from mask_fastai.callbacks import _format_config_safe
    f = lambda pos: pos
    d = {'scheds': {'lr': f}, 'n': 3}
    out = _format_config_safe(d)
    assert d['scheds']['lr'] is f and isinstance(out['scheds']['lr'], str) and out['n'] == 3
