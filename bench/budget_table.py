"""The benchmark page, `bench/README.md`, from the budget records (`bench/budget.py`): one row per recipe with the mean over
its seeds and their spread, eval macro F1 on maskbench-dev's unseen people (plain, and with flip TTA + identity pooling),
the per-task F1, the >=60 recall, the compute; the plot of F1 against compute; and the findings, each a difference of two
recipes worked out from the same records.

    python bench/budget_table.py                      # print the table
    python bench/budget_table.py --write              # write bench/README.md and bench/f1_vs_compute.png
    python bench/budget_table.py --check              # exit 1 if bench/README.md is not what the records give
"""
import argparse, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np, pandas as pd
from mask_fastai.compare import bench_table

HERE = Path(__file__).resolve().parent
BASELINE = {'official baseline, 2 epochs': (0.22, 2), 'official baseline, 5 epochs': (0.37, 5)}   # its own code, our offline Lite0 (measured outside this repo)
BASELINE_IMG_S, TRAIN_IMAGES = 35, 3920   # its train speed here, and one epoch of maskbench-dev's training split (560 people x 7)
SCORES = {'plain_f1_macro': 'eval F1', 'pool_f1_macro': 'eval F1, pooled (`predict`\'s default)', 'tta+pool_f1_macro': 'eval F1, TTA + pooling', 'tta+pool_age_f1': 'age F1 (TTA + pooling)',
          'tta+pool_age60_recall': '>=60 recall (TTA + pooling)', 'valid_f1_macro': 'valid F1', 'cpu_min_2core': 'CPU-min (2 cores)'}

# The findings: recipe A against recipe B, each line worked out from the records (the same seeds, where both have them).
FINDINGS = [
    ('relabel58-5ep', 'default-5ep', 'Training ages from 58 counted as >=60 (the default)'),
    ('half-5ep', 'default-5ep', 'Half-face CutMix, before relabelling'),
    ('relabel58-half-5ep', 'relabel58-5ep', 'Half-face CutMix on top of relabelling (off by default)'),
    ('ce-5ep', 'default-5ep', 'Cross-entropy instead of focal loss (before relabelling)'),
    ('sampler-5ep', 'default-5ep', 'An age-group sampler (before relabelling)'),
    ('fine-5ep', 'relabel58-5ep', "The fine age head as it was (5-year bins, weight 1, border at 60)"),
    ('joint-5ep', 'relabel58-5ep', 'One 18-way head instead of three'),
    ('fine-border-5ep', 'relabel58-5ep', 'The fine age head with its border at 58, weight 0.1, a spread target'),
    ('dldl-5ep', 'relabel58-5ep', 'Label-distribution learning of the age (1-year bins)'),
    ('dldl-5ep-p2', 'relabel58-5ep', "Label-distribution learning, the same runs predicted with today's pooling (each person's age distribution pooled)"),
    ('ordinal-5ep', 'relabel58-5ep', 'Ordinal (CORAL) age head'),
    ('lite1-relabel58-5ep', 'relabel58-5ep', 'EfficientNet-Lite1 instead of Lite0'),
    ('relabel58-5fold-5ep', 'relabel58-5ep', 'Five folds of the defaults (soft vote) against one run'),
    ('joint18-5ep', 'relabel58-5ep', 'One 18-way head trained on the 18-way loss'),
    ('imgsplit-5ep', 'default-5ep', 'Validation on photos instead of people (valid F1 against eval F1)'),
]

def records() -> pd.DataFrame:
    "The budget records, one row per recipe and seed."
    return bench_table().query("bench == 'budget'")

def summary(t:pd.DataFrame) -> pd.DataFrame:
    "One row per recipe: the flags against today's defaults, the seeds, the mean of each score and its spread (half the range over seeds)."
    g = t.groupby('name', sort=False)
    cols = [c for c in SCORES if c in t]
    s = g[cols].mean().assign(seeds=g.seed.nunique(), flags=g['flags'].first())
    for c in ('plain_f1_macro', 'pool_f1_macro', 'tta+pool_f1_macro'): s[c + '_spread'] = (g[c].max() - g[c].min()) / 2
    for c in cols: s[c + '_n'] = g[c].count()   # seeds that measured this score (older records lack some prediction variants)
    return s.sort_values('cpu_min_2core')

def _cell(v, spread=None, digits=3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)): return ''
    return f'{v:.{digits}f}' + (f' ± {spread:.3f}' if spread is not None and spread > 0 else '')

def markdown(s:pd.DataFrame) -> str:
    cols = [c for c in SCORES if c in s]
    rows = ['| recipe | flags (`mask-fastai train`, against today\'s defaults) | seeds | ' + ' | '.join(SCORES[c] for c in cols) + ' |',
            '|---|---|---|' + '---|' * len(cols)]
    for n, r in s.iterrows():
        cells = [_cell(r[c], r.get(c + '_spread'), 1 if c == 'cpu_min_2core' else 3) + (f" ({r[c + '_n']} seed)" if 0 < r[c + '_n'] < r.seeds else '') for c in cols]
        rows.append(f"| {n} | `{r['flags']}` | {r.seeds} | " + ' | '.join(cells) + ' |')
    rows += [f'| {n} | (its own code) | 1 | {f1:.2f} |' + ' |' * (len(cols) - 2) + f' {ep * TRAIN_IMAGES / BASELINE_IMG_S / 60:.1f} |' for n, (f1, ep) in BASELINE.items()]
    return '\n'.join(rows)

def frontier(s:pd.DataFrame, col:str='tta+pool_f1_macro') -> pd.DataFrame:
    "The recipes no cheaper recipe beats: the best F1 at each budget."
    s, best, keep = s.sort_values('cpu_min_2core'), -1., []
    for n, r in s.iterrows():
        if r[col] > best: keep.append(n); best = r[col]
    return s.loc[keep]

def plot(s:pd.DataFrame, fn):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    col = 'tta+pool_f1_macro'
    err = s[col + '_spread'].to_numpy()
    ax.errorbar(s.cpu_min_2core, s[col], yerr=err, fmt='o', color='0.6', ms=5, capsize=2, label='a recipe (bars: the range over its seeds)')
    f = frontier(s)
    ax.plot(f.cpu_min_2core, f[col], '-o', color='C0', ms=7, label='the best at each budget (labelled)')
    for i, (n, r) in enumerate(f.iterrows()):   # neighbours labelled on alternate sides, so close recipes do not overprint
        ax.annotate(n, (r.cpu_min_2core, r[col]), fontsize=9, textcoords='offset points',
                    **(dict(xytext=(7, -10), ha='left') if i % 2 == 0 else dict(xytext=(-7, 7), ha='right')))
    bx = [ep * TRAIN_IMAGES / BASELINE_IMG_S / 60 for _, ep in BASELINE.values()]
    ax.plot(bx, [f1 for f1, _ in BASELINE.values()], 'k--s', ms=5, label='official baseline (its own code)')
    ax.set(xlabel='training CPU-minutes (CPU time / 2 cores)', ylabel='macro F1, flip TTA + identity pooling', ylim=(0.15, 0.75),
           title='maskbench-dev eval: 300 unseen people')
    ax.grid(alpha=.3); ax.legend(fontsize=9, loc='lower right'); fig.tight_layout(); fig.savefig(fn); plt.close(fig)

def findings(t:pd.DataFrame) -> list:
    "One line per finding whose two recipes both have records: the difference of their means, and per seed."
    lines = []
    for a, b, what in FINDINGS:
        ta, tb = t[t.name == a], t[t.name == b]
        if not len(ta) or not len(tb): continue
        col = 'valid_f1_macro' if a == 'imgsplit-5ep' else 'plain_f1_macro'
        d = {v: ta[v].mean() - tb[v].mean() for v in (col, 'pool_f1_macro', 'tta+pool_f1_macro') if v in t}
        seeds = sorted(set(ta.seed) & set(tb.seed))
        per = lambda v: [ta[ta.seed == s][v].iloc[0] - tb[tb.seed == s][v].iloc[0] for s in seeds]
        kind = 'valid F1' if col == 'valid_f1_macro' else 'plain'
        said = [f"{d[v]:+.3f} {name}" for v, name in ((col, kind), ('pool_f1_macro', 'pooled'), ('tta+pool_f1_macro', 'with TTA + pooling')) if pd.notna(d.get(v))]
        pooled = [v for v in per('pool_f1_macro') if pd.notna(v)] if 'pool_f1_macro' in t else []
        lines.append(f"- {what} (`{a}` against `{b}`, {ta.seed.nunique()} and {tb.seed.nunique()} seed(s)): {', '.join(said)}"
                     + (f"; per seed pooled {', '.join(f'{v:+.3f}' for v in pooled)}" if len(pooled) == len(seeds) and seeds else '')
                     + (f"; per seed with TTA + pooling {', '.join(f'{v:+.3f}' for v in per('tta+pool_f1_macro'))}" if seeds else '') + '.')
    return lines

def headline(t:pd.DataFrame) -> str:
    "The README's table: the official baseline, today's defaults, and the best recipe measured with two seeds or more within 30 CPU-minutes and within 2 CPU-hours."
    s = summary(t)
    multi = s[s.seeds >= 2]
    defaults = multi[multi['flags'] == '(the defaults)']
    rows = [('official baseline, 5 epochs (its own code)', None, BASELINE['official baseline, 5 epochs'][0], None, 5 * TRAIN_IMAGES / BASELINE_IMG_S / 60)]
    if len(defaults): rows.append((f"today's defaults (`{defaults.index[-1]}`)", defaults.iloc[-1], None, None, None))
    for budget in (30, 120):
        within = multi[multi.cpu_min_2core <= budget]
        if len(within):
            n = within['tta+pool_f1_macro'].idxmax()
            rows.append((f"best within {budget} CPU-minutes (`{n}`)", within.loc[n], None, None, None))
    out = ['| | eval F1 | eval F1, pooled (`predict`\'s default) | eval F1, TTA + pooling | age F1 | CPU-min | seeds |', '|---|---|---|---|---|---|---|']
    for name, r, f1, _, cpu in rows:
        if r is None: out.append(f'| {name} | {f1:.2f} | | | | {cpu:.1f} | |'); continue
        out.append(f"| {name} | {_cell(r['plain_f1_macro'], r['plain_f1_macro_spread'])} | {_cell(r['pool_f1_macro'], r['pool_f1_macro_spread'])} | {_cell(r['tta+pool_f1_macro'], r['tta+pool_f1_macro_spread'])} | "
                   f"{r['tta+pool_age_f1']:.3f} | {r['cpu_min_2core']:.1f} | {r['seeds']} |")
    return '\n'.join(out)

PAGE = """# Benchmarks

Every figure here comes from `bench/results.jsonl`, written by the command that measured it; this page and its plot are
made by `python bench/budget_table.py --write`, and a test checks they match the records.

**F1 against compute.** `python bench/budget.py NAME --seeds 42 43 -- FLAGS` trains a recipe (`mask-fastai train FLAGS`) on
maskbench-dev's train folder, predicts its eval folder (300 unseen people, 2100 photos) plainly, with flip TTA, with
identity pooling and with both, scores each with the answer key and appends one record per seed. Scores are macro F1 over
the 18 classes; `±` is half the range over the seeds (seed-to-seed noise on one split is about ±0.03); CPU-minutes are the
CPU time of the training process over 2 cores, so runs measured while other jobs shared the machine stay comparable.

{table}

![eval macro F1 against training CPU-minutes](f1_vs_compute.png)

## Findings

Each line is recipe A against recipe B from the records above; a difference inside the seed noise is no finding.

{findings}
"""

def page(t:pd.DataFrame) -> str:
    return PAGE.format(table=markdown(summary(t)), findings='\n'.join(findings(t)))

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--write', action='store_true', help='write bench/README.md and bench/f1_vs_compute.png')
    p.add_argument('--check', action='store_true', help='exit 1 if bench/README.md is not what the records give')
    a = p.parse_args()
    t = records()
    if a.check: sys.exit(0 if (HERE/'README.md').read_text() == page(t) else 'bench/README.md is out of date: run python bench/budget_table.py --write')
    if a.write:
        (HERE/'README.md').write_text(page(t)); plot(summary(t), HERE/'f1_vs_compute.png')
        print(f"wrote {HERE/'README.md'} and {HERE/'f1_vs_compute.png'}")
    else: print(markdown(summary(t)))
