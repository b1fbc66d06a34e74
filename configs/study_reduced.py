"""The study on the shared real set with budgets that fit a 2-core CPU (about an hour and a half).

  python -m braingan.study --config=configs/study_reduced.py --workdir=runs/study_reduced \
      --config.data.data_dir=../shared/data/brain_tumor_mri/Training

What is cut, so nobody mistakes it for the full study (configs/study.py):
- 64 px instead of 128; fractions 25 % and 100 % only; no ratio sweep; 3 seeds;
- arms: baseline, augmented, classic augmentation, shuffled synthetic labels;
- classifiers from scratch (ImageNet weights cannot be downloaded here): a narrow network in the
  ResNet50 layout (1 block per stage, width 32), 6 epochs;
- GAN: the conditioned (compact) preset, 5,000 steps (50 epochs of 100) at every fraction;
  500 generated images per class.
"""
from configs import study


def get_config():
  config = study.get_config()
  config.data.data_dir = '../shared/data/brain_tumor_mri/Training'
  config.data.image_size = 64
  config.arms = ('baseline', 'augmented', 'classic', 'shuffled')
  config.fractions = (0.25, 1.0)
  config.ratio_sweep.per_real = ()
  config.transfer = ('scratch',)
  # The GAN: a fixed number of steps per epoch (the same at every fraction), 50 epochs.
  config.gan.steps_per_epoch = 100
  config.gan.epochs = 50
  config.synthetic_per_class = 500
  clf = config.classifier
  clf.model.stage_sizes = (1, 1, 1, 1)
  clf.model.width = 32
  clf.epochs = 6
  config.judge_epochs = 10
  # The recorded judges (64 and 128 px) kept Keras's moving averages, and every recorded GAN run
  # was checked and kept by them; recomputing their statistics would orphan all of those runs.
  # Their validation accuracy (best epoch by validation loss) is in each report.
  config.judge_bn_recalibration_batches = 0
  config.evaluate.gan_per_class = 100
  config.evaluate.n_boot = 1000
  config.evaluate.kid_subsets = 20
  return config
