"""Train the ResNet50 classifier (real, or real + synthetic images).

  python train_classifier.py --config=configs/classifier.py --workdir=runs/clf \
      --config.data.data_dir=/path/to/Training --config.model.pretrained=none

Re-running with the same --workdir resumes from its latest checkpoint. Writes
<workdir>/history.json, final_metrics.json, metrics.jsonl, tensorboard/ and checkpoints/.
"""
from absl import flags
from ml_collections import config_flags

from braingan import cli

config_flags.DEFINE_config_file('config', 'configs/classifier.py', 'Classifier config file.')
flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics, prepared data).',
                    required=True)
cli.define_flags()


def main(argv):
  del argv
  cli.start(flags.FLAGS)
  from braingan import train  # pylint: disable=import-outside-toplevel
  return cli.run_training(train.train_and_evaluate, flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == '__main__':
  cli.run(main)
