"""python -m braingan.ablation --config=configs/gan_ablation.py --workdir=runs/ablation [--cells=...]

Trains each GAN variant of the config as independent, resumable cells and writes
<workdir>/report/report.md (braingan/study/ablation.py). --cells selects cells by name pattern
(e.g. 'gan/recommended' or 'gan/*,generate/*'), --list shows them and their state.
"""
from absl import flags
from ml_collections import config_flags

from braingan import cli

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/gan_ablation.py', 'Ablation config.')
flags.DEFINE_string('workdir', None, 'Folder holding every cell.', required=True)
flags.DEFINE_list('cells', [], 'Name patterns of the cells to run (default: all).')
flags.DEFINE_bool('list', False, 'Print the cells and their state, run nothing.')
cli.define_flags()
FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.start(FLAGS)
  from braingan import study  # pylint: disable=import-outside-toplevel
  from braingan.study import ablation  # pylint: disable=import-outside-toplevel
  config, workdir = _CONFIG.value, FLAGS.workdir
  if FLAGS.list:
    if not study.is_done(workdir, study.plan_lib.data_cell(config)):
      print('The data is not prepared yet: run --cells=data first.')
      return
    for cell in ablation.cells(config, workdir):
      state = 'done' if study.is_done(workdir, cell) else 'to do'
      print(f'{state:6s} {cell.kind:15s} {cell.name}')
    return
  cli.run_training(lambda c, w: study.run_cells(c, w, ablation.cells, tuple(FLAGS.cells)),
                   config, workdir, show_final=False)
  print(f'Report: {workdir}/report/report.md')


if __name__ == '__main__':
  cli.run(main)
