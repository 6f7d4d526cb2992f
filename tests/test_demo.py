import json
import numpy as np, pandas as pd, pytest
from PIL import Image
from mask_fastai.core import STEMS, STEM_TO_MASK, GENDER_NAMES, encode_class, age_to_group
from mask_fastai.demo import *
from mask_fastai.core import cache_dir
from mask_fastai.demo import _params

SMALL = dict(n_train=10, n_eval=4, size=(96, 128), seed=0)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp('d')/'demo', junk=True, **SMALL)


def _files(d):
    return sorted(str(f.relative_to(d)) for f in d.rglob('*') if f.is_file())


def test_train_layout(demo):
    train = pd.read_csv(demo/'train'/'train.csv', dtype=str)
    assert list(train.columns) == ['id', 'gender', 'race', 'age', 'path']
    assert train['id'].tolist() == [str(900000 + i) for i in range(10)]
    assert set(train['gender']) <= set(GENDER_NAMES) and (train['gender'] == 'male').sum() == 4
    assert (train['path'] == train['id'] + '_' + train['gender'] + '_' + train['race'] + '_' + train['age']).all()
    folders = sorted(f.name for f in (demo/'train'/'images').iterdir() if not f.name.startswith('.'))
    assert folders == sorted(train['path'])
    for folder in folders:
        imgs = sorted(f.stem for f in (demo/'train'/'images'/folder).iterdir() if not f.name.startswith('.'))
        assert imgs == sorted(STEMS)
    assert (train['age'].astype(int) >= 60).sum() == 1
    assert len(list((demo/'train'/'images').glob('*/._mask1.jpg'))) >= 1
    with Image.open(demo/'train'/'images'/folders[0]/'normal.jpg') as im: assert im.size == (96, 128) and im.mode == 'RGB'


def test_eval_and_answers(demo):
    info = pd.read_csv(demo/'eval'/'info.csv', dtype={'ImageID': str})
    ans = pd.read_csv(demo/'answers'/'eval_labels.csv', dtype={'ImageID': str, 'person': str})
    train = pd.read_csv(demo/'train'/'train.csv', dtype=str)
    assert list(info.columns) == ['ImageID', 'ans'] and (info['ans'] == 0).all()
    assert sorted(info['ImageID']) == sorted(f.name for f in (demo/'eval'/'images').iterdir())
    assert info['ImageID'].str.fullmatch(r'[0-9a-f]{40}\.jpg').all()
    assert ans['ImageID'].tolist() == info['ImageID'].tolist()
    assert (ans['ans'] == encode_class(ans['mask'], ans['gender'], ans['age_group'])).all()
    assert (ans['age_group'] == age_to_group(ans['age'])).all()
    assert (ans['mask'] == ans['stem'].map(STEM_TO_MASK)).all()
    assert ans.groupby('person').size().eq(7).all() and ans['person'].nunique() == 4
    assert set(ans['person']).isdisjoint(train['id'])
    assert not (demo/'eval'/'answers').exists() and not list((demo/'eval').glob('*labels*'))


def test_reads_with_data_module(demo):
    from mask_fastai.data import read_train, read_eval
    df = read_train(demo)
    assert len(df) == 70 and df['person'].nunique() == 10
    assert len(read_eval(demo)) == 28


def test_deterministic_and_parallel(demo, tmp_path):
    d2 = make_demo_data(tmp_path/'again', junk=True, n_workers=2, **SMALL)
    assert _files(demo) == _files(d2)
    assert all((demo/f).read_bytes() == (d2/f).read_bytes() for f in _files(demo))
    d3 = make_demo_data(tmp_path/'other', **{**SMALL, 'seed': 1})
    assert (demo/'train'/'train.csv').read_bytes() != (d3/'train'/'train.csv').read_bytes()


def test_old_share():
    for n in (10, 40, 100, 333):
        ppl = make_people(n, seed=n)
        assert sum(p['age'] >= 60 for p in ppl) == max(round(.07*n), 1)
        assert sum(p['gender'] == 0 for p in ppl) == round(.4*n)


def test_draw_person():
    p = make_people(3, seed=0)[0]
    a = np.asarray(draw_person(p, 'normal', size=(96, 128)))
    assert a.shape == (128, 96, 3) and (a == np.asarray(draw_person(p, 'normal', size=(96, 128)))).all()
    photos = person_photos(p, size=(96, 128))
    assert list(photos) == list(STEMS) and (np.asarray(photos['normal']) == a).all()
    im, box = draw_person(p, 'mask1', size=(384, 512), return_box=True)
    x0, y0, x1, y1 = box
    assert .2*384 <= x0 < x1 <= .8*384 and .15*512 <= y0 < y1 <= .75*512
    with pytest.raises(ValueError, match='stem must be one of'): draw_person(p, 'mask6')


def test_refuses_to_overwrite(tmp_path):
    d = make_demo_data(tmp_path/'d', n_train=1, n_eval=1, size=(48, 64))
    with pytest.raises(FileExistsError, match='overwrite=True'): make_demo_data(d, n_train=1, n_eval=1, size=(48, 64))
    make_demo_data(d, n_train=2, n_eval=1, size=(48, 64), overwrite=True)
    assert len(pd.read_csv(d/'train'/'train.csv')) == 2
    mine = tmp_path/'mine'
    mine.mkdir(); (mine/'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='refusing'): make_demo_data(mine, n_train=1, n_eval=1, overwrite=True)
    assert (mine/'keep.txt').exists()
    assert not [f for f in tmp_path.iterdir() if '.tmp-' in f.name]
    with pytest.raises(ValueError, match='at least one'): make_demo_data(tmp_path/'e', n_train=0)


def test_demo_data_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MASK_FASTAI_CACHE', str(tmp_path/'cache'))
    assert cache_dir() == tmp_path/'cache'
    kw = dict(n_train=2, n_eval=1, size=(48, 64), seed=4)
    d = demo_data(**kw)
    assert d.parent == tmp_path/'cache'/'demo' and is_demo_complete(d, _params(2, 1, (48, 64), 4, False))
    assert json.loads((d/'.complete').read_text())['n_train'] == 2
    t = (d/'.complete').stat().st_mtime_ns
    assert demo_data(**kw) == d and (d/'.complete').stat().st_mtime_ns == t
    (d/'.complete').unlink()
    assert not is_demo_complete(d)
    assert demo_data(**kw) == d and is_demo_complete(d)
    assert demo_data(**{**kw, 'seed': 5}) != d
    own = demo_data(tmp_path/'own', **kw)
    assert own == tmp_path/'own' and _files(own) == _files(d)
