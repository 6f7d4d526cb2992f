"Data-parallel training through fastai's `distrib_ctx` (Hugging Face accelerate): 2 CPU processes (gloo) under torchrun on tiny demo data."
import json, os, shutil, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from mask_fastai.demo import make_demo_data

def test_two_process_training(tmp_path):
    env = {**os.environ, 'MASK_FASTAI_CACHE': str(tmp_path/'cache'), 'WANDB_MODE': 'offline', 'OMP_NUM_THREADS': '1'}
    data = make_demo_data(tmp_path/'data', n_train=10, n_eval=2, size=(96, 128), seed=3)
    out = tmp_path/'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29517',
           '-m', 'mask_fastai.cli', 'train', '--data', str(data), '--out', str(out), '--size', '32', '24', '--epochs', '2',
           '--bs', '8', '--num-workers', '0', '--wandb', 'offline', '--quiet']
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count('"f1_macro"') == 1                      # only rank 0 reports
    m = json.loads((out/'metrics.json').read_text())
    assert m['epochs_run'] == 2 and m['valid_images'] == 14 and 0 <= m['f1_macro'] <= 1
    hist = pd.read_csv(out/'history.csv')
    assert hist.epoch.tolist() == [0, 1]                           # one writer: no duplicated rows
    assert sorted(f.name for f in out.iterdir() if f.is_file()) == ['config.json', 'history.csv', 'metrics.json', 'model.safetensors', 'split.json', 'valid_probs.csv']
    assert len(list((out/'wandb').glob('offline-run-*'))) == 1      # one wandb run, from rank 0
    vp = pd.read_csv(out/'valid_probs.csv')
    assert len(vp) == 14 and not vp.isna().any().any()             # gathered from both processes, in order, no padding
    from mask_fastai.runs import load_run
    model, conf = load_run(out)
    assert conf['train']['epochs'] == 2
