"Tests of mask_fastai.postprocess: voting, decision offsets for macro F1, identity grouping and pooling."
import json
import numpy as np, pytest, torch
from sklearn.metrics import f1_score
from mask_fastai.core import N_CLASSES, TASK_SIZES, encode_class, decode_class
from mask_fastai.postprocess import (as_probs, soft_vote, hard_vote, macro_f1, fit_offsets, offset_basis, apply_offsets, save_offsets, load_offsets,
                                     task_marginals, group_identities, group_purity,
                                     pool_identities, combine_embeddings, identity_features, identity_groups)
from mask_fastai.test_utils import *


def onehotish(ids, conf=.8):
    return np.eye(N_CLASSES)[ids] * conf + (1 - conf) / N_CLASSES


def test_as_probs_rejects_logits_and_bad_shapes():
    with pytest.raises(ValueError, match='negative'): as_probs(np.log(onehotish([0, 1])))
    with pytest.raises(ValueError, match=r'shape \(n, 18\)'): as_probs(np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match='non-finite'): as_probs(np.full((1, N_CLASSES), np.nan))
    assert as_probs(torch.tensor(onehotish([3]))).shape == (1, N_CLASSES)


def test_soft_vote_is_weighted_mean():
    a, b = onehotish([0, 5]), onehotish([1, 5], .5)
    np.testing.assert_allclose(soft_vote([a, b]), (a + b) / 2)
    np.testing.assert_allclose(soft_vote([a, b], [0, 1]), b)
    with pytest.raises(ValueError, match='weights'): soft_vote([a, b], [1])
    with pytest.raises(ValueError, match='at least one'): soft_vote([])


def test_hard_vote_majority_and_documented_tie_breaks():
    a, b, c = onehotish([0, 1, 2], .9), onehotish([0, 3, 4], .5), onehotish([6, 3, 7], .6)
    assert hard_vote([a, b, c]).tolist() == [0, 3, 2]             # row 2: three different votes, a is the most confident
    assert hard_vote([b, a]).tolist() == [0, 1, 2]                # 1-1 ties: larger summed probability (a), not list order
    assert hard_vote([b.argmax(1), a.argmax(1)]).tolist() == [0, 3, 4]   # ids only: the first model decides ties
    assert hard_vote([np.array([1, 1]), np.array([2, 2]), np.array([2, 1])]).tolist() == [2, 1]


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(5):
        yt, yp = rng.integers(0, 18, 300), rng.integers(0, 18, 300)
        yt[yt == 4] = 5; yp[yp == 9] = 10                          # classes missing on one side only
        assert macro_f1(yt, yp) == pytest.approx(f1_score(yt, yp, average='macro'))


def test_zero_offsets_reproduce_argmax():
    p, _ = imbalanced_example(500, seed=1)
    np.testing.assert_array_equal(apply_offsets(p, np.zeros(N_CLASSES)).argmax(1), p.argmax(1))
    np.testing.assert_allclose(apply_offsets(p, np.zeros(N_CLASSES)), p, atol=1e-5)


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('structure', ['task', 'class'])
def test_offsets_improve_held_out_macro_f1(seed, structure):
    p, y = imbalanced_example(4000, seed=seed)
    fit, hold = slice(0, 2000), slice(2000, None)
    off = fit_offsets(p[fit], y[fit], structure=structure)
    assert macro_f1(y[hold], apply_offsets(p[hold], off).argmax(1)) > macro_f1(y[hold], p[hold].argmax(1)) + 0.005
    assert macro_f1(y[fit], apply_offsets(p[fit], off).argmax(1)) > macro_f1(y[fit], p[fit].argmax(1))
    np.testing.assert_array_equal(fit_offsets(p[fit], y[fit], structure=structure), off)   # deterministic


def test_offsets_stay_zero_when_argmax_is_already_perfect():
    y = np.arange(N_CLASSES).repeat(5)
    for structure in ('task', 'class'): np.testing.assert_array_equal(fit_offsets(onehotish(y), y, structure=structure), np.zeros(N_CLASSES))


def test_task_offsets_are_sums_of_task_values():
    p, y = imbalanced_example(1500, seed=3)
    off = fit_offsets(p, y, structure='task')
    m, g, a = decode_class(np.arange(N_CLASSES))
    # differences between classes that share gender and age depend only on the mask value, and so on
    for c1 in range(N_CLASSES):
        for c2 in range(N_CLASSES):
            if g[c1] == g[c2] and a[c1] == a[c2]:
                assert off[c1] - off[c2] == pytest.approx(off[encode_class(m[c1], 0, 0)] - off[encode_class(m[c2], 0, 0)])
    assert offset_basis('class').shape == (N_CLASSES, N_CLASSES)


def test_offsets_json_roundtrip_and_checks(tmp_path):
    off = np.linspace(-1, 1, N_CLASSES)
    fn = save_offsets(off, tmp_path/'sub'/'offsets.json', f1_oof=0.5)
    np.testing.assert_array_equal(load_offsets(fn), off)
    d = json.loads(fn.read_text()); assert d['f1_oof'] == 0.5 and len(d['classes']) == N_CLASSES
    d['offsets'] = d['offsets'][:5]; fn.write_text(json.dumps(d))
    with pytest.raises(ValueError, match='18 finite numbers'): load_offsets(fn)
    with pytest.raises(ValueError, match='shape'): save_offsets(off[:3], tmp_path/'x.json')


def test_task_marginals_match_decode_class():
    p = np.random.default_rng(2).dirichlet(np.ones(N_CLASSES), 4)
    m = task_marginals(p)
    for i, t in enumerate(('mask', 'gender', 'age_group')):
        want = np.stack([p[:, decode_class(np.arange(N_CLASSES))[i] == v].sum(1) for v in range(TASK_SIZES[i])], 1)
        np.testing.assert_allclose(m[t], want)


def test_grouping_recovers_planted_identities():
    X, person, mask = clustered_embeddings(25, seed=5)
    g = group_identities(X, centre_by=mask)
    s = group_purity(g, person)
    assert s['purity'] > .97 and s['inverse_purity'] > .97 and s['n_groups'] == 25
    # the scalable kNN-graph path and a distance threshold agree on easy data
    assert group_purity(group_identities(X, centre_by=mask, n_neighbors=15), person)['purity'] > .97
    assert group_purity(group_identities(X, centre_by=mask, distance_threshold=.5), person)['inverse_purity'] > .97
    # without removing the shared mask direction, the masks dominate
    assert group_purity(group_identities(X), person)['inverse_purity'] < s['inverse_purity']


def test_grouping_with_torch_input_and_tiny_sets():
    X, person, mask = clustered_embeddings(3, seed=1, mask_strength=0.)
    g = group_identities(torch.tensor(X))
    assert group_purity(g, person)['purity'] == 1.
    assert group_identities(X[:2]).tolist() == [0, 0]   # round(2/7) clusters -> at least one
    assert group_identities(X[:1]).tolist() == [0]


def test_group_purity_definitions():
    s = group_purity([0, 0, 0, 1, 1, -1], ['a', 'a', 'b', 'b', 'b', 'b'])
    assert s['purity'] == pytest.approx(5 / 6)          # group 0 majority a (2), group 1 b (2), singleton b (1)
    assert s['inverse_purity'] == pytest.approx(4 / 6)  # a: 2 in group 0; b: 2 in group 1
    assert (s['n_groups'], s['n_people'], s['ungrouped']) == (3, 2, 1)


def _joint(pm, pg, pa): return np.einsum('ni,nj,nk->nijk', pm, pg, pa).reshape(len(pm), N_CLASSES)


def test_pooling_fixes_minority_gender_and_keeps_mask():
    rng = np.random.default_rng(0)
    pm = rng.dirichlet(np.ones(3), 7)
    pf = np.array([.9, .8, .35, .85, .4, .7, .75])     # two photos of a woman lean male
    pa = rng.dirichlet(np.ones(3), 7)
    P = _joint(pm, np.stack([1 - pf, pf], 1), pa)
    out = pool_identities(P, np.zeros(7, dtype=int))
    m = task_marginals(out)
    assert m['gender'].argmax(1).tolist() == [1] * 7
    np.testing.assert_allclose(m['mask'], pm)
    np.testing.assert_allclose(m['gender'], np.tile(task_marginals(P)['gender'].mean(0), (7, 1)))
    np.testing.assert_allclose(m['age_group'], np.tile(pa.mean(0), (7, 1)))
    np.testing.assert_allclose(out.sum(1), 1)


def test_pooling_leaves_other_groups_and_ungrouped_alone():
    P = np.random.default_rng(1).dirichlet(np.ones(N_CLASSES), 6)   # not a product of task distributions
    g = np.array([0, 0, 1, -1, 2, 2])
    out = pool_identities(P, g)
    np.testing.assert_allclose(out[[2, 3]], P[[2, 3]])               # a group of one, ungrouped
    np.testing.assert_allclose(task_marginals(out)['mask'], task_marginals(P)['mask'])
    with pytest.raises(ValueError, match='integer ids'): pool_identities(P, g.astype(float))
    with pytest.raises(ValueError, match="'prob' or 'log'"): pool_identities(P, g, space='geo')


def test_predict_probs_embeddings_match_model():
    "One pass gives the probabilities and the body's features that identity grouping clusters (inference.predict_probs)."
    from fastai.data.core import DataLoader
    from mask_fastai.model import create_mask_model
    from mask_fastai.inference import predict_probs
    torch.manual_seed(0)
    mdl = create_mask_model(pretrained=False, head='joint').eval()
    xs = torch.randn(5, 3, 32, 32)
    p, e = predict_probs(mdl, DataLoader(list(zip(xs)), bs=2), embeddings=True)
    with torch.no_grad():
        np.testing.assert_allclose(p.numpy(), mdl(xs).softmax(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(e.numpy(), mdl.body(xs).numpy(), atol=1e-5)
    pt, et = predict_probs(mdl, DataLoader(list(zip(xs)), bs=2), tta=True, embeddings=True)
    with torch.no_grad(): np.testing.assert_allclose(et.numpy(), ((mdl.body(xs) + mdl.body(xs.flip(-1))) / 2).numpy(), atol=1e-4)

def test_combine_embeddings_weights_blocks_equally():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 3)) * 100, rng.normal(size=(20, 50))
    X = combine_embeddings([a, b])
    np.testing.assert_allclose(np.linalg.norm(X[:, :3], axis=1), np.sqrt(.5))
    np.testing.assert_allclose(np.linalg.norm(X[:, 3:], axis=1), np.sqrt(.5))
    cats = np.arange(20) % 2
    Xc = combine_embeddings([a], centre_by=cats)
    assert abs(Xc.shape[1] - 3) == 0
    with pytest.raises(ValueError, match='same n'): combine_embeddings([a, b[:5]])
    with pytest.raises(ValueError, match='one category per image'): combine_embeddings([a], centre_by=cats[:3])


def test_identity_features_and_groups_on_demo_photos(tmp_path):
    import pandas as pd
    from mask_fastai.demo import make_demo_data
    d = make_demo_data(tmp_path/'demo', n_train=1, n_eval=3, size=(48, 64))
    lab = pd.read_csv(d/'answers'/'eval_labels.csv', dtype={'ImageID': str, 'person': str})
    paths = [d/'eval'/'images'/i for i in lab.ImageID]
    f = identity_features(paths, bs=8)
    assert f['imagenet'].shape == (21, 80) and f['thumb'].shape == (21, 4608)
    probs = onehotish(encode_class(lab['mask'].to_numpy(), 0, 0), .9)
    g = identity_groups(probs, features=f)
    assert g.shape == (21,) and g.max() < 21
    assert group_purity(g, lab.person)['purity'] > .5
    emb = np.random.default_rng(0).normal(size=(21, 7))
    assert identity_groups(probs, features=f, embeddings=emb).shape == (21,)
    with pytest.raises(ValueError, match='probability rows'): identity_groups(probs[:5], features=f)
    with pytest.raises(FileNotFoundError): identity_features([tmp_path/'nope.jpg'])
