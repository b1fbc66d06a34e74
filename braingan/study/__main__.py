"""python -m braingan.study --config=configs/study_reduced.py --workdir=runs/study [--cells=...]

--cells: comma-separated name patterns (fnmatch), e.g. 'judge,gan/*' or 'clf/*_s1'; the
default runs every cell not yet finished. --list prints the cells and which are finished.
"""
from absl import flags
from ml_collections import config_flags

from braingan import cli

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/study.py', 'Study config file.')
flags.DEFINE_string('workdir', None, 'Folder holding every cell.', required=True)
flags.DEFINE_list('cells', [], 'Name patterns of the cells to run (default: all).')
flags.DEFINE_bool('list', False, 'Print the cells and their state, run nothing.')
cli.define_flags()
FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.start(FLAGS)
  from braingan import study  # pylint: disable=import-outside-toplevel
  config, workdir = _CONFIG.value, FLAGS.workdir
  if FLAGS.list:
    if not study.is_done(workdir, study.plan_lib.data_cell(config)):
      print('The data is not prepared yet (the plan needs its size): run --cells=data first.')
      return
    cells = study.cells(config, workdir)
    for cell in cells:
      state = 'done' if study.is_done(workdir, cell) else 'to do'
      print(f'{state:6s} {cell.kind:10s} {cell.name}')
    return
  cli.run_training(lambda c, w: study.run_study(c, w, tuple(FLAGS.cells)), config, workdir,
                   show_final=False)
  print(f'Report: {workdir}/report/report.md')


if __name__ == '__main__':
  cli.run(main)
