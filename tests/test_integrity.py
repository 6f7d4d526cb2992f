"""Runs, submissions and eval rows that cannot lie, and one clear line for every user error.

Each test runs the real `mask-fastai` commands on tiny generated files. The first six are the defects of the integrity
issue (each failed before its fix); the rest check the error discipline: `error: <file or row>: <cause>`, one line,
a non-zero exit code, no traceback, nothing half-written left behind."""
import contextlib, errno, json, os, resource, shutil, signal, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from cli_run import run, fails, one_line, sha, TINY

@pytest.fixture(scope='module')
def setup(tmp_path_factory, env, data, trained):
    "`(a folder of this module's own, env, data)`, the folder holding a copy of the session's trained run and its submission `v1.csv`."
    tmp = tmp_path_factory.mktemp('integrity')
    shutil.copytree(trained, tmp/'run')
    run('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'v1.csv', '--quiet', env=env)
    return tmp, env, data

def copy_data(data, dest) -> Path:
    shutil.copytree(data, dest); return Path(dest)

def killed_run(data, out, cache, epochs=3):
    "A run of `epochs` epochs in `out`, stopped after its first finished epoch as a kill would stop it (in this process)."
    os.environ['MASK_FASTAI_CACHE'] = str(cache)
    from fastai.callback.core import Callback
    from mask_fastai.config import TrainConfig
    from mask_fastai.runs import train_run
    class Kill(Callback):
        order = 99
        def after_epoch(self): raise KeyboardInterrupt('killed')
    cfg = TrainConfig(data=str(data), out=str(out), size=(32, 24), epochs=epochs, bs=16, num_workers=0, wandb='off')
    with pytest.raises(KeyboardInterrupt): train_run(cfg, quiet=True, cbs=[Kill()])
    assert (Path(out)/'checkpoints'/'state.json').exists() and not (Path(out)/'metrics.json').exists()
    return cfg

# --- the six defects

def test_eval_image_ids_cannot_leave_the_eval_folder(setup):
    tmp, env, data = setup
    d = copy_data(data, tmp/'escape')
    info = pd.read_csv(d/'eval'/'info.csv')
    person = sorted((d/'train'/'images').iterdir())[0]
    os.symlink(person/'mask1.jpg', d/'eval'/'images'/'inside-looking.jpg')
    bad = ['../../train/images/' + person.name + '/mask1.jpg', '/etc/passwd', 'inside-looking.jpg']
    pd.DataFrame(dict(ImageID=list(info.ImageID[:2]) + bad, ans=0)).to_csv(d/'eval'/'info.csv', index=False)
    err = fails('predict', '--data', d, '--models', tmp/'run', '--out', tmp/'escape.csv', env=env)
    assert err.count('bad_image_id') == 3 and '(csv line 4)' in err and '(csv line 6)' in err
    assert 'root:' not in err and 'never a path' in err and 'leading out of' in err
    assert not (tmp/'escape.csv').exists() and not (tmp/'escape.probs.csv').exists()

def test_vote_and_predict_never_overwrite_their_inputs(setup):
    tmp, env, data = setup
    run('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'v2.csv', '--tta', '--quiet', env=env)
    before = sha(tmp/'v1.probs.csv')
    err = one_line(fails('vote', '--data', data, '--probs', tmp/'v1.probs.csv', tmp/'v2.probs.csv', '--out', tmp/'v1.csv', env=env))
    assert 'v1.csv: exists; pass --force' in err
    err = one_line(fails('vote', '--data', data, '--probs', tmp/'v1.probs.csv', tmp/'v2.probs.csv', '--out', tmp/'v1.csv', '--force', env=env))
    assert 'v1.probs.csv: is also an input of this command' in err
    assert sha(tmp/'v1.probs.csv') == before
    err = one_line(fails('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'run'/'model.safetensors', '--force', env=env))
    assert 'model.safetensors: is also an input' in err
    run('vote', '--data', data, '--probs', tmp/'v1.probs.csv', tmp/'v2.probs.csv', '--out', tmp/'voted.csv', env=env)
    voted, probs = pd.read_csv(tmp/'voted.csv'), pd.read_csv(tmp/'voted.probs.csv')
    assert voted.ans.tolist() == probs.ans.tolist()

def _mount_tmpfs(path, size_kb:int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size_kb}k', 'tmpfs', str(path)], capture_output=True).returncode == 0

def _fill_leaving_one_page(path):
    "Fill the file system of folder `path` up, then free one page (4 KiB)."
    with open(path/'filler', 'wb', buffering=0) as f:
        with contextlib.suppress(OSError):
            while True: f.write(b'\0' * 4096)
    pages = ((path/'filler').stat().st_size + 4095) // 4096
    os.truncate(path/'filler', max(0, pages - 1) * 4096)

def test_disk_full_keeps_the_submission_and_its_probabilities_together(setup):
    "predict --force on a full disk: the old pair stays whole and consistent, no temporary file is left, the message says the disk is full."
    tmp, env, data = setup
    full = tmp/'full'
    mounted = _mount_tmpfs(full, 64)
    limit = None if mounted else 2048   # without root: the same write failure from a file size limit
    try:
        run('predict', '--data', data, '--models', tmp/'run', '--out', full/'sub.csv', '--quiet', env=env)
        old = {f: sha(full/f) for f in ('sub.csv', 'sub.probs.csv')}
        if mounted: _fill_leaving_one_page(full)   # room for the new submission (one page), not for its probabilities (two)
        def cap():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        err = one_line(fails('predict', '--data', data, '--models', tmp/'run', '--out', full/'sub.csv', '--tta', '--force', '--quiet', env=env,
                             preexec_fn=cap if limit else None))
        assert 'sub.' in err and ('no space left on the disk' in err or 'file too large' in err) and 'run the command again' in err
        assert {f: sha(full/f) for f in ('sub.csv', 'sub.probs.csv')} == old
        assert sorted(p.name for p in full.iterdir() if p.name != 'filler') == ['sub.csv', 'sub.probs.csv']
        sub, probs = pd.read_csv(full/'sub.csv'), pd.read_csv(full/'sub.probs.csv')
        assert sub.ans.tolist() == probs.ans.tolist()
    finally:
        if mounted: subprocess.run(['umount', str(full)])

def test_resume_refuses_changed_data(setup):
    tmp, env, data = setup
    d = copy_data(data, tmp/'changing')
    killed_run(d, tmp/'res', env['MASK_FASTAI_CACHE'])
    hist = sha(tmp/'res'/'history.csv')
    people = pd.read_csv(d/'train'/'train.csv', dtype=str)
    for p in people.path[:2]: shutil.rmtree(d/'train'/'images'/p)
    people.iloc[2:].to_csv(d/'train'/'train.csv', index=False)
    err = one_line(fails('train', '--out', tmp/'res', '--resume', env=env))
    assert 'split.json: the data changed since this run started' in err and 'start a new run (--force)' in err
    assert any(repr(i) in err for i in people.id[:2])
    assert sha(tmp/'res'/'history.csv') == hist and not (tmp/'res'/'metrics.json').exists()

def test_a_run_folder_resumes_where_it_is(setup):
    tmp, env, data = setup
    killed_run(data, tmp/'orig', env['MASK_FASTAI_CACHE'])
    shutil.copytree(tmp/'orig', tmp/'copy')
    run('train', '--out', tmp/'copy', '--resume', env=env)
    assert json.loads((tmp/'copy'/'metrics.json').read_text())['epochs_run'] == 3
    assert not (tmp/'orig'/'metrics.json').exists()                       # the original was not touched
    assert json.loads((tmp/'orig'/'checkpoints'/'state.json').read_text())['epoch'] == 1
    shutil.move(tmp/'orig', tmp/'moved')
    run('train', '--out', tmp/'moved', '--resume', env=env)
    assert (tmp/'moved'/'metrics.json').exists() and not (tmp/'orig').exists()   # no folder made at the old path
    run('predict', '--data', data, '--models', tmp/'moved', '--out', tmp/'moved.csv', '--quiet', env=env)

def test_an_interrupted_force_retrain_does_not_look_finished(setup):
    tmp, env, data = setup
    shutil.copytree(tmp/'run', tmp/'retrain')
    killed_run(data, tmp/'retrain', env['MASK_FASTAI_CACHE'])                        # the --force retrain of a finished run, killed after one epoch
    left = sorted(p.name for p in (tmp/'retrain').iterdir())
    assert 'metrics.json' not in left and 'model.safetensors' not in left and 'config.json' not in left, left
    err = one_line(fails('predict', '--data', data, '--models', tmp/'retrain', '--out', tmp/'x.csv', env=env))
    assert 'retrain: the run did not finish (no metrics.json yet)' in err and '--resume' in err
    assert not (tmp/'x.csv').exists()

# --- error discipline: one line naming the file, for every kind of bad input

def _broken_copy(tmp, name) -> Path:
    d = tmp/name; shutil.copytree(tmp/'run', d); return d

@pytest.mark.parametrize('case,what,damage,expect', [
    ('empty', 'config.json', lambda f: f.write_text(''), 'config.json: empty run config'),
    ('cut', 'config.json', lambda f: f.write_text('{"model": {"arch": "tf_eff'), 'config.json: corrupt run config'),
    ('cut', 'model.safetensors', lambda f: f.write_bytes(f.read_bytes()[:5000]), 'model.safetensors: truncated or corrupt weights file'),
    ('empty', 'model.safetensors', lambda f: f.write_bytes(b''), 'model.safetensors: truncated or corrupt weights file'),
])
def test_damaged_run_files(setup, case, what, damage, expect):
    tmp, env, data = setup
    d = _broken_copy(tmp, f'broken-{case}-{what}')
    damage(d/what)
    assert expect in one_line(fails('predict', '--data', data, '--models', d, '--out', tmp/'y.csv', env=env))

def test_damaged_resume_files(setup):
    tmp, env, data = setup
    killed_run(data, tmp/'ck', env['MASK_FASTAI_CACHE'])
    state = tmp/'ck'/'checkpoints'/'state.json'
    good = state.read_text()
    state.write_text(good[:20])
    assert 'state.json: corrupt checkpoint state' in one_line(fails('train', '--out', tmp/'ck', '--resume', env=env))
    state.write_text(good)
    last = tmp/'ck'/'checkpoints'/'last.pth'
    last.write_bytes(last.read_bytes()[:1000])
    assert 'last.pth: truncated or corrupt checkpoint' in one_line(fails('train', '--out', tmp/'ck', '--resume', env=env))

def test_damaged_offsets_and_stats_cache(setup):
    tmp, env, data = setup
    (tmp/'off.json').write_text('')
    assert 'off.json: empty' in one_line(fails('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'z.csv', '--offsets', tmp/'off.json', env=env))
    for f in (Path(env['MASK_FASTAI_CACHE'])/'stats').rglob('*.json'): f.write_text('{"mean": [0.4')    # a cache entry cut short is computed again
    run('train', '--data', data, '--out', tmp/'restats', *TINY, env=env)

def test_bad_csv_files(setup):
    tmp, env, data = setup
    p = pd.read_csv(tmp/'v1.probs.csv')
    p.drop(columns='p5').to_csv(tmp/'nop5.probs.csv', index=False)
    assert "nop5.probs.csv: missing column(s) ['p5']" in one_line(fails('vote', '--data', data, '--probs', tmp/'v1.probs.csv', tmp/'nop5.probs.csv', '--out', tmp/'w.csv', env=env))
    q = p.astype({'p3': object}); q.loc[4, 'p3'] = 'abc'; q.to_csv(tmp/'abc.probs.csv', index=False)
    assert 'abc.probs.csv: line 6: a p column is not a number' in one_line(fails('vote', '--data', data, '--probs', tmp/'abc.probs.csv', '--out', tmp/'w.csv', env=env))
    q = p.copy(); q.loc[2, 'p0'] += 0.5; q.to_csv(tmp/'sum.probs.csv', index=False)
    assert 'sum.probs.csv: line 4: the 18 probabilities do not sum to 1' in one_line(fails('vote', '--data', data, '--probs', tmp/'sum.probs.csv', '--out', tmp/'w.csv', env=env))
    d = copy_data(data, tmp/'latin')
    (d/'eval'/'info.csv').write_bytes((d/'eval'/'info.csv').read_bytes() + 'caf\xe9.jpg,0\n'.encode('latin-1'))
    assert 'info.csv: not UTF-8 text' in one_line(fails('predict', '--data', d, '--models', tmp/'run', '--out', tmp/'w.csv', env=env))
    (d/'eval'/'info.csv').write_text('ImageID,ans\n')
    assert 'info.csv: no rows' in one_line(fails('predict', '--data', d, '--models', tmp/'run', '--out', tmp/'w.csv', env=env))
    vp = pd.read_csv(tmp/'run'/'valid_probs.csv'); t = _broken_copy(tmp, 'nolabel'); vp.drop(columns='label').to_csv(t/'valid_probs.csv', index=False)
    assert "valid_probs.csv: missing column(s) ['label']" in one_line(fails('tune', '--models', t, env=env))

def test_os_errors(setup):
    tmp, env, data = setup
    (tmp/'adir').mkdir(exist_ok=True)
    assert 'adir: a folder stands where this file should be written' in one_line(fails('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'adir', '--force', env=env))
    assert 'v1.csv: a file where a folder is expected' in one_line(fails('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'v1.csv'/'s.csv', env=env))
    assert 'v1.csv: a file where the run folder should be' in one_line(fails('train', '--data', data, '--out', tmp/'v1.csv', *TINY, env=env))
    ro = tmp/'ro'
    if _mount_tmpfs(ro, 64) and subprocess.run(['mount', '-o', 'remount,ro', str(ro)], capture_output=True).returncode == 0:
        try: assert f'{ro}: not writable' in one_line(fails('predict', '--data', data, '--models', tmp/'run', '--out', ro/'s.csv', env=env))
        finally: subprocess.run(['umount', str(ro)])
    else:   # without root: a folder without write permission
        ro.mkdir(exist_ok=True); ro.chmod(0o555)
        if os.access(ro, os.W_OK): pytest.skip('this user can write into read-only folders (root without mount rights)')
        assert f'{ro}: not writable' in one_line(fails('predict', '--data', data, '--models', tmp/'run', '--out', ro/'s.csv', env=env))

def test_small_inputs_get_their_own_reason(setup):
    tmp, env, data = setup
    d = copy_data(data, tmp/'three')
    people = pd.read_csv(d/'train'/'train.csv', dtype=str)
    for p in people.path[3:]: shutil.rmtree(d/'train'/'images'/p)
    people.iloc[:3].to_csv(d/'train'/'train.csv', index=False)
    assert '3 people are too few to hold out 20% of them by person (at least 5 needed)' in one_line(fails('train', '--data', d, '--out', tmp/'t3', *TINY, env=env))
    assert '3 people cannot fill 4 folds' in one_line(fails('train', '--data', d, '--out', tmp/'t4', '--folds', '4', *TINY, env=env))
    r = run('train', '--data', data, '--out', tmp/'t5', '--folds', '1', *TINY, env=env, check=False)
    assert r.returncode == 2 and 'needs at least 2 folds, got 1' in r.stderr
