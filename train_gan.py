"""Train the class-conditional GAN, then write its balanced synthetic set.

  python train_gan.py --config=configs/cgan.py --workdir=runs/cgan [--config.epochs=10]

Re-running the same command resumes from the latest checkpoint in --workdir.
"""
from absl import flags
from ml_collections import config_flags

from braingan import cli

config_flags.DEFINE_config_file('config', 'configs/cgan.py', 'GAN config file.')
flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics, samples go.', required=True)
cli.define_flags()


def main(argv):
  del argv
  cli.start(flags.FLAGS)
  from braingan import generate  # pylint: disable=import-outside-toplevel
  from braingan import train  # pylint: disable=import-outside-toplevel
  config = flags.FLAGS.config
  summary = cli.run_training(train.train_and_evaluate, config, flags.FLAGS.workdir)
  if config.generate.per_class > 0:
    # All processes: restoring is collective-free but each process writes its share of images.
    generate.generate(flags.FLAGS.workdir, config.generate.dir, config.generate.per_class,
                      seed=config.seed, batch_size=config.generate.batch_size)
  return summary


if __name__ == '__main__':
  cli.run(main)
