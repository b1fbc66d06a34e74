"""GAN demo on the shipped 160-image sample: end to end in a few minutes on a laptop CPU.

python train_gan.py --config=configs/demo.py --workdir=/tmp/demo
Smaller images (64 px) and nets than the study so it finishes quickly; the pipeline, step,
checkpoints, sample grids, TensorBoard events and generated images are the real ones.
"""
from configs import cgan


def get_config():
  config = cgan.get_config()
  config.data.data_dir = 'data/sample'
  config.data.image_size = 64
  config.model.latent_dim = 64
  config.model.g_base_depth = 64
  config.model.g_widths = (64, 32, 16, 16)
  config.model.d_widths = (16, 32, 64, 64, 64)
  # Only used with model.layer_mode='training' (running averages move; the default
  # 'inference' mode keeps them fixed): faster-moving averages so grids after few steps are
  # not still gray.
  config.model.bn_momentum = 0.9
  config.batch_size = 16
  config.epochs = 12
  config.grid_per_class = 6
  config.generate.per_class = 8
  return config
