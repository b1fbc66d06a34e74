"""manifest.csv: the written record of which image went where.

Format (UTF-8 CSV, one header row, rows in scan order, '\n' line ends):
  path     absolute path of the source file
  sha256   SHA-256 of the file's bytes ('' if it could not be read)
  class    canonical class name (braingan.data.CLASSES)
  split    train | validation | skipped
  reason   why a file was skipped ('' otherwise): unreadable, duplicate of <path>, label conflict
  folder   the class folder's name on disk (which alias it came from)
  group    duplicate-group id (files in one group share it)
  phash    64-bit perceptual hash, 16 hex digits
  width, height, mode   the image as stored
Any later step (training, evaluation, a reader with a spreadsheet) reads this file, never rescans.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib

from braingan.data.scan import Record
from braingan.data.split import Entry

COLUMNS = ('path', 'sha256', 'class', 'split', 'reason', 'folder', 'group', 'phash', 'width',
           'height', 'mode')


@dataclasses.dataclass(frozen=True)
class Row:
  path: str
  sha256: str
  label: str
  split: str
  reason: str = ''
  folder: str = ''
  group: int = 0
  phash: str = ''
  width: int = 0
  height: int = 0
  mode: str = ''


def rows_from_entries(entries: list[Entry]) -> list[Row]:
  return [Row(path=e.record.path, sha256=e.record.sha256, label=e.record.label, split=e.split,
              reason=e.reason, folder=e.record.folder, group=e.group, phash=e.record.phash,
              width=e.record.width, height=e.record.height, mode=e.record.mode)
          for e in entries]


def write(path: str, rows: list[Row]) -> None:
  with open(path, 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f, lineterminator='\n')
    writer.writerow(COLUMNS)
    for r in rows:
      writer.writerow([r.path, r.sha256, r.label, r.split, r.reason, r.folder, r.group, r.phash,
                       r.width, r.height, r.mode])


def read(path: str) -> list[Row]:
  with open(path, newline='', encoding='utf-8') as f:
    reader = csv.DictReader(f)
    missing = set(COLUMNS[:4]) - set(reader.fieldnames or ())
    if missing:
      raise ValueError(f'{path}: not a braingan manifest (missing columns {sorted(missing)})')
    return [Row(path=d['path'], sha256=d['sha256'], label=d['class'], split=d['split'],
                reason=d.get('reason', ''), folder=d.get('folder', ''),
                group=int(d.get('group') or 0), phash=d.get('phash', ''),
                width=int(d.get('width') or 0), height=int(d.get('height') or 0),
                mode=d.get('mode', '')) for d in reader]


def digest(path: str) -> str:
  """Short content digest: names the TFDS config, so a new split never reuses stale data."""
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()[:12]


def as_record(row: Row) -> Record:
  return Record(path=row.path, folder=row.folder, label=row.label, sha256=row.sha256,
                phash=row.phash, width=row.width, height=row.height, mode=row.mode,
                reason=row.reason if row.split == 'skipped' else '')
