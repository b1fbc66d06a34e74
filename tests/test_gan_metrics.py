"""FID, KID, per-class scores and the memorisation check on constructed feature sets."""
import json

import numpy as np
import pytest
from scipy import linalg

from braingan.eval import gan_metrics


def _sqrtm_reference(mu1, s1, mu2, s2):
  """The usual pytorch-fid formula with scipy.linalg.sqrtm, for non-singular inputs."""
  covmean = linalg.sqrtm(s1 @ s2)
  covmean = np.real(covmean)
  diff = mu1 - mu2
  return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _random_spd(d, rng):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_fid_of_set_with_itself_is_zero():
  x = np.random.default_rng(0).normal(size=(300, 32)) * 3 + 1
  fid = gan_metrics.frechet_distance(x, x)
  assert 0.0 <= fid < 1e-6 * np.trace(np.cov(x, rowvar=False))


def test_fid_from_stats_matches_sqrtm_and_closed_form():
  rng = np.random.default_rng(1)
  d = 16
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_spd(d, rng), _random_spd(d, rng)
  assert gan_metrics.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(
      _sqrtm_reference(mu1, s1, mu2, s2), rel=1e-8)
  # Diagonal covariances: sum (m1 - m2)^2 + sum (sqrt(a) - sqrt(b))^2.
  a, b = rng.uniform(0.5, 3, d), rng.uniform(0.5, 3, d)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert gan_metrics.frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_fid_of_samples_close_to_analytic_value():
  rng = np.random.default_rng(2)
  d, n = 4, 20000
  mu1, mu2 = np.zeros(d), np.array([1.0, 0.0, -0.5, 0.0])
  s1, s2 = np.eye(d), _random_spd(d, rng) * 2
  a = rng.multivariate_normal(mu1, s1, n)
  b = rng.multivariate_normal(mu2, s2, n)
  analytic = gan_metrics.frechet_distance_from_stats(mu1, s1, mu2, s2)
  assert analytic > 0.5
  assert gan_metrics.frechet_distance(a, b) == pytest.approx(analytic, rel=0.05)


def test_fid_with_fewer_samples_than_dims_is_finite():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 2.0
  fid = gan_metrics.frechet_distance(a, b)
  assert np.isfinite(fid) and fid > 64 * 4 * 0.8  # mean shift alone is 64 * 2^2
  assert gan_metrics.frechet_distance(a, a) < 1e-6 * np.trace(np.cov(a, rowvar=False))


def test_mmd_matches_naive_loops():
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5
  k = lambda u, v: (u @ v / 3 + 1) ** 3
  xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
  yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
  xy = sum(k(x[i], y[j]) for i in range(7) for j in range(5)) / (7 * 5)
  assert gan_metrics.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy)


def test_kid_same_distribution_near_zero_different_positive():
  rng = np.random.default_rng(5)
  a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
  c = rng.normal(size=(400, 16)) * 1.5 + 0.5
  same = gan_metrics.kernel_inception_distance(a, b, n_subsets=10, subset_size=100)
  diff = gan_metrics.kernel_inception_distance(a, c, n_subsets=10, subset_size=100)
  assert diff['mean'] > 0.5
  assert abs(same['mean']) < 0.02 * diff['mean']
  assert same['subset_size'] == 100
  again = gan_metrics.kernel_inception_distance(a, c, n_subsets=10, subset_size=100)
  assert again == diff  # deterministic given the seed


def test_per_class_scores_handles_sparse_class():
  rng = np.random.default_rng(6)
  real, gen = rng.normal(size=(60, 8)), rng.normal(size=(40, 8))
  real_labels = np.repeat([0, 1, 2], 20)
  gen_labels = np.array([0] * 20 + [1] * 19 + [2])
  out = gan_metrics.per_class_scores(real, real_labels, gen, gen_labels, ['a', 'b', 'c'],
                                     kid_subsets=5, kid_subset_size=10)
  assert out['a']['fid'] == pytest.approx(gan_metrics.frechet_distance(real[:20], gen[:20]))
  assert out['b']['n_generated'] == 19 and out['b']['kid_mean'] is not None
  assert out['c']['fid'] is None and 'fewer than 2' in out['c']['note']
  json.dumps(out)


def test_memorisation_flags_exact_copies():
  rng = np.random.default_rng(7)
  train = rng.normal(size=(300, 32))
  val = rng.normal(size=(100, 32))
  novel = rng.normal(size=(50, 32))
  copied = [3, 150, 299]
  gen = np.concatenate([novel, train[copied]])
  r = gan_metrics.memorisation(gen, train, val, percentile=5.0, n_closest=3)
  # Every copy is flagged; a novel sample is flagged only as often as a real held-out one
  # would be (about 5%), and the count agrees with a brute-force check.
  brute = np.linalg.norm(gen[:, None] - train[None], axis=-1).min(1)
  real = np.linalg.norm(val[:, None] - train[None], axis=-1).min(1)
  assert r['threshold'] == pytest.approx(np.percentile(real, 5.0))
  assert r['n_below'] == int(np.sum(brute < r['threshold']))
  assert r['gen_nn_distance'][50:].max() < 1e-6 < r['threshold']
  assert r['n_below'] - 3 <= 0.2 * 50
  assert r['fraction_below'] == pytest.approx(r['n_below'] / 53)
  assert sorted(p['generated_index'] for p in r['closest_pairs']) == [50, 51, 52]
  for p in r['closest_pairs']:
    assert p['train_index'] == copied[p['generated_index'] - 50]
    assert p['distance'] < 1e-6
  assert r['real_nn_distance'].shape == (100,)
  assert r['gen_nn_median'] > r['threshold']
  summary = gan_metrics.memorisation_summary(r)
  assert 'gen_nn_distance' not in summary
  json.dumps(summary)


def test_nearest_neighbours_matches_brute_force_across_chunks():
  rng = np.random.default_rng(8)
  q, ref = rng.normal(size=(37, 5)), rng.normal(size=(23, 5))
  dist, idx = gan_metrics.nearest_neighbours(q, ref, chunk=8)
  full = np.linalg.norm(q[:, None] - ref[None], axis=-1)
  np.testing.assert_array_equal(idx, full.argmin(1))
  np.testing.assert_allclose(dist, full.min(1), rtol=1e-9)


def test_generated_accuracy_fixed_classifier():
  images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
  intended = np.array([0] * 5 + [1] * 5)
  predict = lambda b: (b.reshape(-1) >= 3).astype(int)  # says 1 for images 3..9
  assert gan_metrics.generated_accuracy(predict, images, intended, batch_size=4) == pytest.approx(0.8)


def test_rejects_bad_inputs():
  with pytest.raises(ValueError, match='dims differ'):
    gan_metrics.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match='NaN'):
    gan_metrics.frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))


def test_kid_precomputed_kernels_match_per_subset(monkeypatch):
  rng = np.random.default_rng(9)
  a, b = rng.normal(size=(60, 8)), rng.normal(size=(50, 8)) + 0.3
  fast = gan_metrics.kernel_inception_distance(a, b, n_subsets=5, subset_size=30, seed=1)
  monkeypatch.setattr(gan_metrics, '_MAX_PRECOMPUTED_KERNEL', 0)
  slow = gan_metrics.kernel_inception_distance(a, b, n_subsets=5, subset_size=30, seed=1)
  assert fast['mean'] == pytest.approx(slow['mean'], rel=1e-10)
  assert fast['std'] == pytest.approx(slow['std'], rel=1e-8)


# --------------------------------------------------------------- conditioning (eval/conditioning)
def test_class_agreement_against_sklearn_on_hand_made_judges():
  from sklearn import metrics as skm  # pylint: disable=import-outside-toplevel
  from braingan.eval import classification, conditioning  # pylint: disable=import-outside-toplevel
  intended = np.repeat(np.arange(4), 25)
  perfect = conditioning.agreement(intended, intended, n_boot=200)
  assert perfect['overall']['point'] == 1.0
  assert all(v['point'] == 1.0 for v in perfect['per_class'].values())
  constant = conditioning.agreement(np.zeros(100, int), intended, n_boot=200)
  assert constant['overall']['point'] == 0.25
  assert constant['per_class']['glioma']['point'] == 1.0
  assert constant['per_class']['pituitary']['point'] == 0.0
  noisy = np.where(np.random.default_rng(0).random(100) < 0.3, 2, intended)
  got = conditioning.agreement(noisy, intended, n_boot=500)['overall']
  assert got['point'] == pytest.approx(skm.accuracy_score(intended, noisy))
  assert got['low'] <= got['point'] <= got['high']
  # CAS: a classifier trained on generated images, scored on real ones, is plain accuracy.
  probs = np.eye(4)[noisy]
  cas = classification.classification_accuracy_score(intended, probs, ['a', 'b', 'c', 'd'])
  assert cas['accuracy'] == pytest.approx(skm.accuracy_score(intended, noisy))


def test_fid_uses_equal_set_sizes():
  from braingan.eval import conditioning  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  real, gen = rng.normal(size=(300, 8)), rng.normal(size=(50, 8))
  out = conditioning.fid_equal_size(real, gen, seed=1)
  assert out['n'] == 50
  assert conditioning.fid_equal_size(real, gen, seed=1) == out   # seeded subsample


def test_aligned_pixels_find_a_shifted_copy():
  from braingan.eval import conditioning  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  train = np.full((20, 32, 32, 1), -1.0, np.float32)
  for i in range(20):   # a bright blob with its own texture on a black background
    train[i, 8:24, 8:24, 0] = rng.uniform(-0.5, 1, (16, 16))
  copy = np.full((1, 32, 32, 1), -1.0, np.float32)
  copy[0, 4:20, 12:28, 0] = train[7, 8:24, 8:24, 0]   # the same brain, moved in its frame
  dist, index = gan_metrics.nearest_neighbours(conditioning.aligned_pixels(copy),
                                               conditioning.aligned_pixels(train))
  assert index[0] == 7 and dist[0] < 1e-3
