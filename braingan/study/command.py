"""The command line of cell-based runs: `python -m braingan.study` and `python -m braingan.ablation`.

--config: the study or ablation config; --workdir: the folder holding every cell;
--cells: comma-separated name patterns (fnmatch, e.g. 'judge,gan/*' or 'clf/*_s1') of the cells
to run (default: every cell not finished); --list: print the cells and their state.
"""
from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from braingan import cli


def define(default_config: str):
  """Defines the flags; returns the config flag's holder."""
  holder = config_flags.DEFINE_config_file('config', default_config, 'Study or ablation config.')
  flags.DEFINE_string('workdir', None, 'Folder holding every cell.', required=True)
  flags.DEFINE_list('cells', [], 'Name patterns of the cells to run (default: all).')
  flags.DEFINE_bool('list', False, 'Print the cells and their state, run nothing.')
  cli.define_flags()
  return holder


def main(holder, plan: str) -> None:
  """Runs (or lists) the cells of plan 'study' or 'ablation'."""
  f = flags.FLAGS
  cli.start(f)
  from braingan import study  # pylint: disable=import-outside-toplevel
  from braingan.study import ablation  # pylint: disable=import-outside-toplevel
  plan_fn = {'study': study.cells, 'ablation': ablation.cells}[plan]
  config, workdir = holder.value, f.workdir
  if f.list:
    if not study.is_done(workdir, study.plan_lib.data_cell(config)):
      print('The data is not prepared yet (the plan needs its size): run --cells=data first.')
      return
    for cell in plan_fn(config, workdir):
      try:
        state = 'done' if study.is_done(workdir, cell) else 'to do'
      except ValueError:   # finished with other settings: running it would raise
        state = 'other'
      print(f'{state:6s} {cell.kind:15s} {cell.name}')
    return
  cli.run_training(lambda c, w: study.run_cells(c, w, plan_fn, tuple(f.cells)), config, workdir,
                   show_final=False)
  print(f"Report: {workdir}/{'report' if plan == 'study' else 'ablation'}/report.md")
