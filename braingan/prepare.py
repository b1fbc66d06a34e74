"""`python -m braingan.prepare --data_dir=PATH --workdir=DIR [--seed=N] [--image_size=128]`.

Scans the folder, removes duplicates, writes DIR/manifest.csv and DIR/data_summary.json,
prepares the TFDS dataset and prints the summary. Training scripts run the same code path.
"""
from absl import app
from absl import flags
from absl import logging

from configs import common
from braingan.data import pipeline

flags.DEFINE_string('data_dir', None, 'Folder with one sub-folder per class.', required=True)
flags.DEFINE_string('workdir', None, 'Where manifest.csv and the TFDS data go.', required=True)
flags.DEFINE_integer('seed', 0, 'Seed of the train/validation split.')
flags.DEFINE_integer('image_size', 128, 'Side of the square images the models see.')
flags.DEFINE_enum('resize', 'squash', ['squash', 'pad'], 'How to make images square.')
flags.DEFINE_bool('strict', False, 'Fail on unreadable files instead of skipping them.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  cfg = common.data_config()
  cfg.data_dir, cfg.image_size = FLAGS.data_dir, FLAGS.image_size
  cfg.resize, cfg.strict = FLAGS.resize, FLAGS.strict
  data = pipeline.load(cfg, FLAGS.workdir, FLAGS.seed)
  print(pipeline.prepare_lib.format_summary(data.summary))
  print(f'Manifest: {FLAGS.workdir}/manifest.csv  (train {data.num_examples("train")}, '
        f'validation {data.num_examples("validation")})')
  logging.flush()


if __name__ == '__main__':
  app.run(main)
