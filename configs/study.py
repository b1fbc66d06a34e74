"""The full study grid (for accelerators): arms x data fractions x seeds, plus controls.

  python -m braingan.study --config=configs/study.py --workdir=runs/study \
      --config.data.data_dir=../shared/data/brain_tumor_mri/Training [--config.test_dir=PATH]

Composed, not restated: `gan` is configs/cgan_conditioned.py, `reference_gan` configs/cgan.py
(GANForge) and `classifier` configs/classifier.py, each without its data section and seed;
the study's one `data` section and seed go to every cell (braingan/study/plan.py).
Every classifier cell takes the same number of optimizer steps (see plan.py); scores are on
the test split, model selection on validation.
"""
import ml_collections

from configs import cgan
from configs import cgan_conditioned
from configs import classifier
from configs import common
from configs import evaluate


def section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A job config without the fields the study sets for every cell (data, seed)."""
  del config['data']
  del config['seed']
  return config


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0                      # GANs and generation; classifiers use `seeds`
  config.data = common.data_config()
  config.data.test_fraction = 0.15     # the verdict's split: never trained or selected on
  config.gan = section(cgan_conditioned.judge_selected(cgan_conditioned.get_config()))
  config.reference_gan = section(cgan.get_config())   # for the 'augmented_ganforge' arm
  config.classifier = section(classifier.get_config())
  # BatchNorm statistics recomputed after each epoch (configs/classifier.py): with Keras's
  # moving averages a few hundred steps leave test accuracy swinging between epochs and seeds.
  config.classifier.bn_recalibration_batches = 16
  config.arms = ('baseline', 'augmented', 'classic', 'shuffled', 'balanced', 'cas',
                 'augmented_ganforge')
  config.fractions = (0.1, 0.25, 0.5, 1.0)
  config.seeds = (0, 1, 2)
  config.synthetic_per_real = 1.0      # synthetic images per real one (batch share r / (1 + r))
  config.ratio_sweep = ml_collections.ConfigDict()
  config.ratio_sweep.fraction = 0.25   # extra 'augmented' cells at these ratios, this fraction
  config.ratio_sweep.per_real = (0.5, 2.0)
  # Transfer learning levels (plan.TRANSFER): without pretrained weights only 'scratch' runs.
  config.transfer = ('none', 'keras15', 'head')
  config.synthetic_per_class = 2500    # generated pool per GAN
  config.judge_seed = 1000             # the judge is its own run, never one of the arms
  config.judge_epochs = 15             # its budget (the classifier section's architecture)
  config.judge_bn_recalibration_batches = 16
  config.evaluate = evaluate.get_config()
  config.test_dir = ''                 # external test folder: scored, never trained on
  return config
