"Tests of mask_fastai.metrics on fixed predictions against sklearn and hand-decoded values."
import pickle
from types import SimpleNamespace
import numpy as np, pandas as pd, pytest, torch, torch.nn as nn, torch.nn.functional as F
from sklearn.metrics import f1_score, accuracy_score
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.torch_core import to_detach
from mask_fastai.core import N_CLASSES, TASKS, TASK_SIZES, encode_class, decode_class
from mask_fastai.model import combine_task_logits
from mask_fastai.losses import MultiTaskLoss
from mask_fastai.metrics import F1Macro18, TaskAccuracy, TaskF1, mask_metrics, mask_scores, score_submission, task_preds

NAMES = ['f1_macro', 'accuracy', 'mask_acc', 'gender_acc', 'age_acc', 'mask_f1', 'gender_f1', 'age_f1']

def run_metric(m, out, y, bs=3):
    "Metric value after validation batches of size `bs`, the way a Learner accumulates it."
    m.reset()
    for i in range(0, len(y), bs): m.accumulate(SimpleNamespace(pred=out[i:i+bs], y=y[i:i+bs], to_detach=to_detach))
    return m.value

# fixed predictions: classes 0, 5, 7, 11, 17 in targets; 0, 5, 6, 11, 12, 17 predicted; the rest absent from both
Y = torch.tensor([0, 0, 5, 7, 7, 11, 17, 17, 17, 5])
P = torch.tensor([0, 5, 5, 7, 6, 11, 17, 12, 17, 0])
OUT = F.one_hot(P, N_CLASSES).float() * 5

def test_f1_macro_is_sklearn_default():
    m = F1Macro18()
    assert m.name == 'f1_macro'
    v = run_metric(m, OUT, Y)
    np.testing.assert_allclose(v, f1_score(Y.numpy(), P.numpy(), average='macro'))
    present = sorted(set(Y.tolist()) | set(P.tolist()))
    hand = [2 * ((Y == c) & (P == c)).sum().item() / ((Y == c).sum().item() + (P == c).sum().item()) for c in present]
    np.testing.assert_allclose(v, np.mean(hand))
    assert v > f1_score(Y.numpy(), P.numpy(), average='macro', labels=range(N_CLASSES), zero_division=0) + 0.1

def test_accuracy_in_default_list():
    acc = mask_metrics()[1]
    np.testing.assert_allclose(acc(OUT, Y).item(), accuracy_score(Y, P))

def test_task_metrics_on_product_output():
    rng = np.random.default_rng(0)
    ps = [torch.tensor(rng.dirichlet(np.ones(n), size=12), dtype=torch.float) for n in TASK_SIZES]
    joint = combine_task_logits(*(p.log() for p in ps))
    y = torch.tensor(rng.integers(0, N_CLASSES, 12))
    for i, t in enumerate(TASKS):
        pred, targ = ps[i].argmax(1).numpy(), (decode_class(y)[i]).numpy()
        np.testing.assert_array_equal(task_preds(joint, t).numpy(), pred)
        np.testing.assert_allclose(run_metric(TaskAccuracy(t), joint, y), (pred == targ).mean())
        np.testing.assert_allclose(run_metric(TaskF1(t), joint, y), f1_score(targ, pred, average='macro'))

def test_task_pred_is_marginal_not_joint_argmax():
    p = torch.full((1, N_CLASSES), 1e-4); p[0, 0] = .3; p[0, 12:18] = .7 / 6
    assert task_preds(p.log(), 'mask').item() == 2 and decode_class(p.argmax(1)).__getitem__(0).item() == 0
    assert run_metric(TaskAccuracy('mask'), p.log(), torch.tensor([12])) == 1.

def test_names_and_pickle():
    from fastai.learner import mk_metric
    ms = mask_metrics()
    assert [mk_metric(m).name for m in ms] == NAMES
    assert [mk_metric(m).name for m in pickle.loads(pickle.dumps(ms))] == NAMES
    assert mask_metrics()[0] is not ms[0]
    with pytest.raises(ValueError, match='task must be one of'): TaskAccuracy('age')

def test_mask_scores_vs_sklearn():
    s = mask_scores(Y.numpy(), P.numpy())
    assert list(s) == NAMES
    np.testing.assert_allclose(s['f1_macro'], f1_score(Y, P, average='macro'))
    np.testing.assert_allclose(s['accuracy'], 0.6)
    yt, yp = decode_class(Y.numpy()), decode_class(P.numpy())
    # hand-decoded: Y masks 0 0 0 1 1 1 2 2 2 0, P masks 0 0 0 1 1 1 2 2 2 0 -> all right
    np.testing.assert_array_equal(yt[0], [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]); np.testing.assert_array_equal(yp[0], yt[0])
    assert s['mask_acc'] == 1. and s['mask_f1'] == 1.
    # gender: Y 0 0 1 0 0 1 1 1 1 1, P 0 1 1 0 0 1 1 0 1 0 -> 7/10
    np.testing.assert_allclose(s['gender_acc'], 0.7)
    np.testing.assert_allclose(s['gender_f1'], f1_score([0, 0, 1, 0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 0, 0, 1, 1, 0, 1, 0], average='macro'))
    # age: Y 0 0 2 1 1 2 2 2 2 2, P 0 2 2 1 0 2 2 0 2 0
    np.testing.assert_allclose(s['age_acc'], 0.6)
    np.testing.assert_allclose(s['age_f1'], f1_score([0, 0, 2, 1, 1, 2, 2, 2, 2, 2], [0, 2, 2, 1, 0, 2, 2, 0, 2, 0], average='macro'))

@pytest.fixture
def csvs(tmp_path):
    ids = [f'{i:03d}.jpg' for i in range(len(Y))]
    ans = pd.DataFrame({'ImageID': ids, 'ans': Y.numpy()})
    sub = pd.DataFrame({'ImageID': ids, 'ans': P.numpy()}).iloc[::-1]  # other order
    ans.to_csv(tmp_path/'ans.csv', index=False); sub.to_csv(tmp_path/'sub.csv', index=False)
    return tmp_path, ans, sub

def test_score_submission(csvs):
    d, ans, sub = csvs
    exp = {**mask_scores(Y.numpy(), P.numpy()), 'n': len(Y)}
    assert score_submission(d/'sub.csv', d/'ans.csv') == exp
    assert score_submission(sub, ans) == exp
    assert score_submission(d/'sub.csv', ans) == exp

def test_score_submission_errors(csvs):
    d, ans, sub = csvs
    with pytest.raises(ValueError, match=r"1 answer\(s\) not predicted \(e.g. \['000.jpg'\]\), 0 prediction"): score_submission(sub[sub.ImageID != '000.jpg'], ans)
    with pytest.raises(ValueError, match=r"1 prediction\(s\) without answer \(e.g. \['x.jpg'\]\)"):
        score_submission(pd.concat([sub, pd.DataFrame({'ImageID': ['x.jpg'], 'ans': [0]})]), ans)
    dup = sub.copy(); dup.iloc[0, 0] = dup.iloc[1, 0]
    with pytest.raises(ValueError, match=r"duplicated ImageID"): score_submission(dup, ans)
    (d/'bad.csv').write_text('ImageID,ans\n000.jpg,1.5\n')
    with pytest.raises(ValueError, match=r"bad.csv: 1 row\(s\) with ans not an integer in 0..17, first at CSV line 2 \(ImageID '000.jpg'\)"): score_submission(d/'bad.csv', ans)
    with pytest.raises(ValueError, match=r"answers DataFrame: missing column\(s\) \['ImageID'\]"): score_submission(sub, ans.rename(columns={'ImageID': 'id'}))
    with pytest.raises(FileNotFoundError, match='answers file'): score_submission(sub, d/'none.csv')

def test_learner_records_metrics():
    torch.manual_seed(0)
    ds = [(torch.randn(3, 8, 8), torch.tensor(i % N_CLASSES)) for i in range(54)]
    dls = DataLoaders.from_dsets(ds[:36], ds[36:], bs=6)
    learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, N_CLASSES)), loss_func=MultiTaskLoss(), metrics=mask_metrics())
    learn.fit(1, 1e-2)
    assert learn.recorder.metric_names[3:-1] == NAMES
    vals = dict(zip(NAMES, learn.recorder.values[-1][2:]))
    probs, targs = learn.get_preds()
    np.testing.assert_allclose(vals['f1_macro'], f1_score(targs, probs.argmax(1), average='macro'), rtol=1e-6)
    np.testing.assert_allclose(vals['accuracy'], accuracy_score(targs, probs.argmax(1)), rtol=1e-6)
    p = probs.view(-1, *TASK_SIZES).numpy()
    for i, (t, axes) in enumerate(zip(('mask', 'gender', 'age'), ((2, 3), (1, 3), (1, 2)))):
        pred, targ = p.sum(axes).argmax(1), decode_class(targs.numpy())[i]
        np.testing.assert_allclose(vals[f'{t}_acc'], accuracy_score(targ, pred), rtol=1e-6)
        np.testing.assert_allclose(vals[f'{t}_f1'], f1_score(targ, pred, average='macro'), rtol=1e-6)
