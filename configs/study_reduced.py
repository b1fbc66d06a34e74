"""The study on a real folder with budgets cut to fit a 2-core CPU.

  python -m braingan.study --config=configs/study_reduced.py --workdir=runs/study_reduced \
      --config.data.data_dir=../shared/data/brain_tumor_mri/Training

What is cut, so nobody mistakes it for the full study (configs/study.py):
- Images: 64 px instead of 128 (a 128 px GAN step takes several seconds here).
- GAN: the preset's widths, 15 epochs instead of 50; 500 generated images per class.
- Classifiers: from scratch (ImageNet weights cannot be downloaded here), a narrow network in
  the ResNet50 layout (1 block per stage, width 32) instead of ResNet50; 6 epochs each.
- CAS classifier: 3 epochs.
"""
from configs import study


def get_config():
  config = study.get_config()
  config.data.data_dir = '../shared/data/brain_tumor_mri/Training'
  config.data.image_size = 64
  config.gan.epochs = 15
  config.synthetic_per_class = 500
  clf = config.classifier
  clf.model.pretrained = 'none'
  clf.model.freeze = 'none'
  clf.model.stage_sizes = (1, 1, 1, 1)
  clf.model.width = 32
  clf.epochs = 6
  config.cas_epochs = 3
  return config
