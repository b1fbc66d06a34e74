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

from braingan import hostmem
from braingan.train import classifier
from braingan.train import distributed

config_flags.DEFINE_config_file('config', 'configs/classifier.py', 'Classifier config file.')
flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics, prepared data).')
flags.mark_flags_as_required(['workdir'])
distributed.define_flags()


def main(argv):
  del argv
  # Multi-host: joins the run from --coordinator_address/--num_processes/--process_id, the
  # BRAINGAN_* variables or a SLURM/MPI/TPU environment, before JAX touches any device.
  distributed.initialize(flags.FLAGS)
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file at INFO.
  final = classifier.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  if distributed.is_main_process():
    print(final)


if __name__ == '__main__':
  hostmem.ensure_hugepage_malloc()  # re-executes once; see braingan/hostmem.py
  app.run(main)
