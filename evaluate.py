"""Baseline vs augmented classifier (and the GAN): metrics, statistics, report.

  python evaluate.py --config=configs/evaluate.py --baseline=runs/clf_real \
      --augmented=runs/clf_aug [--gan=runs/cgan] [--cas=runs/clf_cas] [--test_dir=PATH] \
      --out=runs/report

Reads the runs only (restores are read-only); writes into --out.
"""
from absl import flags
from ml_collections import config_flags

from braingan import cli

config_flags.DEFINE_config_file('config', 'configs/evaluate.py', 'Evaluation config file.')
flags.DEFINE_string('baseline', None, 'Workdir of the classifier trained on real data.',
                    required=True)
flags.DEFINE_string('augmented', None, 'Workdir of the classifier trained on real + synthetic.',
                    required=True)
flags.DEFINE_string('out', None, 'Where report.md, metrics.json and the PNGs go.', required=True)
flags.DEFINE_string('gan', '', 'Workdir of the cGAN run (judge its samples).')
flags.DEFINE_string('synthetic_dir', '', 'Folder of generated images to judge instead.')
flags.DEFINE_string('cas', '', 'Workdir of a classifier trained on generated images only.')
flags.DEFINE_string('test_dir', '', 'External test folder (class sub-folders); never trained on.')
cli.define_flags()
FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.start(FLAGS)
  from braingan.eval import runner  # pylint: disable=import-outside-toplevel
  metrics = runner.evaluate(FLAGS.config, baseline=FLAGS.baseline, augmented=FLAGS.augmented,
                            out=FLAGS.out, gan=FLAGS.gan, synthetic_dir=FLAGS.synthetic_dir,
                            cas=FLAGS.cas, test_dir=FLAGS.test_dir)
  print(runner.report.verdict(metrics))
  print(f'Report: {FLAGS.out}/report.md')


if __name__ == '__main__':
  cli.run(main)
