"""The front door as a new user meets it: `mask-fastai demo > demo.log` on a shared server, then the commands the demo
suggests, without `--data`. One default demo (about a minute on 2 cores; its data and crops are cached by the notebooks
that ran before in CI) serves every test here."""
import os, re, shlex, subprocess as sp, sys, time
from pathlib import Path
import pytest

README = Path(__file__).parents[1]/'README.md'


@pytest.fixture(scope='module')
def demo_log(tmp_path_factory):
    "`mask-fastai demo` run from an empty folder with its output going to a pipe (not a terminal): (folder, [(seconds, line)])."
    cwd = tmp_path_factory.mktemp('user')
    env = {**os.environ, 'WANDB_MODE': 'offline', 'PYTHONUNBUFFERED': '1'}
    p = sp.Popen(['mask-fastai', 'demo'], cwd=cwd, env=env, stdout=sp.PIPE, stderr=sp.STDOUT)   # bytes: text mode would turn '\r' into '\n'
    t0, lines = time.monotonic(), []
    for line in p.stdout: lines.append((time.monotonic() - t0, line.decode()))
    assert p.wait(timeout=900) == 0, ''.join(l for _, l in lines)[-3000:]
    return cwd, lines


def test_demo_log_reads_well_in_a_file(demo_log):
    _, lines = demo_log
    text = ''.join(l for _, l in lines)
    assert '\r' not in text and '\x1b' not in text                           # no bar redrawn in place, no terminal codes
    times = [0.] + [t for t, _ in lines]
    assert max(b - a for a, b in zip(times, times[1:])) <= 30, 'a silence over 30 s'
    assert all(len(l) < 300 for _, l in lines), max((l for _, l in lines), key=len)
    for phase in ('demo data', 'epoch 1/3 train', 'epoch 3/3 valid', 'validation of 140 photos', 'prediction of 280 photos', 'report'):
        assert re.search(rf'^{re.escape(phase)}\b', text, re.M), f'no line for {phase!r}'
    if 'face crops of' in text: assert re.search(r'^face crops of \d+ photos: \d+ batches in ', text, re.M)   # crops not cached yet
    epochs = re.findall(r'^epoch \d: train_loss [\d.]+  valid_loss [\d.]+  f1_macro [\d.]+ .*\d+ s$', text, re.M)
    assert len(epochs) == 3, text                                              # one readable line of metrics per epoch


def _summary(text:str) -> dict:
    return {k: v.split('   ')[0] for k, v in re.findall(r'^(demo data|run|submission|answer key|report):\s+(.*)$', text, re.M)}


def test_demo_ends_saying_where_everything_is(demo_log):
    cwd, lines = demo_log
    text = ''.join(l for _, l in lines)
    paths = _summary(text)
    assert set(paths) == {'demo data', 'run', 'submission', 'answer key', 'report'}, text[-2000:]
    for k, v in paths.items(): assert (cwd/v).exists(), f'{k}: {v} does not exist'
    assert (cwd/paths['demo data']/'train'/'train.csv').exists() and (cwd/paths['run']/'model.safetensors').exists()


def test_the_suggested_next_commands_run_without_data(demo_log):
    "Each command the demo suggests (but the one for your own data) runs as printed, from where the demo ran."
    cwd, lines = demo_log
    text = ''.join(l for _, l in lines)
    cmds = [l.split('#')[0].strip() for l in text[text.index('\nnext:\n'):].splitlines()[2:] if l.startswith('  mask-fastai')]
    cmds = [c for c in cmds if 'YOUR_DATA' not in c]
    assert len(cmds) >= 3 and any(c.startswith('mask-fastai predict') for c in cmds) and any(c.startswith('mask-fastai score') for c in cmds)
    outs = {}
    for c in cmds:
        assert '--data' not in c, c
        r = sp.run(shlex.split(c), cwd=cwd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (c, r.stderr[-2000:]); outs[c.split()[1]] = r.stdout
    assert re.search(r'macro F1 0\.\d+', outs['score']), outs['score']
    r = sp.run(['mask-fastai', 'report', '--models', 'runs/demo'], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'report.html' in r.stdout and '{' not in r.stdout and len(r.stdout.splitlines()) <= 12, r.stdout   # a summary, not JSON


def test_readme_demo_figure_is_what_the_demo_scores(demo_log):
    "The README's demo score comes from bench/frontdoor.py's record; the demo is seeded, so it scores the same here (up to the float noise of another CPU)."
    text = ''.join(l for _, l in demo_log[1])
    scored = float(re.search(r'eval macro F1 ([\d.]+)', text).group(1))
    claimed = float(re.search(r'eval macro F1 ([\d.]+) \(chance', README.read_text()).group(1))
    assert abs(scored - claimed) <= 0.03, (scored, claimed)
