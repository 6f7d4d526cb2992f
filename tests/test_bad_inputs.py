"""Bad inputs, as found in folders copied off servers and cloud drives.

The corpus is built here, in a tiny competition folder: odd but valid photos (alpha, grayscale, CMYK, 16-bit, palette with
transparency, EXIF-rotated, 8000x6000, 10x10, a JPEG named .png) must be read upright as 8-bit RGB at the right size;
broken ones (empty, truncated JPEG and PNG, a web page named .jpg) must be named with their path and the reason; skip mode
keeps everything else; CSV mistakes name the csv line and the column.
"""
import warnings
import numpy as np, pandas as pd, pytest
from PIL import Image, ImageFile
from mask_fastai.core import *
from mask_fastai.data import *
from mask_fastai.data import ORIENTATION
from mask_fastai.test_utils import *

PEOPLE = (('000001', 'male', 'Asian', 25), ('000002', 'female', 'Asian', 45), ('000003', 'male', 'Asian', 62),
          ('000004', 'female', 'Asian', 33))
BIG = (8000, 6000)


def noise_jpeg(fn, size=(64, 48), seed=0, **kw):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(fn, **kw)
    return fn


def make_odd_images(d, names=None):
    """Odd-but-valid images in folder `d`: {path: (upright size, check(RGB array) -> bool)}.
    `names` maps a kind to a file name (competition stems for the train folder)."""
    n = dict(alpha='alpha.png', grey='grey.jpg', cmyk='cmyk.jpg', deep='deep.png', exif='exif.jpg', big='big.jpg',
             tiny='tiny.jpg', palette='palette.png', misnamed='misnamed.png') | (names or {})
    out = {}
    a = np.zeros((32, 24, 4), np.uint8); a[:, 12:] = (0, 200, 0, 255)         # left half fully transparent black
    Image.fromarray(a, 'RGBA').save(d/n['alpha'])
    out[d/n['alpha']] = ((24, 32), lambda x: (x[5, 3] == 255).all() and tuple(x[5, 20]) == (0, 200, 0))
    Image.new('L', (24, 32), 77).save(d/n['grey'])
    out[d/n['grey']] = ((24, 32), lambda x: np.abs(x.astype(int) - 77).max() <= 2)
    Image.new('CMYK', (24, 32), (0, 255, 255, 0)).save(d/n['cmyk'])          # magenta + yellow ink
    out[d/n['cmyk']] = ((24, 32), lambda x: np.abs(x[16, 12].astype(int) - (255, 0, 0)).max() <= 8)
    Image.fromarray(np.tile(np.arange(24, dtype=np.uint16) * 2849, (32, 1))).save(d/n['deep'])   # 0..65527 across
    assert Image.open(d/n['deep']).mode == 'I;16'
    out[d/n['deep']] = ((24, 32), lambda x: (x[0, :, 0] == np.round(np.arange(24) * 2849 / 257)).all())
    e = np.zeros((32, 48, 3), np.uint8); e[:, :24] = (255, 0, 0); e[:, 24:] = (0, 0, 255)   # stored 48x32, left red
    ex = Image.Exif(); ex[ORIENTATION] = 6                                     # "rotate 90 clockwise to view"
    Image.fromarray(e).save(d/n['exif'], exif=ex)
    out[d/n['exif']] = ((32, 48), lambda x: x[4, 16, 0] > 200 and x[44, 16, 2] > 200)   # upright: red on top
    Image.new('RGB', BIG, (120, 160, 200)).save(d/n['big'], quality=75)
    out[d/n['big']] = (BIG, lambda x: np.abs(x[0, 0].astype(int) - (120, 160, 200)).max() <= 3)
    Image.new('RGB', (10, 10), (250, 200, 0)).save(d/n['tiny'])
    out[d/n['tiny']] = ((10, 10), lambda x: np.abs(x[5, 5].astype(int) - (250, 200, 0)).max() <= 4)
    p = Image.new('P', (24, 32), 1); p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762); p.paste(0, (0, 0, 4, 4))
    p.save(d/n['palette'], transparency=1)                                     # index 1 (red) is transparent
    out[d/n['palette']] = ((24, 32), lambda x: tuple(x[1, 1]) == (0, 0, 0) and (x[20, 20] == 255).all())
    noise_jpeg(d/n['misnamed'], (24, 32), format='JPEG')                       # a JPEG whose name says .png
    out[d/n['misnamed']] = ((24, 32), lambda x: x.std() > 30)
    return out


def make_bad_images(d, names=None):
    "Broken files in folder `d`: {path: reason the error must give}."
    n = dict(empty='empty.jpg', half='half.jpg', html='html.jpg', half_png='half.png') | (names or {})
    (d/n['empty']).write_bytes(b'')
    whole = noise_jpeg(d/n['half'], seed=1).read_bytes()
    (d/n['half']).write_bytes(whole[:len(whole) // 2])
    (d/n['html']).write_text('<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head></html>')
    noise_jpeg(d/n['half_png'], seed=2, format='PNG')
    whole = (d/n['half_png']).read_bytes(); (d/n['half_png']).write_bytes(whole[:len(whole) // 2])
    return {d/n['empty']: 'empty file (0 bytes)', d/n['half']: 'truncated image', d/n['html']: 'not an image: a text/HTML file',
            d/n['half_png']: 'truncated image'}


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    "A competition folder: persons 1 and 2 have odd-but-valid photos, person 3 four broken ones, person 4 is plain."
    root = tmp_path_factory.mktemp('corpus')
    train = write_tiny_train(root, PEOPLE)
    p1, p2, p3 = (train/'images'/f for f in ('000001_male_Asian_25', '000002_female_Asian_45', '000003_male_Asian_62'))
    stems = dict(alpha=p1/'mask1.png', grey=p1/'mask2.jpg', cmyk=p1/'mask3.jpg', deep=p1/'mask4.png', exif=p1/'mask5.jpg',
                 big=p1/'incorrect_mask.jpg', tiny=p1/'normal.jpg', palette=p2/'mask1.png', misnamed=p2/'mask2.png')
    for p in stems.values(): (p.parent/f'{p.stem}.jpg').unlink()
    good = make_odd_images(p1, stems)                                           # absolute paths: written where they say
    stems3 = dict(empty='mask1', half='mask2', html='mask3', half_png='mask4')
    for s in stems3.values(): (p3/f'{s}.jpg').unlink()
    bad = make_bad_images(p3, {k: f'{s}.png' if k == 'half_png' else f'{s}.jpg' for k, s in stems3.items()})
    return root, train, good, bad


@pytest.fixture
def decoded(monkeypatch):
    "Sizes at which PIL actually decodes image data (after any draft reduction)."
    sizes, real = [], ImageFile.ImageFile.load
    def load(self):
        if self.tile: sizes.append(self.size)
        return real(self)
    monkeypatch.setattr(ImageFile.ImageFile, 'load', load)
    return sizes


# ---- load_rgb on single files

def test_odd_images_read_upright_rgb(tmp_path):
    for fn, (size, ok) in make_odd_images(tmp_path).items():
        im = load_rgb(fn)
        assert (im.mode, im.size) == ('RGB', size), fn
        assert ok(np.asarray(im)), fn
        assert image_info(fn) == (*size, None), fn
        assert image_size(fn) == size, fn


def test_bad_images_name_path_and_reason(tmp_path):
    for fn, reason in make_bad_images(tmp_path).items():
        with pytest.raises(ImageReadError) as e: load_rgb(fn)
        assert str(e.value).startswith(f'{fn}: ') and reason in str(e.value), str(e.value)
        w, h, err = image_info(fn)
        assert np.isnan(w) and np.isnan(h) and err.startswith('unreadable image: ') and reason in err, err
    with pytest.raises(ImageReadError, match='file not found'): load_rgb(tmp_path/'gone.jpg')


def test_big_photo_is_checked_without_a_full_decode(tmp_path, decoded):
    fn = tmp_path/'big.jpg'
    Image.new('RGB', BIG, (1, 2, 3)).save(fn)
    assert image_info(fn) == (*BIG, None)
    assert load_rgb(fn, min_size=(300, 400)).size == (1000, 750)
    assert load_rgb(fn, min_size=(3000, 2000)).size == (4000, 3000)
    assert decoded == [(1000, 750), (1000, 750), (4000, 3000)]             # 1/8 for the check, the smallest JPEG scale
    assert load_rgb(fn).size == BIG and decoded[-1] == BIG                  # only when asked for the full size


# ---- the train folder

def test_broken_images_stop_the_run_all_named(corpus):
    root, train, good, bad = corpus
    with pytest.raises(DataProblemError) as e: read_train(root)
    msg, probs = str(e.value), e.value.problems
    assert msg.startswith('4 problem(s)')
    assert set(probs.kind) == {'unreadable_image'} and set(probs.path) == {str(p) for p in bad}
    for p, reason in bad.items():
        assert str(p) in msg
        assert reason in probs.set_index('path').loc[str(p), 'detail']
    assert (probs.row == 4).all() and (probs.person == '000003').all()
    assert "problems='skip'" in msg


def test_skip_mode_keeps_the_rest(corpus):
    root, train, good, bad = corpus
    with pytest.warns(UserWarning, match=r'skipped 4 problem\(s\) \(4 unreadable_image\); going on with 24 image'):
        df, skipped = read_train(root, problems='skip')
    assert len(df) == 4 * 7 - 4 and df.person.value_counts().to_dict() == {'000001': 7, '000002': 7, '000004': 7, '000003': 3}
    assert set(skipped.path) == {str(p) for p in bad} and not set(skipped.path) & set(df.path)
    assert skipped.columns.tolist() == PROBLEM_COLS and skipped.detail.str.startswith('unreadable image: ').all()
    sizes = df.set_index('path')[['width', 'height']]
    for p, (size, _) in good.items(): assert tuple(sizes.loc[str(p)]) == size, p      # upright sizes
    df2, probs = read_train(root, problems='return')                                   # the same rows and table
    pd.testing.assert_frame_equal(df, df2); pd.testing.assert_frame_equal(skipped, probs)


@pytest.mark.parametrize('break_it,kind,needle', [
    (lambda t: (t/'images'/'000001_male_Asian_25'/'normal.jpg').unlink(), 'missing_stem', "no 'normal' image"),
    (lambda t: Image.new('RGB', (4, 4)).save(t/'images'/'000001_male_Asian_25'/'mask9.jpg'), 'unknown_stem', 'mask9.jpg'),
    (lambda t: (t/'images'/'000001_male_Asian_25'/'mask1.jpg').write_bytes(b'text, not a jpeg'), 'unreadable_image', 'mask1.jpg'),
    (lambda t: (t/'images'/'000099_male_Asian_30').mkdir(), 'folder_without_row', '000099_male_Asian_30'),
    (lambda t: open(t/'train.csv', 'a').write('000009,male,Asian,33,000009_male_Asian_33\n'), 'missing_folder', '000009_male_Asian_33'),
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
    if kind in ('folder_without_row', 'missing_folder', 'unknown_stem'): assert len(df) == 7 * len(PEOPLE)   # the good rows are all kept
    else: assert len(df) < 7 * len(PEOPLE)                                                                     # the bad rows are not passed on as data
    assert not set(df.path) & set(probs.path)
    with pytest.warns(UserWarning, match=f'skipped {len(probs)} problem'): df2, skipped = read_train(tmp_path, problems='skip')
    pd.testing.assert_frame_equal(df2, df); pd.testing.assert_frame_equal(skipped, probs)      # skip: the same rows, and the table


def test_skip_mode_with_nothing_left_still_raises(tmp_path):
    train = write_tiny_train(tmp_path, PEOPLE[:1])
    for f in (train/'images'/'000001_male_Asian_25').iterdir(): f.write_bytes(b'')
    with pytest.raises(DataProblemError, match='7 problem'): read_train(tmp_path, problems='skip')


def test_odd_photos_through_face_crops_and_dataloaders(corpus, tmp_path, monkeypatch, decoded):
    from mask_fastai.faces import face_crops, FaceCropError
    from mask_fastai.dataloaders import mask_dataloaders, RGBImage
    monkeypatch.setenv('MASK_FASTAI_CACHE', str(tmp_path/'cache'))
    root, train, good, bad = corpus
    with pytest.warns(UserWarning): df, _ = read_train(root, problems='skip')
    odd = [str(p) for p in good]
    res = face_crops(odd, tmp_path/'faces', progress=False)                      # real MTCNN, tiny and huge included
    for p, crop in zip(odd, res.crop_path):
        with Image.open(crop) as im: assert (im.mode, im.size) == ('RGB', (192, 256)), p
    exif = res.set_index('path').loc[str(next(p for p in good if p.stem == 'mask5'))]
    assert (exif.x1 <= 32) and (exif.y1 <= 48)                                    # box in upright pixels
    crop = np.asarray(Image.open(exif.crop_path))
    assert crop[5, 96, 0] > 200 and crop[250, 96, 2] > 200                        # red on top, blue below
    with pytest.raises(FaceCropError) as e: face_crops([str(p) for p in bad], tmp_path/'faces', progress=False)
    assert set(e.value.errors) == {str(p) for p in bad}
    assert all(reason in e.value.errors[str(p)] for p, reason in bad.items())

    df['is_valid'] = df.person == '000004'
    dls = mask_dataloaders(df, size=(32, 24), bs=8, num_workers=0)               # whole photos, stats='auto'
    assert type(dls.train_ds[0][0]) is RGBImage
    n = 0
    for xb, yb in [*dls.train, *dls.valid]:
        assert xb.shape[1:] == (3, 32, 24) and xb.isfinite().all(); n += len(xb)
    assert n >= len(df) - 8                                                        # the training loader drops its last partial batch
    assert BIG not in decoded and BIG[::-1] not in decoded                         # the 8000x6000 photo was never decoded in full:
    assert {(1000, 750), (2000, 1500)} <= set(decoded)                              # 1/8 for checks and training, 1/4 for the crop


# ---- CSV mistakes

def _edit(train, fn):
    csv = train/'train.csv'
    csv.write_text(fn(csv.read_text()))


@pytest.mark.parametrize('edit,kind,line,needle', [
    (lambda s: s.replace('000002,female,Asian,45', '000002,female,Asian,forty'), 'bad_value', 3, "column 'age': 'forty'"),
    (lambda s: s.replace('000002,female,Asian,45', '000002,female,Asian,-45'), 'bad_value', 3, "column 'age': '-45'"),
    (lambda s: s.replace('000002,female,Asian,45', '000002,female,Asian,450'), 'bad_value', 3, "column 'age': '450' is not a whole number of years in 0..120"),
    (lambda s: s.replace('000002,female', '000002,F'), 'bad_value', 3, "column 'gender': 'F' is not one of ('male', 'female')"),
    (lambda s: s.replace('000002,female,Asian,45,000002_female_Asian_45', '000002,female'), 'bad_value', 3, "column 'age': ''"),
    (lambda s: s.replace('000002,female', ',female'), 'bad_value', 3, "column 'id' is empty"),
    (lambda s: s.replace('000004,', '000002,'), 'duplicate_id', 3, "id '000002' appears on 2 rows (csv lines 3, 5)"),
    (lambda s: s.replace('000004_female_Asian_33', '000002_female_Asian_45'), 'duplicate_path', 3,
     "folder '000002_female_Asian_45' appears on 2 rows (csv lines 3, 5)"),
    (lambda s: s + '000009,male,Asian,30,000009_male_Asian_30\n', 'missing_folder', 6, "column 'path': no folder '000009_male_Asian_30'"),
    (lambda s: s.replace('000004,female', '000044,female'), 'folder_mismatch', 5, "does not start with the id '000044'"),
])
def test_csv_mistakes_name_line_and_column(tmp_path, edit, kind, line, needle):
    train = write_tiny_train(tmp_path, PEOPLE, size=(8, 8))
    _edit(train, edit)
    with pytest.raises(DataProblemError) as e: read_train(tmp_path)
    assert f'{kind} (csv line {line})' in str(e.value) and needle in str(e.value), str(e.value)
    with pytest.warns(UserWarning, match='skipped'): df, skipped = read_train(tmp_path, problems='skip')
    assert kind in set(skipped.kind) and line in set(skipped.row)
    bad_ids = set(skipped.person[skipped.kind == kind]) - {''}
    assert not bad_ids & set(df.person)                                          # a bad row drops that person ...
    assert len(df) >= 7 * 2                                                      # ... and only that person (or the pair)


def test_folder_without_row(tmp_path):
    train = write_tiny_train(tmp_path, PEOPLE, size=(8, 8))
    _edit(train, lambda s: s.replace('000004,female,Asian,33,000004_female_Asian_33\n', ''))
    with pytest.raises(DataProblemError, match="folder_without_row: .*000004_female_Asian_33: not listed in the 'path' column"):
        read_train(tmp_path)


def test_harmless_formatting_is_accepted(tmp_path):
    train = write_tiny_train(tmp_path, PEOPLE, size=(8, 8))
    clean = read_train(tmp_path)
    _edit(train, lambda s: '\ufeff' + s.replace('id,gender', ' id , gender ').replace('000001,male,Asian,25,000001_male_Asian_25',
                                                                                   ' 000001 , MALE , Asian , 25 , 000001_male_Asian_25/ '))
    pd.testing.assert_frame_equal(read_train(tmp_path), clean)


@pytest.mark.parametrize('content,needle', [
    (lambda s: s.replace('age,', 'years,'), "missing column(s) ['age']"),
    (lambda s: s.replace('gender,', ''), "missing column(s) ['gender']"),
    (lambda s: '', 'empty train.csv'),
])
def test_csv_structure_errors_refuse_in_every_mode(tmp_path, content, needle):
    train = write_tiny_train(tmp_path, PEOPLE, size=(8, 8))
    _edit(train, content)
    for mode in ('raise', 'return', 'skip'):
        with pytest.raises(ValueError) as e: read_train(tmp_path, problems=mode)
        assert needle in str(e.value) and 'train.csv' in str(e.value)


def test_csv_not_utf8(tmp_path):
    train = write_tiny_train(tmp_path, PEOPLE, size=(8, 8))
    (train/'train.csv').write_bytes((train/'train.csv').read_text().replace('Asian', '아시아인').encode('cp949'))
    with pytest.raises(ValueError, match='train.csv: not UTF-8 text .*save it as CSV UTF-8'): read_train(tmp_path)


# ---- the eval folder: no skipping

def test_eval_refuses_listing_every_bad_row(tmp_path):
    img = tmp_path/'eval'/'images'; img.mkdir(parents=True)
    good = make_odd_images(img)
    good.pop(img/'big.jpg'); (img/'big.jpg').unlink()                              # keep this one quick
    bad = make_bad_images(img)
    ids = [p.name for p in good] + [p.name for p in bad] + ['missing.jpg', 'grey.jpg']
    pd.DataFrame(dict(ImageID=ids, ans=0)).to_csv(tmp_path/'eval'/'info.csv', index=False)
    with pytest.raises(DataProblemError) as e: read_eval(tmp_path)
    probs, msg = e.value.problems, str(e.value)
    line = {i: ids.index(i) + 2 for i in ids}                                  # first occurrence
    want = {(line[p.name], 'unreadable_image') for p in bad} | {(line['missing.jpg'], 'missing_image')} | \
           {(line['grey.jpg'], 'duplicate_image_id'), (len(ids) + 1, 'duplicate_image_id')}
    assert set(zip(probs.row, probs.kind)) == want and len(probs) == len(want)
    assert all(str(p) in msg and reason in msg for p, reason in bad.items())
    assert 'every row of info.csv' in msg
    with pytest.raises(ValueError, match='cannot skip'): read_eval(tmp_path, problems='skip')
    ev, _ = read_eval(tmp_path, problems='return')
    sizes = ev.set_index('path')[['width', 'height']]
    for p, (size, _) in good.items():
        if p.name != 'grey.jpg': assert tuple(sizes.loc[str(p)]) == size, p
