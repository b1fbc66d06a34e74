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

from braingan import hostmem
from braingan.train import distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/cgan.py', 'GAN config file.')
flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics, samples go.', required=True)
distributed.define_flags()


def main(argv):
  del argv
  # Multi-host: joins the run from --coordinator_address/--num_processes/--process_id, the
  # BRAINGAN_* variables or a SLURM/MPI/TPU environment, before JAX touches any device.
  distributed.initialize(FLAGS)
  from braingan import generate  # pylint: disable=import-outside-toplevel
  from braingan.train import gan  # pylint: disable=import-outside-toplevel
  from braingan.train import parallel  # pylint: disable=import-outside-toplevel
  config = FLAGS.config
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save/restore at INFO
  summary = gan.train(config, FLAGS.workdir)
  if parallel.is_main_process():
    print('Training done:', json.dumps(summary, default=float), flush=True)
  if config.generate_per_class > 0:
    # All processes: restoring is collective; each writes its share of the images.
    out = config.generate_dir or os.path.join(FLAGS.workdir, 'generated')
    manifest = generate.generate(FLAGS.workdir, out, config.generate_per_class, seed=config.seed,
                                 batch_size=config.generate_batch_size)
    if parallel.is_main_process():
      print(f'Wrote {sum(manifest["counts"].values())} images to {out}', flush=True)


if __name__ == '__main__':
  hostmem.ensure_hugepage_malloc()  # re-executes once; see braingan/hostmem.py
  app.run(main)
