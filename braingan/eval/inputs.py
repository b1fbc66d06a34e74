"""Images for evaluation, read through the one preprocessing (`data.decode`).

Validation images come from a run's manifest.csv, in manifest order, so both models are scored
on exactly the same files and a prediction here equals one in the app for the same file.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import numpy as np

from braingan.data import CLASSES
from braingan.data import decode
from braingan.data import manifest as manifest_lib
from braingan.data import scan as scan_lib


@dataclasses.dataclass
class ImageSet:
  images: np.ndarray   # float32 [N, S, S, C] in [-1, 1]
  labels: np.ndarray   # int32 [N]
  paths: list[str]
  sha256: list[str]
  note: str = ''

  def __len__(self):
    return len(self.labels)


def _decode_all(paths, data_cfg) -> np.ndarray:
  with concurrent.futures.ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
    images = list(pool.map(lambda p: decode.preprocess_file(p, data_cfg), paths))
  size, channels = data_cfg.image_size, data_cfg.channels
  return np.stack(images) if images else np.zeros((0, size, size, channels), np.float32)


def from_manifest(manifest_path: str, split: str, data_cfg) -> ImageSet:
  rows = [r for r in manifest_lib.read(manifest_path) if r.split == split]
  paths = [r.path for r in rows]
  return ImageSet(images=_decode_all(paths, data_cfg),
                  labels=np.array([CLASSES.index(r.label) for r in rows], np.int32),
                  paths=paths, sha256=[r.sha256 for r in rows])


def from_folder(folder: str, data_cfg, exclude_sha256: frozenset = frozenset()) -> ImageSet:
  """An external image folder (class sub-folders, any known alias).

  Files whose bytes also appear in the training data (`exclude_sha256`) are left out and
  counted: an external test set that contains training images would flatter the model.
  """
  records = [r for r in scan_lib.scan(folder) if not r.reason]
  overlapping = [r for r in records if r.sha256 in exclude_sha256]
  records = [r for r in records if r.sha256 not in exclude_sha256]
  if not records:
    raise scan_lib.DataError(f'{folder}: no usable images left for evaluation')
  note = (f'{len(overlapping)} file(s) in {folder} are byte-identical to training images and '
          'were left out.' if overlapping else '')
  paths = [r.path for r in records]
  return ImageSet(images=_decode_all(paths, data_cfg),
                  labels=np.array([CLASSES.index(r.label) for r in records], np.int32),
                  paths=paths, sha256=[r.sha256 for r in records], note=note)


def batched(fn, images: np.ndarray, batch_size: int) -> np.ndarray:
  """fn over all images in batches (the last one padded, so a jitted fn compiles once)."""
  out = []
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    n = len(batch)
    if n < batch_size:
      batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - n, axis=0)])
    out.append(np.asarray(fn(batch))[:n])
  return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)
