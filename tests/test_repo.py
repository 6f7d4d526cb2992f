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
    qs = md.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    assert len(re.findall(r'```bash\n', qs)) == 2
    assert 'mask-fastai demo' in qs

def test_readme_is_generated_from_index_notebook():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'nb2readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_no_large_files_tracked():
    try: files = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError): return
    big = [f for f in files if (ROOT/f).is_file() and (ROOT/f).stat().st_size > 1_000_000]
    assert not big, big
