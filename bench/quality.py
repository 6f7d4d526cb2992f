"""Train a recipe on maskbench-dev's train folder, predict its eval folder, score it with the answer key.

    python bench/quality.py                                  # the default recipe
    python bench/quality.py --baseline-settings --epochs 2   # the official baseline's settings: 128x96, no crop, no augmentation
    python bench/quality.py --epochs 5 -- --cutmix half      # anything after -- goes to `mask-fastai train`

Prints macro F1, per-task F1 and wall time per step; everything goes through the same CLI a user runs."""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

from common import ROOT, MASKBENCH as DATA, rel, append_record

def sh(*args):
    t = time.time()
    subprocess.run(['mask-fastai', *map(str, args)], check=True)
    return time.time() - t

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default=str(DATA))
    p.add_argument('--out', default=str(ROOT/'runs'/'bench-quality'))
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--baseline-settings', action='store_true', help='128x96 whole photos, no augmentation (the official baseline setting)')
    p.add_argument('--tta', action='store_true')
    p.add_argument('extra', nargs='*', help='extra `mask-fastai train` flags (after --)')
    a = p.parse_args()
    out = Path(a.out)
    train = ['train', '--data', a.data, '--out', out, '--force', '--epochs', a.epochs, '--wandb', 'off', '--quiet']
    if a.baseline_settings: train += ['--size', '128', '96', '--crop', 'false', '--aug', 'none', '--age-relabel-from', 'none']
    t_train = sh(*train, *a.extra)
    sub = out/'eval_submission.csv'
    t_pred = sh('predict', '--data', a.data, '--models', out, '--out', sub, '--force', '--quiet', *(['--tta'] if a.tta else []))
    scores = json.loads(subprocess.run(['mask-fastai', 'score', sub, Path(a.data)/'answers'/'eval_labels.csv', '--json'],
                                       check=True, capture_output=True, text=True).stdout)
    val = json.loads((out/'metrics.json').read_text())
    res = dict(settings='baseline (128x96, no crop, no aug)' if a.baseline_settings else 'default recipe', epochs=a.epochs, extra=' '.join(a.extra),
               eval_f1_macro=round(scores['f1_macro'], 4), eval_accuracy=round(scores['accuracy'], 4),
               eval_mask_f1=round(scores['mask_f1'], 4), eval_gender_f1=round(scores['gender_f1'], 4), eval_age_f1=round(scores['age_f1'], 4),
               valid_f1_macro=val['f1_macro'], train_s=round(t_train, 1), predict_s=round(t_pred, 1))
    print(json.dumps(res, indent=2))
    append_record(res)

if __name__ == '__main__': main()
