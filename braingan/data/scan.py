"""Folder of class sub-folders -> one record per file (class, content hash, perceptual hash).

Scanning reads every file once: the SHA-256 of its bytes finds exact duplicates, a decode proves
the image is usable (a truncated JPEG fails here, not mid-epoch), and a 64-bit perceptual hash
finds near-duplicates. Files that cannot be used are kept as records with a `reason`, so the
manifest lists them instead of losing them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import re

import numpy as np
from PIL import Image
from scipy import fft as scipy_fft

from braingan import files
from braingan.data import CLASSES
from braingan.data import decode

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.gif', '.webp')

# Folder names seen in public releases of brain-MRI sets, normalised (lower case, '_' for
# separators), mapped onto the canonical class list.
CLASS_ALIASES = {
    'glioma': 'glioma', 'glioma_tumor': 'glioma', 'glioma_tumour': 'glioma', 'gliomas': 'glioma',
    'meningioma': 'meningioma', 'meningioma_tumor': 'meningioma',
    'meningioma_tumour': 'meningioma', 'meningiomas': 'meningioma',
    'no_tumor': 'no_tumor', 'notumor': 'no_tumor', 'no_tumour': 'no_tumor',
    'notumour': 'no_tumor', 'normal': 'no_tumor', 'healthy': 'no_tumor', 'no': 'no_tumor',
    'pituitary': 'pituitary', 'pituitary_tumor': 'pituitary', 'pituitary_tumour': 'pituitary',
}


class DataError(ValueError):
  """A structural problem with the data folder; stops preparation at once."""


@dataclasses.dataclass
class Record:
  path: str            # absolute path of the file
  folder: str          # the class folder's name as found on disk
  label: str           # canonical class name
  sha256: str = ''
  phash: str = ''      # 16 hex digits, '' when the image could not be decoded
  width: int = 0
  height: int = 0
  mode: str = ''
  reason: str = ''     # why the file is unusable, '' when it is fine
  # 64x64 gray thumbnail for the related-image check (split.py); not written to the manifest.
  thumb: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)


def canonical_class(folder_name: str) -> str | None:
  key = re.sub(r'[\s\-]+', '_', folder_name.strip().lower())
  return CLASS_ALIASES.get(key)


def perceptual_hash(gray: np.ndarray) -> str:
  """64-bit DCT perceptual hash (pHash) of a grayscale image, as 16 hex digits.

  Resize to 32x32, 2-D DCT, keep the 8x8 lowest frequencies, threshold at their median.
  Robust to re-encoding and resizing, which is what re-uploaded copies of one scan differ by.
  """
  small = np.asarray(Image.fromarray(gray).resize((32, 32), Image.Resampling.BILINEAR),
                     np.float64)
  coeffs = scipy_fft.dctn(small, norm='ortho')[:8, :8]
  bits = (coeffs > np.median(coeffs)).ravel()
  return f'{int(np.packbits(bits).view(">u8")[0]):016x}'


def _inspect(record: Record) -> Record:
  """Fills hashes and image facts; on failure sets `reason` instead of raising."""
  if record.reason:  # Already known to be unusable (e.g. a link loop found while walking).
    return record
  ext = os.path.splitext(record.path)[1].lower()
  if ext not in IMAGE_EXTENSIONS:
    record.reason = f'not an image file (extension {ext or "none"!r})'
    return record
  try:
    record.sha256 = files.digest(record.path)
    with Image.open(record.path) as im:
      record.width, record.height, record.mode = im.width, im.height, im.mode
  except OSError as e:
    # Unidentified or unreadable files get their precise reason from load_gray below.
    if not os.path.exists(record.path):
      record.reason = f'cannot read: {e.strerror or e}'
      return record
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    gray = decode.load_gray(record.path, image_size=64)
    record.phash = perceptual_hash(gray)
    record.thumb = gray
  except decode.ImageError as e:
    record.reason = e.reason
  except OSError as e:  # e.g. a symlink loop or a permission problem
    record.reason = f'cannot read: {e.strerror or e}'
  return record


def _walk_files(class_dir: str) -> tuple[list[str], list[tuple[str, str]]]:
  """All files below class_dir (following links, each real folder once), sorted.

  Returns (files, problems) where problems are (path, reason) for loops and unreadable dirs.
  """
  files, problems = [], []
  seen = set()

  def visit(directory):
    real = os.path.realpath(directory)
    if real in seen:
      problems.append((directory, 'symlink loop (folder already visited)'))
      return
    seen.add(real)
    try:
      entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as e:
      problems.append((directory, f'cannot list folder: {e.strerror or e}'))
      return
    for entry in entries:
      try:
        is_dir = entry.is_dir()  # follows symlinks; raises/false on a looping link
      except OSError:
        is_dir = False
      if is_dir:
        visit(entry.path)
      else:
        files.append(os.path.abspath(entry.path))

  visit(class_dir)
  return files, problems


def find_class_folders(data_dir: str) -> dict[str, list[str]]:
  """Maps each canonical class to the sub-folders of data_dir that hold it.

  Raises DataError naming the path when data_dir is missing, not a folder, or has no folder
  whose name is a known class alias.
  """
  if not os.path.exists(data_dir):
    raise DataError(f'config.data.data_dir={data_dir!r} does not exist; expected a folder '
                    f'with one sub-folder per class ({", ".join(CLASSES)}).')
  if not os.path.isdir(data_dir):
    raise DataError(f'config.data.data_dir={data_dir!r} is not a folder; expected a folder '
                    f'with one sub-folder per class ({", ".join(CLASSES)}).')
  folders: dict[str, list[str]] = {}
  unknown = []
  for entry in sorted(os.scandir(data_dir), key=lambda e: e.name):
    if not entry.is_dir():
      continue
    label = canonical_class(entry.name)
    if label is None:
      unknown.append(entry.name)
    else:
      folders.setdefault(label, []).append(entry.path)
  if unknown:
    logging.warning('Ignoring folders in %s that name no known class: %s', data_dir, unknown)
  if not folders:
    raise DataError(
        f'{data_dir!r} has no class folders. Expected sub-folders named after the classes '
        f'(e.g. glioma_tumor, meningioma_tumor, no_tumor/notumor, pituitary_tumor); '
        f'found: {unknown or "no sub-folders"}.')
  return folders


def scan(data_dir: str, num_workers: int | None = None) -> list[Record]:
  """Scans data_dir and returns one Record per file, in a deterministic order."""
  folders = find_class_folders(data_dir)
  records = []
  for label in CLASSES:
    for folder in folders.get(label, []):
      name = os.path.basename(folder)
      logging.info('Class folder %r -> class %r', name, label)
      files, problems = _walk_files(folder)
      records += [Record(path=p, folder=name, label=label) for p in files]
      records += [Record(path=os.path.abspath(p), folder=name, label=label, reason=r)
                  for p, r in problems]
  workers = num_workers or min(8, (os.cpu_count() or 1) * 2)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    records = list(pool.map(_inspect, records))
  return sorted(records, key=lambda r: (CLASSES.index(r.label), r.path))
