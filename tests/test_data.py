"The data layer, splits and DataLoaders through the exported library: every problem is reported by name, nothing is dropped silently."
import numpy as np, pandas as pd, pytest
from PIL import Image
from mask_fastai.core import *
from mask_fastai.data import *
from mask_fastai.splits import *
from mask_fastai.test_utils import *

PEOPLE = (('000001', 'male', 'Asian', 25), ('000002', 'female', 'Asian', 45), ('001498-1', 'female', 'Asian', 62))

def test_reads_layout(tmp_path):
    write_tiny_train(tmp_path, PEOPLE, ext='.jpeg')
    df = read_train(tmp_path)
    assert len(df) == 21 and df.person.tolist().count('001498-1') == 7
    assert (df.label == encode_class(df['mask'], df.gender, df.age_group)).all()
    assert df[df.stem == 'incorrect_mask']['mask'].unique().tolist() == [1]

@pytest.mark.parametrize('break_it,kind,needle', [
    (lambda t: (t/'images'/'000001_male_Asian_25'/'normal.jpg').unlink(), 'missing_stem', "no 'normal' image"),
    (lambda t: Image.new('RGB', (4, 4)).save(t/'images'/'000001_male_Asian_25'/'mask9.jpg'), 'unknown_stem', 'mask9.jpg'),
    (lambda t: (t/'images'/'000001_male_Asian_25'/'mask1.jpg').write_bytes(b'text, not a jpeg'), 'unreadable_image', 'mask1.jpg'),
    (lambda t: (t/'images'/'000099_male_Asian_30').mkdir(), 'folder_without_row', '000099_male_Asian_30'),
    (lambda t: open(t/'train.csv', 'a').write('000003,male,Asian,33,000003_male_Asian_33\n'), 'missing_folder', '000003_male_Asian_33'),
    (lambda t: open(t/'train.csv', 'a').write('000001,male,Asian,25,000001_male_Asian_25\n'), 'duplicate_id', "id '000001' appears on 2 rows"),
    (lambda t: Image.new('RGB', (4, 4)).save(t/'images'/'000001_male_Asian_25'/'mask1.png'), 'duplicate_stem', "2 files for stem 'mask1'"),
    (lambda t: open(t/'train.csv', 'a').write('000005,male,Asian,25,000001_male_Asian_25\n'), 'duplicate_path', "folder '000001_male_Asian_25' appears on 2 rows"),
    (lambda t: ((t/'images'/'000002_female_Asian_45').rename(t/'images'/'000020_female_Asian_45'),
                (t/'train.csv').write_text((t/'train.csv').read_text().replace(',000002_', ',000020_'))), 'folder_mismatch', "id '000002'"),
])
def test_each_problem_is_named(tmp_path, break_it, kind, needle):
    train = write_tiny_train(tmp_path, PEOPLE)
    break_it(train)
    with pytest.raises(DataProblemError) as e: read_train(tmp_path)
    assert kind in str(e.value) and needle in str(e.value)
    df, probs = read_train(tmp_path, problems='return')
    assert set(probs.kind) == {kind}
    if kind in ('folder_without_row', 'missing_folder', 'unknown_stem'): assert len(df) == 21   # the good rows are all kept
    else: assert len(df) < 21                                                                     # the bad rows are not passed on as data
    assert not set(df.path) & set(probs.path)
    with pytest.warns(UserWarning, match=f'skipped {len(probs)} problem'): df2, skipped = read_train(tmp_path, problems='skip')
    pd.testing.assert_frame_equal(df2, df); pd.testing.assert_frame_equal(skipped, probs)      # skip: the same rows, and the table

def test_all_problems_at_once(tmp_path):
    train = write_tiny_train(tmp_path, PEOPLE)
    (train/'images'/'000001_male_Asian_25'/'normal.jpg').unlink()
    (train/'images'/'000002_female_Asian_45'/'mask3.jpg').write_bytes(b'')
    (train/'images'/'000001_male_Asian_25'/'._mask1.jpg').write_bytes(b'\0')   # macOS junk: ignored
    with pytest.raises(DataProblemError) as e: read_train(tmp_path)
    assert e.value.problems.kind.tolist() == ['missing_stem', 'unreadable_image']
    df, probs = read_train(tmp_path, problems='return')
    assert len(df) == 19 and len(probs) == 2

def test_csv_values(tmp_path):
    train = write_tiny_train(tmp_path, PEOPLE)
    csv = (train/'train.csv').read_text()
    (train/'train.csv').write_text('\ufeff' + csv.replace('000001,male', ' 000001 , Male ').replace(',45,', ',-4,'))
    df, probs = read_train(tmp_path, problems='return')
    assert probs.row.tolist() == [3] and "column 'age': '-4'" in probs.detail[0]
    assert df[df.person == '000001'].gender.unique().tolist() == [0]

def test_corrections_and_age_policy(tmp_path):
    write_tiny_train(tmp_path, (('004432', 'male', 'Asian', 58), ('005227', 'female', 'Asian', 20), ('000005', 'male', 'Asian', 70)))
    df = read_train(tmp_path)
    assert df[df.person == '004432'].gender.unique().tolist() == [1]
    p = df[df.person == '005227'].set_index('stem')
    assert (p.loc['normal', 'mask'], p.loc['incorrect_mask', 'mask']) == (1, 2)
    df['is_valid'] = df.person == '000005'
    up = apply_age_policy(df, relabel_from=58)
    assert up[up.person == '004432'].age_group.unique().tolist() == [2]
    assert up[up.person == '000005'].age_group.unique().tolist() == [2]
    assert '004432' not in apply_age_policy(df, drop=(57, 59)).person.values

def test_eval_order_and_refusals(tmp_path):
    (tmp_path/'eval'/'images').mkdir(parents=True)
    ids = ['z.jpg', 'a.jpg', 'm.jpg']
    for i in ids: Image.new('RGB', (8, 8)).save(tmp_path/'eval'/'images'/i)
    pd.DataFrame(dict(ImageID=ids, ans=0)).to_csv(tmp_path/'eval'/'info.csv', index=False)
    assert read_eval(tmp_path).ImageID.tolist() == ids
    (tmp_path/'eval'/'images'/'a.jpg').unlink()
    with pytest.raises(DataProblemError, match='missing_image'): read_eval(tmp_path)

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
