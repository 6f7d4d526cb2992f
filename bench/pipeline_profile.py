"""Where the data pipeline's time goes: per-image cost of fastai's squish `Resize` vs `SquishResize`, of the table's `attrs`
copy on row access, and a cProfile of 8 training batches (one process, no model).

    python bench/pipeline_profile.py                      # maskbench-dev crops at 128x96, batch 64
    python bench/pipeline_profile.py --data DIR --size 224 168
    python bench/pipeline_profile.py --predict-run runs/bench-quality   # also a cProfile of predicting 960 crops with that run"""
import argparse, cProfile, io, os, pstats, time, timeit
from pathlib import Path

from common import ROOT, MASKBENCH as DATA, rel, append_record

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default=str(DATA))
    p.add_argument('--size', type=int, nargs=2, default=(128, 96))
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--predict-run', default=None, metavar='RUN', help='also profile predict_probs with this run folder')
    a = p.parse_args()
    import torch; torch.set_num_threads(1)
    from fastai.vision.all import Resize
    from mask_fastai.config import TrainConfig
    from mask_fastai.prepare import prepare_data, run_dataloaders
    from mask_fastai.dataloaders import RGBImage, SquishResize
    cfg = TrainConfig(data=a.data, size=tuple(a.size), bs=a.bs, num_workers=0, wandb='off')
    df = prepare_data(cfg, progress=False)
    im = RGBImage.create(df.crop_path.iloc[0])
    fa, sq = Resize(tuple(a.size), method='squish'), SquishResize(tuple(a.size))
    ms = lambda f: timeit.timeit(f, number=200) / 200 * 1000
    print(f"resize {im.size} -> {tuple(a.size)[::-1]}: fastai Resize(squish) {ms(lambda: fa(im, split_idx=0)):.2f} ms, SquishResize {ms(lambda: sq(im)):.2f} ms per image")
    row = df.reset_index(drop=True); bare = row.copy(); bare.attrs = {}
    print(f"row access: {ms(lambda: row.iloc[7]):.3f} ms with attrs {list(row.attrs)}, {ms(lambda: bare.iloc[7]):.3f} ms without")
    dls = run_dataloaders(df, cfg)
    it = iter(dls.train); next(it)
    pr = cProfile.Profile(); t = time.perf_counter(); pr.enable()
    for _ in range(8): next(it)
    pr.disable(); dt = time.perf_counter() - t
    print(f"8 training batches of {a.bs}: {dt:.2f} s, {dt / (8 * a.bs) * 1000:.2f} ms per image (one process, no model)")
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats('tottime').print_stats(10); print(s.getvalue())
    if a.predict_run:
        from mask_fastai.runs import load_run
        from mask_fastai.dataloaders import image_dl
        from mask_fastai.inference import predict_probs
        torch.set_num_threads(os.cpu_count())
        model, conf = load_run(a.predict_run)
        paths = list(df.crop_path[:960])
        predict_probs(model, image_dl(paths[:a.bs], conf['size'], conf['stats'], bs=a.bs))
        pr = cProfile.Profile(); t = time.perf_counter(); pr.enable()
        predict_probs(model, image_dl(paths, conf['size'], conf['stats'], bs=a.bs))
        pr.disable(); dt = time.perf_counter() - t
        print(f"predict {len(paths)} crops at {conf['size']}: {len(paths) / dt:.0f} img/s")
        s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats('tottime').print_stats(8); print(s.getvalue())

if __name__ == '__main__': main()
