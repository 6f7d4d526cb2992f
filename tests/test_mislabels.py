"End to end: the mislabel review folder a reviewer works from, and the review widget's choices turned into the corrections file training reads (the notebook holds the specification of the finder and the corrections)."
import sys
import pandas as pd, pytest
from mask_fastai.core import STEMS, GENDER_NAMES, AGE_GROUP_NAMES
from mask_fastai.data import apply_corrections, load_corrections, set_labels
from mask_fastai.mislabels import (find_mislabels, plot_candidates, write_mislabel_review, review_table, choices_to_corrections,
                                   MislabelReviewer)
from mask_fastai.test_utils import synthetic_oof


def test_review_folder_and_grid(tmp_path):
    oof, planted = synthetic_oof(10, n_gender=1, n_age=0, n_swap=1, seed=6, img_dir=tmp_path/'imgs')
    res = write_mislabel_review(oof, tmp_path/'review', k=3, truth=planted)
    assert res['key']['recall'] == 1.
    rev = pd.read_csv(res['csv'], dtype={'id': str})
    assert 'accept' in rev and rev.accept.isna().all()
    assert (tmp_path/'review'/'candidates.png').stat().st_size > 2000
    assert sorted(p.name for p in (tmp_path/'review').iterdir()) == ['candidates.csv', 'candidates.png']   # no temporary files left
    fig = plot_candidates(find_mislabels(oof), oof, k=2)
    assert len(fig.axes) == 2 * len(STEMS)


FIX = {'gender': lambda v: dict(gender=True), 'age_group': lambda v: dict(age_group=v), 'incorrect_normal_swap': lambda v: dict(swap=True)}

def reviewed(seed=5, k=8):
    "A synthetic OOF table with one error of each kind, its review table, and the choices of a reviewer who fixes exactly the planted errors."
    oof, planted = synthetic_oof(24, n_gender=1, n_age=1, n_swap=1, seed=seed)
    people = review_table(find_mislabels(oof, min_log_odds=float('-inf')), oof, k=k)
    choices = {pid: 'keep' for pid in people.id} | {r.id: FIX[r.kind](r.true_value) for r in planted.itertuples()}
    return oof, planted, people, choices

def test_review_choices_undo_the_planted_errors_without_a_browser():
    oof, planted, people, choices = reviewed()
    assert set(planted.id) <= set(people.id) and len(people) == 8
    corr = choices_to_corrections(people, choices)
    assert sorted(corr.field) == ['age', 'gender', 'swap']
    fixed = apply_corrections(set_labels(oof), load_corrections(corr))   # the rows the data layer reads
    for r in planted.itertuples():
        p = fixed[fixed.person == r.id]
        if r.kind == 'gender': assert p.gender.unique().tolist() == [GENDER_NAMES.index(r.true_value)]
        if r.kind == 'age_group': assert p.age_group.unique().tolist() == [AGE_GROUP_NAMES.index(r.true_value)]
        if r.kind == 'incorrect_normal_swap': assert p.set_index('stem').loc[['incorrect_mask', 'normal'], 'mask'].tolist() == [2, 1]
    assert find_mislabels(fixed, min_log_odds=1.).empty
    assert choices_to_corrections(people, {pid: 'keep' for pid in people.id}).empty

def test_an_age_fix_stays_below_the_relabelling_border():
    _, _, people, _ = reviewed()
    old = people.assign(age=66, age_group='>=60')
    pid = old.id.iloc[0]
    assert choices_to_corrections(old, {pid: dict(age_group='30-59')}).value.tolist() == ['57']   # 58 and 59 train as >=60 by default
    assert choices_to_corrections(old, {pid: dict(age_group='30-59')}, relabel_from=None).value.tolist() == ['59']
    with pytest.raises(ValueError, match="unknown fix"): choices_to_corrections(old, {pid: dict(hair=True)})

def test_the_library_imports_without_ipywidgets(monkeypatch):
    import importlib, mask_fastai.mislabels as m
    monkeypatch.setitem(sys.modules, 'ipywidgets', None)   # as if it were not installed: importing it raises ImportError
    m = importlib.reload(m)
    assert not choices_to_corrections(*reviewed()[2:]).empty
    with pytest.raises(ImportError): m.MislabelReviewer(None, None)

def test_reviewer_widget_writes_the_corrections(tmp_path):
    pytest.importorskip('ipywidgets')
    oof, planted, people, choices = reviewed()
    oof = synthetic_oof(24, n_gender=1, n_age=1, n_swap=1, seed=5, img_dir=tmp_path/'imgs')[0]
    rv = MislabelReviewer(find_mislabels(oof, min_log_odds=float('-inf')), oof, k=8, fn=tmp_path/'corrections.csv')
    assert rv.people.id.tolist() == people.id.tolist() and rv.choices == {}
    for pid, ch in choices.items():
        if ch != 'keep': rv.set_choice(pid, **ch)
    rv.widget.children[-1].children[0].click()   # the 'Write corrections' button
    written = load_corrections(tmp_path/'corrections.csv')
    assert sorted(written[['id', 'field', 'value']].values.tolist()) == sorted(choices_to_corrections(people, choices)[['id', 'field', 'value']].values.tolist())
    assert rv._repr_mimebundle_()['text/plain'].startswith('MislabelReviewer: 8 people')
