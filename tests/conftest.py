"Fixtures shared by the test files: one cache folder, one tiny demo data folder and one tiny trained run for the whole session."
import os, shutil
import pytest
from cli_run import run, TINY


@pytest.fixture(scope='session')
def env(tmp_path_factory):
    "The environment of a `mask-fastai` command in the tests: its own cache folder, wandb offline."
    cache = tmp_path_factory.mktemp('cache')
    return {**os.environ, 'MASK_FASTAI_CACHE': str(cache), 'WANDB_MODE': 'offline'}


@pytest.fixture(scope='session')
def data(tmp_path_factory):
    "A tiny competition folder: 10 train and 3 eval demo people at 96x128 (with the demo's answer key)."
    from mask_fastai.demo import make_demo_data
    return make_demo_data(tmp_path_factory.mktemp('data')/'data', n_train=10, n_eval=3, size=(96, 128), seed=1)


@pytest.fixture(scope='session')
def trained(tmp_path_factory, env, data):
    "A finished run trained on `data` with the `TINY` settings, and its per-photo submission `sub.csv` (no identity pooling): read them, copy them to change them."
    d = tmp_path_factory.mktemp('trained')
    run('train', '--data', data, '--out', d/'run', *TINY, env=env)
    run('predict', '--data', data, '--models', d/'run', '--out', d/'sub.csv', '--no-pool-identities', '--quiet', env=env)
    return d/'run'


@pytest.fixture
def run_copy(trained, tmp_path):
    "A copy of the trained run, to change."
    return shutil.copytree(trained, tmp_path/'run')
