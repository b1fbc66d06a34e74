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
from braingan.data import similar
from braingan.data import split as split_lib


@dataclasses.dataclass
class ImageSet:
  images: np.ndarray   # float32 [N, S, S, C] in [-1, 1]
  labels: np.ndarray   # int32 [N]
  paths: list[str]
  sha256: list[str]
  note: str = ''
  overlapping: list = dataclasses.field(default_factory=list)   # (path, how) left out

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


def _flipped_hash(gray64: np.ndarray) -> int:
  return int(scan_lib.perceptual_hash(np.ascontiguousarray(gray64[:, ::-1])), 16)


def overlap(records, rows, data_cfg) -> dict[int, str]:
  """{index of a record: how it overlaps} for records that copy any of the manifest `rows`.

  Bytes are not enough (the official Testing split of the public set shares many re-encoded,
  mirrored and cropped copies with Training): a record overlaps when it is a byte copy, a near
  duplicate (perceptual hashes within config.data.near_dup_max_distance bits, also of its
  mirror image) or a related copy (flipped / cropped / rotated, braingan/data/similar.py).
  """
  kinds = {}
  shas = {r.sha256 for r in rows}
  for i, r in enumerate(records):
    if r.sha256 in shas:
      kinds[i] = 'same bytes'
  hashed = [r for r in rows if r.phash]
  if data_cfg.near_dup_max_distance >= 0 and hashed:
    reference = np.array([int(r.phash, 16) for r in hashed], dtype='>u8')
    for name, hashes in (('near duplicate', [int(r.phash, 16) for r in records]),
                         ('mirrored near duplicate', [_flipped_hash(r.thumb) for r in records])):
      for i, _ in split_lib.hamming_pairs(np.array(hashes, dtype='>u8'),
                                          data_cfg.near_dup_max_distance, reference):
        kinds.setdefault(i, name)
  if data_cfg.related_min_ncc > 0 and rows:
    references = [similar.thumbnail(decode.load_gray(r.path, 64)) for r in rows]
    for i, j, score in similar.related_pairs([similar.thumbnail(r.thumb) for r in records],
                                             data_cfg.related_min_ncc, references=references):
      kinds.setdefault(i, f'related copy of {rows[j].path} (ncc {score:.3f})')
  return kinds


def from_folder(folder: str, data_cfg, exclude_like=()) -> ImageSet:
  """An external image folder (class sub-folders, any known alias).

  Files that copy any of the manifest rows `exclude_like` (the study's data) are left out and
  counted (`overlap`): an external test set that contains training images would flatter the
  model. `note` says how many and why; `overlapping` lists them.
  """
  records = [r for r in scan_lib.scan(folder) if not r.reason]
  kinds = overlap(records, list(exclude_like), data_cfg) if exclude_like else {}
  kept = [r for i, r in enumerate(records) if i not in kinds]
  if not kept:
    raise scan_lib.DataError(f'{folder}: no usable images left for evaluation')
  counts = {}
  for kind in kinds.values():
    key = 'related copy' if kind.startswith('related') else kind
    counts[key] = counts.get(key, 0) + 1
  note = (f'{len(kinds)} of {len(records)} file(s) in {folder} copy images of the study data '
          f'and were left out ({counts}).' if kinds else '')
  paths = [r.path for r in kept]
  return ImageSet(images=_decode_all(paths, data_cfg),
                  labels=np.array([CLASSES.index(r.label) for r in kept], np.int32),
                  paths=paths, sha256=[r.sha256 for r in kept], note=note,
                  overlapping=[(records[i].path, kind) for i, kind in kinds.items()])


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
