"""Classifier config: Keras-layout ResNet50 fine-tuned as in the original study.

Defaults reproduce the study: ImageNet weights, first 15 Keras layers frozen, Adam 1e-3, batch 32,
up to 15 epochs, early stopping on val_loss with restore-best, ReduceLROnPlateau(factor 0.5).
The study's early-stopping / plateau patience values are not recorded; 5 and 3 are our choice.

  python train_classifier.py --config=configs/classifier.py --workdir=runs/clf \
      --config.data.data_dir=/path/to/Training [--config.model.pretrained=none]
"""
import ml_collections

from configs import common


def model_config() -> ml_collections.ConfigDict:
  """Keras-layout ResNet + the study's head (braingan/models/resnet.py); ResNet50 by default."""
  m = ml_collections.ConfigDict()
  m.name = 'resnet'
  m.stage_sizes = (3, 4, 6, 3)   # ResNet50; tests and reduced runs shrink these
  m.width = 64
  m.head_units = 512
  m.dropout = 0.5
  m.preprocess = 'caffe'         # Keras ResNet50's; 'none' feeds [-1, 1] directly
  # 'imagenet': Keras's resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5, looked up at
  # pretrained_path, then ~/.keras/models/, then downloaded (md5-checked); it is an error if
  # none works. 'none': from scratch. Anything else: a path to a Keras legacy .h5 weights file.
  m.pretrained = 'imagenet'
  m.pretrained_path = ''
  m.pretrained_download = True
  # Parameter-path prefixes kept fixed (their BatchNorm runs in inference mode, as Keras's
  # trainable=False). 'keras15' = the study's first 15 Keras layers; 'head' = everything but
  # the head; 'none' = train all; or a comma list of prefixes.
  m.freeze = 'keras15'
  return m


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.data = common.data_config()
  # The model repeats grayscale to 3 channels itself (as the study's images were), so the
  # pipeline hands over 1 channel: a third of the host->device bytes. 3 also works.
  config.data.channels = 1
  config.model = model_config()
  config.optimizer = common.optimizer_config(1e-3)
  common.add_training_fields(config, epochs=15)   # The study used 20 for augmented runs.
  config.early_stopping_patience = 5     # Epochs without val_loss improvement before stopping.
  config.reduce_lr_patience = 3
  config.reduce_lr_factor = 0.5
  config.min_learning_rate = 1e-6
  config.class_weights = False           # True: 'balanced' weights, n / (k * count_c).
  # The weights kept at the end: 'val_loss' restores the epoch with the lowest validation loss
  # (Keras's restore_best_weights, the study's protocol); 'none' keeps the last epoch (no
  # selection on validation images: what CAS needs, see braingan/study/ablation.py).
  config.restore_best = 'val_loss'
  # BatchNorm statistics: 0 keeps Keras's moving averages (momentum 0.99, the original study's);
  # n > 0 recomputes them after every epoch, with that epoch's final weights, as the mean over n
  # training batches (braingan/train/classifier.py). After a few hundred steps the moving
  # averages still lag the weights: the 128 px ablation's real-trained classifiers scored
  # 13 / 43 / 60 % on the test split with them, 80 / 79 / 79 % with the statistics recomputed.
  config.bn_recalibration_batches = 0
  return config
