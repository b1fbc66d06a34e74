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
  config.data = classifier_demo.get_config().data
  config.gan = study.section(demo.get_config())
  config.classifier = study.section(classifier_demo.get_config())
  config.synthetic_per_class = 40
  config.cas_epochs = 4
  config.evaluate.n_boot = 500
  config.evaluate.gan_per_class = 40
  config.evaluate.kid_subsets = 10
  config.evaluate.kid_subset_size = 30
  return config
