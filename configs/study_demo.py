"""The study on the shipped sample (data/sample, 160 images), in a few minutes on a 2-core CPU.

Every budget is cut (64 px, tiny networks, a few epochs, 40 generated images per class), so
the numbers show that the pipeline works end to end, not whether augmentation helps.

  python -m braingan.study --config=configs/study_demo.py --workdir=runs/demo
"""
from configs import classifier_demo
from configs import demo
from configs import study


def get_config():
  config = study.get_config()
  config.gan = demo.get_config()
  config.classifier = classifier_demo.get_config()
  config.data = config.classifier.data
  config.data.data_dir = 'data/sample'
  config.gan.data = config.data
  config.synthetic_per_class = 40
  config.augmented_epochs = config.classifier.epochs
  config.cas_epochs = 4
  config.evaluate.n_boot = 500
  config.evaluate.gan_per_class = 40
  config.evaluate.kid_subsets = 10
  config.evaluate.kid_subset_size = 30
  return config
