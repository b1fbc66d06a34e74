"""A tiny classifier run on the shipped data/sample (~1-2 min on a 2-core CPU).

Smaller than the real thing so it finishes quickly, and says so: 64 px images, a narrow
ResNet50-layout network (1 block per stage, width 16), from scratch, 12 epochs, no freezing.
It shows the loop, checkpoints, history and metrics work, not what the model can learn.

  python train_classifier.py --config=configs/classifier_demo.py --workdir=runs/clf_demo
"""
from configs import classifier


def get_config():
  config = classifier.get_config()
  config.data.data_dir = 'data/sample'
  config.data.image_size = 64
  config.model.stage_sizes = (1, 1, 1, 1)
  config.model.width = 16
  config.model.head_units = 64
  config.model.pretrained = 'none'
  config.model.freeze = 'none'
  config.batch_size = 16
  config.epochs = 12
  return config
