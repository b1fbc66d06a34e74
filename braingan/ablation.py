"""python -m braingan.ablation --config=configs/gan_ablation.py --workdir=runs/ablation [--cells=...]

Trains each GAN variant of the config as independent, resumable cells and writes
<workdir>/ablation/report.md (braingan/study/ablation.py); flags in braingan/study/command.py.
"""
from braingan import cli
from braingan.study import command

_CONFIG = command.define('configs/gan_ablation.py')

if __name__ == '__main__':
  cli.run(lambda argv: command.main(_CONFIG, 'ablation'))
