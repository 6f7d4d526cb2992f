"""What a new user meets first, measured: the size of the install, `mask-fastai --help`, and the demo, cold (a fresh cache
folder: generate, crop, train, predict, score, report) and warm, with its output going to a file as on a shared server.

    python bench/frontdoor.py                 # appends one `frontdoor` record to bench/results.jsonl

The README's figures for the install and the demo come from the last such record."""
import json, os, re, shutil, statistics, subprocess, sys, sysconfig, tempfile, time
from pathlib import Path
from common import append_record

def du(paths) -> int:
    "Bytes under `paths` (files counted once, links not followed)."
    seen, n = set(), 0
    for p in paths:
        for f in Path(p).rglob('*'):
            try: st = f.lstat()
            except OSError: continue
            if f.is_file() and not f.is_symlink() and st.st_ino not in seen: seen.add(st.st_ino); n += st.st_size
    return n

def install_size() -> dict:
    "MB of the environment's site-packages, and of torch with the CUDA libraries it brings (`nvidia-*`, `triton`)."
    sp = Path(sysconfig.get_paths()['purelib'])
    heavy = [p for p in sp.iterdir() if p.name in ('torch', 'triton') or p.name.startswith('nvidia')]
    return dict(site_packages_mb=round(du([sp]) / 2**20), torch_and_cuda_mb=round(du(heavy) / 2**20))

def help_seconds(n:int=5) -> float:
    "Median wall seconds of `mask-fastai --help` over `n` runs."
    ts = []
    for _ in range(n):
        t = time.perf_counter(); subprocess.run(['mask-fastai', '--help'], capture_output=True, check=True); ts.append(time.perf_counter() - t)
    return round(statistics.median(ts), 2)

def demo(cache:Path, log:Path) -> dict:
    "Wall seconds of `mask-fastai demo > log 2>&1` in a temporary folder with cache folder `cache`; the longest silence of its log; its scores."
    cwd = Path(tempfile.mkdtemp())
    env = {**os.environ, 'MASK_FASTAI_CACHE': str(cache)}
    t0 = time.perf_counter(); last, gap = t0, 0.
    with open(log, 'w') as f:
        p = subprocess.Popen(['mask-fastai', 'demo'], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in p.stdout:
            now = time.perf_counter(); gap = max(gap, now - last); last = now; f.write(line)
    assert p.wait() == 0, log.read_text()[-2000:]
    text = log.read_text()
    shutil.rmtree(cwd, ignore_errors=True)
    return dict(seconds=round(time.perf_counter() - t0, 1), longest_silence_s=round(gap, 1), carriage_returns=text.count('\r'),
                valid_f1=float(re.search(r'validation macro F1 ([\d.]+)', text).group(1)), eval_f1=float(re.search(r'eval macro F1 ([\d.]+)', text).group(1)))

def _duration(s:float) -> str: return f"{int(s // 60)} min {int(s % 60)} s" if s >= 60 else f"{s:.0f} s"

def readme_paragraph(fd:dict) -> str:
    "The README's paragraph on the install and the demo, from a `frontdoor` record and the demo's own settings."
    from mask_fastai.cli import DEMO_DEFAULTS, build_parser
    demo = next(a for a in build_parser()._actions if a.dest == 'command').choices['demo']
    people = {a.dest: a.default for a in demo._actions if a.dest in ('train_people', 'eval_people')}
    held = round(people['train_people'] * 0.2)
    return (f"`pip install -e .` brings fastai, timm, albumentations, wandb and PyTorch: {fd['site_packages_mb'] / 1024:.1f} GB in the environment, "
            f"{fd['torch_and_cuda_mb'] / 1024:.1f} GB of it torch with the CUDA libraries it installs even on a CPU-only machine. "
            f"`mask-fastai demo` then draws {people['train_people'] + people['eval_people']} synthetic people in the competition's layout, crops their faces, "
            f"trains {DEMO_DEFAULTS['epochs']} epochs on {people['train_people'] - held} of them, validates on {held}, predicts {people['eval_people']} new ones, scores and reports: "
            f"{_duration(fd['demo_cold']['seconds'])} the first time on 2 CPU cores ({_duration(fd['demo_warm']['seconds'])} once the data and crops are cached), "
            f"eval macro F1 {fd['demo_cold']['eval_f1']:.3f} (chance is about 0.06). It ends by saying where everything went (the demo data and the crops "
            f"in the cache folder `~/.cache/mask_fastai`, or `$MASK_FASTAI_CACHE`; the run, its submission and its report in `runs/demo`) and what to try next. "
            f"In a terminal it shows progress bars; into a file (`mask-fastai demo > demo.log`) it writes one plain line per step, never more than "
            f"{max(fd['demo_cold']['longest_silence_s'], fd['demo_warm']['longest_silence_s']):.0f} s apart. `python bench/frontdoor.py` measures all this again.")

def main():
    res = dict(bench='frontdoor', **install_size(), help_s=help_seconds(), load_before=round(os.getloadavg()[0], 2))
    cache = Path(tempfile.mkdtemp())
    log = Path(tempfile.mkdtemp())/'demo.log'
    res['demo_cold'] = demo(cache, log)
    res['demo_warm'] = demo(cache, log)
    res['demo_log_lines'] = len(log.read_text().splitlines())
    shutil.rmtree(cache, ignore_errors=True)
    append_record(res)

if __name__ == '__main__': main()
