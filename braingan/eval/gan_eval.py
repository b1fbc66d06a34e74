"""Judging the GAN: FID/KID, does the classifier recognise generated classes, memorisation.

ImageNet Inception weights cannot be downloaded here, so the feature space is the trained
baseline classifier's 512-d penultimate layer: it is trained on exactly these images and works
offline. Its numbers compare GANs within this project, not with published Inception FIDs.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from braingan.data import CLASSES
from braingan.eval import gan_metrics
from braingan.eval import inputs
from braingan.eval import plots

FEATURE_EXTRACTOR = "baseline classifier's 512-d penultimate layer (trained on the real split)"


def generated_folder(config, gan_dir: str, synthetic_dir: str, out: str) -> str:
  """The folder of generated images to judge: given, or freshly drawn from the GAN."""
  if synthetic_dir:
    return synthetic_dir
  from braingan import generate  # pylint: disable=g-import-not-at-top
  folder = os.path.join(out, 'gan_samples')
  generate.generate(gan_dir, folder, config.gan_per_class, seed=config.seed)
  return folder


def evaluate_gan(config, *, baseline, data_cfg, manifest_path: str, val: inputs.ImageSet,
                 out: str, gan_dir: str = '', synthetic_dir: str = '') -> tuple[dict, dict]:
  """Returns (metrics['gan'], figures)."""
  folder = generated_folder(config, gan_dir, synthetic_dir, out)
  generated = inputs.from_folder(folder, data_cfg)
  # Judge a balanced subset of at most gan_per_class images per class.
  keep = np.concatenate([np.nonzero(generated.labels == k)[0][:config.gan_per_class]
                         for k in range(len(CLASSES))])
  gen_images, gen_labels = generated.images[keep], generated.labels[keep]
  train = inputs.from_manifest(manifest_path, 'train', data_cfg)
  logging.info('GAN evaluation: %d generated, %d real validation, %d real train images',
               len(gen_labels), len(val), len(train))

  features = baseline.features
  bs = config.batch_size
  gen_feats = inputs.batched(features, gen_images, bs)
  val_feats = inputs.batched(features, val.images, bs)
  train_feats = inputs.batched(features, train.images, bs)

  subset = min(config.kid_subset_size, len(gen_feats), len(val_feats))
  kid = gan_metrics.kernel_inception_distance(val_feats, gen_feats, n_subsets=config.kid_subsets,
                                              subset_size=subset, seed=config.seed)
  memo = gan_metrics.memorisation(gen_feats, train_feats, val_feats,
                                  percentile=config.memorisation_percentile)
  result = {
      'feature_extractor': FEATURE_EXTRACTOR,
      'generated_dir': folder,
      'n_real': len(val), 'n_generated': int(len(gen_labels)),
      'fid': gan_metrics.frechet_distance(val_feats, gen_feats),
      'kid': kid,
      'per_class': gan_metrics.per_class_scores(
          val_feats, val.labels, gen_feats, gen_labels, CLASSES, kid_subsets=config.kid_subsets,
          kid_subset_size=config.kid_subset_size, seed=config.seed),
      'generated_accuracy': gan_metrics.generated_accuracy(baseline.probs, gen_images, gen_labels, bs),
      'memorisation': gan_metrics.memorisation_summary(memo),
      # Reference point: the same distance between real train and real validation features.
      'fid_real_train_vs_validation': gan_metrics.frechet_distance(val_feats, train_feats),
  }
  pairs = memo['closest_pairs']
  figures = {
      'gan_samples': plots.class_sample_grid(
          {c: gen_images[gen_labels == k] for k, c in enumerate(CLASSES)},
          os.path.join(out, 'gan_samples.png')),
      'real_samples': plots.real_reference_grid(
          train.images, train.labels, CLASSES, os.path.join(out, 'real_samples.png'),
          seed=config.seed),
      'nearest_neighbours': plots.nearest_neighbour_pairs(
          gen_images[[p['generated_index'] for p in pairs]],
          train.images[[p['train_index'] for p in pairs]],
          [p['distance'] for p in pairs], os.path.join(out, 'nearest_neighbours.png'),
          threshold=memo['threshold']),
  }
  return result, figures
