"""Train the class-conditional DCGAN, then write its balanced synthetic set.

python train_gan.py --config=configs/cgan.py --workdir=runs/cgan [--config.num_epochs=10]
Re-running the same command resumes from the latest checkpoint in --workdir.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/cgan.py', 'GAN config file.')
flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics, samples go.', required=True)


def main(argv):
  del argv
  from braingan import generate  # pylint: disable=import-outside-toplevel
  from braingan.train import gan  # pylint: disable=import-outside-toplevel
  from braingan.train import parallel  # pylint: disable=import-outside-toplevel
  config = FLAGS.config
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save/restore at INFO
  summary = gan.train(config, FLAGS.workdir)
  print('Training done:', json.dumps(summary, default=float), flush=True)
  if config.generate_per_class > 0 and parallel.is_main_process():
    out = config.generate_dir or os.path.join(FLAGS.workdir, 'generated')
    manifest = generate.generate(FLAGS.workdir, out, config.generate_per_class, seed=config.seed,
                                 batch_size=config.generate_batch_size)
    print(f'Wrote {sum(manifest["counts"].values())} images to {out}', flush=True)


if __name__ == '__main__':
  app.run(main)
