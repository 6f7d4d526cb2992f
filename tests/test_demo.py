"The demo drawing, pinned: the same person must give the same pixels (the cached demo datasets are keyed by `DEMO_VERSION`)."
import hashlib
import numpy as np
from mask_fastai.core import STEMS
from mask_fastai.demo import make_people, person_photos, DEMO_VERSION
from mask_fastai.demo import _render_base

# Checksums of renders made by the code before the drawing was split into parts (commit 17226e3).
# If they change, the drawing changed: bump DEMO_VERSION and update them.
BASES = '6a5c109f42bdebe9ce06b474c131f1b8b7a874cb'
PHOTOS = ('1e8443383d8854cdffb0cc2065f0b0b7b65ddd61', '03e1e1ae84cbe02f8711b61df798b3c4e60bd42c')


def _sha(images) -> str:
    h = hashlib.sha1()
    for im in images: h.update(np.ascontiguousarray(np.asarray(im)).tobytes())
    return h.hexdigest()


def _people():
    "People who take every branch of the drawing: long and short hair, stubble, each neckline, blush, wrinkles and sag, a receding hairline."
    return make_people(12, seed=0)[:4] + [make_people(12, seed=3)[3]]


def test_people_cover_the_branches():
    ppl = _people()
    assert {p['neckline'] for p in ppl} == {'v', 'round', 'collar'} and {p['long_hair'] for p in ppl} == {True, False}
    assert any(p['stubble'] > 0 for p in ppl) and any(p['gender'] == 1 and p['age'] < 45 for p in ppl)
    assert any(p['wrinkles'] > .5 and p['sag'] > .05 for p in ppl) and any(p['recede'] > .1 for p in ppl)


def test_base_renders_are_unchanged():
    assert DEMO_VERSION == 'demo-1'
    assert _sha(_render_base(p, (96, 128)) for p in _people()) == BASES


def test_photos_are_unchanged():
    ppl = _people()
    assert tuple(_sha(person_photos(p, (96, 128))[s] for s in STEMS) for p in ppl[:2]) == PHOTOS

def test_processes_asking_at_once_share_one_demo_set(tmp_path):
    "Notebooks run in parallel (`nbdev-test --n-workers 2`) ask for the same demo set: one generates it, the other waits; nobody replaces a set in use."
    import os, subprocess, sys
    code = ("import os, sys; from mask_fastai.demo import demo_data; "
            "d = demo_data(n_train=8, n_eval=2, size=(48, 64)); print(os.stat(d).st_ino, len(list(d.rglob('*.jpg'))))")
    env = {**os.environ, 'MASK_FASTAI_CACHE': str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1] and int(outs[0][1]) == (8 + 2) * 7   # the same folder, still there, complete
