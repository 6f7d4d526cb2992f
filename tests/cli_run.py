"""Run `mask-fastai` commands from the tests, and check their errors.

Most calls go through `mask_fastai.cli.main` in this process: the same entry point the console script calls, with the
same exit codes and the same stderr, without paying Python's start-up and the torch/timm/fastai imports again for each
of the commands the tests run (about 5 s each on the 2-core CI machine). A command that must be its own process
(a resource limit, a signal, the installed console script itself) passes `subprocess=True` or `preexec_fn`."""
import contextlib, hashlib, io, os, subprocess as sp, sys, traceback, warnings
from pathlib import Path
from unittest import mock

TINY = ['--size', '32', '24', '--epochs', '1', '--bs', '16', '--num-workers', '0', '--wandb', 'off', '--quiet']

def _in_process(argv, env):
    "Exit code, stdout and stderr of `main(argv)` under `env`, as the console script would give them."
    from mask_fastai.cli import main
    out, err, code = io.StringIO(), io.StringIO(), 0
    with mock.patch.dict(os.environ, env, clear=True), warnings.catch_warnings(), \
         contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: main(argv)
        except SystemExit as e:
            if isinstance(e.code, str): print(e.code, file=sys.stderr); code = 1
            else: code = e.code or 0
        except BaseException:   # what would reach the user as a traceback
            traceback.print_exc(); code = 1
    return sp.CompletedProcess(['mask-fastai', *argv], code, out.getvalue(), err.getvalue())

def run(*args, env, check=True, preexec_fn=None, subprocess=False):
    "Run `mask-fastai *args`; with `check`, assert it succeeded."
    argv = [str(a) for a in args]
    if subprocess or preexec_fn:
        r = sp.run(['mask-fastai', *argv], capture_output=True, text=True, env=env, timeout=600, preexec_fn=preexec_fn)
    else: r = _in_process(argv, env)
    if check: assert r.returncode == 0, r.stdout + r.stderr
    return r

def fails(*args, env, preexec_fn=None, subprocess=False) -> str:
    "The one error line of a command that must fail: non-zero exit, no traceback, only one-line warnings before it."
    r = run(*args, env=env, check=False, preexec_fn=preexec_fn, subprocess=subprocess)
    assert r.returncode != 0, r.stdout[-1000:]
    assert 'Traceback' not in r.stderr and '\nerror: ' in '\n' + r.stderr, r.stderr[-3000:]
    other = [l for l in r.stderr[:('\n' + r.stderr).index('\nerror: ')].splitlines() if l.strip()]
    assert all(l.startswith('warning: ') for l in other), other
    return r.stderr[('\n' + r.stderr).index('\nerror: '):].strip()

def one_line(err:str) -> str:
    assert '\n' not in err, err
    return err

def sha(p) -> str: return hashlib.sha1(Path(p).read_bytes()).hexdigest()

def tree(d) -> dict:
    "`{relative path: sha1}` of every file under folder `d`: to prove a folder was left exactly as it was."
    d = Path(d)
    return {p.relative_to(d).as_posix(): sha(p) for p in sorted(d.rglob('*')) if p.is_file()}
