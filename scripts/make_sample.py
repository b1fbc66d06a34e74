"""Makes data/sample: a small, downscaled, duplicate-free sample of the real Training set.

  python scripts/make_sample.py --src=../shared/data/brain_tumor_mri/Training --per_class=40

Files are chosen from one of each duplicate group (braingan's own scan + split), by a seeded
permutation, and saved as grayscale JPEGs whose longer side is 128 px (aspect kept, so the
sample still has the odd sizes of the original).
"""
import argparse
import os

import numpy as np
from PIL import Image

from braingan.data import CLASSES
from braingan.data import scan as scan_lib
from braingan.data import split as split_lib

FOLDERS = {'glioma': 'glioma_tumor', 'meningioma': 'meningioma_tumor', 'no_tumor': 'no_tumor',
           'pituitary': 'pituitary_tumor'}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--src', default='../shared/data/brain_tumor_mri/Training')
  parser.add_argument('--out', default='data/sample')
  parser.add_argument('--per_class', type=int, default=40)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  entries = split_lib.split_records(scan_lib.scan(args.src), val_fraction=0.2, seed=args.seed,
                                    near_dup_max_distance=2)
  rng = np.random.default_rng(args.seed)
  for label in CLASSES:
    kept = sorted(e.record.path for e in entries
                  if e.record.label == label and e.split != 'skipped')
    chosen = sorted(rng.choice(kept, args.per_class, replace=False))
    out_dir = os.path.join(args.out, FOLDERS[label])
    os.makedirs(out_dir, exist_ok=True)
    for path in chosen:
      with Image.open(path) as im:
        im = im.convert('L')
        im.thumbnail((128, 128), Image.Resampling.LANCZOS)
        im.save(os.path.join(out_dir, os.path.basename(path)), quality=90)
    print(label, len(chosen))


if __name__ == '__main__':
  main()
