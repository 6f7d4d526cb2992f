"What the bench scripts share: where the repository and the benchmark data are, paths as they go into the records, and appending a record."
import datetime, json, os, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = ROOT.parent/'shared'/'data'
MASKBENCH = DATA_ROOT/'maskbench-dev'
RECORDS = Path(os.environ.get('MASK_FASTAI_RECORDS', ROOT/'bench'/'results.jsonl'))   # the benchmark records (one JSON object per line)

def rel(p) -> str:
    "`p` relative to the repository, or `data:<path>` relative to the shared data folder; never an absolute path of this machine."
    p = Path(p).resolve()
    for base, tag in ((ROOT, ''), (DATA_ROOT, 'data:')):
        try: return tag + str(p.relative_to(base))
        except ValueError: pass
    return 'external:' + p.name

def git_commit() -> str:
    try: return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError: return ''

def append_record(res:dict, fn=None):
    "Append `res` (with the commit and date) as one line to the benchmark records and print it."
    res = {**res, 'commit': git_commit(), 'date': datetime.date.today().isoformat()}
    print(json.dumps(res), flush=True)
    with open(fn or RECORDS, 'a') as f: f.write(json.dumps(res) + '\n')
