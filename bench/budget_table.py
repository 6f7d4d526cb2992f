"""The F1-against-compute table and plot from the budget records (`bench/budget.py`): one row per recipe, the mean over
its seeds, eval macro F1 on maskbench-dev's unseen people with the plain prediction and with flip TTA + identity pooling.

    python bench/budget_table.py                           # markdown table
    python bench/budget_table.py --plot bench/f1_vs_compute.png
"""
import argparse, re, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mask_fastai.compare import bench_table

BASELINE = {'official baseline, 2 epochs': (0.22, 2), 'official baseline, 5 epochs': (0.37, 5)}   # its F1 after n epochs
BASELINE_IMG_S, TRAIN_IMAGES = 35, 3920   # its train speed here, and one epoch of maskbench-dev's training split (560 people x 7)
COLS = {'plain_f1_macro': 'eval F1', 'tta+pool_f1_macro': 'eval F1, TTA + pooling', 'valid_f1_macro': 'valid F1', 'cpu_min_2core': 'CPU-min (2 cores)'}

def budget_summary() -> 'pd.DataFrame':
    "One row per budget recipe: its flags against today's defaults, the number of seeds, and the mean of each score over them, by compute."
    t = bench_table().query("bench == 'budget'")
    g = t.groupby('name', sort=False)
    s = g[list(COLS)].mean().round(3).assign(seeds=g.seed.nunique(), flags=g.flags.first())   # flags against today's defaults
    return s.sort_values('cpu_min_2core')

def short(flags:str) -> str:
    "Flags with a second round's probability file named by its first round (the file differs per seed)."
    return re.sub(r'runs/budget/(\S+)-s\d+/bench/tta_pool\.probs\.csv', r'<\1, TTA + pooling>.probs.csv', flags)

def markdown(s) -> str:
    rows = ['| recipe | flags (`mask-fastai train`, against today\'s defaults) | seeds | ' + ' | '.join(COLS.values()) + ' |', '|---|---|---|' + '---|' * len(COLS)]
    rows += [f'| {n} | `{short(r["flags"])}` | {r.seeds} | ' + ' | '.join(f'{r[c]:.3f}' if c != 'cpu_min_2core' else f'{r[c]:.1f}' for c in COLS) + ' |' for n, r in s.iterrows()]
    rows += [f'| {n} | | | {f1:.2f} | | | {ep * TRAIN_IMAGES / BASELINE_IMG_S / 60:.1f} |' for n, (f1, ep) in BASELINE.items()]
    return '\n'.join(rows)

def plot(s, fn):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=80)
    ax.scatter(s.cpu_min_2core, s.plain_f1_macro, label='plain prediction')
    ax.scatter(s.cpu_min_2core, s['tta+pool_f1_macro'], marker='^', label='flip TTA + identity pooling')
    for n, r in s.iterrows(): ax.annotate(n, (r.cpu_min_2core, r.plain_f1_macro), fontsize=7, xytext=(3, -9), textcoords='offset points')
    bx = [ep * TRAIN_IMAGES / BASELINE_IMG_S / 60 for _, ep in BASELINE.values()]
    ax.plot(bx, [f1 for f1, _ in BASELINE.values()], 'k--o', label='official baseline (its own figures)')
    ax.set(xlabel='training CPU-minutes on a 2-core machine', ylabel='macro F1, maskbench-dev eval (300 unseen people)', ylim=(0.15, 0.7))
    ax.grid(alpha=.3); ax.legend(fontsize=8, loc='lower right'); fig.tight_layout(); fig.savefig(fn)
    print(f'wrote {fn}')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--plot', help='also draw F1 against CPU-minutes into this PNG')
    a = p.parse_args()
    s = budget_summary()
    print(markdown(s))
    if a.plot: plot(s, a.plot)
