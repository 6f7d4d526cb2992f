"""Figures of the data foundation: demo-data generation time, face-crop throughput cold vs cached, person overlap.

    python bench/foundation.py [--data DIR]   # DIR: a competition folder for the crop figures (default: the demo set)

Uses a fresh temporary cache, so the first crop pass is really cold."""
import argparse, os, tempfile, time
from pathlib import Path

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', default=None)
    p.add_argument('--n-images', type=int, default=280, help='images to crop (default: 280)')
    a = p.parse_args()
    os.environ['MASK_FASTAI_CACHE'] = tempfile.mkdtemp(prefix='mf-bench-')
    from mask_fastai.demo import make_demo_data
    from mask_fastai.data import read_train
    from mask_fastai.faces import face_crops, crop_summary
    from mask_fastai.splits import person_holdout, person_folds, set_fold, check_person_overlap
    t = time.time(); demo = make_demo_data(Path(os.environ['MASK_FASTAI_CACHE'])/'demo'); t_demo = time.time() - t
    df = read_train(a.data or demo)
    print(f"demo data (100 train + 40 eval people, 980 photos at 384x512): {t_demo:.1f}s")
    sample = df.sample(min(a.n_images, len(df)), random_state=0).path
    face_crops(sample[:1], progress=False)                       # load MTCNN once, outside the timing
    t = time.time(); cold = face_crops(sample, progress=False); t_cold = time.time() - t
    t = time.time(); warm = face_crops(sample, progress=False); t_warm = time.time() - t
    s = crop_summary(cold)
    print(f"face crops on {len(sample)} photos of {a.data or 'the demo set'}: cold {len(sample)/t_cold:.1f} img/s, "
          f"cached {len(sample)/t_warm:.0f} img/s ({t_warm/t_cold:.3f}x the cold time); detected {s['rate']:.1%}; "
          f"second pass all from cache: {bool(warm.cached.all())}")
    ho = person_holdout(df, 0.2, seed=42)
    fo = person_folds(df, 5, seed=42)
    overlaps = [check_person_overlap(ho)] + [check_person_overlap(set_fold(fo, k)) for k in range(5)]
    print(f"person overlap train/valid: holdout {overlaps[0]}, folds {overlaps[1:]} "
          f"({ho.person.nunique()} people, {len(df)} images)")

if __name__ == '__main__': main()
