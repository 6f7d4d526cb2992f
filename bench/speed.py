"""Throughput of the data pipeline against the model-only ceiling, in one run (this machine is shared: trust the ratios).

    python bench/speed.py                              # maskbench-dev crops, 224 px bs 32 and 128 px bs 64
    python bench/speed.py --data DIR --batches 30      # another competition folder, fewer batches
    python bench/speed.py --rss DIR                    # peak RSS of reading DIR and training --batches batches on it
    python -c "from mask_fastai.demo import make_demo_data as m; m('x10', n_train=7000, n_eval=1)"   # a folder 10x maskbench-dev

For each setting it prints
- train: images/s of real training batches (cached face crops -> decode -> albumentations -> collate -> forward/backward/step,
  fastai Learner with the run's loss, metrics and callbacks) over images/s of the same steps on random tensors;
- predict: images/s of prediction as `predict` runs it, over images/s of the forward pass on random tensors: cold (the
  crops decoded first, `decoded_images` without cache) and warm (decoded images read from the cache, as for every model
  of an ensemble after the first, TTA variants and later submissions).
Face-crop throughput (cold detection vs cache hits) is in `bench/foundation.py`."""
import argparse, json, os, resource, sys, time
from pathlib import Path

from common import ROOT, MASKBENCH as DATA, rel, append_record

def model_only_train(learn, bs, hw, n):
    "img/s of forward/backward/step on random tensors: the ceiling a perfect input pipeline would reach."
    import torch
    model, opt, lf = learn.model.train(), learn.opt, learn.loss_func
    x = torch.randn(bs, 3, *hw).contiguous(memory_format=torch.channels_last); y = torch.randint(0, 18, (bs,))
    def step():
        loss = lf(model(x), y); loss.backward(); opt.step(); opt.zero_grad()
    for _ in range(3): step()
    t = time.perf_counter()
    for _ in range(n): step()
    return n * bs / (time.perf_counter() - t)

def real_train(learn, n):
    "img/s of `n` real training batches through `learn.fit` (after 3 warm-up batches; the epoch is cut short)."
    from fastai.callback.core import Callback, CancelFitException
    class Clock(Callback):
        order = 99
        def __init__(self): self.i, self.t0, self.imgs = 0, None, 0
        def after_batch(self):
            if not self.training: return
            self.i += 1
            if self.i == 3: self.t0 = time.perf_counter()
            elif self.i > 3: self.imgs += len(self.learn.yb[0])
            if self.i == n + 3: self.t1 = time.perf_counter(); raise CancelFitException()
    c = Clock(); learn.fit(1, 1e-3, cbs=c)
    return c.imgs / (c.t1 - c.t0)

def model_only_predict(model, bs, hw, n, repeat=3):
    "img/s of the forward pass on random tensors, the best of `repeat` runs of `n` batches."
    import torch
    model.eval(); x = torch.randn(bs, 3, *hw).contiguous(memory_format=torch.channels_last)
    best = float('inf')
    with torch.no_grad():
        for _ in range(2): model(x)
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(n): model(x)
            best = min(best, time.perf_counter() - t)
    return n * bs / best

def real_predict(learn, paths, hw, stats, bs) -> dict:
    """Images/s of prediction as `predict` runs it (`decoded_images` + `DecodedDL` + `get_preds`): cold, decoding the crops
    first (nothing cached), and warm, reading them decoded from the cache (another model of an ensemble, TTA, a second
    submission); where the cold time goes (decoding alone, on every core, and in one thread); and through `image_dl`
    (fastai's per-image pipeline straight into the model, as `predict` did before)."""
    from mask_fastai.dataloaders import decoded_images, decode_all, DecodedDL, image_dl
    def preds(dl):
        with learn.no_bar(): learn.get_preds(dl=dl)
    def rate(f, repeat=3):
        "Images/s of `f`, the best of `repeat` runs (the machine is shared: the best run is the one least disturbed)."
        best = float('inf')
        for _ in range(repeat): t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
        return len(paths) / best
    preds(DecodedDL(decoded_images(paths[:bs], hw, cache=False), stats, bs))   # warm-up
    res = dict(cold=rate(lambda: preds(DecodedDL(decoded_images(paths, hw, cache=False), stats, bs))))
    decoded_images(paths, hw)   # into the cache
    res['warm'] = rate(lambda: preds(DecodedDL(decoded_images(paths, hw), stats, bs)))
    res['decode'], res['decode_1thread'] = rate(lambda: decode_all(paths, hw)), rate(lambda: decode_all(paths, hw, n_threads=1))
    res['image_dl'] = rate(lambda: preds(image_dl(paths, hw, stats, bs=bs)))
    return res

def setting(df, hw, bs, n, workers):
    from fastai.vision.all import ProgressCallback, noop
    from mask_fastai.config import TrainConfig
    from mask_fastai.prepare import run_dataloaders
    from mask_fastai.learner import mask_learner
    cfg = TrainConfig(size=hw, bs=bs, wandb='off', num_workers=workers, out=str(ROOT/'runs'/'bench-speed'))
    dls = run_dataloaders(df, cfg)
    learn = mask_learner(dls, cfg); learn.remove_cbs([ProgressCallback]); learn.logger = noop
    learn.create_opt()
    real = real_train(learn, n)
    ceil = model_only_train(learn, bs, hw, n)
    paths = list(df[df.is_valid].crop_path[:n * bs])
    p = real_predict(learn, paths, hw, dls.stats, bs)
    p_ceil = model_only_predict(learn.model, bs, hw, max(3, len(paths) // bs))
    return dict(size=list(hw), bs=bs, workers=dls.train.fake_l.num_workers, train_img_s=round(real, 1), train_ceiling_img_s=round(ceil, 1),
                train_ratio=round(real / ceil, 3), predict_img_s=round(p['cold'], 1), predict_ceiling_img_s=round(p_ceil, 1),
                predict_ratio=round(p['cold'] / p_ceil, 3), predict_warm_img_s=round(p['warm'], 1), predict_warm_ratio=round(p['warm'] / p_ceil, 3),
                decode_img_s=round(p['decode'], 1), decode_1thread_img_s=round(p['decode_1thread'], 1),
                predict_image_dl_img_s=round(p['image_dl'], 1), predict_image_dl_ratio=round(p['image_dl'] / p_ceil, 3))

def peak_rss(data, n, size):
    "Peak RSS (MB) of this process and of its worker processes after reading `data` and training `n` batches on whole photos."
    from fastai.vision.all import ProgressCallback, noop
    from mask_fastai.config import TrainConfig
    from mask_fastai.prepare import prepare_data, run_dataloaders
    from mask_fastai.learner import mask_learner
    cfg = TrainConfig(data=str(data), size=size, bs=32, crop=False, wandb='off', out=str(ROOT/'runs'/'bench-rss'))
    t = time.time(); df = prepare_data(cfg, progress=False); t_read = time.time() - t
    df_mb = df.memory_usage(deep=True).sum() / 2**20
    learn = mask_learner(run_dataloaders(df, cfg), cfg); learn.remove_cbs([ProgressCallback]); learn.logger = noop
    real_train(learn, n)
    mb = lambda who: resource.getrusage(who).ru_maxrss / 1024
    return dict(data=rel(data), images=len(df), dataframe_mb=round(df_mb, 1), read_s=round(t_read, 1),
                peak_rss_mb=round(mb(resource.RUSAGE_SELF), 1), peak_rss_workers_mb=round(mb(resource.RUSAGE_CHILDREN), 1))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default=str(DATA))
    p.add_argument('--batches', type=int, default=20, help='timed batches per measurement (default: 20)')
    p.add_argument('--workers', type=int, default=None, help='DataLoader workers (default: the library default)')
    p.add_argument('--settings', default='224x168:32,128x96:64', help='HxW:bs list (default: 224x168:32,128x96:64)')
    p.add_argument('--rss', default=None, metavar='DIR', help='measure peak RSS on DIR instead')
    a = p.parse_args()
    import torch
    print(f"torch threads {torch.get_num_threads()}, cores {os.cpu_count()}", flush=True)
    if a.rss:
        res = dict(bench='rss', **peak_rss(a.rss, a.batches, (128, 96)))
        print(json.dumps(res))
        append_record(res)
        return
    from mask_fastai.data import read_train
    from mask_fastai.faces import add_face_crops
    from mask_fastai.splits import person_holdout
    df = person_holdout(add_face_crops(read_train(a.data), progress=True), 0.2, seed=42)
    for s in a.settings.split(','):
        hw, bs = s.split(':'); hw = tuple(int(v) for v in hw.split('x'))
        res = setting(df, hw, int(bs), a.batches, a.workers)
        print(json.dumps(res), flush=True)
        append_record(dict(bench='speed', **res))

if __name__ == '__main__': main()
