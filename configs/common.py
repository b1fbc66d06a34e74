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
  # The split (braingan/data/split.py): shares of images held out for validation (model
  # selection) and test (the verdict; 0 = no test split), drawn with their own seed so that
  # runs with different training seeds share one split.
  data.val_fraction = 0.2
  data.test_fraction = 0.0
  data.split_seed = 0
  # Near-duplicate detection: max Hamming distance between 64-bit perceptual hashes for
  # two images to count as the same picture (2 on the shared set: pairs at 0-2 differ by a mean
  # 0-10 gray levels of 255, random pairs by ~32). -1 disables near-duplicate detection.
  data.near_dup_max_distance = 2
  # Related images (flipped / ~5 % cropped / ~5 deg rotated copies, neighbouring slices) stay
  # on one side of the split: registered normalised cross-correlation at least this (-1: off).
  data.related_min_ncc = 0.98
  # True: any unreadable file is an error. False: it is skipped and listed in the manifest.
  data.strict = False
  # Classifier only: label-preserving augmentation of real training images, computed in the
  # jitted step (left-right flip, +/-10 deg rotation, 0.9-1.1 scale, brightness/contrast).
  data.augment = False
  # Classifier only: generated images (OUT/<class>/*.png) mixed into training batches;
  # `synthetic_ratio` is the expected share of each batch (1: synthetic only, for CAS).
  # Validation and test are always real.
  data.synthetic_dir = ''
  data.synthetic_ratio = 0.0
  # Classifier only, for the study's controls: 'shuffled' permutes the synthetic images' labels
  # (does class information matter?); real labels are never touched.
  data.synthetic_labels = 'intended'
  # Classifier only: share of the real class mix replaced by a uniform one (0 = the data's own
  # mix, 1 = class-balanced sampling); the study's rebalancing control.
  data.balance = 0.0
  # The share of the training split used (GAN and classifier alike), subsampled per class in
  # whole units of related images, nested: for one subset_seed a smaller fraction is a subset
  # of a larger one. Validation and test are never subsampled.
  data.fraction = 1.0
  data.subset_seed = 0
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
