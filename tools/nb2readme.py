"""Write README.md from nbs/index.ipynb (markdown cells as they are, code cells as fenced blocks, and for a code cell
marked `#| echo: false` its markdown output only: the README's figures are printed by code from the records).

nbdev's own `nbdev-readme` renders through Quarto, which this project does not require; this keeps
README.md a pure function of index.ipynb, and tests/test_repo.py checks the two are in sync."""
import json, sys
from pathlib import Path

def nb2md(nb_path) -> str:
    cells = json.loads(Path(nb_path).read_text())['cells']
    out = []
    for c in cells:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#| hide'): continue
        if c['cell_type'] == 'markdown': out.append(src)
        elif src.startswith('#| echo: false'): out += [''.join(o['data']['text/markdown']).strip() for o in c.get('outputs', []) if 'text/markdown' in o.get('data', {})]
        elif c['cell_type'] == 'code': out.append(f"```python\n{src}\n```")
    return '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    root = Path(__file__).resolve().parent.parent
    md = nb2md(root/'nbs'/'index.ipynb')
    if '--check' in sys.argv:
        sys.exit(0 if (root/'README.md').read_text() == md else 'README.md is out of date: run python tools/nb2readme.py')
    (root/'README.md').write_text(md)
