"""Pieces shared by every config: the data section.

Every top-level config has a `data` sub-config built here, so `--config.data.x=y` means the
same thing for the GAN, the classifier and the evaluator.
"""
import ml_collections


def data_config() -> ml_collections.ConfigDict:
  data = ml_collections.ConfigDict()
  # A folder with one sub-folder per class (aliases such as glioma_tumor/notumor are mapped).
  data.data_dir = 'data/sample'
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
  # Where the prepared TFDS dataset lives; '' means <workdir>/tfds.
  data.tfds_dir = ''
  data.shuffle_buffer = 4096
  data.augment = False
  return data
