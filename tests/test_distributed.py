"""Data-parallel training through fastai's `distrib_ctx` (Hugging Face accelerate): 2 CPU processes (gloo) under torchrun
on tiny demo data, with a validation set several batches long per process: the saved run equals a one-process
evaluation of the same weights, rows in order."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from mask_fastai.core import PROB_COLS
from mask_fastai.demo import make_demo_data
from mask_fastai.metrics import macro_f1

def test_two_process_training_finishes_with_a_multi_batch_validation_set(tmp_path):
    env = {**os.environ, 'MASK_FASTAI_CACHE': str(tmp_path/'cache'), 'WANDB_MODE': 'offline', 'OMP_NUM_THREADS': '1'}
    data = make_demo_data(tmp_path/'data', n_train=24, n_eval=2, size=(96, 128), seed=3)
    out = tmp_path/'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29517',
           '-m', 'mask_fastai.cli', 'train', '--data', str(data), '--out', str(out), '--size', '32', '24', '--epochs', '2',
           '--bs', '4', '--num-workers', '0', '--wandb', 'offline', '--quiet']
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count('validation macro F1') == 1                    # only rank 0 reports
    m = json.loads((out/'metrics.json').read_text())
    vp = pd.read_csv(out/'valid_probs.csv')
    assert m['epochs_run'] == 2 and m['valid_images'] == len(vp) >= 28 and len(vp) / 2 / 4 >= 3   # several batches per process
    assert pd.read_csv(out/'history.csv').epoch.tolist() == [0, 1]      # one writer: no duplicated rows
    assert len(list((out/'wandb').glob('offline-run-*'))) == 1            # one wandb run, from rank 0

    from mask_fastai.inference import load_run                              # one process, the same weights
    learn = load_run(out)
    probs, targs = learn.get_preds(dl=learn.dls.test_dl(vp[['path', 'label']]))
    np.testing.assert_allclose(vp[PROB_COLS].to_numpy(), probs.numpy(), atol=1e-5)   # the same rows, in the same order
    assert targs.tolist() == vp.label.tolist()
    assert m['f1_macro'] == pytest.approx(macro_f1(vp.label, probs.numpy().argmax(1)), abs=1e-5)
