"The `mask-fastai` commands end to end on tiny demo data (through `cli.main`; the first test and kill-and-resume run the console script itself)."
import json, os, signal, subprocess, time
from pathlib import Path
import numpy as np, pandas as pd, pytest
from mask_fastai.core import PROB_COLS
from mask_fastai.metrics import macro_f1, score_submission
from cli_run import run, fails, one_line, TINY


def test_console_script_trains_predicts_scores(tmp_path, env, data):
    run('train', '--data', data, '--out', tmp_path/'run', *TINY, '--freeze-epochs', '1', '--mix', 'half_cutmix', '--wandb', 'offline', env=env, subprocess=True)
    files = sorted(f.name for f in (tmp_path/'run').iterdir() if f.is_file() and not f.name.startswith('.'))
    assert files == ['config.json', 'history.csv', 'metrics.json', 'model.safetensors', 'split.json', 'valid_probs.csv']
    m, vp = json.loads((tmp_path/'run'/'metrics.json').read_text()), pd.read_csv(tmp_path/'run'/'valid_probs.csv')
    assert m['epochs_run'] == 2 and m['valid_people'] == 2 and m['valid_images'] == len(vp) == 14
    assert m['f1_macro'] == pytest.approx(macro_f1(vp.label, vp[PROB_COLS].to_numpy().argmax(1)), abs=1e-5)   # the scores are those of the saved predictions
    conf = json.loads((tmp_path/'run'/'config.json').read_text())
    assert conf['train']['mix'] == 'half_cutmix' and conf['size'] == [32, 24] and len(conf['vocab']) == 18

    run('predict', '--data', data, '--models', tmp_path/'run', '--out', tmp_path/'sub.csv', '--tta', '--quiet', env=env)
    sub, info, probs = pd.read_csv(tmp_path/'sub.csv'), pd.read_csv(data/'eval'/'info.csv'), pd.read_csv(tmp_path/'sub.probs.csv')
    assert sub.ImageID.tolist() == info.ImageID.tolist() and sub.ans.tolist() == probs[PROB_COLS].to_numpy().argmax(1).tolist()
    r = run('score', '--data', data, tmp_path/'sub.csv', env=env, subprocess=True)    # the demo folder's own answer key
    s = score_submission(tmp_path/'sub.csv', data/'answers'/'eval_labels.csv')
    assert f"macro F1 {s['f1_macro']:.4f}" in r.stdout and f"on {len(info)} photos" in r.stdout
    assert json.loads(run('score', '--data', data, tmp_path/'sub.csv', '--json', env=env).stdout)['f1_macro'] == pytest.approx(s['f1_macro'])   # for scripts

    assert 'pass --force' in one_line(fails('train', '--data', data, '--out', tmp_path/'run', *TINY, env=env))   # no silent overwrite
    assert 'sub.csv: exists; pass --force' in one_line(fails('predict', '--data', data, '--models', tmp_path/'run', '--out', tmp_path/'sub.csv', env=env))

def test_predict_refuses_missing_image(tmp_path, env, data, trained):
    bad = tmp_path/'bad'
    (bad/'eval'/'images').mkdir(parents=True)
    info = pd.read_csv(data/'eval'/'info.csv')
    for i in info.ImageID[1:]: (bad/'eval'/'images'/i).write_bytes((data/'eval'/'images'/i).read_bytes())
    info.to_csv(bad/'eval'/'info.csv', index=False)
    err = fails('predict', '--data', bad, '--models', trained, '--out', tmp_path/'bad.csv', env=env)
    assert info.ImageID[0] in err and 'missing_image' in err and not (tmp_path/'bad.csv').exists()

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
        assert help and a.help.startswith(help) and a.help.count('default') == 1, (name, a.help)
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

def test_info_and_help(env, data):
    r = run('info', '--data', data, env=env)
    assert '10 people, 70 images, 0 problems' in r.stdout
    header = next(l for l in r.stdout.splitlines() if '<30' in l)
    assert header.index('<30') < header.index('30-59') < header.index('>=60')   # age groups in age order
    for cmd in ('demo', 'train', 'predict', 'score', 'info', 'report', 'runs', 'vote', 'tune', 'mislabels'):
        assert 'usage: mask-fastai ' + cmd in run(cmd, '--help', env=env).stdout
    r = run('train', '--epochs', 'many', env=env, check=False)
    assert r.returncode == 2 and "invalid int value: 'many'" in r.stderr

def test_help_is_fast_and_imports_no_deep_learning_library():
    "`mask-fastai --help` builds every command's flags without torch, timm or fastai."
    import sys
    code = "import sys, time; t = time.time(); from mask_fastai.cli import build_parser; build_parser(); print(time.time() - t, sorted(m for m in ('torch', 'timm', 'fastai', 'wandb', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split(maxsplit=1)
    assert out[1].strip() == '[]'


@pytest.fixture(scope='module')
def kfold(tmp_path_factory, env, data):
    "A 2-fold run on the tiny data."
    d = tmp_path_factory.mktemp('kfold')
    run('train', '--data', data, '--out', d/'kf', '--folds', '2', *TINY, env=env)
    return d/'kf'

def test_kfold_run_writes_out_of_fold_predictions(kfold, env, data):
    m = json.loads((kfold/'metrics.json').read_text())
    oof = pd.read_csv(kfold/'oof.csv', dtype={'person': str})
    assert m['folds'] == 2 and m['oof_images'] == len(oof) == 70 and len(m['fold_f1_macro']) == 2
    assert m['oof_f1_macro'] == pytest.approx(macro_f1(oof.label, oof[PROB_COLS].to_numpy().argmax(1)), abs=1e-5)
    assert oof.path.is_unique and oof.groupby('person').fold.nunique().max() == 1
    for k in (0, 1):
        assert json.loads((kfold/f'fold{k}'/'config.json').read_text())['train']['fold'] == k
        assert m['fold_f1_macro'][k] == json.loads((kfold/f'fold{k}'/'metrics.json').read_text())['f1_macro']

def test_kfold_folder_predicts_as_the_mean_of_its_folds(kfold, env, data, tmp_path):
    run('predict', '--data', data, '--models', kfold, '--out', tmp_path/'kf.csv', '--no-pool-identities', '--quiet', env=env)
    for k in (0, 1): run('predict', '--data', data, '--models', kfold/f'fold{k}', '--out', tmp_path/f'f{k}.csv', '--no-pool-identities', '--quiet', env=env)
    p, p0, p1 = (pd.read_csv(tmp_path/f'{n}.probs.csv')[PROB_COLS].to_numpy() for n in ('kf', 'f0', 'f1'))
    np.testing.assert_allclose(p, (p0 + p1) / 2, atol=2e-6)
    assert pd.read_csv(tmp_path/'kf.csv').ImageID.tolist() == pd.read_csv(data/'eval'/'info.csv').ImageID.tolist()
    assert 'not a run folder' in one_line(fails('predict', '--data', data, '--models', tmp_path/'nothing_here', '--out', tmp_path/'x.csv', env=env))

def test_offsets_tta_pooling_and_hard_vote(kfold, env, data, tmp_path):
    r = run('tune', '--models', kfold, env=env)
    off = json.loads((kfold/'offsets.json').read_text())
    assert off['f1_after'] >= off['f1_before'] and f"fitted on 70 photos" in r.stdout
    run('predict', '--data', data, '--models', kfold, '--out', tmp_path/'all.csv', '--tta', '--offsets', kfold/'offsets.json', '--pool-identities', '--quiet', env=env)
    probs = pd.read_csv(tmp_path/'all.probs.csv')
    assert 'group' in probs and probs.ans.tolist() == pd.read_csv(tmp_path/'all.csv').ans.tolist()
    run('predict', '--data', data, '--models', kfold/'fold0', kfold/'fold1', '--vote', 'hard', '--out', tmp_path/'hard.csv', '--quiet', env=env)
    assert pd.read_csv(tmp_path/'hard.csv').ans.between(0, 17).all()
    assert "use vote='soft'" in one_line(fails('predict', '--data', data, '--models', kfold, '--vote', 'hard', '--pool-identities', '--out', tmp_path/'y.csv', env=env))
    assert not (tmp_path/'y.csv').exists()

def test_vote_over_probability_files(kfold, env, data, tmp_path):
    for k in (0, 1): run('predict', '--data', data, '--models', kfold/f'fold{k}', '--out', tmp_path/f'f{k}.csv', '--no-pool-identities', '--quiet', env=env)
    run('vote', '--data', data, '--probs', tmp_path/'f0.probs.csv', tmp_path/'f1.probs.csv', '--out', tmp_path/'soft.csv', env=env)
    p0, p1, v = (pd.read_csv(tmp_path/f)[PROB_COLS].to_numpy() for f in ('f0.probs.csv', 'f1.probs.csv', 'soft.probs.csv'))
    np.testing.assert_allclose(v, (p0 + p1) / 2, atol=2e-6)
    run('vote', '--data', data, '--probs', tmp_path/'f0.probs.csv', tmp_path/'f1.probs.csv', '--hard', '--out', tmp_path/'hard.csv', env=env)
    from mask_fastai.ensemble import hard_vote
    assert pd.read_csv(tmp_path/'hard.csv').ans.tolist() == hard_vote([p0, p1]).tolist()
    pd.read_csv(tmp_path/'f0.probs.csv').iloc[::-1].to_csv(tmp_path/'shuffled.probs.csv', index=False)
    assert 'order' in one_line(fails('vote', '--data', data, '--probs', tmp_path/'shuffled.probs.csv', tmp_path/'f1.probs.csv', '--out', tmp_path/'z.csv', env=env))
    assert not (tmp_path/'z.csv').exists()

def test_mislabel_review_to_corrections(kfold, env, tmp_path):
    r = run('mislabels', '--models', kfold, '--k', '4', env=env)
    cands = pd.read_csv(kfold/'mislabels'/'candidates.csv', dtype={'id': str, 'accept': str})
    assert {'id', 'kind', 'labelled', 'suggested', 'score', 'accept'} <= set(cands.columns) and f"{len(cands)} candidates" in r.stdout
    assert len(cands) > 0   # a one-epoch model contradicts some labels
    cands.loc[cands.index[:1], 'accept'] = 'yes'
    cands.to_csv(tmp_path/'reviewed.csv', index=False)
    run('mislabels', '--reviewed', tmp_path/'reviewed.csv', '--out', tmp_path/'corr.csv', env=env)
    from mask_fastai.data import load_corrections
    assert load_corrections(tmp_path/'corr.csv').id.tolist() == cands.id[:1].tolist()
    cands.assign(score='high').to_csv(tmp_path/'bad.csv', index=False)
    assert "bad.csv: line 2: column 'score': 'high' is not a number" in one_line(fails('mislabels', '--reviewed', tmp_path/'bad.csv', '--out', tmp_path/'c2.csv', env=env))

def test_report_of_one_fold(kfold, env, tmp_path):
    r = run('report', '--models', kfold/'fold0', '--out', tmp_path/'report', env=env)
    html = (tmp_path/'report'/'report.html').read_text()
    pngs = list((tmp_path/'report').glob('*.png'))
    assert len(pngs) == 6 and all(p.name in html for p in pngs)
    scores = json.loads((tmp_path/'report'/'scores.json').read_text())
    assert f"macro F1 {scores['f1_macro']:.4f}" in r.stdout and 'weakest classes' in r.stdout and str(tmp_path/'report'/'report.html') in r.stdout
    assert 'report on one fold' in one_line(fails('report', '--models', kfold, env=env))


def test_kill_and_resume(tmp_path, env, data):
    "SIGTERM a training process after its first finished epoch; `--resume` ends with every planned epoch."
    out = tmp_path/'killed'
    args = ['train', '--data', data, '--out', out, '--size', '32', '24', '--epochs', '6', '--bs', '16', '--num-workers', '0', '--wandb', 'off', '--quiet']
    p = subprocess.Popen(['mask-fastai', *map(str, args)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = out/'checkpoints'/'state.json'
    t0 = time.time()
    while not state.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    p.send_signal(signal.SIGTERM); err = p.communicate(timeout=60)[1]
    assert state.exists(), f"no checkpoint was written (returncode {p.returncode}): {err[-2000:]}"
    done = json.loads(state.read_text())['epoch']
    assert p.returncode != 0 and done < 6, f"the run was not interrupted (returncode {p.returncode}, epoch {done})"
    assert not (out/'metrics.json').exists()
    assert 'pass --force' in one_line(fails('train', '--data', data, '--out', out, *TINY, env=env))   # a half-finished run is not overwritten either
    run('train', '--out', out, '--resume', '--quiet', env=env)
    assert pd.read_csv(out/'history.csv').epoch.tolist() == list(range(6))
    m = json.loads((out/'metrics.json').read_text())
    assert m['epochs_run'] == 6 and not (out/'checkpoints').exists()
    assert 'already complete' in one_line(fails('train', '--out', out, '--resume', env=env))

def test_cli_bad_inputs(tmp_path, env, data, trained):
    "Wrong folders, unknown archs, foreign weights and bad images give one clear message (no traceback); --skip-bad trains on the rest."
    import shutil
    assert 'train/images' in fails('train', '--data', tmp_path/'nowhere', '--out', tmp_path/'x1', *TINY, env=env, subprocess=True)
    (tmp_path/'no_eval').mkdir()
    assert 'info.csv' in fails('predict', '--data', tmp_path/'no_eval', '--models', trained, '--out', tmp_path/'x.csv', env=env)
    assert 'did you mean' in one_line(fails('train', '--data', data, '--out', tmp_path/'x2', '--arch', 'efficientnet_lite9', *TINY, env=env))
    assert run('predict', '--data', data, '--models', trained, '--vote', 'loud', env=env, check=False).returncode == 2
    foreign = shutil.copytree(trained, tmp_path/'foreign')
    conf = json.loads((foreign/'config.json').read_text()); conf['model']['arch'] = 'resnet18'
    (foreign/'config.json').write_text(json.dumps(conf))
    assert 'another architecture' in one_line(fails('predict', '--data', data, '--models', foreign, '--out', tmp_path/'x3.csv', env=env))
    assert not (tmp_path/'x3.csv').exists()

    bad = shutil.copytree(data, tmp_path/'bad_train')
    imgs = sorted((bad/'train'/'images').glob('*/*.jpg'))
    imgs[0].write_bytes(b''); imgs[9].write_bytes(imgs[9].read_bytes()[:200])   # empty and truncated
    err = fails('train', '--data', bad, '--out', tmp_path/'x4', *TINY, env=env)
    assert str(imgs[0]) in err and str(imgs[9]) in err and '--skip-bad' in err and not (tmp_path/'x4'/'model.safetensors').exists()
    run('train', '--data', bad, '--out', tmp_path/'skipped', '--skip-bad', *TINY, env=env)
    assert sorted(pd.read_csv(tmp_path/'skipped'/'skipped.csv').path) == sorted([str(imgs[0]), str(imgs[9])])
    m = json.loads((tmp_path/'skipped'/'metrics.json').read_text())
    assert m['train_images'] + m['valid_images'] == 68

def test_presets_train_end_to_end(tmp_path, env, data):
    "The GPU preset cannot be timed here, but it runs end to end on a CPU at toy scale; config.json records the preset and what it resolved to."
    run('train', '--data', data, '--out', tmp_path/'gpu', '--preset', 'gpu', *TINY, env=env)
    t = json.loads((tmp_path/'gpu'/'config.json').read_text())['train']
    assert (t['preset'], t['arch'], t['mix'], t['age_relabel_from'], t['size'], t['epochs']) == ('gpu', 'tf_efficientnet_lite2', 'half_cutmix', 58, [32, 24], 1)
    r = run('predict', '--data', data, '--models', tmp_path/'gpu', '--out', tmp_path/'gpu'/'sub.csv', '--quiet', env=env)
    assert len(pd.read_csv(tmp_path/'gpu'/'sub.csv')) == 21 and 'wrote 21 predictions' in r.stdout
    r = run('train', '--data', data, '--preset', 'fast', env=env, check=False)
    assert r.returncode == 2 and 'choose one of quick, cpu30, gpu' in r.stderr

def test_runs_table_of_real_runs(tmp_path, env, data):
    "`runs` over real run folders from tiny trainings: one row each, the differing settings, eval scores with the key, a plot."
    for name, extra in (('r_ce', ['--loss', 'ce']), ('r_focal', [])):
        run('train', '--data', data, '--out', tmp_path/'runs'/name, *TINY, *extra, env=env)
        run('predict', '--data', data, '--models', tmp_path/'runs'/name, '--out', tmp_path/'runs'/name/f'{name}_sub.csv', '--quiet', env=env)
    r = run('runs', tmp_path/'runs', '--key', data/'answers'/'eval_labels.csv', '--sort', 'eval_f1', '--csv', tmp_path/'runs.csv', '--plot', tmp_path/'runs.png', env=env)
    t = pd.read_csv(tmp_path/'runs.csv')
    assert sorted(Path(p).name for p in t.run) == ['r_ce', 'r_focal'] and 'loss' in t and 'epochs' not in t
    key = data/'answers'/'eval_labels.csv'
    want = {Path(p).name: round(score_submission(Path(p)/f'{Path(p).name}_sub.csv', key)['f1_macro'], 4) for p in t.run}
    assert t.finished.all() and dict(zip(t.run.map(lambda p: Path(p).name), t.eval_f1)) == want and t.eval_f1.is_monotonic_decreasing
    assert (tmp_path/'runs.png').stat().st_size > 1000 and 'r_ce' in r.stdout
    assert 'runs.csv: exists; pass --force' in one_line(fails('runs', tmp_path/'runs', '--csv', tmp_path/'runs.csv', env=env))
    assert '--sort f1: no such column' in one_line(fails('runs', tmp_path/'runs', '--sort', 'f1', env=env))

def test_pseudo_labels_second_round(tmp_path, env, data, trained):
    "`train --pseudo-labels` adds exactly the eval images at or above the threshold (pooled labels) to training, and nothing to validation."
    from mask_fastai.identities import pool_identities
    run('predict', '--data', data, '--models', trained, '--out', tmp_path/'ps1.csv', '--pool-identities', '--quiet', env=env)
    pr = pd.read_csv(tmp_path/'ps1.probs.csv')
    conf = pool_identities(pr[PROB_COLS].to_numpy(), pr.group.to_numpy()).max(1)
    t = float(np.sort(conf)[len(conf) // 2])   # the median: about half the eval images join
    run('train', '--data', data, '--out', tmp_path/'ps2', *TINY, '--pseudo-labels', tmp_path/'ps1.probs.csv', '--pseudo-threshold', t, env=env)
    m1, m2 = (json.loads((d/'metrics.json').read_text()) for d in (trained, tmp_path/'ps2'))
    assert m2['train_images'] - m1['train_images'] == int((conf >= t).sum()) > 0
    assert m2['valid_images'] == m1['valid_images']
    v1, v2 = (pd.read_csv(d/'valid_probs.csv') for d in (trained, tmp_path/'ps2'))
    assert v1.path.tolist() == v2.path.tolist() and v1.label.tolist() == v2.label.tolist()
    conf2 = json.loads((tmp_path/'ps2'/'config.json').read_text())['train']
    assert conf2['pseudo_labels'] == str(tmp_path/'ps1.probs.csv') and conf2['pseudo_threshold'] == t
    run('train', '--data', data, '--out', tmp_path/'ps_dldl', *TINY, '--age-head', 'dldl', '--pseudo-labels', tmp_path/'ps1.probs.csv', '--pseudo-threshold', t, env=env)   # no true age for them: their age loss counts 0
    assert json.loads((tmp_path/'ps_dldl'/'metrics.json').read_text())['train_images'] == m2['train_images']

    run('predict', '--data', data, '--models', trained, '--out', tmp_path/'plain.csv', '--no-pool-identities', '--quiet', env=env)   # no identity groups
    for flags, msg in ((['--pseudo-labels', tmp_path/'plain.probs.csv'], 'predict --pool-identities'),
                       (['--pseudo-labels', tmp_path/'ps1.probs.csv', '--pseudo-threshold', '1.5'], 'must be in (0, 1]'),
                       (['--pseudo-labels', tmp_path/'nowhere.csv'], 'nowhere.csv')):
        assert msg in one_line(fails('train', '--data', data, '--out', tmp_path/'ps3', *TINY, *flags, env=env))
        assert not (tmp_path/'ps3'/'model.safetensors').exists()


def test_predict_pools_identities_by_default_and_says_so(trained, env, data, tmp_path):
    "Pooling gained on nearly every benchmark record: on an eval folder of 7 photos per person `predict` pools unless told not to."
    r = run('predict', '--data', data, '--models', trained, '--out', tmp_path/'auto.csv', env=env)
    assert 'identities pooled (the default for 7 photos per person; --no-pool-identities turns it off)' in r.stdout, r.stdout
    assert 'group' in pd.read_csv(tmp_path/'auto.probs.csv').columns
    r = run('predict', '--data', data, '--models', trained, '--out', tmp_path/'off.csv', '--no-pool-identities', '--quiet', env=env)
    assert 'no identity pooling' in r.stdout and 'group' not in pd.read_csv(tmp_path/'off.probs.csv').columns
