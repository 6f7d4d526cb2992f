"""The library from Python, the fastai way: what Python trains the command line accepts, what the command line trains
Python loads, and a photo predicted one by one, through a folder and through `mask-fastai predict` gets the same
probabilities. The README's Python code runs as written."""
import json, os, re, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from mask_fastai.core import PROB_COLS, CLASS_NAMES
from cli_run import run, fails, one_line, TINY

ROOT = Path(__file__).resolve().parent.parent

def _with_env(env):
    old = dict(os.environ); os.environ.update(env); return old

def test_one_photo_a_folder_and_the_cli_agree(trained, env, data):
    "`learn.predict(photo)`, `get_preds` over the eval folder and `mask-fastai predict` give the same probabilities to 1e-5."
    old = _with_env(env)
    try:
        from mask_fastai.inference import load_run
        learn = load_run(trained)
        info = pd.read_csv(data/'eval'/'info.csv')
        photos = [data/'eval'/'images'/i for i in info.ImageID]
        folder, _ = learn.get_preds(dl=learn.dls.test_dl(photos))
        cli = pd.read_csv(trained.parent/'sub.probs.csv')[PROB_COLS].to_numpy()
        np.testing.assert_allclose(folder.numpy(), cli, atol=1e-5)
        for i in (0, 7, len(photos) - 1):
            label, idx, probs = learn.predict(photos[i])
            np.testing.assert_allclose(probs.numpy(), cli[i], atol=1e-5)
            assert (label, int(idx)) == (CLASS_NAMES[int(cli[i].argmax())], int(cli[i].argmax()))
    finally: os.environ.clear(); os.environ.update(old)

def test_a_run_trained_in_python_is_a_run_for_the_cli(tmp_path, env, data):
    "Trained the fastai way (`mask_learner`, `fit_one_cycle`, `save_run`): `predict`, `report`, `runs` and `--resume` take the folder."
    old = _with_env(env)
    try:
        from mask_fastai.config import TrainConfig
        from mask_fastai.prepare import prepare_data, run_dataloaders
        from mask_fastai.learner import mask_learner
        from mask_fastai.runs import save_run
        cfg = TrainConfig(data=str(data), out=str(tmp_path/'py'), size=(32, 24), bs=16, wandb='off', num_workers=0)
        learn = mask_learner(run_dataloaders(prepare_data(cfg, progress=False), cfg), cfg)
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 2e-3)
        save_run(learn)
    finally: os.environ.clear(); os.environ.update(old)
    run('predict', '--data', data, '--models', tmp_path/'py', '--out', tmp_path/'py.csv', '--no-pool-identities', '--quiet', env=env)
    run('report', '--models', tmp_path/'py', env=env)
    assert 'py' in run('runs', tmp_path/'py', env=env).stdout
    assert 'already complete' in one_line(fails('train', '--out', tmp_path/'py', '--resume', env=env))

def test_a_python_run_killed_mid_way_resumes_from_the_cli(tmp_path, env, data):
    old = _with_env(env)
    try:
        from fastai.callback.core import Callback
        from mask_fastai.config import TrainConfig
        from mask_fastai.prepare import prepare_data, run_dataloaders
        from mask_fastai.learner import mask_learner
        from mask_fastai.recipe import fit_recipe
        class Kill(Callback):
            order = 99
            def after_epoch(self): raise KeyboardInterrupt('killed')
        cfg = TrainConfig(data=str(data), out=str(tmp_path/'py'), size=(32, 24), bs=16, epochs=2, wandb='off', num_workers=0)
        learn = mask_learner(run_dataloaders(prepare_data(cfg, progress=False), cfg), cfg, cbs=[Kill()])
        with pytest.raises(KeyboardInterrupt), learn.no_bar(), learn.no_logging(): fit_recipe(learn)
    finally: os.environ.clear(); os.environ.update(old)
    run('train', '--out', tmp_path/'py', '--resume', '--quiet', env=env)
    assert json.loads((tmp_path/'py'/'metrics.json').read_text())['epochs_run'] == 2

def test_the_prediction_path_imports_no_training_module(trained, env, data, tmp_path):
    "Predicting loads no training code of this project (timm itself imports wandb when it is installed, so wandb is not checked)."
    code = (f"import sys\nfrom mask_fastai.cli import main\n"
            f"main(['predict', '--data', {str(data)!r}, '--models', {str(trained)!r}, '--out', {str(tmp_path/'s.csv')!r}, '--quiet'])\n"
            "print(sorted(m for m in ('mask_fastai.recipe', 'mask_fastai.runs', 'mask_fastai.tracking', 'mask_fastai.distributed') if m in sys.modules))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == '[]', r.stdout

def readme_python() -> str:
    return '\n'.join(re.findall(r'```python\n(.*?)\n```', (ROOT/'README.md').read_text(), re.S))

def test_the_readme_python_code_runs(tmp_path):
    "Every fenced Python block of README.md, run in order as written (on the demo set, in the cache CI shares with the notebooks)."
    code = readme_python()
    assert 'from mask_fastai.all import *' in code
    env = {**os.environ, 'WANDB_MODE': 'offline'}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
