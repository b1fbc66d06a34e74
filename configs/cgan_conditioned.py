"""The recommended conditional GAN: the GANForge layout with conditioning that survives small data.

  python train_gan.py --config=configs/cgan_conditioned.py --workdir=runs/cgan_c \
      --config.data.data_dir=../shared/data/brain_tumor_mri/Training

Differences from configs/cgan.py (GANForge), each a config field (README "GAN variants"):
- the label enters G through class-conditional BatchNorm and D through a projection plus an
  auxiliary classifier head (its cross-entropy in both losses);
- hinge loss, spectral normalisation in D (no BatchNorm there), TTUR learning rates;
- DiffAugment (translation, cutout) on real and fake images before D;
- an EMA of G's weights for grids, generation and metrics.
"""
from configs import cgan


def get_config():
  config = cgan.get_config()
  m = config.model
  m.g_conditioning = 'cbn'
  m.d_conditioning = 'projection+auxiliary'
  m.d_norm = 'none'
  m.spectral_norm = 'd'
  m.dropout = 0.0
  config.loss = 'hinge'
  config.aux_weight = 1.0
  config.optimizer.learning_rate = 1e-4       # G
  config.optimizer.d_learning_rate = 4e-4     # D (TTUR)
  config.optimizer.beta1 = 0.0
  config.optimizer.beta2 = 0.9
  config.diffaug.policy = 'translation,cutout'
  config.ema.decay = 0.999
  config.ema.start_step = 500
  return config
