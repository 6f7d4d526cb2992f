import json, math, os, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
import mask_fastai.faces as F
from mask_fastai.faces import (face_crops, add_face_crops, crop_summary, portrait_box, face_box, FaceCropError,
                               CROP_COLS)

BOX = ['x0', 'y0', 'x1', 'y1']


def flat(fn, colour=(90, 140, 200), size=(384, 512)):
    Image.new('RGB', size, colour).save(fn)
    return fn


@pytest.fixture
def spy(monkeypatch):
    "Counts the images passed to the real detector."
    calls, real = [], F._detect_batch
    def wrapped(ims, *args, **kw):
        calls.append(len(ims))
        return real(ims, *args, **kw)
    monkeypatch.setattr(F, '_detect_batch', wrapped)
    return calls


def fake_detector(monkeypatch, box=(60, 80, 120, 160), prob=0.99):
    "Replace MTCNN with one that 'finds' `box` (in detection-image pixels) in every image."
    seen = []
    def fake(ims, *args, **kw):
        seen.extend(im.size for im in ims)
        return [(np.array(box, float), prob) for _ in ims]
    monkeypatch.setattr(F, '_detect_batch', fake)
    return seen


def test_detected_box_is_scaled_back_to_source_pixels(tmp_path, monkeypatch):
    seen = fake_detector(monkeypatch)
    res = face_crops([flat(tmp_path/'a.jpg')], tmp_path/'cache', detect_size=320, progress=False)
    assert seen == [(240, 320)]                                   # detected on a downscaled copy
    assert res.loc[0, 'detected'] and res.loc[0, 'prob'] == pytest.approx(0.99)
    assert res.loc[0, BOX].tolist() == list(face_box((96, 128, 192, 256), 384, 512, margin=0.3))
    x0, y0, x1, y1 = res.loc[0, BOX]
    assert (x1 - x0) / (y1 - y0) == pytest.approx(0.75, abs=0.01)


def test_low_probability_face_falls_back(tmp_path, monkeypatch):
    fake_detector(monkeypatch, prob=0.5)
    res = face_crops([flat(tmp_path/'a.jpg')], tmp_path/'cache', min_prob=0.9, progress=False)
    assert not res.loc[0, 'detected'] and math.isnan(res.loc[0, 'prob'])
    assert res.loc[0, BOX].tolist() == list(portrait_box(384, 512))


def test_second_call_does_no_detection(tmp_path, spy):
    fns = [flat(tmp_path/f'{i}.png', (i*40, 100, 50)) for i in range(3)]
    r1 = face_crops(fns, tmp_path/'cache', progress=False)
    assert sum(spy) == 3 and not r1['cached'].any()
    t = time.time()
    r2 = face_crops(fns, tmp_path/'cache', progress=False)
    assert time.time() - t < 1
    assert sum(spy) == 3 and r2['cached'].all()
    pd.testing.assert_frame_equal(r1.drop(columns='cached'), r2.drop(columns='cached'))


def test_cache_key_follows_settings_and_source(tmp_path, spy):
    fn, cache = flat(tmp_path/'a.jpg'), tmp_path/'cache'
    base = face_crops([fn], cache, progress=False).loc[0, 'crop_path']
    assert face_crops([fn], cache, margin=0.2, progress=False).loc[0, 'crop_path'] != base
    r = face_crops([fn], cache, size=(96, 128), progress=False)
    assert r.loc[0, 'crop_path'] != base and Image.open(r.loc[0, 'crop_path']).size == (96, 128)
    assert face_crops([fn], cache, progress=False).loc[0, 'crop_path'] == base
    n = sum(spy)
    flat(fn, (10, 20, 30)); os.utime(fn, ns=(time.time_ns(), time.time_ns() + 10**9))  # source edited
    r = face_crops([fn], cache, progress=False)
    assert sum(spy) == n + 1 and r.loc[0, 'crop_path'] != base


def _damage(jpg, meta, how):
    if how == 'truncate_crop':
        with open(jpg, 'r+b') as f: f.truncate(200)
    elif how == 'zero_crop':                                       # the right length, not a JPEG
        with open(jpg, 'r+b') as f: f.write(bytes(os.path.getsize(jpg)))
    elif how == 'other_crop': Image.new('RGB', (192, 256), (9, 9, 9)).save(jpg, quality=95)   # a valid crop, of another photo
    elif how == 'delete_crop': os.remove(jpg)
    elif how == 'bad_json': Path(meta).write_text('{"version": "fac')
    elif how == 'binary_json': Path(meta).write_bytes(b'\xff\xfe\x00\x81garbage')
    elif how == 'list_json': Path(meta).write_text('[1, 2, 3]')
    elif how == 'no_box': m = json.loads(Path(meta).read_text()); del m['x0']; Path(meta).write_text(json.dumps(m))
    else: os.remove(meta)                                          # run killed between crop and sidecar


@pytest.mark.parametrize('damage', ['truncate_crop', 'zero_crop', 'other_crop', 'delete_crop', 'bad_json', 'binary_json', 'list_json', 'no_box', 'no_json'])
def test_damaged_cache_entry_is_redone(tmp_path, spy, damage):
    "An entry that cannot be read is a miss: made again, never an error."
    fns = [flat(tmp_path/f'{i}.jpg', (i*60, 0, 0)) for i in range(3)]
    r1 = face_crops(fns, tmp_path/'cache', progress=False)
    jpg = r1.loc[1, 'crop_path']; meta = jpg[:-4] + '.json'
    _damage(jpg, meta, damage)
    r2 = face_crops(fns, tmp_path/'cache', progress=False)
    assert sum(spy) == 4 and r2['cached'].tolist() == [True, False, True]
    pd.testing.assert_frame_equal(r1.drop(columns='cached'), r2.drop(columns='cached'))
    with Image.open(r2.loc[1, 'crop_path']) as im: im.load(); assert im.size == (192, 256)
    assert face_crops(fns, tmp_path/'cache', progress=False)['cached'].all()
    assert not [p for p in (tmp_path/'cache').rglob('.*.tmp')]


def test_a_replaced_photo_of_the_same_size_and_time_is_cropped_again(tmp_path, spy):
    "The key is the photo's content: another photo behind the same name, byte size and time stamp is a miss, and the same bytes elsewhere a hit."
    fn = flat(tmp_path/'a.png', (10, 20, 30)); st = fn.stat()
    first = face_crops([fn], tmp_path/'cache', progress=False).loc[0, 'crop_path']
    flat(fn, (30, 20, 10)); os.utime(fn, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fn.stat().st_size == st.st_size and fn.stat().st_mtime_ns == st.st_mtime_ns
    r = face_crops([fn], tmp_path/'cache', progress=False)
    assert sum(spy) == 2 and r.loc[0, 'crop_path'] != first and not r.loc[0, 'cached']
    copy = tmp_path/'elsewhere.png'; copy.write_bytes(fn.read_bytes())
    assert face_crops([copy], tmp_path/'cache', progress=False).loc[0, 'crop_path'] == r.loc[0, 'crop_path'] and sum(spy) == 2

def test_abandoned_temporary_files_are_swept(tmp_path):
    "A prediction killed while writing a crop leaves `.<name>.<pid>.<random>.tmp`; the next run that writes crops removes it."
    fn = flat(tmp_path/'a.jpg')
    face_crops([fn], tmp_path/'cache', progress=False)
    stale = tmp_path/'cache'/'ab'/'.x.jpg.999999999.dead.tmp'; stale.parent.mkdir(exist_ok=True); stale.write_bytes(b'half')
    face_crops([flat(tmp_path/'b.jpg', (1, 2, 3))], tmp_path/'cache', progress=False)
    assert not stale.exists()


def test_order_and_mapping_with_mixed_sizes(tmp_path, monkeypatch):
    fake_detector(monkeypatch, box=(0, 0, 30, 40))
    sizes = [(384, 512), (300, 400), (384, 512), (512, 384), (384, 512), (300, 400), (384, 512)]
    colours = [(i*35, 255 - i*35, (i*90) % 256) for i in range(len(sizes))]
    fns = [flat(tmp_path/f'img{i}.png', c, s) for i, (c, s) in enumerate(zip(colours, sizes))]
    fns = fns[::-1] + [fns[2]]                                     # reversed, with a duplicate
    res = face_crops(pd.Series(fns), tmp_path/'cache', batch_size=2, progress=False)
    assert res['path'].tolist() == [str(f) for f in fns]
    assert res.loc[0, 'crop_path'] != res.loc[1, 'crop_path'] and res.loc[4, 'crop_path'] == res.loc[7, 'crop_path']
    for fn, crop in zip(fns, res['crop_path']):
        want = np.array(Image.open(fn).getpixel((0, 0)))
        got = np.asarray(Image.open(crop)).reshape(-1, 3).mean(0)
        assert np.abs(got - want).max() < 4, (fn, crop)


def test_unreadable_sources_are_all_named(tmp_path):
    good = flat(tmp_path/'good.jpg')
    (tmp_path/'broken.jpg').write_bytes(b'not an image')
    (tmp_path/'truncated.jpg').write_bytes(good.read_bytes()[:300])
    bad = [tmp_path/'broken.jpg', tmp_path/'missing.png', tmp_path/'truncated.jpg']
    with pytest.raises(FaceCropError) as e: face_crops([good, *bad], tmp_path/'cache', progress=False)
    msg = str(e.value)
    assert '3 unreadable source image(s)' in msg and all(str(b) in msg for b in bad) and str(good) not in msg
    assert set(e.value.errors) == {str(b) for b in bad}
    assert face_crops([good], tmp_path/'cache', progress=False)['cached'].all()   # the good crop was kept


def test_default_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv('MASK_FASTAI_CACHE', str(tmp_path/'root'))
    res = face_crops([flat(tmp_path/'a.jpg')], progress=False)
    assert res.loc[0, 'crop_path'].startswith(str(tmp_path/'root'/'faces'))


def test_add_face_crops_and_summary(tmp_path, monkeypatch):
    fns = [flat(tmp_path/f'{i}.jpg', (i*50, 0, 0)) for i in range(3)]
    df = pd.DataFrame({'file': [str(f) for f in fns], 'y': [2, 0, 1]}, index=[7, 3, 5])
    out = add_face_crops(df, path_col='file', cache_dir=tmp_path/'cache', progress=False)
    assert list(df.columns) == ['file', 'y'] and out.index.tolist() == [7, 3, 5]
    assert out['y'].tolist() == [2, 0, 1] and not out['detected'].any()
    assert [os.path.basename(p) for p in out['crop_path']] == [os.path.basename(p) for p in
            face_crops(fns, tmp_path/'cache', progress=False)['crop_path']]
    assert crop_summary(face_crops(fns, tmp_path/'cache', progress=False)) == dict(n=3, detected=0, fallback=3, rate=0.0)
    fake_detector(monkeypatch)
    r = face_crops(fns, tmp_path/'cache2', progress=False)
    assert crop_summary(r) == dict(n=3, detected=3, fallback=0, rate=1.0)


def test_moved_cache_folder_still_hits(tmp_path, spy):
    import shutil
    fns = [flat(tmp_path/f'{i}.jpg', (i*70, 0, 0)) for i in range(2)]
    face_crops(fns, tmp_path/'cache', progress=False)
    shutil.move(tmp_path/'cache', tmp_path/'moved')
    r = face_crops(fns, tmp_path/'moved', progress=False)
    assert sum(spy) == 2 and r['cached'].all()
    assert all(p.startswith(str(tmp_path/'moved')) and os.path.exists(p) for p in r['crop_path'])


def test_large_jpeg_decoded_at_reduced_scale_boxes_in_source_pixels(tmp_path, monkeypatch):
    seen, loaded, real = fake_detector(monkeypatch), [], F.load_rgb
    monkeypatch.setattr(F, 'load_rgb', lambda p, min_size=None: loaded.append(real(p, min_size).size) or real(p, min_size))
    res = face_crops([flat(tmp_path/'big.jpg', size=(4000, 3000))], tmp_path/'cache', detect_size=320, progress=False)
    assert seen == [(320, 240)] and loaded == [(2000, 1500)]                     # 1/2 scale keeps 4x the 192x256 crop
    assert res.loc[0, BOX].tolist() == list(face_box(np.array([60, 80, 120, 160]) * 12.5, 4000, 3000, margin=0.3))
    with Image.open(res.loc[0, 'crop_path']) as im: assert im.size == (192, 256)

