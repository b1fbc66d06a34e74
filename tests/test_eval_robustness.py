"""Corruptions keep the input contract, get worse with severity and are deterministic."""
import json

import numpy as np
import pytest

from braingan.eval import robustness


def _phantom(n=4, size=48, channels=1, seed=0):
  """MRI-like test images: a bright textured ellipse on black, in [-1, 1]."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size - 0.5
  out = []
  for _ in range(n):
    a, b = rng.uniform(0.25, 0.4, 2)
    inside = (xx / a) ** 2 + (yy / b) ** 2 < 1
    texture = np.sin(xx * rng.uniform(20, 40)) * np.cos(yy * rng.uniform(20, 40))
    img = np.where(inside, 0.2 + 0.5 * texture, -1.0)
    out.append(np.repeat(img[..., None], channels, axis=-1))
  return np.clip(np.stack(out), -1, 1).astype(np.float32)


@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('name', robustness.CORRUPTIONS)
def test_contract_and_monotonic_severity(name, channels):
  x = _phantom(channels=channels)
  previous = float('inf')
  for severity in robustness.SEVERITIES:
    y = robustness.corrupt(x, name, severity, seed=0)
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= -1.0 and y.max() <= 1.0
    quality = robustness.psnr(x, y)
    assert quality < previous, (name, severity, quality, previous)
    previous = quality
  assert previous < 40.0  # the strongest level is a visible change


def test_jpeg_is_a_real_reencode():
  x = _phantom(n=1)
  y = robustness.corrupt(x, 'jpeg', 3)
  # JPEG output is 8-bit: every value is one of the 256 levels.
  levels = (y + 1.0) * 127.5
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
  assert not np.allclose(y, x, atol=2 / 255)


@pytest.mark.parametrize('name', ['gaussian_noise', 'rotation'])
def test_deterministic_and_batch_independent(name):
  x = _phantom(n=6)
  full = robustness.corrupt(x, name, 2, seed=3)
  np.testing.assert_array_equal(full, robustness.corrupt(x, name, 2, seed=3))
  part = robustness.corrupt(x[2:5], name, 2, seed=3, index_offset=2)
  np.testing.assert_array_equal(part, full[2:5])
  assert not np.array_equal(full, robustness.corrupt(x, name, 2, seed=4))


def test_unknown_corruption_or_severity():
  with pytest.raises(ValueError, match='unknown corruption'):
    robustness.corrupt(_phantom(n=1), 'fog', 1)
  with pytest.raises(ValueError, match='severity'):
    robustness.corrupt(_phantom(n=1), 'jpeg', 4)


def test_robustness_table_with_fixed_predict_fn():
  # Label 0: uniform -0.6 images; label 1: uniform +0.6. The classifier says 1 iff mean > 0.
  # Noise, blur, JPEG and small rotations keep every mean on its side of 0; brightness/contrast
  # at severity 3 maps -0.6 to ((0.2 - 0.5) * 0.5 + 0.5 + 0.2) * 2 - 1 = +0.1, so every
  # label-0 image is then misread (severities 1 and 2 give -0.44 and -0.25).
  n = 10
  labels = np.array([0, 1] * (n // 2))
  images = np.where(labels[:, None, None, None] == 0, -0.6, 0.6) * np.ones((n, 16, 16, 1))
  images = images.astype(np.float32)
  calls = []

  def predict_fn(batch):
    calls.append(batch.shape[0])
    mean = batch.mean(axis=(1, 2, 3))
    return np.stack([mean <= 0, mean > 0], axis=1).astype(np.float32)  # one-hot "probs"

  table = robustness.robustness_table(predict_fn, images, labels, batch_size=4, seed=0)
  assert max(calls) == 4
  assert table['clean'] == 1.0
  for name in robustness.CORRUPTIONS:
    assert set(table[name]) == {'1', '2', '3'}
    for severity in ('1', '2', '3'):
      expected = 0.5 if (name, severity) == ('brightness_contrast', '3') else 1.0
      assert table[name][severity] == expected, (name, severity)
  assert json.loads(json.dumps(table)) == table

  # Label-returning predict_fn gives the same table.
  table2 = robustness.robustness_table(lambda b: predict_fn(b).argmax(1), images, labels,
                                       batch_size=3, seed=0)
  assert table2 == table


def test_describe_every_level():
  for name in robustness.CORRUPTIONS:
    for severity in robustness.SEVERITIES:
      assert robustness.describe(name, severity)
