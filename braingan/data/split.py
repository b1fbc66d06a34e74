"""Duplicate groups, related images, label conflicts and a stratified, group-aware split.

Why: the shared Training set holds 73 groups of byte-identical files, re-encoded copies, and
mirrored / cropped / rotated copies and neighbouring slices of one scan. A split that ignores
them puts one picture on both sides and inflates every score measured on the held-out side.

1. Duplicates (same SHA-256, or perceptual hashes within `near_dup_max_distance` bits) are kept
   once: the other copies are skipped with their reason.
2. Related images (braingan/data/similar.py: a flipped, slightly cropped, rotated or shifted copy,
   registered NCC >= `related_min_ncc`) are all kept but joined into one unit that the split
   never divides.
3. A unit whose images carry different labels is dropped (label conflict).
4. Per class, a seeded permutation of the units fills validation, then test, then train
   (sizes counted in images), so train / validation / test are disjoint at the unit level.
"""
from __future__ import annotations

import collections
import dataclasses
import logging

import numpy as np

from braingan.data import CLASSES
from braingan.data import similar
from braingan.data.scan import Record

SPLITS = ('train', 'validation', 'test', 'skipped')
HELD_OUT = ('validation', 'test')


@dataclasses.dataclass
class Entry:
  """One manifest row: a scanned record plus where it went and why."""
  record: Record
  split: str
  group: int        # unit id: duplicates and related images share it
  reason: str = ''  # set when split == 'skipped'
  duplicate_group: int = -1   # the exact/near-duplicate group inside the unit


class _UnionFind:

  def __init__(self, n):
    self.parent = list(range(n))

  def find(self, i):
    while self.parent[i] != i:
      self.parent[i] = self.parent[self.parent[i]]
      i = self.parent[i]
    return i

  def union(self, i, j) -> bool:
    a, b = self.find(i), self.find(j)
    if a != b:
      self.parent[max(a, b)] = min(a, b)
    return a != b


def hamming_pairs(hashes: np.ndarray, max_distance: int, others: np.ndarray | None = None):
  """Index pairs (i, j) whose 64-bit hashes differ in at most max_distance bits: i < j within
  `hashes`, or every (i in hashes, j in others) when `others` is given."""
  bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1).astype(np.uint8)
  other_bits = bits if others is None else np.unpackbits(
      others.view(np.uint8).reshape(-1, 8), axis=1).astype(np.uint8)
  pairs = []
  for start in range(0, len(hashes), 512):  # Blocked, so memory stays O(512 * n).
    block = bits[start:start + 512]
    dist = (block[:, None, :] != other_bits[None, :, :]).sum(-1)
    i, j = np.nonzero(dist <= max_distance)
    keep = j > i + start if others is None else np.ones(len(i), bool)
    pairs += list(zip((i[keep] + start).tolist(), j[keep].tolist()))
  return pairs


def group_duplicates(records: list[Record], near_dup_max_distance: int) -> list[int]:
  """Returns a group id per record: equal for exact or near duplicates (unusable: own group)."""
  uf = _UnionFind(len(records))
  by_sha = {}
  for i, r in enumerate(records):
    if r.reason:
      continue
    if r.sha256 in by_sha:
      uf.union(by_sha[r.sha256], i)
    else:
      by_sha[r.sha256] = i
  if near_dup_max_distance >= 0:
    usable = [i for i, r in enumerate(records) if not r.reason and r.phash]
    hashes = np.array([int(records[i].phash, 16) for i in usable], dtype='>u8')
    for a, b in hamming_pairs(hashes, near_dup_max_distance):
      uf.union(usable[a], usable[b])
  return [uf.find(i) for i in range(len(records))]


def _drop_conflict(entries: list[Entry], labels: list[str]) -> None:
  logging.warning('Dropping %d copies of one image found under several classes %s: %s',
                  len(entries), labels, [e.record.path for e in entries])
  for e in entries:
    e.split, e.reason = 'skipped', f'label conflict: same image under classes {labels}'


def _assign(units: list[list[Entry]], fractions: dict[str, float], rng) -> None:
  """Gives each unit of one class a split: held-out splits first, by image count."""
  total = sum(len(u) for u in units)
  order = rng.permutation(len(units))
  wanted = {s: int(round(total * f)) for s, f in fractions.items()}
  if total >= 2:   # a class with >= 2 images appears in train and in every non-empty held-out split
    for s in wanted:
      if fractions[s] > 0:
        wanted[s] = min(max(wanted[s], 1), total - 1)
  filled = {s: 0 for s in wanted}
  for index in order:
    unit = units[index]
    split = next((s for s in HELD_OUT if s in wanted and filled[s] < wanted[s]), 'train')
    if split != 'train':
      filled[split] += len(unit)
    for e in unit:
      e.split = split


def split_records(records: list[Record], *, val_fraction: float, seed: int,
                  near_dup_max_distance: int, test_fraction: float = 0.0,
                  related_min_ncc: float = -1.0) -> list[Entry]:
  """Assigns every record to train, validation, test or skipped (with a reason)."""
  if not 0.0 < val_fraction < 1.0:
    raise ValueError(f'config.data.val_fraction={val_fraction} must be in (0, 1)')
  if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
    raise ValueError(f'config.data.test_fraction={test_fraction} must be in [0, 1) with '
                     f'val_fraction + test_fraction < 1')
  groups = group_duplicates(records, near_dup_max_distance)
  entries = [Entry(r, 'skipped' if r.reason else '', g, r.reason)
             for r, g in zip(records, groups)]
  members = collections.defaultdict(list)
  for e in entries:
    if not e.record.reason:
      members[e.group].append(e)
  keepers = []
  for group in members.values():
    group.sort(key=lambda e: e.record.path)
    labels = sorted({e.record.label for e in group})
    if len(labels) > 1:
      _drop_conflict(group, labels)
      continue
    keepers.append(group[0])
    for e in group[1:]:
      kind = 'exact duplicate' if e.record.sha256 == group[0].record.sha256 else 'near duplicate'
      e.split, e.reason = 'skipped', f'{kind} of {group[0].record.path}'
  keepers.sort(key=lambda e: (e.record.sha256, e.record.path))   # not by path: renames are moot
  units = _UnionFind(len(keepers))
  if related_min_ncc > 0:
    thumbs = [similar.thumbnail(e.record.thumb) for e in keepers]
    for i, j, _ in similar.related_pairs(thumbs, related_min_ncc):
      units.union(i, j)
  by_unit = collections.defaultdict(list)
  unit_of_group = {}
  for i, e in enumerate(keepers):
    by_unit[units.find(i)].append(e)
    unit_of_group[e.group] = units.find(i)
  for e in entries:   # every copy carries the unit of its keeper (skipped ones too)
    if e.group in unit_of_group:
      e.duplicate_group = e.group
      e.group = unit_of_group[e.group]
  per_class = collections.defaultdict(list)
  for unit in by_unit.values():
    labels = sorted({e.record.label for e in unit})
    if len(labels) > 1:
      _drop_conflict(unit, labels)
      continue
    per_class[labels[0]].append(unit)
  rng = np.random.default_rng(seed)
  fractions = {'validation': val_fraction, 'test': test_fraction}
  for label in CLASSES:
    _assign(per_class.get(label, []), fractions, rng)
  return entries


def summarize(entries: list[Entry]) -> dict:
  """Counts that a person checks first: per class and split, duplicates, units, skipped."""
  counts = {s: {c: 0 for c in CLASSES} for s in SPLITS}
  for e in entries:
    counts[e.split][e.record.label] += 1
  exact_shas = collections.Counter(e.record.sha256 for e in entries if not e.record.reason)
  kept = [e for e in entries if e.split in ('train',) + HELD_OUT]
  unit_sizes = collections.Counter(e.group for e in kept)
  merged = {g: sorted(e.record.path for e in kept if e.group == g)
            for g, n in unit_sizes.items() if n > 1}
  reasons = collections.Counter(
      e.reason.split(' of ')[0] if 'duplicate of' in e.reason else e.reason
      for e in entries if e.split == 'skipped')
  duplicate_groups = {e.duplicate_group for e in entries if 'duplicate of' in e.reason}
  return {
      'files': len(entries),
      'counts': counts,
      'exact_duplicate_groups': sum(1 for n in exact_shas.values() if n > 1),
      'exact_duplicate_extra_copies': sum(n - 1 for n in exact_shas.values() if n > 1),
      'duplicate_groups': len(duplicate_groups),
      'related_units': len(merged),
      'related_images': sum(len(v) for v in merged.values()),
      'related_examples': [v[:3] for v in list(merged.values())[:6]],
      'skipped_by_reason': dict(sorted(reasons.items())),
      'unreadable': [(e.record.path, e.reason) for e in entries if e.record.reason],
  }
