"""The GAN ablation on the shared real set at 64 px, sized for a 2-core CPU.

  python -m braingan.ablation --config=configs/gan_ablation.py --workdir=runs/ablation

Variants, each a full GAN config (braingan/study/ablation.py trains, samples and judges each):
  ganforge                 configs/cgan.py: the original study's cDCGAN (reference)
  projection               + projection discriminator instead of the label plane in D
  projection_hinge_sn      + hinge loss and spectral norm in D (its BatchNorm and dropout off)
  projection_hinge_sn_ada  + ADA over DiffAugment ops (translation, cutout, intensity, flip)
  ..._ema                  + an EMA of G's weights for sampling
  recommended              configs/cgan_conditioned.py: the compact architecture with class-
                           conditional BatchNorm, projection + auxiliary head, hinge, ADA
  recommended_seed1        the same with seed 1
  recommended_ms           + mode seeking in G's loss (MSGAN; config.mode_seeking)
  recommended_ema(_seed1)  + an EMA of G's weights (decay 0.999), GAN seeds 0 and 1
  recommended_decay(_seed1) + learning rates decaying linearly over epochs 26-50, seeds 0 and 1
The GANForge-architecture variants get the same number of steps as the reference (1,000: what
the old reduced study gave it); the recommended preset its study budget (5,000 steps, in less
wall time: its step is ~10x cheaper). Data, judge, CAS classifier and evaluation settings are
configs/study_reduced.py's.
"""
import ml_collections

from configs import cgan
from configs import cgan_conditioned
from configs import study
from configs import study_reduced


def _ganforge_steps(config):
  config.steps_per_epoch, config.epochs = 100, 10
  config.judge.every_epochs = 5
  return config


def get_config():
  config = study_reduced.get_config()
  v = ml_collections.ConfigDict()
  v.ganforge = _ganforge_steps(study.section(cgan.get_config()))
  v.projection = _ganforge_steps(study.section(cgan.get_config()))
  v.projection.model.d_conditioning = 'projection'
  v.projection_hinge_sn = ml_collections.ConfigDict(v.projection.to_dict())
  v.projection_hinge_sn.loss = 'hinge'
  v.projection_hinge_sn.model.spectral_norm = 'd'
  v.projection_hinge_sn.model.d_norm = 'none'
  v.projection_hinge_sn.model.dropout = 0.0
  v.projection_hinge_sn_ada = ml_collections.ConfigDict(v.projection_hinge_sn.to_dict())
  v.projection_hinge_sn_ada.diffaug.policy = 'translation,cutout,brightness,contrast,flip'
  v.projection_hinge_sn_ada.diffaug.probability = 0.0
  v.projection_hinge_sn_ada.diffaug.ada_target = 0.6
  v.projection_hinge_sn_ada.diffaug.ada_kimg = 100
  v.projection_hinge_sn_ada_ema = ml_collections.ConfigDict(v.projection_hinge_sn_ada.to_dict())
  v.projection_hinge_sn_ada_ema.ema.decay = 0.999
  v.projection_hinge_sn_ada_ema.ema.start_step = 200
  v.recommended = study.section(cgan_conditioned.get_config())
  v.recommended.steps_per_epoch, v.recommended.epochs = 100, 50
  v.recommended.judge.every_epochs = 10
  # The same preset with another seed (run-to-run spread), and with a mode-seeking term in G's
  # loss (more images per class that differ; the auxiliary head alone favours one per class).
  v.recommended_seed1 = ml_collections.ConfigDict(v.recommended.to_dict())
  v.recommended_seed1.seed = 1
  v.recommended_ms = ml_collections.ConfigDict(v.recommended.to_dict())
  v.recommended_ms.mode_seeking = 1.0
  # The preset with an EMA of G's weights, at both GAN seeds: the raw generator's agreement
  # swings between judge checks (seed 1: 94 % at epoch 40, 77 % at 50).
  v.recommended_ema = ml_collections.ConfigDict(v.recommended.to_dict())
  v.recommended_ema.ema.decay = 0.999
  v.recommended_ema.ema.start_step = 200
  v.recommended_ema_seed1 = ml_collections.ConfigDict(v.recommended_ema.to_dict())
  v.recommended_ema_seed1.seed = 1
  # The preset with both learning rates decaying linearly over the second half (epochs 26-50).
  v.recommended_decay = ml_collections.ConfigDict(v.recommended.to_dict())
  v.recommended_decay.lr_decay_after_epoch = 25
  v.recommended_decay_seed1 = ml_collections.ConfigDict(v.recommended_decay.to_dict())
  v.recommended_decay_seed1.seed = 1
  config.variants = v
  # Classifier seeds of CAS and of its real-trained reference (the ratio is mean over mean).
  config.cas_seeds = (0, 1, 2)
  return config
