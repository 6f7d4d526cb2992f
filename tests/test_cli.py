"The `mask-fastai` console script end to end on tiny demo data (subprocesses, as a user runs it)."
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from mask_fastai.demo import make_demo_data

def run(*args, env, check=True):
    r = subprocess.run(['mask-fastai', *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    if check: assert r.returncode == 0, r.stdout + r.stderr
    return r

@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cli')
    env = {**os.environ, 'MASK_FASTAI_CACHE': str(tmp/'cache'), 'WANDB_MODE': 'offline'}
    data = make_demo_data(tmp/'data', n_train=10, n_eval=3, size=(96, 128), seed=1)
    return tmp, env, data

TINY = ['--size', '32', '24', '--epochs', '1', '--freeze-epochs', '1', '--bs', '16', '--num-workers', '0', '--wandb', 'off', '--quiet']

def test_train_predict_score(setup):
    tmp, env, data = setup
    run('train', '--data', data, '--out', tmp/'run', '--cutmix', 'half', *TINY, env=env)
    files = sorted(f.name for f in (tmp/'run').iterdir() if f.is_file())
    assert files == ['config.json', 'history.csv', 'metrics.json', 'model.safetensors']
    m = json.loads((tmp/'run'/'metrics.json').read_text())
    assert m['epochs_run'] == 2 and 0 <= m['f1_macro'] <= 1 and m['valid_people'] == 2
    conf = json.loads((tmp/'run'/'config.json').read_text())
    assert conf['train']['cutmix'] == 'half' and conf['size'] == [32, 24] and len(conf['vocab']) == 18

    run('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'sub.csv', '--tta', '--quiet', env=env)
    sub, info = pd.read_csv(tmp/'sub.csv'), pd.read_csv(data/'eval'/'info.csv')
    assert sub.ImageID.tolist() == info.ImageID.tolist() and sub.ans.between(0, 17).all()
    probs = pd.read_csv(tmp/'sub.probs.csv')
    assert probs.shape == (len(info), 19) and (probs.iloc[:, 1:].sum(axis=1) - 1).abs().max() < 1e-3

    r = run('score', tmp/'sub.csv', data/'answers'/'eval_labels.csv', env=env)
    s = json.loads(r.stdout)
    assert s['n'] == len(info) and 0 <= s['f1_macro'] <= 1

    r = run('train', '--data', data, '--out', tmp/'run', *TINY, env=env, check=False)   # no silent overwrite
    assert r.returncode != 0 and 'pass --force' in r.stderr
    r = run('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'sub.csv', env=env, check=False)
    assert r.returncode != 0 and 'exists' in r.stderr

def test_predict_refuses_missing_image(setup):
    tmp, env, data = setup
    bad = tmp/'bad'
    (bad/'eval'/'images').mkdir(parents=True)
    info = pd.read_csv(data/'eval'/'info.csv')
    for i in info.ImageID[1:]: (bad/'eval'/'images'/i).write_bytes((data/'eval'/'images'/i).read_bytes())
    info.to_csv(bad/'eval'/'info.csv', index=False)
    r = run('predict', '--data', bad, '--models', tmp/'nowhere', '--out', tmp/'bad.csv', env=env, check=False)
    assert r.returncode != 0 and info.ImageID[0] in r.stderr and 'missing_image' in r.stderr
    assert not (tmp/'bad.csv').exists()

def test_info_and_help(setup):
    tmp, env, data = setup
    r = run('info', '--data', data, env=env)
    assert '10 people, 70 images, 0 problems' in r.stdout
    for cmd in ('demo', 'train', 'predict', 'score', 'info'):
        assert 'usage: mask-fastai ' + cmd in run(cmd, '--help', env=env).stdout
    r = run('train', '--epochs', 'many', env=env, check=False)
    assert r.returncode == 2 and "invalid int value: 'many'" in r.stderr
