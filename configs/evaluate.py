"""Evaluation settings: `python evaluate.py --config=configs/evaluate.py --baseline=... ...`.

Model and data settings come from each run's own config.json; these only say how to score.
"""
import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 64
  # Bootstrap resamples for 95% confidence intervals (accuracy, macro-F1, paired difference).
  config.n_boot = 2000
  # Robustness runs the classifier 16 times (clean + 5 corruptions x 3 severities).
  config.robustness_max_images = 100_000
  # GAN judging: generated images per class, KID subsets, memorisation cut-off percentile.
  config.gan_per_class = 250
  config.kid_subsets = 50
  config.kid_subset_size = 500
  config.memorisation_percentile = 5.0
  return config
