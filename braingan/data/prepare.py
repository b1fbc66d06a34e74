"""Folder -> manifest.csv (+ data_summary.json) -> prepared TFDS dataset, once per prepared_dir.

A prepared_dir's manifest is the contract for every later stage: once written it is reused, never
silently recomputed, so a resumed run trains on exactly the split it started with. A prepared_dir
prepared with different data settings is an error that names the differing field.
"""
from __future__ import annotations

import logging
import os
import time

from braingan import files
from braingan.data import CLASSES
from braingan.data import manifest as manifest_lib
from braingan.data import scan as scan_lib
from braingan.data import split as split_lib
from braingan.data import tfds_builder

MANIFEST = 'manifest.csv'
SUMMARY = 'data_summary.json'
# Settings that change the manifest; stored in data_summary.json and checked on reuse.
_SPLIT_KEYS = ('data_dir', 'val_fraction', 'test_fraction', 'near_dup_max_distance',
               'related_min_ncc', 'split_seed')


def _split_settings(data_cfg) -> dict:
  return {'data_dir': os.path.abspath(data_cfg.data_dir), 'val_fraction': data_cfg.val_fraction,
          'test_fraction': data_cfg.test_fraction,
          'near_dup_max_distance': data_cfg.near_dup_max_distance,
          'related_min_ncc': data_cfg.related_min_ncc, 'split_seed': data_cfg.split_seed}


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
    if e.split in ('train', 'validation', 'test'):
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


def write_manifest(data_cfg, prepared_dir: str) -> dict:
  """Scans, splits and writes prepared_dir/manifest.csv + data_summary.json. Returns the summary."""
  os.makedirs(prepared_dir, exist_ok=True)
  records = scan_lib.scan(data_cfg.data_dir)
  start = time.perf_counter()
  entries = split_lib.split_records(records, val_fraction=data_cfg.val_fraction,
                                    test_fraction=data_cfg.test_fraction,
                                    seed=data_cfg.split_seed,
                                    near_dup_max_distance=data_cfg.near_dup_max_distance,
                                    related_min_ncc=data_cfg.related_min_ncc)
  logging.info('Split %d files in %.1f s.', len(entries), time.perf_counter() - start)
  _check_usable(entries, data_cfg.data_dir, data_cfg.strict)
  folders = sorted({(e.record.folder, e.record.label) for e in entries})
  summary = split_lib.summarize(entries)
  summary['class_folders'] = {folder: label for folder, label in folders}
  summary['settings'] = _split_settings(data_cfg)
  path = os.path.join(prepared_dir, MANIFEST)
  files.atomic_write(path, lambda p: manifest_lib.write(p, manifest_lib.rows_from_entries(entries)))
  summary['manifest_digest'] = manifest_lib.digest(path)
  files.write_json(os.path.join(prepared_dir, SUMMARY), summary)
  return summary


def load_or_write_manifest(data_cfg, prepared_dir: str) -> dict:
  """Reuses prepared_dir's manifest when its settings match; writes it when there is none."""
  summary_path = os.path.join(prepared_dir, SUMMARY)
  if os.path.exists(os.path.join(prepared_dir, MANIFEST)) and os.path.exists(summary_path):
    summary = files.read_json(summary_path)
    wanted = _split_settings(data_cfg)
    for key in _SPLIT_KEYS:
      if summary['settings'].get(key) != wanted[key]:
        raise ValueError(
            f'{prepared_dir} was prepared with {key}={summary["settings"].get(key)!r} but the '
            f'config asks for {wanted[key]!r} (config.data.{key}). '
            'Use a new --workdir (or config.data.prepared_dir), or the settings it was '
            'prepared with.')
    logging.info('Reusing %s (digest %s).', os.path.join(prepared_dir, MANIFEST),
                 summary['manifest_digest'])
    return summary
  return write_manifest(data_cfg, prepared_dir)


def prepare(data_cfg, prepared_dir: str):
  """Manifest + TFDS dataset for `prepared_dir`. Returns (summary dict, TFDS builder)."""
  summary = load_or_write_manifest(data_cfg, prepared_dir)
  builder = tfds_builder.build(os.path.join(prepared_dir, MANIFEST), data_cfg.image_size,
                               data_cfg.resize, os.path.join(prepared_dir, 'tfds'),
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
  lines.append(f'Related images (flipped / cropped / rotated copies, neighbouring slices) kept '
               f'together: {summary["related_images"]} images in {summary["related_units"]} '
               'units.')
  for reason, n in summary['skipped_by_reason'].items():
    lines.append(f'Skipped {n}: {reason}')
  return '\n'.join(lines)
