"End-to-end checks of mask_fastai.tracking that need a fresh process (the notebook holds the specification and the offline runs)."
import subprocess, sys


def test_import_and_off_start_nothing(tmp_path):
    "Importing the module and `mode='off'` start no run and write nothing, not even `./wandb` in the working folder."
    wb = tmp_path/'wb'
    code = "\n".join(["import wandb", "from mask_fastai.tracking import *",
                      f"assert wandb_callbacks('off', dir=r'{wb}') == []",
                      f"with wandb_run('off', dir=r'{wb}') as cbs: assert cbs == []",
                      "assert wandb.run is None"])
    subprocess.run([sys.executable, '-c', code], check=True, cwd=tmp_path, timeout=120)
    assert not wb.exists() and not (tmp_path/'wandb').exists()
