"Person splits through the exported reader: no person is ever on both sides (the readers' specification is in nbs/02_data.ipynb, their bad inputs in test_bad_inputs.py)."
import numpy as np, pytest
from mask_fastai.core import *
from mask_fastai.data import *
from mask_fastai.splits import *
from mask_fastai.test_utils import *


def test_person_splits_never_leak(tmp_path):
    rng = np.random.default_rng(0)
    people = [(f'{i:06d}', rng.choice(GENDER_NAMES), 'Asian', int(rng.choice([22, 45, 66], p=[.45, .45, .1]))) for i in range(40)]
    df = read_train(write_tiny_train(tmp_path, people, size=(8, 8)), corrections=None)
    ho = person_holdout(df, 0.25, seed=3)
    assert check_person_overlap(ho) == 0 and ho.groupby('person').is_valid.nunique().max() == 1
    fo = person_folds(df, 4, seed=3)
    assert fo.groupby('person').fold.nunique().max() == 1 and sorted(fo.fold.unique()) == [0, 1, 2, 3]
    assert (person_folds(df, 4, seed=3).fold == fo.fold).all()
    bad = ho.copy(); bad.loc[bad.index[0], 'is_valid'] = not bad.is_valid.iloc[0]
    with pytest.raises(ValueError, match='in both train and valid'): check_person_overlap(bad)
