"""How many pseudo-labels a threshold keeps, and how many of them are right: on a run's validation people (their 7 photos
pooled by the true person, as identity pooling pools eval photos) and, with an answer key, on the eval predictions that
`train --pseudo-labels` would read. Choose `--pseudo-threshold` on the validation rows; the eval rows only check it.

    python bench/pseudo_threshold.py runs/budget/lite1-relabel58-5ep-s42 --probs runs/budget/lite1-relabel58-5ep-s42/bench/tta_pool.probs.csv
"""
import argparse, sys
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mask_fastai.core import PROB_COLS
from mask_fastai.ensemble import read_probs
from mask_fastai.identities import pool_identities
from common import MASKBENCH

def kept(P, truth, thresholds) -> list:
    "Per threshold: images whose top class probability reaches it, their share, and the share of them whose top class is `truth`."
    conf, right = P.max(1), P.argmax(1) == truth
    return [dict(threshold=t, images=int((conf >= t).sum()), share=round((conf >= t).mean(), 3),
                 labels_right=round(right[conf >= t].mean(), 3) if (conf >= t).any() else None) for t in thresholds]

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('run', help='a run folder (its valid_probs.csv)')
    p.add_argument('--probs', help='a .probs.csv of the eval folder written by predict --pool-identities')
    p.add_argument('--key', default=str(MASKBENCH/'answers'/'eval_labels.csv'))
    p.add_argument('--thresholds', type=float, nargs='+', default=[0.5, 0.6, 0.7, 0.8, 0.9])
    a = p.parse_args()
    v = read_probs(Path(a.run)/'valid_probs.csv', id_col='path')
    P = pool_identities(v[PROB_COLS].to_numpy(), pd.factorize(v.person)[0])
    print(f'validation people ({len(v)} photos, pooled by person; all labels right: {(P.argmax(1) == v.label).mean():.3f})')
    print(pd.DataFrame(kept(P, v.label.to_numpy(), a.thresholds)).to_string(index=False))
    if a.probs:
        e = read_probs(a.probs)
        key = pd.read_csv(a.key).set_index('ImageID').loc[e.ImageID]
        print(f'\neval ({len(e)} photos, identity-pooled as predicted), checked with {a.key}')
        print(pd.DataFrame(kept(e[PROB_COLS].to_numpy(), key.ans.to_numpy(), a.thresholds)).to_string(index=False))

if __name__ == '__main__': main()
