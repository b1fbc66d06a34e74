"""tf.data input: train epochs (shuffled, sharded per process, optional synthetic mixing) and
padded evaluation batches, as numpy dicts for the jitted steps.

The prepared TFDS split is read once into memory (uint8, 16 KB per 128 px image: the whole shared
set is ~45 MB), then every epoch is a fresh tf.data pipeline seeded by (seed, epoch). That keeps
epochs reproducible and lets a resumed run replay exactly the epoch it was in. tf.data moves
uint8 pixels only; they become [-1, 1] floats on the host through `decode.to_model_input`, the
same function evaluation and the app use. Augmentation runs in the jitted step
(braingan/train/augment.py).
"""
from __future__ import annotations

import dataclasses
import logging
import os

import jax
import numpy as np

from braingan.data import CLASSES
from braingan.data import decode
from braingan.data import manifest as manifest_lib
from braingan.data import prepare as prepare_lib
from braingan.data import scan as scan_lib
from braingan.runtime import distributed
from braingan.runtime import tensorflow

tf = tensorflow.get()   # GPUs hidden from TF, start-up chatter muted (runtime/tensorflow.py)


def load_folder_arrays(folder: str, image_size: int, resize: str = 'squash'):
  """Reads a folder of class sub-folders (e.g. generated images) -> (uint8 [N,S,S,1], labels).

  Unreadable files are skipped and reported (as the real-data scanner does), never silently.
  """
  records = scan_lib.scan(folder)
  skipped = [r for r in records if r.reason]
  for r in skipped:
    logging.warning('Skipping %s: %s', r.path, r.reason)
  records = [r for r in records if not r.reason]
  if not records:
    raise scan_lib.DataError(f'{folder}: no readable images in its class folders')
  if skipped:
    print(f'{folder}: skipped {len(skipped)} unreadable file(s), e.g. {skipped[0].path}: '
          f'{skipped[0].reason}', flush=True)
  images = np.stack([decode.load_gray(r.path, image_size, resize) for r in records])[..., None]
  labels = np.array([CLASSES.index(r.label) for r in records], np.int32)
  return images, labels


def _gather(images: tf.Tensor, labels: tf.Tensor):
  """index -> (image, label): a tf.data map function over in-memory arrays."""
  @tf.autograph.experimental.do_not_convert
  def gather(index):
    return tf.gather(images, index), tf.gather(labels, index)
  return gather


@dataclasses.dataclass
class DataSource:
  """The prepared splits of one workdir, in memory, plus the settings to batch them."""
  images: dict[str, np.ndarray]   # split -> uint8 [N, S, S, 1]
  labels: dict[str, np.ndarray]   # split -> int32 [N]
  channels: int
  seed: int
  summary: dict

  def num_examples(self, split: str = 'train') -> int:
    return len(self.labels[split])

  def class_counts(self, split: str = 'train') -> dict[str, int]:
    counts = np.bincount(self.labels[split], minlength=len(CLASSES))
    return {c: int(n) for c, n in zip(CLASSES, counts)}

  def _local_batch(self, global_batch: int) -> int:
    processes = jax.process_count()
    if global_batch % processes:
      raise ValueError(f'batch size {global_batch} is not divisible by {processes} processes')
    return global_batch // processes

  def train_dataset(self, epoch: int, global_batch: int, steps: int, *,
                    synthetic: tuple | None = None, synthetic_ratio: float = 0.0,
                    balance: float = 0.0) -> tf.data.Dataset:
    """One epoch of `steps` global batches as a tf.data.Dataset of this process's share.

    The training split is shuffled and repeated, so an epoch can have any number of steps;
    same (seed, epoch) -> same batches, on every process. With `balance` > 0 the real images
    are drawn per class, class c with probability (1 - balance) p_c + balance / K (p_c: its
    share of the split); with `synthetic`, a `synthetic_ratio` share of the stream is synthetic
    (1: synthetic images only).
    """
    if not 0.0 <= synthetic_ratio <= 1.0:
      raise ValueError(f'config.data.synthetic_ratio={synthetic_ratio} must be in [0, 1]')
    local_batch = self._local_batch(global_batch)

    def seed_for(salt: int) -> int:  # Python's hash() is salted per process; this is not.
      return (self.seed * 1_000_003 + epoch * 9_176 + salt) % (2**31 - 1)

    def source(images, labels, salt):
      # A full permutation of the indices every pass. A bounded shuffle buffer (4,096 images
      # until 2026-12-07) over arrays stored class by class fed a generated pool of 2,500 per
      # class to CAS in batches of one or two classes; up to that size the order is unchanged.
      n = len(labels)
      order = tf.data.Dataset.range(n).shuffle(max(n, 1), seed=seed_for(salt),
                                               reshuffle_each_iteration=True)
      return order.repeat().map(_gather(tf.constant(images), tf.constant(labels)))

    images, labels = self.images['train'], self.labels['train']
    if balance > 0:
      present = [c for c in range(len(CLASSES)) if np.any(labels == c)]
      share = np.bincount(labels, minlength=len(CLASSES)) / len(labels)
      weights = [(1 - balance) * share[c] + balance / len(present) for c in present]
      ds = tf.data.Dataset.sample_from_datasets(
          [source(images[labels == c], labels[labels == c], 10 + c) for c in present],
          weights=weights, seed=seed_for(4))
    else:
      ds = source(images, labels, 1)
    if synthetic is not None and synthetic_ratio == 1.0:   # synthetic only (CAS)
      ds = source(*synthetic, 2)
    elif synthetic is not None and synthetic_ratio > 0:
      ds = tf.data.Dataset.sample_from_datasets(
          [ds, source(*synthetic, 2)], weights=[1 - synthetic_ratio, synthetic_ratio],
          seed=seed_for(3))
    # Every process walks the same global order and keeps its own contiguous slice of each
    # global batch, so N processes see exactly the batches one process would.
    ds = ds.take(steps * global_batch).enumerate()
    first = jax.process_index() * local_batch
    ds = ds.filter(lambda index, _: (index % global_batch >= first) &
                   (index % global_batch < first + local_batch))

    ds = ds.map(lambda index, pair: {'image': pair[0], 'label': pair[1]})
    ds = ds.batch(local_batch, drop_remainder=True).prefetch(2)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)

  def train_epoch(self, epoch: int, global_batch: int, steps: int, *, synthetic_dir: str = '',
                  synthetic_ratio: float = 0.0, synthetic_labels: str = 'intended',
                  balance: float = 0.0):
    """Iterator of {'image': float32 [b,S,S,C] in [-1, 1], 'label': int32 [b]}, one epoch."""
    synthetic = None
    if synthetic_dir and synthetic_ratio > 0:
      synthetic = self.synthetic(synthetic_dir, synthetic_labels)
    ds = self.train_dataset(epoch, global_batch, steps, synthetic=synthetic,
                            synthetic_ratio=synthetic_ratio, balance=balance)
    for batch in ds.as_numpy_iterator():   # uint8 on the host; scaled once, here
      yield {'image': decode.to_model_input(batch['image'][..., 0], self.channels),
             'label': batch['label']}

  def synthetic(self, folder: str, labels: str = 'intended'):
    """Generated images as a second source; loaded once per folder and kept.

    labels='shuffled' (the study's control) permutes the synthetic labels with a seeded
    permutation, so class information is gone and everything else stays; real labels are
    never touched.
    """
    cache = self.__dict__.setdefault('_synthetic_cache', {})
    if (folder, labels) not in cache:
      size = self.images['train'].shape[1]
      images, classes = load_folder_arrays(folder, size)
      if labels == 'shuffled':
        classes = np.random.default_rng([self.seed, 0x5eed]).permutation(classes)
      elif labels != 'intended':
        raise ValueError(f"config.data.synthetic_labels={labels!r}: 'intended' or 'shuffled'")
      cache[(folder, labels)] = (images, classes)
      logging.info('Synthetic source %s: %d images', folder, len(classes))
    return cache[(folder, labels)]

  def eval_batches(self, global_batch: int, split: str = 'validation'):
    """All of `split` in order, this process's slice of each global batch, last one padded."""
    local_batch = self._local_batch(global_batch)
    images, labels = self.images[split], self.labels[split]
    n = len(labels)
    start = jax.process_index() * local_batch
    for offset in range(0, n, global_batch):
      idx = np.arange(offset + start, offset + start + local_batch)
      mask = idx < n
      idx = np.where(mask, idx, 0)
      yield {'image': decode.to_model_input(images[idx][..., 0], self.channels),
             'label': labels[idx], 'mask': mask}


def read_split(builder, split: str):
  """One prepared TFDS split in memory: (uint8 images, int32 labels, source paths)."""
  size = builder.builder_config.image_size
  empty = (np.zeros((0, size, size, 1), np.uint8), np.zeros((0,), np.int32), [])
  if split not in builder.info.splits:
    return empty
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(lambda ex: (ex['image'], ex['label'], ex['path'])).batch(1024)
  images, labels, paths = [], [], []
  for image, label, path in ds.as_numpy_iterator():
    images.append(image)
    labels.append(label.astype(np.int32))
    paths += [p.decode('utf-8') for p in path]
  if not images:
    return empty
  return np.concatenate(images), np.concatenate(labels), paths


def nested_subset(labels: np.ndarray, units: np.ndarray, fraction: float,
                  seed: int) -> np.ndarray:
  """Sorted indices of a stratified `fraction` of the rows, whole units at a time.

  Per class, the units are put in an order drawn from (seed, class) and taken from the front
  until the class has its share, so for one seed a smaller fraction's rows are a subset of a
  larger fraction's.
  """
  keep = []
  for c in np.unique(labels):
    rows = np.nonzero(labels == c)[0]
    class_units = np.unique(units[rows])
    order = np.random.default_rng([seed, int(c)]).permutation(len(class_units))
    wanted, taken = max(1, int(round(len(rows) * fraction))), 0
    for unit in class_units[order]:
      if taken >= wanted:
        break
      members = rows[units[rows] == unit]
      keep += members.tolist()
      taken += len(members)
  return np.sort(np.asarray(keep, np.int64))


def load(data_cfg, prepared_dir: str, seed: int) -> DataSource:
  """Prepares the data in `prepared_dir` (once; process 0) and returns the in-memory source."""
  if jax.process_index() != 0:
    distributed.sync('braingan_prepare')  # Wait for process 0 to prepare.
  summary, builder = prepare_lib.prepare(data_cfg, prepared_dir)
  if jax.process_index() == 0:
    distributed.sync('braingan_prepare')
  logging.info('Data in %s:\n%s', os.path.abspath(prepared_dir),
               prepare_lib.format_summary(summary))
  images, labels = {}, {}
  for split in ('train', 'validation', 'test'):
    images[split], labels[split], paths = read_split(builder, split)
    if split == 'train' and data_cfg.fraction < 1.0:
      unit_of = {r.path: r.group for r in manifest_lib.read(
          os.path.join(prepared_dir, prepare_lib.MANIFEST))}
      keep = nested_subset(labels[split], np.array([unit_of[p] for p in paths]),
                           data_cfg.fraction, data_cfg.subset_seed)
      images[split], labels[split] = images[split][keep], labels[split][keep]
      logging.info('Training on %d of %d images (fraction %g, subset seed %d).', len(keep),
                   len(paths), data_cfg.fraction, data_cfg.subset_seed)
  return DataSource(images=images, labels=labels, channels=data_cfg.channels, seed=seed,
                    summary=summary)
