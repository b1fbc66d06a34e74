"""Folder -> manifest.csv (+ data_summary.json) -> prepared TFDS dataset, once per workdir.

A workdir's manifest is the contract for every later stage: once written it is reused, never
silently recomputed, so a resumed run trains on exactly the split it started with. A workdir
prepared with different data settings is an error that names the differing field.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile

from braingan.data import CLASSES
from braingan.data import manifest as manifest_lib
from braingan.data import scan as scan_lib
from braingan.data import split as split_lib
from braingan.data import tfds_builder

MANIFEST = 'manifest.csv'
SUMMARY = 'data_summary.json'
# Settings that change the manifest; stored in data_summary.json and checked on reuse.
_SPLIT_KEYS = ('data_dir', 'val_fraction', 'near_dup_max_distance', 'seed')


def _atomic_write(path: str, write_fn) -> None:
  """Writes through a temp file + rename, so a crash never leaves half a manifest."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp_')
  os.close(fd)
  try:
    write_fn(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _split_settings(data_cfg, seed: int) -> dict:
  return {'data_dir': os.path.abspath(data_cfg.data_dir), 'val_fraction': data_cfg.val_fraction,
          'near_dup_max_distance': data_cfg.near_dup_max_distance, 'seed': seed}


def _check_usable(entries, data_dir: str, strict: bool) -> None:
  unreadable = [(e.record.path, e.record.reason) for e in entries if e.record.reason]
  if strict and unreadable:
    listing = '\n'.join(f'  {p}: {r}' for p, r in unreadable[:50])
    raise scan_lib.DataError(
        f'{len(unreadable)} unreadable file(s) in {data_dir} and config.data.strict=True:\n'
        f'{listing}')
  for path, reason in unreadable:
    logging.warning('Skipping %s: %s', path, reason)
  kept = {c: 0 for c in CLASSES}
  for e in entries:
    if e.split in ('train', 'validation'):
      kept[e.record.label] += 1
  present = [c for c, n in kept.items() if n > 0]
  if len(present) < 2:
    raise scan_lib.DataError(
        f'{data_dir} has usable images for {len(present)} class(es) {present}; at least 2 are '
        f'needed (expected sub-folders for {", ".join(CLASSES)}). Images per class: {kept}')
  for c, n in kept.items():
    if n == 0:
      logging.warning('Class %r has no usable images in %s.', c, data_dir)
    elif n < 2:
      logging.warning('Class %r has %d usable image; it cannot appear in both splits.', c, n)


def write_manifest(data_cfg, workdir: str, seed: int) -> dict:
  """Scans, splits and writes workdir/manifest.csv + data_summary.json. Returns the summary."""
  os.makedirs(workdir, exist_ok=True)
  records = scan_lib.scan(data_cfg.data_dir)
  entries = split_lib.split_records(records, val_fraction=data_cfg.val_fraction, seed=seed,
                                    near_dup_max_distance=data_cfg.near_dup_max_distance)
  _check_usable(entries, data_cfg.data_dir, data_cfg.strict)
  folders = sorted({(e.record.folder, e.record.label) for e in entries})
  summary = split_lib.summarize(entries)
  summary['class_folders'] = {folder: label for folder, label in folders}
  summary['settings'] = _split_settings(data_cfg, seed)
  path = os.path.join(workdir, MANIFEST)
  _atomic_write(path, lambda p: manifest_lib.write(p, manifest_lib.rows_from_entries(entries)))
  summary['manifest_digest'] = manifest_lib.digest(path)
  _atomic_write(os.path.join(workdir, SUMMARY),
                lambda p: open(p, 'w').write(json.dumps(summary, indent=2) + '\n'))
  return summary


def load_or_write_manifest(data_cfg, workdir: str, seed: int) -> dict:
  """Reuses workdir's manifest when its settings match; writes it when there is none."""
  summary_path = os.path.join(workdir, SUMMARY)
  if os.path.exists(os.path.join(workdir, MANIFEST)) and os.path.exists(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
    wanted = _split_settings(data_cfg, seed)
    for key in _SPLIT_KEYS:
      if summary['settings'].get(key) != wanted[key]:
        raise ValueError(
            f'{workdir} was prepared with {key}={summary["settings"].get(key)!r} but the config '
            f'asks for {wanted[key]!r} (config.data.{key if key != "seed" else "../seed"}). '
            'Use a new workdir, or the settings it was prepared with.')
    logging.info('Reusing %s (digest %s).', os.path.join(workdir, MANIFEST),
                 summary['manifest_digest'])
    return summary
  return write_manifest(data_cfg, workdir, seed)


def tfds_dir_for(data_cfg, workdir: str) -> str:
  return data_cfg.tfds_dir or os.path.join(workdir, 'tfds')


def prepare(data_cfg, workdir: str, seed: int):
  """Manifest + TFDS dataset for `workdir`. Returns (summary dict, TFDS builder)."""
  summary = load_or_write_manifest(data_cfg, workdir, seed)
  builder = tfds_builder.build(os.path.join(workdir, MANIFEST), data_cfg.image_size,
                               data_cfg.resize, tfds_dir_for(data_cfg, workdir),
                               data_cfg.data_dir)
  return summary, builder


def format_summary(summary: dict) -> str:
  """Human-readable lines: folder mapping, class counts per split, duplicates, skipped."""
  lines = ['Class folders: ' + ', '.join(f'{k} -> {v}'
                                         for k, v in summary['class_folders'].items())]
  header = f'{"class":<12}' + ''.join(f'{s:>12}' for s in split_lib.SPLITS)
  lines += [header]
  for c in CLASSES:
    lines.append(f'{c:<12}' + ''.join(f'{summary["counts"][s][c]:>12}'
                                      for s in split_lib.SPLITS))
  totals = {s: sum(summary['counts'][s].values()) for s in split_lib.SPLITS}
  lines.append(f'{"total":<12}' + ''.join(f'{totals[s]:>12}' for s in split_lib.SPLITS))
  lines.append(f'Exact duplicates: {summary["exact_duplicate_groups"]} groups, '
               f'{summary["exact_duplicate_extra_copies"]} extra copies; duplicate groups incl. '
               f'near duplicates: {summary["duplicate_groups"]}.')
  for reason, n in summary['skipped_by_reason'].items():
    lines.append(f'Skipped {n}: {reason}')
  return '\n'.join(lines)
