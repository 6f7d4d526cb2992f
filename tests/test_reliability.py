"""Nothing lost, nothing stale, nothing silently wrong: `--force` and the output folder, one writer per run folder, caches
keyed on content and checked when read, training that diverges, settings that would do nothing, and one error line
(naming the file, row or flag) for every bad input. Each test failed before its fix."""
import json, os, shutil, subprocess, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
from mask_fastai.core import PROB_COLS
from cli_run import run, fails, one_line, sha, tree, TINY


# --- --force and the output folder

def _probs_with(src, tmp_path, name, edit) -> Path:
    "A copy of probability file `src` with identity groups, changed by `edit`."
    p = pd.read_csv(src).assign(group=0)
    edit(p); fn = tmp_path/name; p.to_csv(fn, index=False); return fn

def test_force_with_a_bad_input_leaves_the_old_run_as_it_was(run_copy, trained, env, data, tmp_path):
    before = tree(run_copy)
    sub = trained.parent/'sub.probs.csv'
    def nan(p): p['p3'] = p['p3'].astype(object); p.loc[2, 'p3'] = 'abc'
    def extra(p): p.loc[len(p)] = p.iloc[0]
    cases = [(['--pseudo-labels', _probs_with(sub, tmp_path, 'nan.probs.csv', nan)], 'nan.probs.csv: line 4: a p column is not a number'),
             (['--corrections', tmp_path/'missing.csv'], 'missing.csv: corrections.csv not found' if False else 'missing.csv'),
             (['--pseudo-labels', _probs_with(sub, tmp_path, 'extra.probs.csv', extra)], 'extra.probs.csv: 22 rows, info.csv has 21')]
    for flags, msg in cases:
        assert msg in one_line(fails('train', '--data', data, '--out', run_copy, '--force', *TINY, *flags, env=env))
        assert tree(run_copy) == before            # byte for byte: checked before anything was removed

def test_force_never_replaces_a_folder_that_is_not_a_run(tmp_path, env, data):
    d = tmp_path/'project'
    for f, text in (('bench/results.jsonl', '{}'), ('report/notes.md', 'mine'), ('wandb/settings', '')):
        (d/f).parent.mkdir(parents=True, exist_ok=True); (d/f).write_text(text)
    before = tree(d)
    err = one_line(fails('train', '--data', data, '--out', d, '--force', *TINY, env=env))
    assert 'holds 2 file(s) a run does not write (bench/results.jsonl, report/notes.md)' in err and 'never other files' in err
    (d/'bench'/'results.jsonl').unlink(); (d/'report'/'notes.md').unlink()
    assert 'not a run folder' in one_line(fails('train', '--data', data, '--out', d, '--force', *TINY, env=env))   # a wandb/ of one's own
    assert tree(d) == {k: v for k, v in before.items() if k == 'wandb/settings'}
    repo = tmp_path/'repo'; (repo/'bench').mkdir(parents=True); (repo/'bench'/'results.jsonl').write_text('{}'); (repo/'README.md').write_text('# x')
    assert 'README.md' in one_line(fails('train', '--data', data, '--out', repo, '--force', *TINY, env=env))   # `--out . --force` in a repository
    assert (repo/'bench'/'results.jsonl').exists()

def test_one_training_per_run_folder(tmp_path, env, data):
    out = tmp_path/'shared'
    a = subprocess.Popen(['mask-fastai', 'train', '--data', str(data), '--out', str(out), *TINY[:-5], '--epochs', '4', '--num-workers', '0', '--wandb', 'off', '--quiet'],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (out/'split.json').exists() and a.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    assert a.poll() is None, a.stderr.read()[-2000:]
    err = one_line(fails('train', '--data', data, '--out', out, '--force', *TINY, '--seed', '7', env=env))
    assert 'another mask-fastai train is writing this run folder right now' in err
    assert 'exists and is not empty' in one_line(fails('train', '--data', data, '--out', out, *TINY, env=env))
    assert a.wait(timeout=600) == 0, a.stderr.read()[-2000:]
    assert json.loads((out/'config.json').read_text())['train']['seed'] == 42 and json.loads((out/'metrics.json').read_text())['epochs_run'] == 4

def test_a_failed_report_leaves_the_earlier_one_whole(run_copy, env):
    run('report', '--models', run_copy, env=env)
    before = tree(run_copy/'report')
    vp = pd.read_csv(run_copy/'valid_probs.csv'); vp.loc[3, 'path'] = '/nowhere/gone.jpg'; vp.to_csv(run_copy/'valid_probs.csv', index=False)
    assert 'gone.jpg' in one_line(fails('report', '--models', run_copy, env=env))
    assert tree(run_copy/'report') == before and not [p for p in run_copy.iterdir() if p.name.endswith('.tmp')]

@pytest.mark.parametrize('umask,mode', [(0o022, 0o644), (0o002, 0o664)])
def test_outputs_follow_the_umask(trained, env, data, tmp_path, umask, mode):
    run('predict', '--data', data, '--models', trained, '--out', tmp_path/'sub.csv', '--quiet', env=env, preexec_fn=lambda: os.umask(umask))
    assert {(tmp_path/f).stat().st_mode & 0o777 for f in ('sub.csv', 'sub.probs.csv')} == {mode}

def test_predict_writes_through_a_link(trained, env, data, tmp_path):
    (tmp_path/'subs').mkdir(); target = tmp_path/'subs'/'real.csv'; target.write_text('old')
    (tmp_path/'link.csv').symlink_to(target)
    run('predict', '--data', data, '--models', trained, '--out', tmp_path/'link.csv', '--force', '--quiet', env=env)
    assert (tmp_path/'link.csv').is_symlink() and os.readlink(tmp_path/'link.csv') == str(target)
    assert pd.read_csv(target).ans.tolist() == pd.read_csv(tmp_path/'subs'/'real.probs.csv').ans.tolist()   # the pair stays together, beside the target


# --- caches that cannot lie

def test_a_photo_replaced_under_the_same_size_and_time_is_predicted_anew(trained, env, data, tmp_path):
    d = shutil.copytree(data, tmp_path/'data')
    info = pd.read_csv(d/'eval'/'info.csv')
    first, other = (d/'eval'/'images'/i for i in info.ImageID[:2])
    a, b = np.asarray(Image.open(first).convert('RGB')), np.asarray(Image.open(other).convert('RGB'))
    Image.fromarray(a).save(first, format='PNG', compress_level=0)             # uncompressed: another photo of the same size has the same bytes count
    run('predict', '--data', d, '--models', trained, '--out', tmp_path/'p1.csv', '--quiet', env=env)
    st = first.stat()
    Image.fromarray(b).save(first, format='PNG', compress_level=0); os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (first.stat().st_size, first.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    run('predict', '--data', d, '--models', trained, '--out', tmp_path/'p2.csv', '--quiet', env=env)
    run('predict', '--data', d, '--models', trained, '--out', tmp_path/'p3.csv', '--quiet', env={**env, 'MASK_FASTAI_CACHE': str(tmp_path/'fresh')})
    p1, p2, p3 = (pd.read_csv(tmp_path/f'p{i}.probs.csv')[PROB_COLS].to_numpy()[0] for i in (1, 2, 3))
    np.testing.assert_allclose(p2, p3, atol=1e-5); assert np.abs(p2 - p1).max() > 1e-3

def test_a_damaged_decoded_cache_is_decoded_again(trained, env, data, tmp_path):
    run('predict', '--data', data, '--models', trained, '--out', tmp_path/'a.csv', '--quiet', env=env)
    for f in (Path(env['MASK_FASTAI_CACHE'])/'decoded').rglob('*.npy'):
        raw = f.read_bytes(); f.write_bytes(raw[:128] + bytes(len(raw) - 128))   # a valid header, zeroed pixels
    run('predict', '--data', data, '--models', trained, '--out', tmp_path/'b.csv', '--quiet', env=env)
    assert sha(tmp_path/'a.probs.csv') == sha(tmp_path/'b.probs.csv')


# --- training that diverges is not a success

def test_a_diverging_run_stops_and_saves_nothing_as_finished(tmp_path, env, data):
    err = one_line(fails('train', '--data', data, '--out', tmp_path/'big', *TINY, '--lr', '1e20', env=env))
    assert 'training diverged: the loss is' in err and 'lower --lr' in err
    assert not (tmp_path/'big'/'metrics.json').exists() and not (tmp_path/'big'/'model.safetensors').exists()
    assert "--lr must be a positive number" in one_line(fails('train', '--data', data, '--out', tmp_path/'nan', *TINY, '--lr', 'nan', env=env))


# --- settings that would do nothing

def test_corrections_say_what_they_did(tmp_path, env, data):
    people = pd.read_csv(data/'train'/'train.csv', dtype=str)
    pd.DataFrame(dict(id=['999999'], field=['gender'], value=['male'])).to_csv(tmp_path/'nobody.csv', index=False)
    assert 'nobody.csv: none of its 1 correction(s) names a person of this data' in one_line(fails('train', '--data', data, '--out', tmp_path/'c1', *TINY, '--corrections', tmp_path/'nobody.csv', env=env))
    pd.DataFrame(dict(id=[people.id[0], '999999'], field=['age', 'gender'], value=['40', 'male'])).to_csv(tmp_path/'one.csv', index=False)
    r = run('train', '--data', data, '--out', tmp_path/'c2', *TINY[:-1], '--corrections', tmp_path/'one.csv', env=env)
    assert 'label corrections: 1 of 2 applied (age)' in r.stdout

@pytest.mark.parametrize('flags,msg', [
    (['--age-relabel-from', '-5'], '--age-relabel-from N counts ages from N on as >=60: N must be in 31..60'),
    (['--age-drop', '70', '10'], '--age-drop LO HI must be two ages with 0 <= LO <= HI'),
    (['--bs', '0'], '--bs must be a whole number >= 1, got 0'),
    (['--epochs', '0'], '--epochs must be a whole number >= 1, got 0'),
])
def test_settings_out_of_range(tmp_path, env, data, flags, msg):
    assert msg in one_line(fails('train', '--data', data, '--out', tmp_path/'x', *TINY, *flags, env=env))
    assert not (tmp_path/'x').exists()

def test_predict_batch_size(trained, env, data, tmp_path):
    r = run('predict', '--data', data, '--models', trained, '--bs', '0', '--out', tmp_path/'x.csv', env=env, check=False)
    assert r.returncode == 2 and 'must be a whole number >= 1, got 0' in r.stderr


# --- one line, never a traceback

def test_wandb_online_fails_fast_or_goes_offline(tmp_path, env, data):
    home = tmp_path/'home'; home.mkdir()
    no_key = {k: v for k, v in env.items() if k not in ('WANDB_API_KEY', 'WANDB_MODE')} | {'HOME': str(home)}
    t0 = time.time()
    assert '--wandb online needs a W&B API key' in one_line(fails('train', '--data', data, '--out', tmp_path/'w1', *TINY[:-3], '--wandb', 'online', '--quiet', env=no_key))
    assert time.time() - t0 < 60 and not (tmp_path/'w1'/'metrics.json').exists()
    r = run('train', '--data', data, '--out', tmp_path/'w2', *TINY[:-3], '--wandb', 'online', '--quiet',
            env=no_key | {'WANDB_API_KEY': 'x' * 40, 'WANDB_BASE_URL': 'https://127.0.0.1:9'}, subprocess=True)   # its own process: the warning as the user sees it
    assert 'warning: wandb: https://127.0.0.1:9 cannot be reached from here; logging offline instead' in r.stderr and list((tmp_path/'w2'/'wandb').glob('offline-run-*'))

def test_a_home_that_cannot_hold_the_cache(tmp_path, data):
    (tmp_path/'home').write_text('a file, not a folder')
    env = {k: v for k, v in os.environ.items() if k != 'MASK_FASTAI_CACHE'} | {'HOME': str(tmp_path/'home'), 'WANDB_MODE': 'offline'}
    err = one_line(fails('train', '--data', data, '--out', tmp_path/'x', *TINY, env=env))
    assert 'set MASK_FASTAI_CACHE to a writable folder' in err and '.tmp' not in err

def test_run_files_that_are_gone(run_copy, env, data, tmp_path):
    (run_copy/'model.safetensors').unlink()
    assert 'model.safetensors: missing, though the run finished (metrics.json is there)' in one_line(fails('predict', '--data', data, '--models', run_copy, '--out', tmp_path/'x.csv', env=env))
    (run_copy/'model.safetensors').symlink_to(tmp_path/'elsewhere.safetensors')
    assert 'model.safetensors: a link to a file that is gone' in one_line(fails('predict', '--data', data, '--models', run_copy, '--out', tmp_path/'x.csv', env=env))

def test_run_folders_with_foreign_contents(run_copy, env, data, tmp_path):
    conf = json.loads((run_copy/'config.json').read_text())
    (run_copy/'config.json').write_text(json.dumps({**conf, 'model': {**conf['model'], 'colour': 'red'}}))
    assert "config.json: unknown ModelConfig keys ['colour']" in one_line(fails('predict', '--data', data, '--models', run_copy, '--out', tmp_path/'x.csv', env=env))
    (run_copy/'config.json').write_text(json.dumps({**conf, 'model': {**conf['model'], 'arch': 'resnet_nope'}}))
    assert "config.json: unknown timm model 'resnet_nope'" in one_line(fails('predict', '--data', data, '--models', run_copy, '--out', tmp_path/'x.csv', env=env))
    (run_copy/'config.json').write_text(json.dumps({k: v for k, v in conf.items() if k != 'train'}))
    assert "config.json: not a run config: its 'train' part is missing" in one_line(fails('runs', run_copy, env=env))
    (run_copy/'config.json').write_text(json.dumps(conf)); (run_copy/'metrics.json').write_text('[0.5]')
    assert 'metrics.json: not a metrics file: a JSON object expected, found list' in one_line(fails('runs', run_copy, env=env))
    (run_copy/'metrics.json').write_text('{"f1_macro": "high"}')
    assert "'f1_macro' is 'high', not a number" in one_line(fails('runs', run_copy, env=env))

def test_an_architecture_that_cannot_take_the_input_size(tmp_path, env, data):
    err = one_line(fails('train', '--data', data, '--out', tmp_path/'vit', *TINY, '--arch', 'vit_tiny_patch16_224', '--pretrained', 'false', env=env))
    assert '--arch vit_tiny_patch16_224 cannot take --size 32 24' in err
