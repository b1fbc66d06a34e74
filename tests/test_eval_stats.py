"""Bootstrap CIs and McNemar's test on constructed cases with known answers."""
import json
from math import comb

import numpy as np
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from braingan.eval import stats

NAMES = ['glioma', 'meningioma', 'no_tumor', 'pituitary']


def _pairs(b, c, both_right=10, both_wrong=5):
  """Labels and two prediction vectors with exactly b (A right, B wrong) and c (reverse)."""
  n = b + c + both_right + both_wrong
  y = np.zeros(n, dtype=int)
  a_right = np.array([1] * b + [0] * c + [1] * both_right + [0] * both_wrong, bool)
  b_right = np.array([0] * b + [1] * c + [1] * both_right + [0] * both_wrong, bool)
  return y, np.where(a_right, 0, 1), np.where(b_right, 0, 2)


def test_mcnemar_equal_discordant_gives_p_one():
  y, a, b = _pairs(7, 7)
  r = stats.mcnemar(y, a, b)
  assert (r['b'], r['c']) == (7, 7)
  assert r['p_value'] == pytest.approx(1.0)
  assert r['method'] == 'exact binomial'
  y, a, b = _pairs(40, 40)
  r = stats.mcnemar(y, a, b)
  assert r['method'].startswith('chi-square') and r['p_value'] == pytest.approx(1.0)


def test_mcnemar_exact_hand_computed():
  # b=1, c=9: two-sided exact p = 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024.
  y, a, b = _pairs(1, 9)
  r = stats.mcnemar(y, a, b)
  assert (r['b'], r['c'], r['n_discordant']) == (1, 9, 10)
  assert r['p_value'] == pytest.approx(2 * (comb(10, 0) + comb(10, 1)) / 2 ** 10)
  assert r['p_value'] == pytest.approx(sps.binomtest(1, 10, 0.5).pvalue)
  assert r['statistic'] == 1.0


def test_mcnemar_chi_square_hand_computed():
  y, a, b = _pairs(30, 12)
  r = stats.mcnemar(y, a, b)
  stat = (abs(30 - 12) - 1) ** 2 / 42
  assert r['statistic'] == pytest.approx(stat)
  assert r['p_value'] == pytest.approx(sps.chi2.sf(stat, 1))
  assert r['p_value'] < 0.05


def test_mcnemar_no_discordant_pairs():
  y = np.array([0, 1, 2, 3])
  r = stats.mcnemar(y, y, y)
  assert (r['b'], r['c'], r['p_value']) == (0, 0, 1.0)


def _noisy_predictions(n, seed, acc=0.8, k=4):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, k, n)
  wrong = rng.random(n) > acc
  pred = np.where(wrong, (y + rng.integers(1, k, n)) % k, y)
  return y, pred


def test_metric_value_matches_sklearn():
  y, pred = _noisy_predictions(300, 0)
  assert stats.metric_value(y, pred, 'accuracy', 4) == pytest.approx(skm.accuracy_score(y, pred))
  assert stats.metric_value(y, pred, 'macro_f1', 4) == pytest.approx(
      skm.f1_score(y, pred, labels=range(4), average='macro', zero_division=0))
  # A class never seen nor predicted counts as F1 = 0 when num_classes says it exists.
  y2, p2 = np.array([0, 1, 1]), np.array([0, 1, 0])
  assert stats.metric_value(y2, p2, 'macro_f1', 3) == pytest.approx(
      skm.f1_score(y2, p2, labels=[0, 1, 2], average='macro', zero_division=0))


def test_bootstrap_resamples_match_sklearn():
  # The vectorised per-resample macro-F1 equals sklearn on the same resampled indices.
  y, pred = _noisy_predictions(50, 1)
  idx = np.random.default_rng(3).integers(0, 50, size=(5, 50))
  cms = stats._batched_confusion(y, pred, idx, 4)
  fast = stats._metric_from_confusion(cms, 'macro_f1')
  for i in range(5):
    assert fast[i] == pytest.approx(skm.f1_score(y[idx[i]], pred[idx[i]], labels=range(4),
                                                 average='macro', zero_division=0))


@pytest.mark.parametrize('metric', stats.METRICS)
def test_bootstrap_ci_contains_point_and_shrinks_with_n(metric):
  widths = []
  for n in (100, 1600):
    y, pred = _noisy_predictions(n, seed=n)
    ci = stats.bootstrap_ci(y, pred, metric, num_classes=4, n_boot=500, seed=0)
    assert ci['low'] <= ci['point'] <= ci['high']
    widths.append(ci['high'] - ci['low'])
  # Width scales like 1/sqrt(n): 16x the data -> about 4x narrower.
  assert widths[1] < widths[0] / 2.5


def test_bootstrap_deterministic_given_seed():
  y, pred = _noisy_predictions(200, 2)
  a = stats.bootstrap_ci(y, pred, 'accuracy', n_boot=300, seed=5)
  b = stats.bootstrap_ci(y, pred, 'accuracy', n_boot=300, seed=5)
  c = stats.bootstrap_ci(y, pred, 'accuracy', n_boot=300, seed=6)
  assert a == b
  assert (a['low'], a['high']) != (c['low'], c['high'])


def test_bootstrap_accuracy_ci_close_to_normal_approximation():
  y, pred = _noisy_predictions(2000, 4, acc=0.9)
  ci = stats.bootstrap_ci(y, pred, 'accuracy', n_boot=2000, seed=0)
  p = ci['point']
  half = 1.96 * np.sqrt(p * (1 - p) / 2000)
  assert ci['low'] == pytest.approx(p - half, abs=0.004)
  assert ci['high'] == pytest.approx(p + half, abs=0.004)


def test_paired_diff_identical_predictions_is_zero():
  y, pred = _noisy_predictions(150, 3)
  d = stats.paired_bootstrap_diff(y, pred, pred.copy(), 'macro_f1', n_boot=200)
  assert (d['point'], d['low'], d['high']) == (0.0, 0.0, 0.0)
  assert d['fraction_above_zero'] == 0.0


def test_paired_diff_sign_and_point():
  y, base = _noisy_predictions(400, 5, acc=0.7)
  aug = y.copy()  # the augmented model is perfect
  d = stats.paired_bootstrap_diff(y, base, aug, 'accuracy', n_boot=400)
  assert d['point'] == pytest.approx(1.0 - skm.accuracy_score(y, base))
  assert 0 < d['low'] <= d['point'] <= d['high']
  assert d['fraction_above_zero'] == 1.0


def test_compare_models_structure():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 4, 80)
  probs_a = rng.dirichlet(np.ones(4), 80)
  probs_b = rng.dirichlet(np.ones(4), 80)
  out = stats.compare_models(y, probs_a, probs_b, NAMES, n_boot=100)
  for model in ('baseline', 'augmented'):
    m = out[model]
    for key in ('accuracy', 'macro_f1', 'per_class', 'confusion_matrix'):
      assert key in m
    assert m['bootstrap']['macro_f1']['point'] == pytest.approx(m['macro_f1'])
    assert m['bootstrap']['accuracy']['point'] == pytest.approx(m['accuracy'])
  assert out['n_images'] == 80
  assert out['mcnemar_p'] == out['mcnemar']['p_value']
  assert out['difference']['accuracy']['point'] == pytest.approx(
      out['augmented']['accuracy'] - out['baseline']['accuracy'])
  json.dumps(out)


# ---------------------------------------------------------------- across seeds (eval/seeds.py)
def test_paired_difference_matches_scipy_on_a_hand_made_case():
  from scipy import stats as sps  # pylint: disable=import-outside-toplevel
  from braingan.eval import seeds  # pylint: disable=import-outside-toplevel
  base, arm = [0.70, 0.74, 0.72], [0.75, 0.78, 0.74]
  out = seeds.paired_difference(base, arm)
  diff = np.array(arm) - np.array(base)            # 0.05, 0.04, 0.02
  assert out['mean'] == pytest.approx(diff.mean())
  assert out['p_value'] == pytest.approx(sps.ttest_rel(arm, base).pvalue)
  half = sps.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
  assert (out['low'], out['high']) == pytest.approx((diff.mean() - half, diff.mean() + half))
  assert seeds.paired_difference([0.5], [0.6])['p_value'] is None   # one seed: no test
  # All seeds moved by the same amount: no t statistic; the sign test says 2 of 2 is p = 0.5.
  assert seeds.paired_difference([0.5, 0.6], [0.53, 0.63])['p_value'] == pytest.approx(0.5)


def test_holm_against_hand_computation():
  from braingan.eval import seeds  # pylint: disable=import-outside-toplevel
  # p sorted: 0.01 (x4), 0.02 (x3), 0.03 (x2), 0.5 (x1) -> 0.04, 0.06, 0.06 (monotone), 0.5
  adjusted = seeds.holm({'a': 0.03, 'b': 0.01, 'c': 0.5, 'd': 0.02, 'e': None})
  assert adjusted == pytest.approx({'a': 0.06, 'b': 0.04, 'c': 0.5, 'd': 0.06, 'e': None})
