"""Train the ResNet50 classifier (real, or real + synthetic images).

  python train_classifier.py --config=configs/classifier.py --workdir=runs/clf \
      --config.data.data_dir=/path/to/Training --config.pretrained=none

Re-running with the same --workdir resumes from its latest checkpoint. Writes
<workdir>/history.json, final_metrics.json, metrics.jsonl, tensorboard/ and checkpoints/.
"""
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from braingan.train import classifier

config_flags.DEFINE_config_file('config', 'configs/classifier.py', 'Classifier config file.')
flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics, prepared data).')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file at INFO.
  final = classifier.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  print(final)


if __name__ == '__main__':
  app.run(main)
