"""Input-pipeline throughput: `python -m braingan.bench data [--data_dir=...] [--json]`.

Cold: scan + dedup + manifest + TFDS preparation from the raw JPEGs (what a first run pays).
Warm: reading the prepared TFDS data and iterating training epochs at batch 32 (what every
later epoch and run pays), with and without augmentation. Compare with the train steps'
images/s (`python -m braingan.bench gan|classifier`): the pipeline must be far faster.
"""
import json
import os
import sys
import tempfile
import time

import argparse

from braingan.data import pipeline
from configs import common

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'data',
                            'brain_tumor_mri', 'Training')


def _parse(argv):
  parser = argparse.ArgumentParser(prog='python -m braingan.bench data')
  parser.add_argument('--data_dir', default=DEFAULT_DATA, help='Image folder to measure on.')
  parser.add_argument('--image_size', type=int, default=128)
  parser.add_argument('--batch_size', type=int, default=32, help='Global batch size.')
  parser.add_argument('--epochs', type=int, default=2, help='Warm epochs to time.')
  parser.add_argument('--json', action='store_true', help='Print one JSON object.')
  return parser.parse_args(argv)


def _epoch_rate(source, epoch, augment, batch_size):
  start, n = time.perf_counter(), 0
  for batch in source.train_epoch(epoch, batch_size, augment=augment):
    n += len(batch['label'])
  return n / (time.perf_counter() - start)


def main(argv=None) -> int:
  FLAGS = _parse(argv)  # pylint: disable=invalid-name
  cfg = common.data_config()
  cfg.data_dir, cfg.image_size = os.path.abspath(FLAGS.data_dir), FLAGS.image_size
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    source = pipeline.load(cfg, workdir, seed=0)
    cold_s = time.perf_counter() - start
    files = source.summary['files']
    start = time.perf_counter()
    source = pipeline.load(cfg, workdir, seed=0)
    warm_load_s = time.perf_counter() - start
    plain = [_epoch_rate(source, e, False, FLAGS.batch_size) for e in range(FLAGS.epochs)]
    augmented = [_epoch_rate(source, e, True, FLAGS.batch_size) for e in range(FLAGS.epochs)]
  result = {
      'files': files, 'image_size': FLAGS.image_size, 'batch_size': FLAGS.batch_size,
      'cold_prepare_s': round(cold_s, 2), 'cold_images_per_s': round(files / cold_s, 1),
      'warm_load_s': round(warm_load_s, 2),
      'warm_images_per_s': round(max(plain), 1),
      'warm_augmented_images_per_s': round(max(augmented), 1),
  }
  if FLAGS.json:
    print(json.dumps(result))
  else:
    print(f'Input pipeline on {cfg.data_dir} ({files} files, {FLAGS.image_size} px, batch '
          f'{FLAGS.batch_size}, {os.cpu_count()} CPUs)')
    print(f'  cold (scan + dedup + manifest + TFDS prepare): {result["cold_prepare_s"]} s = '
          f'{result["cold_images_per_s"]} images/s')
    print(f'  warm load of the prepared TFDS data: {result["warm_load_s"]} s')
    print(f'  warm epochs: {result["warm_images_per_s"]} images/s plain, '
          f'{result["warm_augmented_images_per_s"]} images/s with augmentation')
  sys.stdout.flush()
  return 0


if __name__ == '__main__':
  sys.exit(main())
