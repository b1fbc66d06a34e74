"""GAN quality metrics on feature arrays: FID, KID, per-class scores and a memorisation check.

The features come from outside (here: the trained baseline classifier's 512-d penultimate
layer, because ImageNet Inception weights cannot be downloaded offline), so numbers are NOT
comparable with published Inception FIDs; they compare GANs/checkpoints within this project.
Everything here is numpy/scipy on [N, D] arrays.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import linalg


def _features(x, name: str, min_rows: int = 2) -> np.ndarray:
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f'{name} must be [N, D] features; got shape {x.shape}')
  if x.shape[0] < min_rows:
    raise ValueError(f'{name} has {x.shape[0]} rows; need at least {min_rows}')
  if not np.all(np.isfinite(x)):
    raise ValueError(f'{name} contains NaN or inf')
  return x


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
  w, v = linalg.eigh(cov)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr((sigma1 sigma2)^(1/2)) for symmetric PSD matrices.

  Computed as tr((S1^(1/2) S2 S1^(1/2))^(1/2)), which has the same eigenvalues but is a
  symmetric PSD matrix, so a symmetric eigen-decomposition gives a real, stable answer even
  when the covariances are singular (fewer samples than dimensions) -- the case where
  `scipy.linalg.sqrtm(S1 @ S2)` returns complex noise and needs an epsilon fudge.
  """
  root1 = _psd_sqrt(sigma1)
  m = root1 @ sigma2 @ root1
  eig = linalg.eigvalsh((m + m.T) / 2)
  return float(np.sqrt(np.clip(eig, 0, None)).sum())


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)): the Frechet distance of two Gaussians."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'mismatched statistics: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}')
  diff = mu1 - mu2
  value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
  # Rounding can leave -1e-12 for identical inputs; a distance is never negative.
  return float(max(value, 0.0))


def frechet_distance(feats_a, feats_b) -> float:
  """FID-style Frechet distance between the Gaussians fitted to two feature sets [N, D]."""
  a, b = _features(feats_a, 'feats_a'), _features(feats_b, 'feats_b')
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'feature dims differ: {a.shape[1]} vs {b.shape[1]}')
  return frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False),
                                     b.mean(0), np.cov(b, rowvar=False))


def _polynomial_kernel(x, y):
  """k(x, y) = (x.y / d + 1)^3, the KID kernel of Binkowski et al. 2018."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_from_kernels(kxx, kyy, kxy) -> float:
  m, n = kxx.shape[0], kyy.shape[0]
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
               + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
               - 2 * kxy.mean())


def mmd2_unbiased(x, y) -> float:
  """Unbiased MMD^2 with the cubic polynomial kernel (diagonal terms excluded)."""
  return _mmd2_from_kernels(_polynomial_kernel(x, x), _polynomial_kernel(y, y),
                            _polynomial_kernel(x, y))


# Above this many kernel entries per matrix, kernels are computed per subset instead of once.
_MAX_PRECOMPUTED_KERNEL = 16_000_000


def kernel_inception_distance(feats_a, feats_b, n_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> dict:
  """KID: mean and std of unbiased MMD^2 over random subsets (without replacement).

  The subset size is min(subset_size, len(a), len(b)); with small sets every subset is the
  whole set and the std is 0. Unlike FID, KID is unbiased, so it is fair to compare across
  sample sizes; it can be slightly negative when the sets match. For sets up to a few
  thousand rows the three kernel matrices are computed once and subsets index into them
  (same numbers, far fewer matrix products).
  """
  a, b = _features(feats_a, 'feats_a'), _features(feats_b, 'feats_b')
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'feature dims differ: {a.shape[1]} vs {b.shape[1]}')
  m = min(subset_size, a.shape[0], b.shape[0])
  rng = np.random.default_rng(seed)
  precompute = max(a.shape[0], b.shape[0]) ** 2 <= _MAX_PRECOMPUTED_KERNEL
  if precompute:
    kaa, kbb, kab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
  values = []
  for _ in range(n_subsets):
    i = rng.choice(a.shape[0], m, replace=False)
    j = rng.choice(b.shape[0], m, replace=False)
    if precompute:
      values.append(_mmd2_from_kernels(kaa[np.ix_(i, i)], kbb[np.ix_(j, j)], kab[np.ix_(i, j)]))
    else:
      values.append(mmd2_unbiased(a[i], b[j]))
  values = np.array(values)
  return {'mean': float(values.mean()), 'std': float(values.std()),
          'subset_size': int(m), 'n_subsets': int(n_subsets)}


def per_class_scores(real_feats, real_labels, gen_feats, gen_labels, class_names: Sequence[str],
                     kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0) -> dict:
  """FID and KID between real and generated features of each class.

  A class with fewer than 2 samples on either side gets None scores and a note (a Gaussian
  needs two points), so one empty class does not sink the evaluation.
  """
  real_feats, gen_feats = np.asarray(real_feats), np.asarray(gen_feats)
  real_labels = np.asarray(real_labels).reshape(-1)
  gen_labels = np.asarray(gen_labels).reshape(-1)
  out = {}
  for k, name in enumerate(class_names):
    r, g = real_feats[real_labels == k], gen_feats[gen_labels == k]
    entry = {'n_real': int(r.shape[0]), 'n_generated': int(g.shape[0])}
    if r.shape[0] < 2 or g.shape[0] < 2:
      entry.update(fid=None, kid_mean=None, kid_std=None,
                   note='fewer than 2 samples on one side')
    else:
      kid = kernel_inception_distance(r, g, kid_subsets, kid_subset_size, seed)
      entry.update(fid=frechet_distance(r, g), kid_mean=kid['mean'], kid_std=kid['std'])
    out[name] = entry
  return out


def nearest_neighbours(queries, references, chunk: int = 1024):
  """Euclidean distance and index of each query's nearest reference row (chunked to bound memory)."""
  q, ref = np.asarray(queries, np.float64), np.asarray(references, np.float64)
  ref_sq = (ref ** 2).sum(1)
  dist = np.empty(q.shape[0])
  index = np.empty(q.shape[0], dtype=np.int64)
  for s in range(0, q.shape[0], chunk):
    block = q[s:s + chunk]
    d2 = (block ** 2).sum(1)[:, None] + ref_sq[None] - 2 * block @ ref.T
    i = d2.argmin(1)
    index[s:s + chunk] = i
    dist[s:s + chunk] = np.sqrt(np.clip(d2[np.arange(block.shape[0]), i], 0, None))
  return dist, index


def memorisation(gen_feats, train_feats, real_val_feats, percentile: float = 5.0,
                 n_closest: int = 8) -> dict:
  """Does the GAN copy training images? Generated-to-train vs real-to-train nearest distances.

  A held-out real image is not a copy of any training image, so its distance to the nearest
  training image shows how close "different but similar" gets. Generated samples nearer to
  a training image than the `percentile`-th percentile of those real distances are
  suspiciously close; the closest pairs are returned for a person to look at.

  Returns a dict with scalars (threshold, fraction_below, n_below, medians, ...), the
  closest pairs [{generated_index, train_index, distance}], and per-sample arrays
  gen_nn_distance, gen_nn_train_index, real_nn_distance (drop these with
  `memorisation_summary` before writing JSON).
  """
  gen = _features(gen_feats, 'gen_feats', 1)
  train = _features(train_feats, 'train_feats', 1)
  val = _features(real_val_feats, 'real_val_feats', 1)
  if not gen.shape[1] == train.shape[1] == val.shape[1]:
    raise ValueError(f'feature dims differ: {gen.shape[1]}, {train.shape[1]}, {val.shape[1]}')
  gen_dist, gen_index = nearest_neighbours(gen, train)
  real_dist, _ = nearest_neighbours(val, train)
  threshold = float(np.percentile(real_dist, percentile))
  below = gen_dist < threshold
  order = np.argsort(gen_dist, kind='stable')[:n_closest]
  return {
      'percentile': float(percentile),
      'threshold': threshold,
      'n_generated': int(gen.shape[0]),
      'n_below': int(below.sum()),
      'fraction_below': float(below.mean()),
      'gen_nn_median': float(np.median(gen_dist)),
      'real_nn_median': float(np.median(real_dist)),
      'closest_pairs': [{'generated_index': int(i), 'train_index': int(gen_index[i]),
                         'distance': float(gen_dist[i])} for i in order],
      'gen_nn_distance': gen_dist,
      'gen_nn_train_index': gen_index,
      'real_nn_distance': real_dist,
  }


def memorisation_summary(result: dict) -> dict:
  """The JSON-sized part of a `memorisation` result (drops the per-sample arrays)."""
  return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}


def generated_accuracy(predict_fn: Callable[[np.ndarray], np.ndarray], images, intended_labels,
                       batch_size: int = 64) -> float:
  """Share of generated images the (baseline) classifier assigns to the class they were asked for."""
  images = np.asarray(images)
  intended_labels = np.asarray(intended_labels).reshape(-1)
  correct = 0
  for s in range(0, images.shape[0], batch_size):
    out = np.asarray(predict_fn(images[s:s + batch_size]))
    pred = out.argmax(-1) if out.ndim == 2 else out.reshape(-1)
    correct += int(np.sum(pred == intended_labels[s:s + batch_size]))
  return correct / max(images.shape[0], 1)
