"""Class-conditional DCGAN: the original study's GANForge preset, reproduced faithfully.

  python train_gan.py --config=configs/cgan.py --workdir=runs/cgan [--config.field=value]

This is the study's reference point. Every option that differs from GANForge (projection or
auxiliary conditioning, hinge loss, spectral norm, DiffAugment/ADA, EMA, TTUR, transitional
conditioning) exists as a field here, off by default; configs/cgan_conditioned.py is the
recommended combination.
"""
import ml_collections

from configs import common


def model_config() -> ml_collections.ConfigDict:
  """GANForge ConditionalDCGAN preset (braingan/models/cdcgan.py)."""
  m = ml_collections.ConfigDict()
  m.name = 'cdcgan'
  m.latent_dim = 256
  m.embed_dim = 50              # label embedding size, both nets
  m.g_base_depth = 256          # channels of the generator's base grid (image_size / 16)
  m.g_widths = (256, 128, 64, 64)       # transposed convs 4x4 stride 2
  m.d_widths = (32, 64, 128, 256, 256)  # convs 5x5 stride 2
  m.dropout = 0.4
  m.leaky_slope = 0.2
  # How BatchNorm and Dropout run while training (braingan/train/gan.py):
  # 'inference' = what the original study actually trained (GANForge calls its nets without
  # training=True inside model.fit, so Keras used BatchNorm's fixed initial moving statistics,
  # i.e. a learned per-channel affine, and no dropout); 'training' = batch statistics + dropout.
  m.layer_mode = 'inference'
  m.bn_momentum = 0.99          # Keras BatchNormalization defaults
  m.bn_epsilon = 1e-3
  m.fast_layers = True          # exact fast lowerings for XLA:CPU; False = plain flax layers
  # Where the label enters (braingan/models/conditioning.py):
  #   generator: 'concat' (GANForge: an embedded label plane beside the base grid) or 'cbn'
  #     (class-conditional BatchNorm: per-class gain and bias after every up-sampling conv);
  #   discriminator: 'concat' (GANForge: a label plane as an extra input channel),
  #     'projection' (Miyato & Koyama 2018: logit += <embed(y), phi(x)>) or 'auxiliary'
  #     (AC-GAN: a 4-way class head whose cross-entropy enters both losses).
  m.g_conditioning = 'concat'
  m.d_conditioning = 'concat'
  # Discriminator normalisation after each conv: 'batch' (GANForge) or 'none'.
  m.d_norm = 'batch'
  # Spectral normalisation (Miyato et al. 2018): 'none', 'd' or 'gd' (both nets).
  m.spectral_norm = 'none'
  return m


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.data = common.data_config()
  config.model = model_config()
  config.optimizer = common.optimizer_config(2e-4, beta1=0.5)   # Adam, both nets
  # The discriminator's own learning rate (TTUR, Heusel et al. 2017); 0 = optimizer.learning_rate.
  config.optimizer.d_learning_rate = 0.0
  common.add_training_fields(config, epochs=50)
  config.keep_checkpoints = 3
  # Adversarial loss (braingan/train/losses.py): 'bce' (non-saturating, GANForge) or 'hinge'.
  config.loss = 'bce'
  config.aux_weight = 1.0       # weight of the class cross-entropy with d_conditioning='auxiliary'
  # Mode seeking (MSGAN, Mao et al. 2019): weight of 1 / (|G(z1,y) - G(z2,y)| / |z1 - z2|) in G's
  # loss, over pairs of the batch given the same label; 0 = off (GANForge).
  config.mode_seeking = 0.0
  # LeCam regularisation of D (Tseng et al. 2021, for limited data): weight of its term in D's
  # loss (0 = off, GANForge; the authors use 0.3) and the decay of its anchors (moving averages
  # of D's mean logit on reals and on fakes).
  config.lecam_weight = 0.0
  config.lecam_decay = 0.99
  # Both learning rates decay linearly over the epochs after this one (the last epoch trains at
  # 1 / (epochs - it + 1) of them; braingan/train/hooks.py LinearDecay); 0 = constant (GANForge).
  config.lr_decay_after_epoch = 0
  # Differentiable augmentation of real and fake images before D (braingan/train/augment.py).
  config.diffaug = ml_collections.ConfigDict()
  config.diffaug.policy = ''    # comma list of translation, cutout, brightness, contrast, flip
  config.diffaug.probability = 1.0   # per image and op (DiffAugment: 1); the start value with ADA
  config.diffaug.ada_target = 0.0    # > 0: ADA adapts the probability so E[sign D(real)] ~ target
  config.diffaug.ada_kimg = 20       # ADA: thousands of images for the probability to move by 1
  # Exponential moving average of G's weights, used for grids, generation and metrics.
  config.ema = ml_collections.ConfigDict()
  config.ema.decay = 0.0        # 0 = off; e.g. 0.999
  config.ema.start_step = 0     # plain copy of G's weights before this step
  # Transitional conditioning (Shahbazi et al. 2022): the label's influence rises linearly from
  # 0 to 1 over this many steps (0 = conditional from the first step).
  config.transition_steps = 0
  config.grid_per_class = 8     # sample grid: one row per class, fixed noise
  # Conditioning metrics while training (class agreement and FID in a judge's feature space):
  # a finished classifier run trained on the same real training split; '' = off.
  config.judge = ml_collections.ConfigDict()
  config.judge.run_dir = ''
  config.judge.every_epochs = 5
  config.judge.per_class = 100
  # Which generator is the run's result: 'last' (the last epoch's; GANForge) or the checkpoint
  # with the best in-training judge metric: 'cond_agreement', 'cond_agreement_min_class' (highest)
  # or 'cond_fid' (lowest). Chosen on generated images and the judge's validation features only;
  # the judge that chose it is biased in its favour, CAS (on real test images) is not.
  config.select_generator = 'last'
  # The balanced synthetic set written after training (train_gan.py).
  config.generate = ml_collections.ConfigDict()
  config.generate.per_class = 2500
  config.generate.dir = ''      # '' -> <workdir>/generated
  config.generate.batch_size = 64
  return config
