"""Class-conditional DCGAN on the brain-MRI slices: the original study's settings.

python train_gan.py --config=configs/cgan.py --workdir=runs/cgan [--config.field=value]
"""
import ml_collections

from configs import common


def model_config() -> ml_collections.ConfigDict:
  """GANForge ConditionalDCGAN preset (see braingan/models/cdcgan.py)."""
  m = ml_collections.ConfigDict()
  m.latent_dim = 256
  m.embed_dim = 50              # label embedding size, both nets
  m.g_base_depth = 256          # channels of the generator's base grid (image_size / 16)
  m.g_widths = (256, 128, 64, 64)       # transposed convs 4x4 stride 2
  m.d_widths = (32, 64, 128, 256, 256)  # convs 5x5 stride 2
  m.dropout = 0.4
  m.leaky_slope = 0.2
  # How BatchNorm and Dropout run while training (braingan/train/gan_step.py):
  # 'inference' = what the original study actually trained (GANForge calls its nets without
  # training=True inside model.fit, so Keras used BatchNorm's fixed initial moving statistics,
  # i.e. a learned per-channel affine, and no dropout); 'training' = batch statistics + dropout.
  m.layer_mode = 'inference'
  m.bn_momentum = 0.99          # Keras BatchNormalization defaults
  m.bn_epsilon = 1e-3
  m.fast_layers = True          # exact fast lowerings for XLA:CPU; False = plain flax layers
  return m


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = common.data_config()
  config.model = model_config()
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 2e-4   # Adam, both nets
  config.optimizer.beta1 = 0.5
  config.optimizer.beta2 = 0.999
  config.optimizer.epsilon = 1e-7         # Keras's Adam default
  config.batch_size = 32                  # global batch, split over all devices
  # Compute dtype: 'bfloat16' runs convolutions/matmuls in bf16 (GPU/TPU); parameters, Adam
  # state, BatchNorm statistics and losses stay float32 (braingan/train/precision.py).
  config.dtype = 'float32'
  config.num_epochs = 50
  config.max_steps_per_epoch = 0          # 0: whole epochs; >0 caps them (smoke runs)
  config.num_devices = 0                  # 0: all devices
  config.checkpoint_every = 1             # epochs
  config.keep_checkpoints = 3
  config.grid_per_class = 8               # sample grid: one row per class, fixed noise
  config.log_every_seconds = 10.0         # progress line interval
  config.generate_per_class = 2500        # balanced synthetic set written after training
  config.generate_dir = ''                # '' -> <workdir>/generated
  config.generate_batch_size = 64
  return config
