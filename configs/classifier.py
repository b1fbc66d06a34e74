"""Classifier config: Keras-layout ResNet50 fine-tuned as in the original study.

Defaults reproduce the study: ImageNet weights, first 15 Keras layers frozen, Adam 1e-3, batch 32,
up to 15 epochs, early stopping on val_loss with restore-best, ReduceLROnPlateau(factor 0.5).
The study's early-stopping / plateau patience values are not recorded; 5 and 3 are our choice.

  python train_classifier.py --config=configs/classifier.py --workdir=runs/clf \
      --config.data.data_dir=/path/to/Training [--config.pretrained=none]
"""
import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = common.data_config()
  # The model repeats grayscale to 3 channels itself (as the study's images were), so the
  # pipeline hands over 1 channel: a third of the host->device bytes. 3 also works.
  config.data.channels = 1

  # Model: ResNet50 = stage_sizes (3, 4, 6, 3), width 64. Tests shrink these.
  config.model = ml_collections.ConfigDict()
  config.model.stage_sizes = (3, 4, 6, 3)
  config.model.width = 64
  config.model.head_units = 512
  config.model.dropout = 0.5
  config.model.preprocess = 'caffe'   # Keras ResNet50's; 'none' feeds [-1, 1] directly.

  # 'imagenet': Keras's resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, looked up at
  # pretrained_path, then ~/.keras/models/, then downloaded (md5-checked); it is an error if
  # none works. 'none': from scratch. Anything else: a path to a Keras legacy .h5 weights file.
  config.pretrained = 'imagenet'
  config.pretrained_path = ''
  config.pretrained_download = True
  # Parameter-path prefixes kept fixed (their BatchNorm runs in inference mode, as Keras's
  # trainable=False). 'keras15' = the study's first 15 Keras layers; () or 'none' = train all.
  config.freeze = 'keras15'

  config.batch_size = 32
  # Compute dtype: 'bfloat16' runs convolutions/matmuls in bf16 (GPU/TPU); parameters, Adam
  # state, BatchNorm statistics and losses stay float32 (braingan/train/precision.py).
  config.dtype = 'float32'
  config.epochs = 15                     # The study used 20 for augmented runs.
  config.learning_rate = 1e-3
  config.adam_epsilon = 1e-7             # Keras's Adam default.
  config.early_stopping_patience = 5     # Epochs without val_loss improvement before stopping.
  config.reduce_lr_patience = 3
  config.reduce_lr_factor = 0.5
  config.min_learning_rate = 1e-6
  config.class_weights = False           # True: 'balanced' weights, n / (k * count_c).
  config.augment = False                 # Flips, small rotations, brightness/contrast.

  # Generated images (OUT/<class>/*.png) mixed into training; validation stays real only.
  config.synthetic_dir = ''
  config.synthetic_ratio = 0.0

  config.num_devices = 0                 # 0 = all devices.
  config.max_steps_per_epoch = 0         # > 0 caps an epoch (smoke runs, benchmarks).
  config.log_every_steps = 20
  config.checkpoint_max_to_keep = 2
  return config
