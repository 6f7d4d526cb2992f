"Repository-level checks: the README and CI agree, the README is generated from index.ipynb, no big files in git."
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def readme_commands():
    return re.findall(r'```bash\n(.*?)\n```', (ROOT/'README.md').read_text(), re.S)

def test_ci_runs_the_readme_test_command_verbatim():
    cmds = readme_commands()
    test_cmd = [c for c in cmds if 'nbdev-test' in c and 'pytest' in c]
    assert len(test_cmd) == 1, cmds
    ci = (ROOT/'.ci'/'run').read_text().splitlines()
    assert test_cmd[0].strip() in [l.strip() for l in ci]

def test_quick_start_has_exactly_two_commands():
    md = (ROOT/'README.md').read_text()
    qs = md.split('## Install and run the demo', 1)[1].split('\n## ', 1)[0]
    assert len(re.findall(r'```bash\n', qs)) == 2
    assert 'mask-fastai demo' in qs

def test_readme_is_generated_from_index_notebook():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'nb2readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_readme_is_a_front_page():
    "What a new user needs on one page; the benchmark tables, plot and findings live in bench/README.md."
    md = (ROOT/'README.md').read_text()
    assert len(md.splitlines()) <= 150
    assert '(bench/README.md)' in md and (ROOT/'bench'/'README.md').exists()

def test_readme_figures_come_from_the_records():
    "The install and demo paragraph and the results table are what the code prints from bench/results.jsonl today."
    sys.path.insert(0, str(ROOT/'bench'))
    from frontdoor import readme_paragraph
    from budget_table import headline, records
    from mask_fastai.compare import read_records
    md = (ROOT/'README.md').read_text()
    assert readme_paragraph(read_records(bench='frontdoor')[-1]) in md
    assert headline(records()) in md

def test_benchmark_page_is_what_the_records_give():
    r = subprocess.run([sys.executable, str(ROOT/'bench'/'budget_table.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_no_large_files_tracked():
    files = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()   # CI runs on a clone: git must answer
    assert 'README.md' in files
    big = [f for f in files if (ROOT/f).is_file() and (ROOT/f).stat().st_size > 1_000_000]
    assert not big, big


# The shape of the code (issue: one idea per module, short functions, no cycles)
import ast, json

LIB = ROOT/'mask_fastai'

def lib_modules():
    return {p.stem: p for p in sorted(LIB.glob('*.py')) if p.stem not in ('__init__', '_modidx')}

def test_no_function_over_50_lines():
    long = []
    for name, p in lib_modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1 + len(node.decorator_list)
                if n > 50: long.append(f'{name}.{node.name}: {n} lines')
    assert not long, long

def export_cells():
    for nb in sorted((ROOT/'nbs').rglob('*.ipynb')):
        for i, c in enumerate(json.loads(nb.read_text())['cells']):
            src = ''.join(c['source'])
            if c['cell_type'] == 'code' and src.lstrip().startswith(('#| export', '#|export')): yield nb, i, src

def test_no_export_cell_over_60_lines():
    long = [f'{nb.relative_to(ROOT)} cell {i}: {len(src.splitlines())} lines' for nb, i, src in export_cells() if len(src.splitlines()) > 60]
    assert not long, long

def test_no_unittest_in_the_library():
    used = [n for n, p in lib_modules().items() if 'unittest' in p.read_text()]
    assert not used, used

def imports_of(p) -> set:
    "Modules of mask_fastai that module file `p` imports anywhere (top level or inside functions)."
    res = set()
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if (node.level == 1 and not mod) or (node.level == 0 and mod == 'mask_fastai'): res.update(a.name for a in node.names)
            elif node.level == 1: res.add(mod.split('.')[0])
            elif mod.startswith('mask_fastai.'): res.add(mod.split('.')[1])
        elif isinstance(node, ast.Import):
            res.update(a.name.split('.')[1] for a in node.names if a.name.startswith('mask_fastai.'))
    return res

def test_no_import_cycle():
    mods = lib_modules()
    graph = {m: imports_of(p) & set(mods) for m, p in mods.items()}
    seen, stack, cycles = set(), [], []
    def visit(m):
        if m in stack: cycles.append(stack[stack.index(m):] + [m]); return
        if m in seen: return
        seen.add(m); stack.append(m)
        for n in sorted(graph[m]): visit(n)
        stack.pop()
    for m in sorted(graph): visit(m)
    assert not cycles, cycles

def notebook_of(p) -> str:
    "The notebook a module is exported from (its `File to edit` header), e.g. `17_prepare`."
    return re.search(r'File to edit: \.\./nbs/(\S+)\.ipynb', p.read_text()).group(1)

def test_modules_import_only_earlier_notebooks():
    "Data moves forward only: a module imports (at the top or inside a function) only modules of notebooks that come before its own."
    mods = lib_modules()
    forward = [f'{m} ({notebook_of(p)}) imports {i} ({notebook_of(mods[i])})' for m, p in mods.items() for i in sorted(imports_of(p) & set(mods))
               if notebook_of(mods[i]) > notebook_of(p)]
    assert not forward, forward

def test_test_fixtures_live_in_test_utils():
    import mask_fastai.test_utils as tu
    fixtures = set(tu.__all__)
    elsewhere = [f'{n}.{node.name}' for n, p in lib_modules().items() if n != 'test_utils'
                 for node in ast.parse(p.read_text()).body if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in fixtures]
    assert not elsewhere, elsewhere
    used = [n for n, p in lib_modules().items() if n != 'test_utils' and 'test_utils' in imports_of(p)]
    assert not used, f'library modules must not import test_utils: {used}'


# Notebooks ship executed (issue: the course): what a reader sees on GitHub is what the code printed and drew
SKIP_FLAGS = ('notest', 'slow', 'cuda')   # cells gated by tst_flags are not run by nbdev-test; `eval: false` is not allowed on code

def notebooks():
    return sorted(p for p in (ROOT/'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)

def gated(src:str) -> bool:
    return any(re.match(rf'#\|\s*({"|".join(SKIP_FLAGS)})\b', l.strip()) for l in src.splitlines())

FIGURE_CALLS = ('plt.subplots(', 'show_batch(', 'show_results(', 'plot_top_losses(', 'lr_find(', '.plot(')

def draws(src:str) -> bool:
    "A cell that runs (not an export definition, not gated) and calls a plotting function."
    if gated(src) or re.search(r'^#\|\s*export', src, re.M) or 'show_plot=False' in src: return False
    return any(f in src for f in FIGURE_CALLS)

def test_every_notebook_is_committed_executed_with_outputs():
    "`nbdev-clean` drops execution counts but keeps outputs: every notebook shows something, every figure cell its figure."
    silent, blank = [], []
    for nb in notebooks():
        cells = [c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
        if cells and not any(c.get('outputs') for c in cells): silent.append(str(nb.relative_to(ROOT)))
        blank += [f'{nb.relative_to(ROOT)} cell {i}' for i, c in enumerate(cells) if not c.get('outputs')
                  and draws(''.join(c['source']))]
    assert not silent, f'notebooks without a single output (run `nbdev-test --save` on them): {silent}'
    assert not blank, f'figure cells committed without their figure: {blank[:10]}'

def test_notebooks_stay_small():
    total = sum(p.stat().st_size for p in notebooks())
    assert total < 15_000_000, f'nbs/ notebooks hold {total/1e6:.1f} MB (at most 15 MB: smaller figures, lower dpi)'
    big = [f'{p.relative_to(ROOT)}: {p.stat().st_size // 1000} KB' for p in notebooks() if p.stat().st_size > 1_000_000]
    assert not big, big

NOISE = {'\r': 'a progress bar redrawn in place', '█': 'progress-bar text', 'Better model found': "SaveModelCallback's chatter",
         'Traceback (most recent call last)': 'a traceback', 'site-packages': 'a library path'}
LESSON_NOISE = {'/tmp/': 'a temporary path'}   # the library notebooks show where their commands wrote; a lesson shows results

def _outputs(nb):
    for i, c in enumerate(json.loads(nb.read_text())['cells']):
        for o in c.get('outputs', []): yield i, o

def _text(o) -> str:
    if o.get('output_type') == 'stream': return ''.join(o.get('text', ''))
    data = o.get('data', {})
    return ''.join(data.get('text/plain', '')) + ''.join(data.get('text/html', '')) + ''.join(data.get('text/markdown', ''))

def test_notebook_outputs_hold_no_noise():
    "What a reader sees under the code: no progress bars, chatter, tracebacks, warnings on stderr or paths of this machine."
    bad = []
    for nb in notebooks():
        for i, o in _outputs(nb):
            where = f'{nb.relative_to(ROOT)} cell {i}'
            if o.get('output_type') == 'error': bad.append(f'{where}: an error output')
            if o.get('output_type') == 'stream' and o.get('name') == 'stderr': bad.append(f'{where}: stderr ({"".join(o["text"])[:80]!r})')
            noise = {**NOISE, **(LESSON_NOISE if nb.parent.name == 'course' else {})}
            bad += [f'{where}: {why}' for s, why in noise.items() if s in _text(o)]
    assert not bad, bad[:15]

def _png_size_dpi(b64:str) -> tuple:
    import base64, io
    from PIL import Image
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    return im.size, im.info.get('dpi', (None,))[0]

def test_lesson_figures_are_readable():
    "Lesson figures at least 400x150 pixels, drawn at 90 dpi or more (`course_style`): text a reader can read on GitHub."
    bad = []
    for nb in sorted((ROOT/'nbs'/'course').glob('*.ipynb')):
        for i, o in _outputs(nb):
            png = o.get('data', {}).get('image/png')
            if not png: continue
            (w, h), dpi = _png_size_dpi(png)
            if w < 400 or h < 150 or (dpi is not None and dpi < 89.5): bad.append(f'{nb.name} cell {i}: {w}x{h} px at {dpi} dpi')
    assert not bad, bad

def test_readme_design_table_lists_every_notebook_and_its_module():
    "The README's design table stays true: one row per library notebook, with the module it exports."
    rows = dict(re.findall(r'^\| `(\w+)` \| `(\w+)` \|', (ROOT/'README.md').read_text(), re.M))
    actual = {}
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        src = ''.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        m = re.search(r'#\| default_exp (\w+)', src)
        if m: actual[nb.stem] = m.group(1)
    assert rows == actual, (set(rows.items()) ^ set(actual.items()))
