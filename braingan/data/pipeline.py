"""tf.data input: train epochs (shuffled, sharded per process, optional augmentation and
synthetic mixing) and padded evaluation batches, as numpy dicts for the jitted steps.

The prepared TFDS split is read once into memory (uint8, 16 KB per 128 px image: the whole shared
set is ~45 MB), then every epoch is a fresh tf.data pipeline seeded by (seed, epoch). That keeps
epochs reproducible and lets a resumed run replay exactly the epoch it was in.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os

import jax
import numpy as np
import tensorflow as tf

from braingan.data import CLASSES
from braingan.data import decode
from braingan.data import prepare as prepare_lib
from braingan.data import scan as scan_lib

# TF must not grab GPU memory that JAX needs; done at import, before any pipeline exists.
tf.config.set_visible_devices([], 'GPU')


def load_folder_arrays(folder: str, image_size: int, resize: str = 'squash'):
  """Reads a folder of class sub-folders (e.g. generated images) -> (uint8 [N,S,S,1], labels)."""
  records = [r for r in scan_lib.scan(folder) if not r.reason]
  if not records:
    raise scan_lib.DataError(f'{folder}: no readable images in its class folders')
  images = np.stack([decode.load_gray(r.path, image_size, resize) for r in records])[..., None]
  labels = np.array([CLASSES.index(r.label) for r in records], np.int32)
  return images, labels


def _augment(image, seed):
  """Light, label-preserving augmentation: flip, small rotation, brightness/contrast."""
  s = tf.random.experimental.stateless_split(seed, 4)
  image = tf.image.stateless_random_flip_left_right(image, s[0])
  angle = tf.random.stateless_uniform([], s[1], -10.0, 10.0) * (math.pi / 180.0)
  size = tf.cast(tf.shape(image)[0], tf.float32)
  cos, sin = tf.cos(angle), tf.sin(angle)
  cx = cy = (size - 1.0) / 2.0
  transform = [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0]
  image = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.reshape(tf.stack(transform), [1, 8]),
      output_shape=tf.shape(image)[:2], fill_value=-1.0, interpolation='BILINEAR',
      fill_mode='CONSTANT')[0]
  image = image + tf.random.stateless_uniform([], s[2], -0.1, 0.1)
  mean = tf.reduce_mean(image)
  image = (image - mean) * tf.random.stateless_uniform([], s[3], 0.9, 1.1) + mean
  return tf.clip_by_value(image, -1.0, 1.0)


@dataclasses.dataclass
class DataSource:
  """The prepared splits of one workdir, in memory, plus the settings to batch them."""
  images: dict[str, np.ndarray]   # split -> uint8 [N, S, S, 1]
  labels: dict[str, np.ndarray]   # split -> int32 [N]
  channels: int
  seed: int
  summary: dict
  shuffle_buffer: int = 4096

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

  def steps_per_epoch(self, global_batch: int, synthetic_ratio: float = 0.0) -> int:
    """Real examples are seen about once per epoch; synthetic ones come on top of them."""
    if not 0.0 <= synthetic_ratio < 1.0:
      raise ValueError(f'config.synthetic_ratio={synthetic_ratio} must be in [0, 1)')
    examples = self.num_examples('train') / (1.0 - synthetic_ratio)
    steps = int(examples // global_batch)
    if steps < 1:
      raise ValueError(f'config.batch_size={global_batch} is larger than the '
                       f'{self.num_examples("train")} training images')
    return steps

  def _to_model(self, image):
    image = (tf.cast(image, tf.float32) - 127.5) / 127.5
    return tf.repeat(image, self.channels, axis=-1) if self.channels == 3 else image

  def train_dataset(self, epoch: int, global_batch: int, *, synthetic: tuple | None = None,
                    synthetic_ratio: float = 0.0, augment: bool = False) -> tf.data.Dataset:
    """One epoch as a tf.data.Dataset of this process's share of each global batch."""
    local_batch = self._local_batch(global_batch)
    steps = self.steps_per_epoch(global_batch, synthetic_ratio if synthetic else 0.0)
    epoch_seed = [self.seed, epoch]  # Same (seed, epoch) -> same batches, on every process.

    def seed_for(salt: int) -> int:  # Python's hash() is salted per process; this is not.
      return (self.seed * 1_000_003 + epoch * 9_176 + salt) % (2**31 - 1)

    def source(images, labels, salt):
      ds = tf.data.Dataset.from_tensor_slices((images, labels))
      ds = ds.shuffle(min(len(labels), self.shuffle_buffer) or 1, seed=seed_for(salt),
                      reshuffle_each_iteration=True)
      return ds.repeat()

    ds = source(self.images['train'], self.labels['train'], 1)
    if synthetic is not None and synthetic_ratio > 0:
      ds = tf.data.Dataset.sample_from_datasets(
          [ds, source(*synthetic, 2)], weights=[1 - synthetic_ratio, synthetic_ratio],
          seed=seed_for(3))
    # Every process walks the same global order and keeps its own contiguous slice of each
    # global batch, so N processes see exactly the batches one process would.
    ds = ds.take(steps * global_batch).enumerate()
    first = jax.process_index() * local_batch
    ds = ds.filter(lambda index, _: (index % global_batch >= first) &
                   (index % global_batch < first + local_batch))

    def to_example(index, pair):
      image, label = pair
      image = self._to_model(image)
      if augment:
        seed = tf.stack([tf.cast(epoch_seed[0], tf.int64) * 100003 + epoch_seed[1], index])
        image = _augment(image, seed)
      return {'image': image, 'label': label}

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True).prefetch(2)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)

  def train_epoch(self, epoch: int, global_batch: int, *, synthetic_dir: str = '',
                  synthetic_ratio: float = 0.0, augment: bool = False):
    """Iterator of {'image': float32 [b,S,S,C], 'label': int32 [b]} for one epoch."""
    synthetic = None
    if synthetic_dir and synthetic_ratio > 0:
      synthetic = self.synthetic(synthetic_dir)
    ds = self.train_dataset(epoch, global_batch, synthetic=synthetic,
                            synthetic_ratio=synthetic_ratio, augment=augment)
    return ds.as_numpy_iterator()

  def synthetic(self, folder: str):
    """Generated images as a second source; loaded once per folder and kept."""
    cache = self.__dict__.setdefault('_synthetic_cache', {})
    if folder not in cache:
      size = self.images['train'].shape[1]
      cache[folder] = load_folder_arrays(folder, size)
      logging.info('Synthetic source %s: %d images', folder, len(cache[folder][1]))
    return cache[folder]

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
      image = (images[idx].astype(np.float32) - 127.5) / 127.5
      if self.channels == 3:
        image = np.repeat(image, 3, axis=-1)
      yield {'image': image, 'label': labels[idx], 'mask': mask}


def read_split(builder, split: str):
  """Reads one prepared TFDS split into memory through tf.data (file order is fixed)."""
  ds = builder.as_dataset(split=split, shuffle_files=False)
  ds = ds.map(lambda ex: (ex['image'], ex['label'])).batch(1024)
  images, labels = [], []
  for image, label in ds.as_numpy_iterator():
    images.append(image)
    labels.append(label.astype(np.int32))
  size = builder.builder_config.image_size
  if not images:
    return np.zeros((0, size, size, 1), np.uint8), np.zeros((0,), np.int32)
  return np.concatenate(images), np.concatenate(labels)


def load(data_cfg, workdir: str, seed: int) -> DataSource:
  """Prepares workdir's data (once) and returns the in-memory DataSource."""
  if jax.process_count() > 1 and jax.process_index() != 0:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('braingan_prepare')  # Wait for process 0 to prepare.
  summary, builder = prepare_lib.prepare(data_cfg, workdir, seed)
  if jax.process_count() > 1 and jax.process_index() == 0:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices('braingan_prepare')
  logging.info('Data in %s:\n%s', os.path.abspath(workdir), prepare_lib.format_summary(summary))
  images, labels = {}, {}
  for split in ('train', 'validation'):
    images[split], labels[split] = read_split(builder, split)
  return DataSource(images=images, labels=labels, channels=data_cfg.channels, seed=seed,
                    summary=summary, shuffle_buffer=data_cfg.shuffle_buffer)
