"""Does a generator's output carry its class? Conditioning metrics in a judge classifier's view.

The judge is a classifier trained on the real training split only, in its own run with its own
seed, never one of the study's arms that it is then used to compare (that would be circular).
Its accuracy on real validation images is the ceiling for the agreement on generated ones.

- Class agreement (GAN-test): the share of generated images the judge assigns to the class they
  were generated for, overall and per class, with bootstrap intervals. Chance is 25 %.
- FID / KID in the judge's 512-d feature space (ImageNet Inception weights are not available
  offline, so these compare generators within this project, not with published numbers). FID is
  computed between sets of EQUAL size (the larger one subsampled, seeded), overall and per class
  (intra-class FID), so numbers with different set sizes are never mixed; KID is unbiased and
  averaged over random subsets.
- Memorisation: nearest real training image of each generated image, in the judge's feature
  space and in pixel space (brain bounding box aligned, normalised L2), against the distances of
  held-out real images; the closest pairs are returned for a person to look at.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
from PIL import Image

from braingan.data import CLASSES, NUM_CLASSES
from braingan.eval import classification
from braingan.eval import gan_metrics
from braingan.eval import inputs
from braingan.eval import stats

BATCH = 64


@dataclasses.dataclass
class Judge:
  """A judge classifier with its real validation (and, lazily, training) images and features."""
  run_dir: str
  model: object
  val: inputs.ImageSet
  val_features: np.ndarray
  val_predicted: np.ndarray   # its labels for the validation images
  accuracy: float

  def val_recall(self) -> dict[str, float]:
    """Per class: the share of real validation images of it the judge labels right."""
    recall = classification.recall_per_class(self.val.labels, self.val_predicted, NUM_CLASSES)
    return {c: r for c, r in zip(CLASSES, recall) if not np.isnan(r)}

  @functools.cached_property
  def train(self) -> inputs.ImageSet:
    from braingan.run_dir import RunDir  # pylint: disable=import-outside-toplevel
    return inputs.from_manifest(RunDir(self.run_dir).manifest(), 'train', self.model.config.data)

  @functools.cached_property
  def train_features(self) -> np.ndarray:
    return inputs.batched(self.model.features, self.train.images, BATCH)

  def labels_of(self, images: np.ndarray) -> np.ndarray:
    return inputs.batched(self.model.probs, images, BATCH).argmax(-1)


@functools.lru_cache(maxsize=4)
def load_judge(run_dir: str) -> Judge:
  """Loads a finished classifier run as a judge and scores it on its real validation images."""
  from braingan import inference  # pylint: disable=import-outside-toplevel
  from braingan.run_dir import RunDir  # pylint: disable=import-outside-toplevel
  model = inference.load_classifier(run_dir)
  val = inputs.from_manifest(RunDir(run_dir).manifest(), 'validation', model.config.data)
  pred = inputs.batched(model.probs, val.images, BATCH).argmax(-1)
  return Judge(run_dir=run_dir, model=model, val=val,
               val_features=inputs.batched(model.features, val.images, BATCH),
               val_predicted=pred, accuracy=float(np.mean(pred == val.labels)))


def agreement(predicted, intended, *, n_boot: int = 1000, seed: int = 0) -> dict:
  """Class agreement overall and per class, each with a 95 % bootstrap interval."""
  predicted, intended = np.asarray(predicted), np.asarray(intended)
  out = {'overall': stats.bootstrap_ci(intended, predicted, 'accuracy', num_classes=NUM_CLASSES,
                                       n_boot=n_boot, seed=seed), 'per_class': {}}
  for k, name in enumerate(CLASSES):
    mask = intended == k
    if mask.any():
      out['per_class'][name] = stats.bootstrap_ci(intended[mask], predicted[mask], 'accuracy',
                                                  num_classes=NUM_CLASSES, n_boot=n_boot,
                                                  seed=seed)
  return out


def _equal_size(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Both sets cut to the smaller size by a seeded subsample (FID is biased by set size)."""
  n = min(len(a), len(b))
  rng = np.random.default_rng(seed)
  pick = lambda x: x if len(x) == n else x[np.sort(rng.choice(len(x), n, replace=False))]  # noqa: E731
  return pick(a), pick(b)


def fid_equal_size(real: np.ndarray, generated: np.ndarray, seed: int = 0) -> dict:
  real, generated = _equal_size(real, generated, seed)
  if len(real) < 2:
    return {'fid': None, 'n': int(len(real))}
  return {'fid': gan_metrics.frechet_distance(real, generated), 'n': int(len(real))}


def aligned_pixels(images: np.ndarray, size: int = 32, threshold: float = -0.8) -> np.ndarray:
  """Pixel-space vectors for nearest neighbours: each image cropped to the bounding box of its
  brain (pixels above `threshold` in [-1, 1]), resized to size x size, zero mean, unit norm,
  so a copy that is shifted or scaled in its frame still lands next to its original."""
  out = np.zeros((len(images), size * size), np.float32)
  for i, image in enumerate(np.asarray(images, np.float32)[..., 0]):
    rows, cols = np.nonzero(image > threshold)
    if len(rows):
      image = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    small = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    v = small.ravel() - small.mean()
    out[i] = v / max(np.linalg.norm(v), 1e-6)
  return out


def score(judge: Judge, images: np.ndarray, labels: np.ndarray, *, n_boot: int = 1000,
          seed: int = 0, kid_subsets: int = 50, memorisation: bool = True) -> dict:
  """Every conditioning metric of generated `images` (float [N, H, W, C], intended `labels`)."""
  labels = np.asarray(labels)
  predicted = judge.labels_of(images)
  features = inputs.batched(judge.model.features, images, BATCH)
  result = {
      'judge_run': judge.run_dir, 'judge_val_accuracy': judge.accuracy,
      'n_generated': int(len(labels)), 'n_real_validation': int(len(judge.val)),
      'agreement': agreement(predicted, labels, n_boot=n_boot, seed=seed),
      **fid_equal_size(judge.val_features, features, seed),
      'kid': gan_metrics.kernel_inception_distance(
          judge.val_features, features, n_subsets=kid_subsets,
          subset_size=min(len(features), len(judge.val_features)) // 2 or 1, seed=seed),
      'per_class': {},
  }
  result['agreement_over_judge'] = result['agreement']['overall']['point'] / max(judge.accuracy,
                                                                                 1e-9)
  for k, name in enumerate(CLASSES):
    real_k, gen_k = judge.val_features[judge.val.labels == k], features[labels == k]
    entry = fid_equal_size(real_k, gen_k, seed)
    if min(len(real_k), len(gen_k)) >= 4:
      entry['kid'] = gan_metrics.kernel_inception_distance(
          real_k, gen_k, n_subsets=kid_subsets,
          subset_size=min(len(real_k), len(gen_k)) // 2, seed=seed)['mean']
    result['per_class'][name] = entry
  if memorisation:
    result['memorisation'] = {
        'features': gan_metrics.memorisation(features, judge.train_features, judge.val_features),
        'pixels': gan_metrics.memorisation(aligned_pixels(images), aligned_pixels(judge.train.images),
                                           aligned_pixels(judge.val.images)),
    }
  return result


def sample_balanced(generate_fn, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """per_class images of every class from generate_fn(z_indices, labels) -> images, in batches
  of BATCH (fixed shapes: the sampler compiles once); the noise of image i depends on (seed, i)."""
  labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), per_class)
  images = []
  for begin in range(0, len(labels), BATCH):
    idx = np.arange(begin, begin + BATCH)
    batch_labels = labels[np.minimum(idx, len(labels) - 1)]
    images.append(generate_fn(idx, batch_labels, seed)[:len(labels) - begin])
  return np.concatenate(images), labels


def during_training(recipe, variables, step: int, epoch: int) -> dict[str, float]:
  """A few scalars for the epoch record (TensorBoard, progress): agreement, its worst class,
  FID. Cheap: judge.per_class images per class, the same noise every time."""
  del epoch
  config = recipe.config
  judge = load_judge(config.judge.run_dir)
  if judge.model.image_size != config.data.image_size:
    raise ValueError(f'config.judge.run_dir={config.judge.run_dir!r} judges '
                     f'{judge.model.image_size} px images; this GAN makes '
                     f'{config.data.image_size} px.')

  def generate(indices, labels, seed):
    from braingan.train import gan  # pylint: disable=import-outside-toplevel
    z = gan.latents(seed, indices, recipe.latent_dim)
    return recipe.sample(variables, z, labels, step)

  images, labels = sample_balanced(generate, config.judge.per_class, config.seed + 0x5eed)
  predicted = judge.labels_of(images)
  per_class = [float(np.mean(predicted[labels == k] == k)) for k in range(NUM_CLASSES)]
  features = inputs.batched(judge.model.features, images, BATCH)
  return {'cond_agreement': float(np.mean(predicted == labels)),
          'cond_agreement_min_class': min(per_class),
          'cond_fid': fid_equal_size(judge.val_features, features, config.seed)['fid']}
