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
