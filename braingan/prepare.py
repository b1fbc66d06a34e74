"""`python -m braingan.prepare --workdir=DIR --data.data_dir=PATH [--data.field=value ...]`.

Scans the folder, groups duplicates and related images, splits, writes DIR/manifest.csv and
DIR/data_summary.json, prepares the TFDS dataset and prints the summary. Training runs the same
code path; every field of configs/common.py's data section can be given as --data.<field>.
"""
from absl import flags
from ml_collections import config_flags

from braingan import cli
from configs import common

_DATA = config_flags.DEFINE_config_dict('data', common.data_config(), 'The data section.')
flags.DEFINE_string('workdir', None, 'Where manifest.csv and the TFDS data go.', required=True)
cli.define_flags()
FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.start(FLAGS)
  from braingan.data import pipeline  # pylint: disable=import-outside-toplevel
  data = pipeline.load(_DATA.value, FLAGS.workdir, seed=0)
  print(pipeline.prepare_lib.format_summary(data.summary))
  print(f'Manifest: {FLAGS.workdir}/manifest.csv  (train {data.num_examples("train")}, '
        f'validation {data.num_examples("validation")}, test {data.num_examples("test")})')


if __name__ == '__main__':
  cli.run(main)
