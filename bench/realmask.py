"""Score a trained run's mask head on real photos of masked, unmasked and wrongly masked faces (../shared/data/realmask).

    python bench/realmask.py --models runs/bench-quality          # a run trained on maskbench-dev (e.g. by bench/quality.py)
    python bench/realmask.py --models runs/kf5 --tta

The realmask images are already face crops, so they go to the model as they are (no MTCNN); the mask marginal of the
18-class prediction is compared with the label. Prints per-class recall, macro F1 of the mask task and accuracy."""
import argparse, json, time
from pathlib import Path
import numpy as np, pandas as pd

from common import ROOT, DATA_ROOT, rel, append_record
DATA = DATA_ROOT/'realmask'
LABELS = {'wear': 0, 'incorrect': 1, 'not_wear': 2}

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', required=True, nargs='+', help='run folder(s) or k-fold folder(s); probabilities are averaged')
    p.add_argument('--data', default=str(DATA))
    p.add_argument('--tta', action='store_true')
    a = p.parse_args()
    from sklearn.metrics import f1_score, recall_score
    from mask_fastai.core import MASK_NAMES
    from mask_fastai.inference import load_runs, predict_probs
    from mask_fastai.dataloaders import image_dl
    from mask_fastai.ensemble import task_marginals
    lab = pd.read_csv(Path(a.data)/'labels.csv')
    bad = set(lab['mask']) - set(LABELS)
    if bad: raise SystemExit(f"{a.data}/labels.csv: unknown mask labels {sorted(bad)}")
    paths, y = [str(Path(a.data)/'images'/f) for f in lab.file], lab['mask'].map(LABELS).to_numpy()
    t = time.time()
    probs = np.mean([predict_probs(m, image_dl(paths, c['size'], c['stats']), tta=a.tta).numpy() for m, c in load_runs(a.models)], 0)
    pred = task_marginals(probs)['mask'].argmax(1)
    rec = recall_score(y, pred, labels=[0, 1, 2], average=None, zero_division=0)
    res = dict(bench='realmask', models=' '.join(rel(m) for m in a.models), tta=a.tta, images=len(y),
               **{f'recall_{n}': round(float(r), 4) for n, r in zip(MASK_NAMES, rec)},
               mask_f1_macro=round(float(f1_score(y, pred, labels=[0, 1, 2], average='macro', zero_division=0)), 4),
               accuracy=round(float((pred == y).mean()), 4), seconds=round(time.time() - t, 1))
    print(json.dumps(res, indent=2))
    append_record(res)

if __name__ == '__main__': main()
