"""Is a difference between two classifiers real? Bootstrap CIs and McNemar's test.

The original study reported 94% vs 94% and could not say whether augmentation helped. These
functions give the numbers that can: a 95% percentile-bootstrap interval for each model's
accuracy and macro-F1, a paired bootstrap interval for the difference (augmented - baseline,
resampling the SAME images for both models so their shared difficulty cancels), and McNemar's
test on the images where exactly one model is right.

All resampling is deterministic given `seed`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as sps

from braingan.eval import classification

METRICS = ('accuracy', 'macro_f1')
# Below this many discordant pairs the chi-square approximation is poor; use the exact test.
MCNEMAR_EXACT_BELOW = 25


def _batched_confusion(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray,
                       num_classes: int) -> np.ndarray:
  """Confusion matrices [B, K, K] of the B resamples idx [B, N], in one bincount."""
  b = idx.shape[0]
  codes = y_true[idx] * num_classes + y_pred[idx]
  codes = codes + (np.arange(b) * num_classes * num_classes)[:, None]
  counts = np.bincount(codes.ravel(), minlength=b * num_classes * num_classes)
  return counts.reshape(b, num_classes, num_classes)


def _metric_from_confusion(cm: np.ndarray, metric: str) -> np.ndarray:
  """accuracy or macro-F1 from confusion matrices [..., K, K].

  Macro-F1 averages over all K classes with F1 = 0 where undefined, i.e. scikit-learn's
  f1_score(labels=range(K), average='macro', zero_division=0).
  """
  tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
  total = cm.sum(axis=(-2, -1))
  if metric == 'accuracy':
    return tp.sum(axis=-1) / total
  if metric == 'macro_f1':
    denom = cm.sum(axis=-1) + cm.sum(axis=-2)  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1.mean(axis=-1)
  raise ValueError(f'unknown metric {metric!r}; expected one of {METRICS}')


def _labels(y_true, *preds):
  arrays = [np.asarray(a).astype(np.int64).reshape(-1) for a in (y_true, *preds)]
  n = arrays[0].shape[0]
  if n == 0:
    raise ValueError('need at least one example')
  for a in arrays[1:]:
    if a.shape[0] != n:
      raise ValueError(f'predictions have {a.shape[0]} entries but y_true has {n}')
  return arrays


def _num_classes(num_classes, *arrays):
  return int(num_classes) if num_classes else int(max(a.max() for a in arrays)) + 1


def _resample_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
  if n_boot < 1:
    raise ValueError(f'n_boot={n_boot} must be >= 1')
  return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(point: float, samples: np.ndarray, confidence: float, n_boot: int) -> dict:
  tail = (1.0 - confidence) / 2 * 100
  low, high = np.percentile(samples, [tail, 100 - tail])
  return {'point': float(point), 'low': float(low), 'high': float(high),
          'confidence': float(confidence), 'n_boot': int(n_boot), 'method': 'percentile bootstrap'}


def metric_value(y_true, y_pred, metric: str, num_classes: int = 0) -> float:
  """accuracy or macro-F1 (over all num_classes) of hard predictions."""
  y_true, y_pred = _labels(y_true, y_pred)
  k = _num_classes(num_classes, y_true, y_pred)
  cm = _batched_confusion(y_true, y_pred, np.arange(y_true.shape[0])[None], k)[0]
  return float(_metric_from_confusion(cm, metric))


def bootstrap_ci(y_true, y_pred, metric: str = 'accuracy', *, num_classes: int = 0,
                 n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
  """Percentile-bootstrap CI of accuracy or macro-F1 over resampled images.

  Returns {point, low, high, confidence, n_boot, method}; `point` is the metric on the
  original images (not the bootstrap mean).
  """
  y_true, y_pred = _labels(y_true, y_pred)
  k = _num_classes(num_classes, y_true, y_pred)
  idx = _resample_indices(y_true.shape[0], n_boot, seed)
  samples = _metric_from_confusion(_batched_confusion(y_true, y_pred, idx, k), metric)
  return _interval(metric_value(y_true, y_pred, metric, k), samples, confidence, n_boot)


def paired_bootstrap_diff(y_true, pred_baseline, pred_augmented, metric: str = 'accuracy', *,
                          num_classes: int = 0, n_boot: int = 2000, seed: int = 0,
                          confidence: float = 0.95) -> dict:
  """Percentile-bootstrap CI of metric(augmented) - metric(baseline) on the same resamples.

  Besides the interval it returns `fraction_above_zero`, the share of resamples in which the
  augmented model scores higher (descriptive, not a p-value).
  """
  y_true, base, aug = _labels(y_true, pred_baseline, pred_augmented)
  k = _num_classes(num_classes, y_true, base, aug)
  idx = _resample_indices(y_true.shape[0], n_boot, seed)
  diff = (_metric_from_confusion(_batched_confusion(y_true, aug, idx, k), metric)
          - _metric_from_confusion(_batched_confusion(y_true, base, idx, k), metric))
  point = metric_value(y_true, aug, metric, k) - metric_value(y_true, base, metric, k)
  result = _interval(point, diff, confidence, n_boot)
  result['fraction_above_zero'] = float(np.mean(diff > 0))
  return result


def mcnemar(y_true, pred_a, pred_b, exact_below: int = MCNEMAR_EXACT_BELOW) -> dict:
  """McNemar's test of equal error rates of two classifiers on the same images.

  b = images model A gets right and B wrong, c = the reverse. With b + c < exact_below the
  exact two-sided binomial test (b ~ Binomial(b + c, 1/2)) is used; otherwise the chi-square
  statistic with continuity correction max(|b - c| - 1, 0)^2 / (b + c) on 1 degree of freedom
  (clamped at 0 so that b == c gives p = 1 rather than the correction overshooting).
  """
  y_true, a, bb = _labels(y_true, pred_a, pred_b)
  a_right, b_right = a == y_true, bb == y_true
  b = int(np.sum(a_right & ~b_right))
  c = int(np.sum(~a_right & b_right))
  n = b + c
  if n == 0:
    statistic, p_value, method = 0.0, 1.0, 'exact binomial (no discordant pairs)'
  elif n < exact_below:
    statistic = float(min(b, c))
    p_value = float(sps.binomtest(b, n, 0.5, alternative='two-sided').pvalue)
    method = 'exact binomial'
  else:
    statistic = float(max(abs(b - c) - 1, 0) ** 2 / n)
    p_value = float(sps.chi2.sf(statistic, df=1))
    method = 'chi-square with continuity correction'
  return {'b': b, 'c': c, 'n_discordant': n, 'statistic': statistic,
          'p_value': min(1.0, p_value), 'method': method, 'n': int(y_true.shape[0])}


def compare_models(y_true, probs_baseline, probs_augmented, class_names: Sequence[str], *,
                   n_boot: int = 2000, seed: int = 0) -> dict:
  """Everything the report says about baseline vs augmented on one set of images.

  Returns {n_images, class_names, baseline, augmented, mcnemar, mcnemar_p, difference}, where
  baseline/augmented are `classification_metrics` plus `bootstrap` CIs for accuracy and
  macro-F1, and difference holds paired-bootstrap CIs of augmented - baseline.
  """
  class_names = list(class_names)
  k = len(class_names)
  y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
  out = {'n_images': int(y_true.shape[0]), 'class_names': class_names}
  preds = {}
  for name, probs in (('baseline', probs_baseline), ('augmented', probs_augmented)):
    m = classification.classification_metrics(y_true, probs, class_names)
    preds[name] = np.asarray(probs).argmax(axis=1)
    m['bootstrap'] = {metric: bootstrap_ci(y_true, preds[name], metric, num_classes=k,
                                           n_boot=n_boot, seed=seed) for metric in METRICS}
    out[name] = m
  test = mcnemar(y_true, preds['baseline'], preds['augmented'])
  out['mcnemar'] = test
  out['mcnemar_p'] = test['p_value']
  out['difference'] = {
      metric: paired_bootstrap_diff(y_true, preds['baseline'], preds['augmented'], metric,
                                    num_classes=k, n_boot=n_boot, seed=seed)
      for metric in METRICS}
  return out
