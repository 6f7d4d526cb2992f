"""F1 against compute: train a recipe on maskbench-dev's train folder, predict its eval folder (plain, flip TTA, identity
pooling, both), score each with the answer key, and append one record per seed to bench/results.jsonl.

    python bench/budget.py default-5ep -- --epochs 5                       # anything after -- goes to `mask-fastai train`
    python bench/budget.py s160-10ep --seeds 42 43 -- --size 160 120 --epochs 10
    python bench/budget.py kf5-2ep --folds 5 -- --epochs 2                 # a k-fold ensemble (its OOF score is recorded)
    python bench/budget.py --baseline-settings base-2ep -- --epochs 2     # the official baseline's settings
    python bench/budget.py default-5ep --reuse -- --epochs 5              # keep a finished run, predict and score again
    python bench/budget.py r2-5ep --pseudo-from default-5ep -- --epochs 5  # second round on default-5ep's pseudo-labelled eval images (same seed)
    python bench/budget.py default-5ep-ens2 --ensemble-of default-5ep --seeds 42 43   # no training: the seeds' runs predict together
    python bench/budget.py dldl-5ep-p2 --repredict-of dldl-5ep --seeds 42 43         # no training: those runs predicted with today's code

Compute is measured as training images x epochs (`images_trained`, independent of the machine) and as the CPU time of the `train` process (user + system, all threads), so that runs measured while
other jobs shared the machine stay comparable; `cpu_min_2core` = CPU minutes / 2 is the wall time the same training
takes on this idle 2-core machine. Face crops come from the cache (cropping maskbench-dev once is timed separately by
`bench/foundation.py`). Everything goes through the `mask-fastai` commands a user runs."""
import argparse, json, os, resource, subprocess, sys, time
from pathlib import Path
from common import ROOT, MASKBENCH as DATA, RECORDS, rel, append_record

BASELINE = ['--size', '128', '96', '--crop', 'false', '--aug', 'none', '--age-relabel-from', 'none']

def cli(*args, capture=False) -> tuple:
    "Run `mask-fastai ARGS` with this interpreter; `(wall s, cpu s, stdout)`."
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
    r = subprocess.run([sys.executable, '-m', 'mask_fastai.cli', *map(str, args)], check=True, capture_output=capture, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.time() - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), r.stdout

def finished(out:Path, folds) -> bool:
    return (out/'metrics.json').exists() and (not folds or (out/'oof.csv').exists())

def train(out:Path, a, seed:int, extra=()) -> dict:
    flags = ['--data', a.data, '--out', out, '--force', '--wandb', 'off', '--quiet', '--seed', seed, *extra]
    flags += BASELINE if a.baseline_settings else []
    flags += ['--folds', a.folds] if a.folds else []
    if a.reuse and finished(out, a.folds): return dict(reused=True)
    wall, cpu, _ = cli('train', *flags, *a.extra)
    return dict(train_wall_s=round(wall, 1), train_cpu_s=round(cpu, 1), cpu_min_2core=round(cpu / 120, 2))

def predict(out:Path, a, models=None) -> dict:
    "Predict the eval folder with the run in `out` (or the runs `models`, together) in each variant of `a.predict`, into `out/bench/`; score each."
    key, res = Path(a.data)/'answers'/'eval_labels.csv', {}
    for v in a.predict.split(','):
        opts = v.split('+')
        flags = (['--tta'] if 'tta' in opts else []) + ['--pool-identities' if 'pool' in opts else '--no-pool-identities']
        sub = out/'bench'/f"{v.replace('+', '_')}.csv"
        wall, cpu, _ = cli('predict', '--data', a.data, '--models', *(models or [out]), '--out', sub, '--force', '--quiet', *flags)
        s = json.loads(cli('score', sub, key, '--json', capture=True)[2])
        res[v] = dict(f1_macro=round(s['f1_macro'], 4), mask_f1=round(s['mask_f1'], 4), gender_f1=round(s['gender_f1'], 4),
                      age_f1=round(s['age_f1'], 4), accuracy=round(s['accuracy'], 4), predict_wall_s=round(wall, 1), **old_group(sub, key))
        print(f"  {v}: eval F1 {res[v]['f1_macro']}", flush=True)
    return res

def old_group(sub:Path, key:Path) -> dict:
    "Recall and precision of the `>=60` age group (photos) of submission `sub` against the answer key."
    import pandas as pd
    d = pd.read_csv(key).merge(pd.read_csv(sub), on='ImageID', suffixes=('', '_pred'))
    true, pred = d.ans % 3 == 2, d.ans_pred % 3 == 2
    return dict(age60_recall=round(float((true & pred).sum() / max(true.sum(), 1)), 4), age60_precision=round(float((true & pred).sum() / max(pred.sum(), 1)), 4))

def earlier_record(records, name:str, seed:int) -> dict:
    "The last budget record of recipe `name` with `seed` (a pseudo-label round 1, or a run of an ensemble)."
    rs = [r for r in map(json.loads, Path(records).read_text().splitlines()) if r.get('bench') == 'budget' and r['name'] == name and r['seed'] == seed]
    if not rs: sys.exit(f"{records}: no budget record of {name} seed {seed}: run that recipe first")
    return rs[-1]

def pseudo_flags(a, seed:int) -> list:
    "`train` flags of a second round on the eval images that round 1 (`a.pseudo_from`, same seed) labels, pooled, with flip TTA."
    probs = ROOT/'runs'/'budget'/f'{a.pseudo_from}-s{seed}'/'bench'/'tta_pool.probs.csv'
    if not probs.exists(): sys.exit(f"{probs}: not found: run `bench/budget.py {a.pseudo_from}` with seed {seed} (and its tta+pool prediction) first")
    return ['--pseudo-labels', probs]

def ensemble(a):
    "Record the runs of recipe `a.ensemble_of` (one per seed) predicting together: compute is the sum of theirs, nothing is trained."
    recs = [earlier_record(a.records, a.ensemble_of, s) for s in a.seeds]
    runs = [ROOT/'runs'/'budget'/f'{a.ensemble_of}-s{s}' for s in a.seeds]
    out = ROOT/'runs'/'budget'/a.name
    res = dict(bench='budget', name=a.name, seed='+'.join(map(str, a.seeds)), folds=None, flags=recs[0]['flags'], ensemble_of=a.ensemble_of,
               data=rel(a.data), run=rel(out), settings=recs[0]['settings'], valid_kind='holdout',
               **{k: round(sum(r[k] for r in recs), 2) for k in ('train_wall_s', 'train_cpu_s', 'cpu_min_2core', 'images_trained')},
               valid_f1_macro=round(sum(r['valid_f1_macro'] for r in recs) / len(recs), 4))
    res['eval'] = predict(out, a, models=runs)
    append_record(res, a.records)

def repredict(a):
    "Record the runs of recipe `a.repredict_of` (one per seed) predicted again with today's code: their training and its compute are theirs."
    for seed in a.seeds:
        rec, run = earlier_record(a.records, a.repredict_of, seed), ROOT/'runs'/'budget'/f'{a.repredict_of}-s{seed}'
        out = ROOT/'runs'/'budget'/f'{a.name}-s{seed}'
        res = {k: v for k, v in rec.items() if k not in ('eval', 'commit', 'date', 'load_before', 'load_after')}
        res.update(name=a.name, repredict_of=a.repredict_of, run=rel(run), load_before=round(os.getloadavg()[0], 2))
        res['eval'] = predict(out, a, models=[run])
        res['load_after'] = round(os.getloadavg()[0], 2)
        append_record(res, a.records)

def images_trained(out:Path, folds) -> int:
    "Training images x epochs of the run (summed over the folds): the compute measure that does not depend on the machine's speed."
    ms = [json.loads((out/f'fold{k}'/'metrics.json').read_text()) for k in range(folds)] if folds else [json.loads((out/'metrics.json').read_text())]
    return sum(m['train_images'] * m['epochs_run'] for m in ms)

def settings(out:Path, folds) -> dict:
    "The resolved training settings of the run (of its first fold for a k-fold folder), as saved beside the model."
    conf = json.loads(((out/'fold0') if folds else out).joinpath('config.json').read_text())['train']
    if conf.get('pseudo_labels'): conf['pseudo_labels'] = rel(conf['pseudo_labels'])   # no path of this machine in the records
    return {k: v for k, v in conf.items() if k not in ('data', 'out', 'fold')}

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('name', help='name of the recipe in the records (and of its run folder under runs/budget/)')
    p.add_argument('--data', default=str(DATA))
    p.add_argument('--seeds', type=int, nargs='+', default=[42])
    p.add_argument('--folds', type=int, default=None, help='train a k-fold ensemble (train --folds K)')
    p.add_argument('--baseline-settings', action='store_true', help='128x96 whole photos, no augmentation (the official baseline setting)')
    p.add_argument('--predict', default='plain,tta,pool,tta+pool', help='comma-separated predict variants (options joined by +)')
    p.add_argument('--reuse', action='store_true', help='keep a finished run folder instead of training again')
    p.add_argument('--pseudo-from', metavar='NAME', help='a second round: train on the eval images that recipe NAME (same seed) labels (train --pseudo-labels); its compute is added')
    p.add_argument('--ensemble-of', metavar='NAME', help='no training: predict with the runs of recipe NAME, one per --seeds, together')
    p.add_argument('--repredict-of', metavar='NAME', help="no training: predict again, with today's code, the runs of recipe NAME (one record per --seeds)")
    p.add_argument('--records', default=str(RECORDS))
    p.epilog = 'Everything after -- goes to `mask-fastai train`.'
    argv = sys.argv[1:]
    cut = argv.index('--') if '--' in argv else len(argv)
    a = p.parse_args(argv[:cut]); a.extra = argv[cut + 1:]
    if a.ensemble_of: return ensemble(a)
    if a.repredict_of: return repredict(a)
    for seed in a.seeds:
        out = ROOT/'runs'/'budget'/f'{a.name}-s{seed}'
        print(f"{a.name} seed {seed}: {' '.join(map(str, a.extra))}", flush=True)
        res = dict(bench='budget', name=a.name, seed=seed, folds=a.folds, flags=' '.join((BASELINE if a.baseline_settings else []) + a.extra),
                   data=rel(a.data), run=rel(out), load_before=round(os.getloadavg()[0], 2))
        if a.pseudo_from: res['pseudo_from'] = a.pseudo_from
        res.update(train(out, a, seed, pseudo_flags(a, seed) if a.pseudo_from else []))
        if a.pseudo_from:   # the budget of a second round includes its first
            r1 = earlier_record(a.records, a.pseudo_from, seed)
            res['round1_cpu_min_2core'] = r1['cpu_min_2core']
            res['cpu_min_2core'] = round(res.get('cpu_min_2core', 0) + r1['cpu_min_2core'], 2)
        m = json.loads((out/'metrics.json').read_text())
        res['valid_f1_macro'] = m.get('oof_f1_macro', m.get('f1_macro'))
        res['valid_kind'] = 'oof' if a.folds else 'holdout'
        res['images_trained'] = images_trained(out, a.folds)
        res['settings'] = settings(out, a.folds)
        res['eval'] = predict(out, a)
        res['load_after'] = round(os.getloadavg()[0], 2)
        append_record(res, a.records)

if __name__ == '__main__': main()
