"Tests of mask_fastai.analysis: the mislabel finder on synthetic OOF tables, corrections, Grad-CAM and the HTML report."
import re
import numpy as np, pandas as pd, pytest, torch
from mask_fastai.core import GENDER_NAMES, N_CLASSES, STEMS
from mask_fastai.data import SWAP, load_corrections, apply_corrections, set_labels
from mask_fastai.core import PROB_COLS
from mask_fastai.analysis import (read_oof, find_mislabels, mislabel_precision_recall, candidates_to_corrections,
                                  plot_candidates, write_mislabel_review, per_class_table, cam_layer, grad_cam, mask_report, CANDIDATE_COLS)
from mask_fastai.test_utils import *

KIND = {'incorrect_normal_swap': 'mask_swap'}


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_planted_people_rank_top(seed):
    oof, planted = synthetic_oof(60, n_gender=3, n_age=1, n_swap=2, seed=seed)
    cands = find_mislabels(oof)
    top = cands.head(len(planted))
    assert sorted(zip(top.id, top.kind)) == sorted(zip(planted.id, planted.kind.replace(KIND)))
    assert dict(zip(top.id, top.suggested)) == dict(zip(planted.id, planted.true_value))
    r = mislabel_precision_recall(cands, planted, k=len(planted))
    assert (r['precision'], r['recall'], r['hits']) == (1., 1., len(planted))


def test_standardised_score_discounts_a_biased_rare_group():
    "A model that leans to 30-59 for every >=60 person: raw log-odds rank those people first, the standardised score does not."
    oof, planted = synthetic_oof(80, n_gender=3, n_age=0, n_swap=1, seed=8)
    P = oof[PROB_COLS].to_numpy().reshape(-1, 3, 2, 3).copy()
    P[(oof.age_group == 2).to_numpy(), :, :, 1] *= np.exp(4.)
    P /= P.sum((1, 2, 3), keepdims=True)
    biased = oof.copy(); biased[PROB_COLS] = P.reshape(len(oof), -1)
    assert mislabel_precision_recall(find_mislabels(biased), planted, k=len(planted))['recall'] == 1.
    raw = find_mislabels(biased, standardise=False)
    assert mislabel_precision_recall(raw, planted, k=len(planted))['recall'] < 1.
    np.testing.assert_allclose(raw.score, raw.log_odds)


def test_candidates_table_layout():
    oof, _ = synthetic_oof(20, seed=4)
    cands = find_mislabels(oof, min_log_odds=-np.inf)
    assert list(cands.columns) == CANDIDATE_COLS
    assert set(cands.kind) == {'gender', 'age_group', 'mask_swap'}
    assert len(cands) == 20 * 3                                  # every person once per kind without a threshold
    assert cands.score.is_monotonic_decreasing
    assert (cands[cands.kind != 'mask_swap'].n_images == len(STEMS)).all()
    with pytest.raises(ValueError, match='unknown kind'): find_mislabels(oof, kinds=('age',))


def test_mask_swap_found_by_label_not_stem():
    "A swap already fixed by a corrections file (labels exchanged by stem) is not flagged again."
    oof, planted = synthetic_oof(15, n_gender=0, n_age=0, n_swap=1, seed=2)
    pid = planted.id.iloc[0]
    assert find_mislabels(oof).iloc[0][['id', 'kind']].tolist() == [pid, 'mask_swap']
    fixed = apply_corrections(set_labels(oof), pd.DataFrame(dict(id=[pid], field=['swap'], value=[SWAP])))
    left = find_mislabels(fixed, kinds=('mask_swap',))
    assert pid not in set(left.id)


def test_oof_csv_keeps_string_ids(tmp_path):
    oof, planted = synthetic_oof(10, n_gender=1, n_age=0, n_swap=0, seed=3)
    oof.to_csv(tmp_path/'oof.csv', index=False)
    cands = find_mislabels(tmp_path/'oof.csv')
    assert cands.id.iloc[0] == planted.id.iloc[0] and cands.id.iloc[0].startswith('0000')
    with pytest.raises(FileNotFoundError): read_oof(tmp_path/'nope.csv')
    with pytest.raises(ValueError, match='missing column'): read_oof(oof.drop(columns=['folder']))


def test_precision_recall_against_maskbench_style_key(tmp_path):
    key = tmp_path/'train_mislabels.csv'
    key.write_text('id,kind,true_value,path\n003184,incorrect_normal_swap,incorrect_mask<->normal,003184_female_Asian_45\n'
                   '003683,gender,female,003683_male_Asian_25\n')
    cands = pd.DataFrame(dict(id=['003683', '000001', '003184', '003184'], kind=['gender', 'gender', 'gender', 'mask_swap'],
                              score=[3., 2., 1., .5]))
    assert mislabel_precision_recall(cands, key, k=2) == dict(k=2, hits=1, precision=.5, recall=.5, n_true=2, id_hits=1)
    r = mislabel_precision_recall(cands, key)
    assert (r['hits'], r['recall'], r['id_hits']) == (2, 1., 2)


def test_corrections_in_the_data_layer_format(tmp_path):
    cands = pd.DataFrame(dict(id=['000010', '000011', '000012', '000013', '000014'], folder='f',
                              kind=['gender', 'mask_swap', 'age_group', 'age_group', 'gender'],
                              labelled=['female', '', '30-59', '<30', 'male'], suggested=['male', SWAP, '>=60', '30-59', 'female'],
                              score=[3, 2, 1.5, 1, .5], age=[25, 40, 58, 22, 30], n_images=7, accept=['x', 'yes', 'True', '1', '']))
    corr = candidates_to_corrections(cands, tmp_path/'corrections.csv')
    assert corr[['id', 'field', 'value']].values.tolist() == [['000010', 'gender', 'male'], ['000011', 'swap', SWAP],
                                                             ['000012', 'age', '60'], ['000013', 'age', '30']]
    back = load_corrections(tmp_path/'corrections.csv')
    assert back[['id', 'field', 'value']].values.tolist() == corr[['id', 'field', 'value']].values.tolist()
    assert len(candidates_to_corrections(cands.drop(columns='accept'))) == 5     # no accept column: all rows
    assert candidates_to_corrections(cands.assign(value=['', '', '64', '', '']))['value'].tolist()[2] == '64'


def test_corrections_fix_the_planted_errors():
    oof, planted = synthetic_oof(30, n_gender=2, n_age=1, n_swap=1, seed=5)
    cands = find_mislabels(oof).head(len(planted))
    fixed = apply_corrections(set_labels(oof), candidates_to_corrections(cands))
    for r in planted.itertuples():
        p = fixed[fixed.person == r.id]
        if r.kind == 'gender': assert p.gender.unique().tolist() == [GENDER_NAMES.index(r.true_value)]
    assert find_mislabels(fixed, min_log_odds=1.).empty


def test_review_folder_and_grid(tmp_path):
    oof, planted = synthetic_oof(10, n_gender=1, n_age=0, n_swap=1, seed=6, img_dir=tmp_path/'imgs')
    res = write_mislabel_review(oof, tmp_path/'review', k=3, truth=planted)
    assert res['key']['recall'] == 1.
    rev = pd.read_csv(res['csv'], dtype={'id': str})
    assert 'accept' in rev and rev.accept.isna().all()
    assert (tmp_path/'review'/'candidates.png').stat().st_size > 2000
    fig = plot_candidates(find_mislabels(oof), oof, k=2)
    assert len(fig.axes) == 2 * len(STEMS)


def test_per_class_table_has_18_rows():
    t = per_class_table([0, 0, 5, 17], [0, 1, 5, 16])
    assert len(t) == N_CLASSES and t.loc[0, 'recall'] == .5 and t.loc[5, 'f1'] == 1. and t.support.sum() == 4


def test_grad_cam_layer_and_shapes():
    from mask_fastai.model import create_mask_model
    torch.manual_seed(0)
    mdl = create_mask_model(pretrained=False).eval()
    x = torch.randn(2, 3, 64, 48)
    assert cam_layer(mdl.body, x) is mdl.body.bn2
    for task in ('mask', 'gender', 'age_group', 'joint'):
        cams, tgt = grad_cam(mdl, x, task=task)
        assert cams.shape == (2, 64, 48) and cams.min() >= 0 and cams.max() <= 1 + 1e-6 and tgt.shape == (2,)
    assert all(p.grad is None for p in mdl.parameters())       # no gradients left on the weights


def test_report_end_to_end(tmp_path):
    from mask_fastai.demo import make_demo_data
    from mask_fastai.data import read_train
    from mask_fastai.model import create_mask_model
    df = read_train(make_demo_data(tmp_path/'demo', n_train=3, n_eval=1, size=(48, 64)))
    torch.manual_seed(0)
    rep = mask_report(create_mask_model(pretrained=False), dict(size=[64, 48], stats=[[.5] * 3, [.25] * 3], train=dict(crop=False)),
                      df, tmp_path/'report', top_k=6, n_cam=2)
    out = tmp_path/'report'
    pngs = sorted(p.name for p in out.glob('*.png'))
    assert pngs == sorted(['confusion.png', 'confusion_tasks.png', 'top_losses.png', 'misclassified.png', 'tsne.png', 'gradcam.png'])
    page = (out/'report.html').read_text()
    assert sorted(set(re.findall(r'src="([^"]+\.png)"', page))) == pngs
    for f in ('per_class.csv', 'per_task.csv', 'predictions.csv', 'scores.json'): assert f'href="{f}"' in page and (out/f).exists()
    assert len(pd.read_csv(out/'per_class.csv')) == N_CLASSES and len(rep['per_class']) == N_CLASSES
    pred = pd.read_csv(out/'predictions.csv')
    assert len(pred) == len(df) and np.allclose(pred[PROB_COLS].sum(axis=1), 1, atol=1e-4)
    assert all(p.stat().st_size > 1000 for p in out.glob('*.png'))
    with pytest.raises(FileNotFoundError, match='not found'):
        mask_report(create_mask_model(pretrained=False), dict(size=[64, 48]), df.assign(path=df.path + '.missing'), tmp_path/'r2')
