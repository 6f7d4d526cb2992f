"""Inference options on maskbench-dev's eval folder, scored with its answer key: plain, flip TTA, decision offsets,
person-consistent prediction (identity pooling), and both; for a run folder or a k-fold folder (ensemble of its folds).

    python bench/inference.py --models runs/bench-quality         # one run (offsets fitted on its valid_probs.csv)
    python bench/inference.py --models runs/kf5                   # k-fold ensemble (offsets fitted on oof.csv)
    python bench/inference.py --models runs/kf5/fold0 --mislabels-of runs/kf5   # also: mislabel finder vs the planted errors

Everything goes through the `mask-fastai` commands a user runs (tune, predict, score, mislabels); prints macro F1 and
seconds per variant, and the grouping purity of identity pooling against the key's person ids."""
import argparse, json, subprocess, time
from pathlib import Path
import pandas as pd

from common import ROOT, MASKBENCH as DATA, rel, append_record

def sh(*args, capture=False):
    t = time.time()
    r = subprocess.run(['mask-fastai', *map(str, args)], check=True, capture_output=capture, text=True)
    return time.time() - t, r.stdout

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', required=True)
    p.add_argument('--data', default=str(DATA))
    p.add_argument('--variants', default='plain,tta,offsets,pool,pool+offsets,tta+pool+offsets')
    p.add_argument('--mislabels-of', default=None, metavar='KFOLD_DIR', help='also rank mislabel candidates from its oof.csv and score them')
    a = p.parse_args()
    from mask_fastai.identities import group_purity
    m, key = Path(a.models), Path(a.data)/'answers'/'eval_labels.csv'
    out = m/'bench-inference'; out.mkdir(exist_ok=True)
    res = dict(bench='inference', models=rel(m))
    t_tune, txt = sh('tune', '--models', m, '--out', out/'offsets.json', capture=True)
    res['tune_s'] = round(t_tune, 1)
    for v in a.variants.split(','):
        opts = v.split('+')
        extra = (['--tta'] if 'tta' in opts else []) + (['--offsets', out/'offsets.json'] if 'offsets' in opts else []) + \
                ['--pool-identities' if 'pool' in opts else '--no-pool-identities']
        sub = out/f"{v.replace('+', '_')}.csv"
        t, _ = sh('predict', '--data', a.data, '--models', m, '--out', sub, '--force', '--quiet', *extra)
        s = json.loads(sh('score', sub, key, '--json', capture=True)[1])
        res[f'{v}_f1'], res[f'{v}_s'] = round(s['f1_macro'], 4), round(t, 1)
        if 'pool' in opts and 'group_purity' not in res:
            pr, k = pd.read_csv(sub.with_suffix('.probs.csv')), pd.read_csv(key)
            res['group_purity'] = {n: round(float(x), 4) for n, x in group_purity(pr['group'].to_numpy(), k.set_index('ImageID').loc[pr.ImageID, 'person'].to_numpy()).items()}
        print(v, res[f'{v}_f1'], res[f'{v}_s'], flush=True)
    if a.mislabels_of:
        t, txt = sh('mislabels', '--models', a.mislabels_of, '--key', Path(a.data)/'answers'/'train_mislabels.csv', '--k', '10',
                    '--out', out/'mislabels', capture=True)
        res['mislabels'] = json.loads(txt)['key']; res['mislabels_s'] = round(t, 1)
    print(json.dumps(res, indent=2))
    append_record(res)

if __name__ == '__main__': main()
