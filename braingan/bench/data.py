"""Input-pipeline throughput: `python -m braingan.bench.data [--data_dir=...] [--json]`.

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

from absl import app
from absl import flags

from braingan.data import pipeline
from configs import common

flags.DEFINE_string('data_dir', os.path.join(os.path.dirname(__file__), '..', '..', '..',
                                             'shared', 'data', 'brain_tumor_mri', 'Training'),
                    'Image folder to measure on.')
flags.DEFINE_integer('image_size', 128, 'Image side.')
flags.DEFINE_integer('batch_size', 32, 'Global batch size.')
flags.DEFINE_integer('epochs', 2, 'Warm epochs to time.')
flags.DEFINE_bool('json', False, 'Print one JSON object instead of a table.')
FLAGS = flags.FLAGS


def _epoch_rate(source, epoch, augment):
  start, n = time.perf_counter(), 0
  for batch in source.train_epoch(epoch, FLAGS.batch_size, augment=augment):
    n += len(batch['label'])
  return n / (time.perf_counter() - start)


def main(argv):
  del argv
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
    plain = [_epoch_rate(source, e, False) for e in range(FLAGS.epochs)]
    augmented = [_epoch_rate(source, e, True) for e in range(FLAGS.epochs)]
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


if __name__ == '__main__':
  app.run(main)
