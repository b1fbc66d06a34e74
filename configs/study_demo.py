"""The study on the shipped sample (data/sample, 160 images), in a few minutes on a 2-core CPU.

Every budget is cut (64 px, tiny networks, a few epochs, 2 seeds, 40 generated images per
class), so the numbers show that the machinery works end to end, not whether augmentation helps.

  python -m braingan.study --config=configs/study_demo.py --workdir=runs/demo
"""
from configs import cgan_conditioned
from configs import classifier_demo
from configs import demo
from configs import study


def get_config():
  config = study.get_config()
  config.data = classifier_demo.get_config().data
  config.data.test_fraction = 0.2
  # The conditioned preset as the study runs it (kept by its judge checks), demo-sized.
  gan = cgan_conditioned.judge_selected(cgan_conditioned.get_config())
  demo_gan = demo.get_config()
  gan.data = demo_gan.data
  for field in ('batch_size', 'epochs', 'grid_per_class', 'generate'):
    gan[field] = demo_gan[field]
  gan.model.latent_dim = 64
  gan.model.g_base_depth = 64
  gan.model.g_widths = (32, 16, 16, 8)
  gan.model.d_widths = (16, 32, 64, 64)
  config.gan = study.section(gan)
  config.classifier = study.section(classifier_demo.get_config())
  config.classifier.bn_recalibration_batches = 4
  config.judge_bn_recalibration_batches = 4
  config.classifier.epochs = 6
  config.judge_epochs = 6
  config.arms = ('baseline', 'augmented', 'classic', 'shuffled', 'cas')
  config.fractions = (0.5, 1.0)
  config.seeds = (0, 1)
  config.ratio_sweep.per_real = ()
  config.transfer = ('scratch',)
  config.synthetic_per_class = 40
  config.evaluate.n_boot = 500
  config.evaluate.gan_per_class = 20
  config.evaluate.kid_subsets = 5
  return config
