"""Files other stages read: written atomically, read back tolerantly.

Every file that a reader may open while a writer is busy (config.json, summaries, reports,
generated images, sample grids) is written to a temporary name in the same folder and renamed
into place, so a reader sees the old file or the new one, never half of one. `metrics.jsonl` is
appended line by line instead; its reader skips a torn last line (a crash mid-write) and keeps
the last record per key, so epochs re-run after a resume appear once.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Callable, Iterable


def atomic_write(path: str, write: Callable[[str], Any]) -> str:
  """Calls write(tmp_path) and renames tmp_path to `path` (same folder, so the rename is atomic).

  `write` may write with any library (PIL, json, csv...). On failure `path` is left untouched
  and the temporary file removed.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]   # Keep the extension: PIL picks the format from it.
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp_', suffix=suffix)
  os.close(fd)
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def write_text(path: str, text: str) -> str:
  def write(tmp):
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)
  return atomic_write(path, write)


def write_json(path: str, obj: Any, **kwargs: Any) -> str:
  kwargs.setdefault('indent', 2)
  return write_text(path, json.dumps(obj, **kwargs) + '\n')


def read_json(path: str) -> Any:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def read_jsonl(path: str, key: Callable[[dict], Any] | None = None) -> list[dict]:
  """The records of a JSON-lines file.

  A last line that does not parse (a crash in the middle of writing it) is skipped; a bad line
  anywhere else is an error naming the file and the line. With `key`, only the last record of
  each key is kept (ordered by its last occurrence): e.g. key=(step, split) drops the records
  of epochs that a resumed run wrote again.
  """
  with open(path, encoding='utf-8') as f:
    lines = f.read().split('\n')
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if all(not rest.strip() for rest in lines[number:]):
        break   # The torn last line of an interrupted write.
      raise ValueError(f'{path}, line {number}: not JSON ({e})') from None
  if key is None:
    return records
  latest: dict[Any, dict] = {}
  for record in records:
    k = key(record)
    latest.pop(k, None)   # Re-inserted: ordered by each key's last occurrence.
    latest[k] = record
  return list(latest.values())


def digest(path: str, algorithm: str = 'sha256') -> str:
  """Hex digest of a file's bytes, read in 1 MB chunks."""
  h = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()


def append_jsonl(path: str, records: Iterable[dict]) -> None:
  """Appends records as JSON lines and flushes them to the OS."""
  with open(path, 'a', encoding='utf-8') as f:
    for record in records:
      f.write(json.dumps(record, allow_nan=True) + '\n')
    f.flush()
