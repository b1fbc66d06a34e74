"""The recommended conditional GAN: images that carry their class, on small data and compute.

  python train_gan.py --config=configs/cgan_conditioned.py --workdir=runs/cgan_c \
      --config.data.data_dir=../shared/data/brain_tumor_mri/Training --config.data.image_size=64

What differs from configs/cgan.py (GANForge, the study's reference point), each a config field:
- the compact architecture (braingan/models/compact_gan.py): several times cheaper per step than
  GANForge's, so a CPU budget buys thousands of steps instead of hundreds;
- the label enters G through class-conditional BatchNorm and D through a projection plus an
  auxiliary classifier head whose cross-entropy enters both losses (AC-GAN);
- hinge loss; a minibatch-standard-deviation channel in D; mode seeking (MSGAN) in G's loss;
- ADA: DiffAugment ops (translation, cutout, brightness, contrast, left-right flip) applied to
  real and fake images before D with a probability that adapts to D's overconfidence.
The ablation (python -m braingan.ablation) measures what each ingredient buys.
"""
import ml_collections

from configs import cgan


def model_config() -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict()
  m.name = 'compact_cgan'
  m.latent_dim = 128
  # G twice as wide as it was until 2026-12-07 (128 / (64, 32, 16, 8)): ~1.4x the step's
  # cost on 2 CPU cores; in the 64 px ablation, with mode seeking, its images trained a
  # classifier (CAS) 8.9 points better on average over GAN seeds 0-2, x0.80-0.87 of the
  # real-trained one (configs/gan_ablation.py recommended_select_ms03_wide*, README).
  m.g_base_depth = 256                  # channels of G's base grid (image_size / 16)
  m.g_widths = (128, 64, 32, 16)        # sub-pixel transposed convs 4x4 / 2
  m.d_widths = (32, 64, 128, 256)       # convs 4x4 / 2
  m.g_conditioning = 'cbn'              # 'cbn' or 'none'
  m.d_conditioning = 'projection+auxiliary'   # any of projection, auxiliary joined by '+'
  m.leaky_slope = 0.2
  m.mbstd_group = 4                     # minibatch-std channel (0: off)
  m.spectral_norm = 'none'              # 'none' or 'd'
  m.bn_momentum = 0.9
  m.layer_mode = 'training'             # G's BatchNorm on batch statistics while training
  return m


def get_config():
  config = cgan.get_config()
  config.model = model_config()
  config.loss = 'hinge'
  config.aux_weight = 1.0
  # Mode seeking: the auxiliary head alone rewards one easily classified image per class.
  config.mode_seeking = 0.3
  config.optimizer.learning_rate = 2e-4
  config.optimizer.d_learning_rate = 2e-4
  config.optimizer.beta1 = 0.5
  config.diffaug.policy = 'translation,cutout,brightness,contrast,flip'
  config.diffaug.probability = 0.0      # ADA's start
  config.diffaug.ada_target = 0.6
  config.diffaug.ada_kimg = 100
  # No EMA: at 5,000 steps an EMA generator (decay 0.999, its own BatchNorm statistics) judged
  # 72 % / 86 % class agreement at GAN seeds 0 / 1, the raw one 89 % / 73 % (the ablation).
  config.ema.decay = 0.0
  return config


def judge_selected(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The preset as the study runs it: a judge (config.judge.run_dir, set by the study) checks
  it every 5 epochs, and the run's result is the checkpoint whose worst class the judge agreed
  with most (config.select_generator), not the last. Why: at a constant learning rate class
  agreement swings 15-20 points between checks (GAN seed 1: 94 % after epoch 40, 77 % after
  50); kept, GAN seeds 0 / 1 / 2 judged 87.8 / 93.0 / 89.7 %, every class >= 77 %
  (configs/gan_ablation.py, recommended_select*). A second judge that chose nothing sees a
  smaller gain (+4.5 / +3.0 points), and CAS did not move on average."""
  config.select_generator = 'cond_agreement_min_class'
  config.judge.every_epochs = 5
  return config
