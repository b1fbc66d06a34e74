"""The full study: cGAN -> generation -> baseline vs augmented classifier -> evaluation.

  python -m braingan.study --config=configs/study.py --workdir=runs/study \
      --config.data.data_dir=../shared/data/brain_tumor_mri/Training

Composed, not restated: `gan` is configs/cgan.py and `classifier` configs/classifier.py without
their data sections; the study's one `data` section and seed go to every stage. Defaults follow
the original study: GAN 50 epochs, 2,500 generated images per class, classifier 15 epochs. Both
classifiers train for the same number of optimizer steps (an epoch is the real training images
// batch size, whatever the synthetic share of a batch).
"""
import ml_collections

from configs import cgan
from configs import classifier
from configs import common
from configs import evaluate


def section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A job config without the fields the study sets for every stage (data, seed)."""
  del config['data']
  del config['seed']
  return config


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = common.data_config()
  config.gan = section(cgan.get_config())
  config.classifier = section(classifier.get_config())
  config.synthetic_per_class = 2500
  # Expected share of each augmented-training batch drawn from the generated images.
  config.synthetic_ratio = 0.5
  # Classification Accuracy Score: a classifier trained on generated images only (0 = skip).
  config.cas_epochs = 5
  config.evaluate = evaluate.get_config()
  # Optional external test folder, scored in the report but never used for training/selection.
  config.test_dir = ''
  return config
