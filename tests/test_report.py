"End to end: the report of a model on demo images, every file written and linked (the notebook holds the specification of each piece)."
import re
import numpy as np, pandas as pd, pytest, torch
from mask_fastai.core import N_CLASSES, PROB_COLS
from mask_fastai.data import read_train
from mask_fastai.demo import make_demo_data
from mask_fastai.model import create_mask_model
from mask_fastai.report import mask_report


def test_report_end_to_end(tmp_path):
    df = read_train(make_demo_data(tmp_path/'demo', n_train=3, n_eval=1, size=(48, 64)))
    torch.manual_seed(0)
    rep = mask_report(create_mask_model(pretrained=False), dict(size=[64, 48], stats=[[.5] * 3, [.25] * 3], train=dict(crop=False)),
                      df, tmp_path/'report', top_k=6, n_cam=2)
    out = tmp_path/'report'
    pngs = sorted(p.name for p in out.glob('*.png'))
    assert pngs == sorted(['confusion.png', 'confusion_tasks.png', 'top_losses.png', 'misclassified.png', 'tsne.png', 'gradcam.png'])
    page = (out/'report.html').read_text()
    assert sorted(set(re.findall(r'src="([^"]+\.png)"', page))) == pngs
    for f in ('per_class.csv', 'per_task.csv', 'predictions.csv', 'scores.json'): assert f'href="{f}"' in page and (out/f).exists()
    assert len(pd.read_csv(out/'per_class.csv')) == N_CLASSES and len(rep['per_class']) == N_CLASSES
    pred = pd.read_csv(out/'predictions.csv')
    assert len(pred) == len(df) and np.allclose(pred[PROB_COLS].sum(axis=1), 1, atol=1e-4)
    assert all(p.stat().st_size > 1000 for p in out.glob('*.png'))
    with pytest.raises(FileNotFoundError, match='not found'):
        mask_report(create_mask_model(pretrained=False), dict(size=[64, 48]), df.assign(path=df.path + '.missing'), tmp_path/'r2')
