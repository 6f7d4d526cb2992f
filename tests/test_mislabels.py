"End to end: the mislabel review folder a reviewer works from (the notebook holds the specification of the finder and the corrections)."
import pandas as pd
from mask_fastai.core import STEMS
from mask_fastai.mislabels import find_mislabels, plot_candidates, write_mislabel_review
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
