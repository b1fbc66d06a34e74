"""Statistics across training seeds: is an arm's gain over the baseline more than seed noise?

Each seed trains the baseline and the arm with the same initialisation seed and data order, so
their scores are paired by seed. For every cell (arm x fraction x ...) the report gives the mean
paired difference with a 95 % t-interval over seeds and a paired t-test, and corrects the cells'
p-values together with Holm's step-down method (a family of comparisons, one verdict).
McNemar's test per seed (braingan/eval/stats.py) says whether each seed's difference on the
test images is larger than its own sampling noise.
"""
from __future__ import annotations

import math
from typing import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as sps


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
  """Mean of `values` with its t-interval (None bounds with fewer than 2 values)."""
  x = np.asarray(values, np.float64)
  out = {'mean': float(x.mean()), 'low': None, 'high': None, 'n': len(x)}
  if len(x) >= 2:
    half = float(sps.t.ppf(0.5 + confidence / 2, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(
        len(x))
    out.update(low=out['mean'] - half, high=out['mean'] + half)
  return out


def paired_difference(baseline: Sequence[float], arm: Sequence[float],
                      confidence: float = 0.95) -> dict:
  """arm - baseline over paired seeds: mean, t-interval, paired t-test (two-sided)."""
  a, b = np.asarray(baseline, np.float64), np.asarray(arm, np.float64)
  if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
    raise ValueError(f'need equal, non-empty lists of paired scores; got {a.shape} and {b.shape}')
  diff = b - a
  n = len(diff)
  mean = float(diff.mean())
  out = {'n_seeds': n, 'mean': mean, 'per_seed': diff.tolist(), 'low': None, 'high': None,
         'p_value': None, 'test': 'paired t-test over seeds'}
  if n < 2:
    return out
  sd = float(diff.std(ddof=1))
  interval = mean_interval(diff, confidence)
  out.update(low=interval['low'], high=interval['high'], sd=sd)
  if sd == 0.0:   # identical differences: the t statistic is undefined; use the sign test
    nonzero = int(np.sum(diff != 0))
    out['test'] = 'sign test over seeds (all differences equal)'
    out['p_value'] = (1.0 if nonzero == 0 else
                      float(sps.binomtest(int(np.sum(diff > 0)), nonzero, 0.5).pvalue))
  else:
    out['p_value'] = float(sps.ttest_rel(b, a).pvalue)
  return out


def holm(p_values: Mapping[Hashable, float | None]) -> dict[Hashable, float | None]:
  """Holm-adjusted p-values (family-wise error control); None stays None.

  Sorted ascending, p_(i) is multiplied by (m - i) (i from 0), made monotone non-decreasing and
  capped at 1.
  """
  keys = [k for k, p in p_values.items() if p is not None]
  order = sorted(keys, key=lambda k: p_values[k])
  m = len(order)
  adjusted, running = {}, 0.0
  for i, key in enumerate(order):
    running = max(running, min(1.0, (m - i) * p_values[key]))
    adjusted[key] = running
  return {k: adjusted.get(k) for k in p_values}
