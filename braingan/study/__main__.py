"""python -m braingan.study --config=configs/study_reduced.py --workdir=runs/study [--cells=...]

The study's cells (braingan/study/plan.py); flags in braingan/study/command.py.
"""
from braingan import cli
from braingan.study import command

_CONFIG = command.define('configs/study.py')

if __name__ == '__main__':
  cli.run(lambda argv: command.main(_CONFIG, 'study'))
