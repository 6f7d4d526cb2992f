"End to end: the report of a model on demo images, every file written and linked (the notebook holds the specification of each piece)."
import html, json, os, re, shutil, subprocess
import numpy as np, pandas as pd, pytest, torch
from mask_fastai.core import N_CLASSES, PROB_COLS
from mask_fastai.data import read_train
from mask_fastai.demo import make_demo_data
from mask_fastai.model import create_mask_model
from mask_fastai.learner import MaskLearner, RunInput
from mask_fastai.losses import MultiTaskLoss
from mask_fastai.report import mask_report


def untrained(stats=((.5,) * 3, (.25,) * 3)) -> MaskLearner:
    "A learner of an untrained model reading whole photos at 64x48."
    torch.manual_seed(0)
    return MaskLearner(None, create_mask_model(pretrained=False), RunInput((64, 48), stats, crop=False, device='cpu'), loss_func=MultiTaskLoss())


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    "The report of an untrained model on three demo people: `(report dict, its folder, the images' table, a temp folder)`."
    tmp = tmp_path_factory.mktemp('report')
    df = read_train(make_demo_data(tmp/'demo', n_train=3, n_eval=1, size=(48, 64)))
    rep = mask_report(untrained(), df, tmp/'report', top_k=6, n_cam=2)
    return rep, tmp/'report', df, tmp

def test_report_end_to_end(report):
    rep, out, df, tmp_path = report
    pngs = sorted(p.name for p in out.glob('*.png'))
    assert pngs == sorted(['confusion.png', 'confusion_tasks.png', 'top_losses.png', 'misclassified.png', 'tsne.png', 'gradcam.png'])
    page = (out/'report.html').read_text()
    assert sorted(set(re.findall(r'src="([^"]+\.png)"', page))) == pngs
    for f in ('per_class.csv', 'per_task.csv', 'predictions.csv', 'scores.json'): assert f'href="{f}"' in page and (out/f).exists()
    assert len(pd.read_csv(out/'per_class.csv')) == N_CLASSES and len(rep['per_class']) == N_CLASSES
    pred = pd.read_csv(out/'predictions.csv')
    assert len(pred) == len(df) and np.allclose(pred[PROB_COLS].sum(axis=1), 1, atol=1e-4)
    assert all(p.stat().st_size > 1000 for p in out.glob('*.png'))
    with pytest.raises(OSError, match=r'\.missing: file not found'):
        mask_report(untrained(), df.assign(path=df.path + '.missing'), tmp_path/'r2')
    assert not (tmp_path/'r2').exists()


# The page is checked by a real browser: headless Chromium (Debian's `chromium`, installed by .ci/run) loads a copy of
# report.html with a script that lists every <img> once the page has loaded, and --dump-dom prints the result.
CHECK = """<pre id="img-check"></pre><script>window.addEventListener('load', () => {
  document.getElementById('img-check').textContent = JSON.stringify(
    [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]));});</script>"""

def browser_images(page) -> list:
    "`[src, complete, naturalWidth, naturalHeight]` of every image of the HTML file `page`, as headless Chromium loaded it."
    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if exe is None:
        if os.environ.get('MASK_FASTAI_BROWSER_TEST') == 'required': pytest.fail('chromium not found (apt-get install chromium)')
        pytest.skip('chromium not installed (apt-get install chromium); .ci/run installs it and requires this test')
    r = subprocess.run([exe, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                        f'--user-data-dir={page.parent/".chromium"}', '--virtual-time-budget=10000', '--dump-dom', page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="img-check">(.*?)</pre>', r.stdout, re.S)
    assert m and m.group(1), f'no image list from chromium (exit {r.returncode}): {r.stderr[-500:]}'
    return json.loads(html.unescape(m.group(1)))

def checked_copy(out, name, page:str):
    "Write `page` with the image-listing script into the report folder `out` (so relative image paths resolve)."
    (out/name).write_text(page.replace('</body>', CHECK + '</body>'))
    return out/name

def test_report_in_a_real_browser(report):
    _, out, _, _ = report
    page = (out/'report.html').read_text()
    assert '</body>' in page
    imgs = browser_images(checked_copy(out, 'check.html', page))
    assert sorted(i[0] for i in imgs) == sorted(p.name for p in out.glob('*.png'))
    broken = [i for i in imgs if not (i[1] and i[2] > 0 and i[3] > 0)]
    assert not broken, f'images the browser could not show: {broken}'
    # the check sees a broken image: the same page with one image's file name changed
    bad = browser_images(checked_copy(out, 'check_bad.html', page.replace('src="tsne.png"', 'src="tsne_missing.png"')))
    assert [i[0] for i in bad if i[2] == 0] == ['tsne_missing.png']
