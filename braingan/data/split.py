"""Duplicate groups, label conflicts and a stratified, group-aware train/validation split.

Why: the shared Training set holds 73 groups of byte-identical files and more re-encoded copies;
a split that ignores them puts one picture on both sides and inflates validation accuracy. We
group exact duplicates (same SHA-256) and near-duplicates (perceptual hashes within a small
Hamming distance), keep one file per group, drop groups whose members carry different labels,
and then split the kept files per class with a seeded permutation.
"""
from __future__ import annotations

import collections
import dataclasses
import logging

import numpy as np

from braingan.data import CLASSES
from braingan.data.scan import Record

SPLITS = ('train', 'validation', 'skipped')


@dataclasses.dataclass
class Entry:
  """One manifest row: a scanned record plus where it went and why."""
  record: Record
  split: str
  group: int        # duplicate-group id; files in one group share it
  reason: str = ''  # set when split == 'skipped'


class _UnionFind:

  def __init__(self, n):
    self.parent = list(range(n))

  def find(self, i):
    while self.parent[i] != i:
      self.parent[i] = self.parent[self.parent[i]]
      i = self.parent[i]
    return i

  def union(self, i, j):
    a, b = self.find(i), self.find(j)
    if a != b:
      self.parent[max(a, b)] = min(a, b)


def _hamming_pairs(hashes: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
  """All index pairs (i < j) whose 64-bit hashes differ in at most max_distance bits."""
  bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1).astype(np.uint8)
  pairs = []
  for start in range(0, len(hashes), 512):  # Blocked, so memory stays O(512 * n).
    block = bits[start:start + 512]
    dist = (block[:, None, :] != bits[None, :, :]).sum(-1)
    i, j = np.nonzero(dist <= max_distance)
    keep = j > i + start
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
    for a, b in _hamming_pairs(hashes, near_dup_max_distance):
      uf.union(usable[a], usable[b])
  return [uf.find(i) for i in range(len(records))]


def split_records(records: list[Record], *, val_fraction: float, seed: int,
                  near_dup_max_distance: int) -> list[Entry]:
  """Assigns every record to train, validation or skipped (with a reason)."""
  if not 0.0 < val_fraction < 1.0:
    raise ValueError(f'config.data.val_fraction={val_fraction} must be in (0, 1)')
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
      paths = [e.record.path for e in group]
      logging.warning('Dropping %d copies of one image found under several classes %s: %s',
                      len(group), labels, paths)
      for e in group:
        e.split, e.reason = 'skipped', f'label conflict: same image under classes {labels}'
      continue
    keeper = group[0]
    keepers.append(keeper)
    for e in group[1:]:
      same_bytes = e.record.sha256 == keeper.record.sha256
      kind = 'exact duplicate' if same_bytes else 'near duplicate'
      e.split, e.reason = 'skipped', f'{kind} of {keeper.record.path}'

  # Stratified split: per class, a seeded permutation of the kept files sorted by content
  # hash (not by path, so renaming files does not move them between splits).
  rng = np.random.default_rng(seed)
  for label in CLASSES:
    items = sorted((e for e in keepers if e.record.label == label),
                   key=lambda e: (e.record.sha256, e.record.path))
    order = rng.permutation(len(items))
    n_val = int(round(len(items) * val_fraction))
    if len(items) >= 2:
      n_val = min(max(n_val, 1), len(items) - 1)
    for rank, idx in enumerate(order):
      items[idx].split = 'validation' if rank < n_val else 'train'
  return entries


def summarize(entries: list[Entry]) -> dict:
  """Counts that a person checks first: per class and split, duplicates, skipped reasons."""
  counts = {s: {c: 0 for c in CLASSES} for s in SPLITS}
  for e in entries:
    counts[e.split][e.record.label] += 1
  group_sizes = collections.Counter(e.group for e in entries if not e.record.reason)
  dup_groups = [g for g, n in group_sizes.items() if n > 1]
  exact_shas = collections.Counter(e.record.sha256 for e in entries if not e.record.reason)
  reasons = collections.Counter(
      e.reason.split(' of ')[0] if 'duplicate of' in e.reason else e.reason
      for e in entries if e.split == 'skipped')
  return {
      'files': len(entries),
      'counts': counts,
      'exact_duplicate_groups': sum(1 for n in exact_shas.values() if n > 1),
      'exact_duplicate_extra_copies': sum(n - 1 for n in exact_shas.values() if n > 1),
      'duplicate_groups': len(dup_groups),
      'skipped_by_reason': dict(sorted(reasons.items())),
      'unreadable': [(e.record.path, e.reason) for e in entries if e.record.reason],
  }
