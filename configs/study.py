"""The full study: cGAN -> generation -> baseline vs augmented classifier -> evaluation.

  python -m braingan.study --config=configs/study.py --workdir=runs/study \
      --config.data.data_dir=../shared/data/brain_tumor_mri/Training

Defaults follow the original study: GAN 50 epochs, 2,500 generated images per class,
classifier 15 epochs on real data and 20 on real + synthetic.
"""
import ml_collections

from configs import cgan
from configs import classifier
from configs import common
from configs import evaluate


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  # One data section for every stage, so every stage trains and validates on the same split.
  config.data = common.data_config()
  config.gan = cgan.get_config()
  config.classifier = classifier.get_config()
  config.synthetic_per_class = 2500
  # Share of each augmented-training batch drawn from the generated images (see pipeline.py).
  config.synthetic_ratio = 0.5
  config.augmented_epochs = 20
  # Classification Accuracy Score: a classifier trained on generated images only (0 = skip).
  config.cas_epochs = 5
  config.evaluate = evaluate.get_config()
  # Optional external test folder, scored in the report but never used for training/selection.
  config.test_dir = ''
  return config
