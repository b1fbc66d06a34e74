"""Pieces every config shares: the data section, the training section, the optimizer.

One vocabulary: the same field means the same thing for the GAN and the classifier
(`epochs`, `batch_size`, `steps_per_epoch`, `optimizer.learning_rate`, `data.image_size`...).
Every field is validated before any file is written (braingan/config_check.py); a field a
model does not use, or a misspelt one, is an error.
"""
import ml_collections


def data_config() -> ml_collections.ConfigDict:
  data = ml_collections.ConfigDict()
  # A folder with one sub-folder per class (aliases such as glioma_tumor/notumor are mapped).
  data.data_dir = 'data/sample'
  # Where manifest.csv, data_summary.json and the TFDS copy live; '' = the run's own folder.
  # The study points every stage at one prepared copy (<study>/data).
  data.prepared_dir = ''
  data.image_size = 128
  # 'squash' resizes straight to a square (as the original study did); 'pad' keeps the
  # aspect ratio and pads with black.
  data.resize = 'squash'
  # Channels handed to the model: 1 = grayscale, 3 = the gray channel repeated.
  data.channels = 1
  data.val_fraction = 0.2
  # Near-duplicate detection: max Hamming distance between 64-bit perceptual hashes for
  # two images to count as the same picture (2 on the shared set: pairs at 0-2 differ by a mean
  # 0-10 gray levels of 255, random pairs by ~32). -1 disables near-duplicate detection.
  data.near_dup_max_distance = 2
  # True: any unreadable file is an error. False: it is skipped and listed in the manifest.
  data.strict = False
  data.shuffle_buffer = 4096
  # Classifier only: label-preserving augmentation of real training images, computed in the
  # jitted step (left-right flip, +/-10 deg rotation, 0.9-1.1 scale, brightness/contrast).
  data.augment = False
  # Classifier only: generated images (OUT/<class>/*.png) mixed into training batches;
  # `synthetic_ratio` is the expected share of each batch. Validation is always real.
  data.synthetic_dir = ''
  data.synthetic_ratio = 0.0
  return data


def optimizer_config(learning_rate: float, beta1: float = 0.9) -> ml_collections.ConfigDict:
  opt = ml_collections.ConfigDict()
  opt.name = 'adam'               # Keras's Adam (braingan/train/optim.py)
  opt.learning_rate = learning_rate
  opt.beta1 = beta1
  opt.beta2 = 0.999
  opt.epsilon = 1e-7              # Keras's default
  return opt


def add_training_fields(config: ml_collections.ConfigDict, *, epochs: int,
                        batch_size: int = 32) -> ml_collections.ConfigDict:
  """The fields the fit loop (braingan/train/loop.py) reads, with their defaults."""
  config.seed = 0
  config.batch_size = batch_size          # global batch, split over all devices
  config.epochs = epochs
  # Optimizer steps per epoch; 0 = real training images // batch_size. Mixed-in synthetic
  # images never change it, so arms with the same epochs take the same number of steps.
  config.steps_per_epoch = 0
  # Compute dtype: 'bfloat16' runs convolutions/matmuls in bf16 (GPU/TPU); parameters,
  # optimizer state, BatchNorm statistics and losses stay float32 (runtime/precision.py).
  config.dtype = 'float32'
  config.num_devices = 0                  # 0: all devices
  config.checkpoint_every = 1             # epochs
  config.keep_checkpoints = 2
  config.log_every_seconds = 10.0         # plain progress lines when output is not a terminal
  return config
