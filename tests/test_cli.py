"The `mask-fastai` commands end to end on tiny demo data (through `cli.main`; the first test and kill-and-resume run the console script itself)."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd, pytest
from mask_fastai.demo import make_demo_data
from mask_fastai.core import PROB_COLS
from cli_run import run


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cli')
    env = {**os.environ, 'MASK_FASTAI_CACHE': str(tmp/'cache'), 'WANDB_MODE': 'offline'}
    data = make_demo_data(tmp/'data', n_train=10, n_eval=3, size=(96, 128), seed=1)
    return tmp, env, data

TINY = ['--size', '32', '24', '--epochs', '1', '--freeze-epochs', '1', '--bs', '16', '--num-workers', '0', '--wandb', 'off', '--quiet']

def test_train_predict_score(setup):
    tmp, env, data = setup
    run('train', '--data', data, '--out', tmp/'run', '--mix', 'half_cutmix', *TINY, '--wandb', 'offline', env=env, subprocess=True)   # the console script, with the default wandb mode
    files = sorted(f.name for f in (tmp/'run').iterdir() if f.is_file())
    assert files == ['config.json', 'history.csv', 'metrics.json', 'model.safetensors', 'split.json', 'valid_probs.csv']
    m = json.loads((tmp/'run'/'metrics.json').read_text())
    assert m['epochs_run'] == 2 and 0 <= m['f1_macro'] <= 1 and m['valid_people'] == 2
    conf = json.loads((tmp/'run'/'config.json').read_text())
    assert conf['train']['mix'] == 'half_cutmix' and conf['size'] == [32, 24] and len(conf['vocab']) == 18

    run('predict', '--data', data, '--models', tmp/'run', '--out', tmp/'sub.csv', '--tta', '--quiet', env=env)
    sub, info = pd.read_csv(tmp/'sub.csv'), pd.read_csv(data/'eval'/'info.csv')
    assert sub.ImageID.tolist() == info.ImageID.tolist() and sub.ans.between(0, 17).all()
    probs = pd.read_csv(tmp/'sub.probs.csv')
    assert probs.shape == (len(info), 20) and (probs[PROB_COLS].sum(axis=1) - 1).abs().max() < 1e-3

    r = run('score', tmp/'sub.csv', data/'answers'/'eval_labels.csv', env=env, subprocess=True)
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

def _train_parser():
    from mask_fastai.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == 'command')
    return sub.choices['train']

def test_every_config_field_has_a_typed_flag_with_help():
    "One flag per TrainConfig field, its help from the field's comment, its type from the annotation: the defaults, typed as text, parse back to themselves."
    from dataclasses import fields
    from mask_fastai.config import TrainConfig, config_fields, config_from_args
    p = _train_parser()
    acts = {a.dest: a for a in p._actions}
    argv = []
    for name, tp, default, help in config_fields():
        a = acts[name]
        assert a.option_strings == ['--' + name.replace('_', '-')], name
        assert help and a.help.startswith(help), (name, a.help)
        text = 'none' if default is None else [str(v) for v in default] if isinstance(default, tuple) else [str(default)]
        argv += [a.option_strings[0], *([text] if isinstance(text, str) else text)]
    assert len(config_fields()) == len(fields(TrainConfig))
    assert config_from_args(p.parse_args(argv)) == TrainConfig()

def test_a_new_config_field_needs_no_cli_edit(tmp_path, monkeypatch):
    import argparse, importlib
    (tmp_path/'more_settings.py').write_text(
        "from dataclasses import dataclass\nfrom typing import Literal\nfrom mask_fastai.config import TrainConfig\n"
        "@dataclass\nclass MoreSettings(TrainConfig):\n    warmup: int = 3  # epochs of warm-up\n    schedule: Literal['cos', 'flat'] = 'cos'  # the shape of the schedule\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = importlib.import_module('more_settings').MoreSettings
    from mask_fastai.config import add_config_args, config_from_args
    p = argparse.ArgumentParser(); add_config_args(p, cls)
    acts = {a.dest: a for a in p._actions}
    assert acts['warmup'].help == 'epochs of warm-up (default: 3)' and acts['schedule'].help.startswith('the shape of the schedule')
    cfg = config_from_args(p.parse_args(['--warmup', '5', '--schedule', 'flat', '--epochs', '2']), cls)
    assert (cfg.warmup, cfg.schedule, cfg.epochs) == (5, 'flat', 2)
    with pytest.raises(SystemExit): p.parse_args(['--warmup', 'many'])

def test_info_and_help(setup):
    tmp, env, data = setup
    r = run('info', '--data', data, env=env)
    assert '10 people, 70 images, 0 problems' in r.stdout
    for cmd in ('demo', 'train', 'predict', 'score', 'info'):
        assert 'usage: mask-fastai ' + cmd in run(cmd, '--help', env=env).stdout
    r = run('train', '--epochs', 'many', env=env, check=False)
    assert r.returncode == 2 and "invalid int value: 'many'" in r.stderr

def test_kfold_train_and_predict(setup):
    tmp, env, data = setup
    run('train', '--data', data, '--out', tmp/'kf', '--folds', '2', *TINY, env=env)
    m = json.loads((tmp/'kf'/'metrics.json').read_text())
    assert m['folds'] == 2 and m['oof_images'] == 70 and len(m['fold_f1_macro']) == 2 and 0 <= m['oof_f1_macro'] <= 1
    oof = pd.read_csv(tmp/'kf'/'oof.csv', dtype={'person': str})
    assert len(oof) == 70 and oof.path.is_unique and oof.groupby('person').fold.nunique().max() == 1
    for k in (0, 1):
        assert json.loads((tmp/'kf'/f'fold{k}'/'config.json').read_text())['train']['fold'] == k
    run('predict', '--data', data, '--models', tmp/'kf', '--out', tmp/'kf_sub.csv', '--quiet', env=env)
    sub, info = pd.read_csv(tmp/'kf_sub.csv'), pd.read_csv(data/'eval'/'info.csv')
    assert sub.ImageID.tolist() == info.ImageID.tolist()
    r = run('predict', '--data', data, '--models', tmp/'nothing_here', '--out', tmp/'x.csv', env=env, check=False)
    assert r.returncode != 0 and 'not a run folder' in r.stderr

    # decision offsets fitted on the out-of-fold predictions, then every predict option at once
    r = run('tune', '--models', tmp/'kf', env=env)
    t = json.loads(r.stdout[:r.stdout.rindex('}') + 1])
    assert t['images'] == 70 and t['f1_after_on_fitting_data'] >= t['f1_before']
    assert (tmp/'kf'/'offsets.json').exists()
    run('predict', '--data', data, '--models', tmp/'kf', '--out', tmp/'kf_all.csv', '--tta', '--offsets', tmp/'kf'/'offsets.json',
        '--pool-identities', '--quiet', env=env)
    sub, probs = pd.read_csv(tmp/'kf_all.csv'), pd.read_csv(tmp/'kf_all.probs.csv')
    assert sub.ImageID.tolist() == info.ImageID.tolist() and 'group' in probs and len(probs) == len(info)
    run('predict', '--data', data, '--models', tmp/'kf'/'fold0', tmp/'kf'/'fold1', '--vote', 'hard', '--out', tmp/'kf_hard.csv', '--quiet', env=env)
    assert pd.read_csv(tmp/'kf_hard.csv').ans.between(0, 17).all()
    for hard in ([], ['--hard']):   # voting over saved probability files
        run('vote', '--data', data, '--probs', tmp/'kf_sub.probs.csv', tmp/'kf_all.probs.csv', *hard, '--out', tmp/'voted.csv', '--force', env=env)
        assert pd.read_csv(tmp/'voted.csv').ImageID.tolist() == info.ImageID.tolist()
    p1, p2 = pd.read_csv(tmp/'kf_sub.probs.csv'), pd.read_csv(tmp/'kf_all.probs.csv')
    import numpy as np
    np.testing.assert_allclose(pd.read_csv(tmp/'voted.probs.csv').iloc[:, 1:19].to_numpy(), (p1.iloc[:, 1:19].to_numpy() + p2.iloc[:, 1:19].to_numpy()) / 2, atol=2e-6)
    p1.iloc[::-1].to_csv(tmp/'shuffled.probs.csv', index=False)
    r = run('vote', '--data', data, '--probs', tmp/'shuffled.probs.csv', tmp/'kf_sub.probs.csv', '--out', tmp/'z.csv', env=env, check=False)
    assert r.returncode != 0 and 'order' in r.stderr and not (tmp/'z.csv').exists()
    r = run('predict', '--data', data, '--models', tmp/'kf', '--vote', 'hard', '--pool-identities', '--out', tmp/'y.csv', env=env, check=False)
    assert r.returncode != 0 and "use vote='soft'" in r.stderr and not (tmp/'y.csv').exists()

    # mislabel candidates from the OOF table, and the reviewed list turned into a corrections file the data layer reads
    r = run('mislabels', '--models', tmp/'kf', '--k', '4', env=env)
    cands = pd.read_csv(tmp/'kf'/'mislabels'/'candidates.csv', dtype={'id': str, 'accept': str})
    assert {'id', 'kind', 'labelled', 'suggested', 'score', 'accept'} <= set(cands.columns)
    assert len(cands) > 0   # a one-epoch model contradicts some labels
    cands.loc[cands.index[:1], 'accept'] = 'yes'
    cands.to_csv(tmp/'reviewed.csv', index=False)
    run('mislabels', '--reviewed', tmp/'reviewed.csv', '--out', tmp/'corr.csv', env=env)
    from mask_fastai.data import load_corrections
    assert len(load_corrections(tmp/'corr.csv')) == 1

    # the analysis report of one fold
    run('report', '--models', tmp/'kf'/'fold0', '--out', tmp/'report', env=env)
    html = (tmp/'report'/'report.html').read_text()
    for png in (tmp/'report').glob('*.png'): assert png.name in html
    assert len(list((tmp/'report').glob('*.png'))) >= 5

def test_kill_and_resume(setup):
    "SIGTERM a training process after its first finished epoch; `--resume` ends with every planned epoch."
    tmp, env, data = setup
    out = tmp/'killed'
    args = ['train', '--data', data, '--out', out, *TINY[:3], '--epochs', '6', '--freeze-epochs', '0', '--bs', '16',
            '--num-workers', '0', '--wandb', 'off', '--quiet']
    p = subprocess.Popen(['mask-fastai', *map(str, args)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = out/'checkpoints'/'state.json'
    t0 = time.time()
    while not state.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    p.send_signal(signal.SIGTERM); err = p.communicate(timeout=60)[1]
    assert state.exists(), f"no checkpoint was written (returncode {p.returncode}): {err[-2000:]}"
    done = json.loads(state.read_text())['epoch']
    assert p.returncode != 0 and done < 6, f"the run was not interrupted (returncode {p.returncode}, epoch {done})"
    assert not (out/'metrics.json').exists()
    r = run('train', '--data', data, '--out', out, *TINY, env=env, check=False)   # a half-finished run is not overwritten either
    assert r.returncode != 0 and 'pass --force' in r.stderr
    run('train', '--out', out, '--resume', '--quiet', env=env)
    hist = pd.read_csv(out/'history.csv')
    assert hist.epoch.tolist() == list(range(6))
    m = json.loads((out/'metrics.json').read_text())
    assert m['epochs_run'] == 6 and not (out/'checkpoints').exists()
    r = run('train', '--out', out, '--resume', env=env, check=False)
    assert r.returncode != 0 and 'already complete' in r.stderr

def test_cli_bad_inputs(setup):
    "Wrong folders, unknown archs, foreign weights and bad images give one clear message (no traceback); --skip-bad trains on the rest."
    import shutil
    tmp, env, data = setup
    def fails(*args, **kw):
        r = run(*args, env=env, check=False, **kw)
        assert r.returncode != 0 and 'Traceback' not in r.stderr, r.stderr[-2000:]
        return r.stderr
    assert 'train/images' in fails('train', '--data', tmp/'nowhere', '--out', tmp/'x1', *TINY, subprocess=True)   # the console script's own stderr
    (tmp/'no_eval').mkdir(exist_ok=True)
    assert 'info.csv' in fails('predict', '--data', tmp/'no_eval', '--models', tmp/'run', '--out', tmp/'x.csv')
    assert 'did you mean' in fails('train', '--data', data, '--out', tmp/'x2', '--arch', 'efficientnet_lite9', *TINY)
    assert 'invalid choice' in fails('predict', '--data', data, '--models', tmp/'run', '--vote', 'loud')
    run('train', '--data', data, '--out', tmp/'small', *TINY, env=env)
    foreign = tmp/'foreign'; shutil.copytree(tmp/'small', foreign)
    conf = json.loads((foreign/'config.json').read_text()); conf['model']['arch'] = 'resnet18'
    (foreign/'config.json').write_text(json.dumps(conf))
    assert 'another architecture' in fails('predict', '--data', data, '--models', foreign, '--out', tmp/'x3.csv')
    assert not (tmp/'x3.csv').exists()

    bad = tmp/'bad_train'; shutil.copytree(data, bad)
    imgs = sorted((bad/'train'/'images').glob('*/*.jpg'))
    imgs[0].write_bytes(b''); imgs[9].write_bytes(imgs[9].read_bytes()[:200])   # empty and truncated
    err = fails('train', '--data', bad, '--out', tmp/'x4', *TINY)
    assert str(imgs[0]) in err and str(imgs[9]) in err and '--skip-bad' in err and not (tmp/'x4'/'model.safetensors').exists()
    run('train', '--data', bad, '--out', tmp/'skipped', '--skip-bad', *TINY, env=env)
    sk = pd.read_csv(tmp/'skipped'/'skipped.csv')
    assert sorted(sk.path) == sorted([str(imgs[0]), str(imgs[9])])
    m = json.loads((tmp/'skipped'/'metrics.json').read_text())
    assert m['train_images'] + m['valid_images'] == 68

def test_presets_train_end_to_end(setup):
    "The GPU preset cannot be timed here, but it runs end to end on a CPU at toy scale; config.json records the preset and what it resolved to."
    tmp, env, data = setup
    run('train', '--data', data, '--out', tmp/'gpu', '--preset', 'gpu', *TINY, env=env)
    conf = json.loads((tmp/'gpu'/'config.json').read_text())
    t = conf['train']
    assert (t['preset'], t['arch'], t['mix'], t['age_relabel_from'], t['size'], t['epochs']) == ('gpu', 'tf_efficientnet_lite2', 'half_cutmix', 58, [32, 24], 1)
    run('predict', '--data', data, '--models', tmp/'gpu', '--out', tmp/'gpu'/'sub.csv', '--quiet', env=env)
    r = run('train', '--data', data, '--preset', 'fast', env=env, check=False)
    assert r.returncode == 2 and 'choose one of quick, cpu30, gpu' in r.stderr

def test_runs_table_of_real_runs(setup):
    "`runs` over real run folders from tiny trainings: one row each, the differing settings, eval scores with the key, a plot."
    tmp, env, data = setup
    for name, extra in (('r_ce', ['--loss', 'ce']), ('r_focal', [])):
        run('train', '--data', data, '--out', tmp/'runs'/name, *TINY, *extra, env=env)
        run('predict', '--data', data, '--models', tmp/'runs'/name, '--out', tmp/'runs'/name/'sub.csv', '--quiet', env=env)
    r = run('runs', tmp/'runs', '--key', data/'answers'/'eval_labels.csv', '--sort', 'eval_sub', '--csv', tmp/'runs.csv', '--plot', tmp/'runs.png', env=env)
    t = pd.read_csv(tmp/'runs.csv')
    assert sorted(Path(p).name for p in t.run) == ['r_ce', 'r_focal'] and 'loss' in t and 'epochs' not in t
    assert t.finished.all() and t.eval_sub.between(0, 1).all() and t.eval_sub.is_monotonic_decreasing
    assert (tmp/'runs.png').stat().st_size > 1000 and 'r_ce' in r.stdout
    r = run('runs', tmp/'runs', '--csv', tmp/'runs.csv', env=env, check=False)
    assert r.returncode != 0 and 'runs.csv' in r.stderr and '--force' in r.stderr

def test_pseudo_labels_second_round(setup):
    "`train --pseudo-labels` adds exactly the eval images at or above the threshold (pooled labels) to training, and nothing to validation."
    import numpy as np
    from mask_fastai.identities import pool_identities
    tmp, env, data = setup
    run('train', '--data', data, '--out', tmp/'ps1', *TINY, env=env)
    run('predict', '--data', data, '--models', tmp/'ps1', '--out', tmp/'ps1.csv', '--pool-identities', '--quiet', env=env)
    pr = pd.read_csv(tmp/'ps1.probs.csv')
    conf = pool_identities(pr[PROB_COLS].to_numpy(), pr.group.to_numpy()).max(1)
    t = float(np.sort(conf)[len(conf) // 2])   # the median: about half the eval images join
    run('train', '--data', data, '--out', tmp/'ps2', *TINY, '--pseudo-labels', tmp/'ps1.probs.csv', '--pseudo-threshold', t, env=env)
    m1, m2 = (json.loads((tmp/r/'metrics.json').read_text()) for r in ('ps1', 'ps2'))
    assert m2['train_images'] - m1['train_images'] == int((conf >= t).sum()) > 0
    assert m2['valid_images'] == m1['valid_images']
    v1, v2 = (pd.read_csv(tmp/r/'valid_probs.csv') for r in ('ps1', 'ps2'))
    assert v1.path.tolist() == v2.path.tolist() and v1.label.tolist() == v2.label.tolist()
    conf2 = json.loads((tmp/'ps2'/'config.json').read_text())['train']
    assert conf2['pseudo_labels'] == str(tmp/'ps1.probs.csv') and conf2['pseudo_threshold'] == t

    run('predict', '--data', data, '--models', tmp/'ps1', '--out', tmp/'plain.csv', '--quiet', env=env)   # no identity groups
    for flags, msg in ((['--pseudo-labels', tmp/'plain.probs.csv'], 'predict --pool-identities'),
                       (['--pseudo-labels', tmp/'ps1.probs.csv', '--pseudo-threshold', '1.5'], 'must be in (0, 1]'),
                       (['--pseudo-labels', tmp/'nowhere.csv'], 'nowhere.csv')):
        r = run('train', '--data', data, '--out', tmp/'ps3', *TINY, *flags, env=env, check=False)
        assert r.returncode != 0 and msg in r.stderr and 'Traceback' not in r.stderr, r.stderr[-1500:]
        assert not (tmp/'ps3'/'model.safetensors').exists()
