"""Related-image registration: the batched warp equals scipy's, copies are found, others not."""
import numpy as np
import pytest
from scipy import ndimage

from braingan.data import similar

RNG = np.random.default_rng(0)


def _scan(seed: int) -> np.ndarray:
  """A smooth, off-centre blob image (asymmetric, so a mirror image differs from it)."""
  rng = np.random.default_rng(seed)
  image = ndimage.gaussian_filter(rng.uniform(0, 255, (64, 64)), 3.0)
  image[10:30, 5:25] += 80.0
  return ndimage.gaussian_filter(image, 1.0).astype(np.float32)


@pytest.mark.parametrize('degrees,scale', [(0.0, 1.0), (3.0, 0.96), (-6.0, 1.08), (7.3, 0.9)])
def test_batched_warp_equals_scipy_affine_transform(degrees, scale):
  image = _scan(1)
  t = np.deg2rad(degrees)
  m = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / scale
  c = np.full(2, 31.5)
  want = ndimage.affine_transform(image, m, c - m @ c, order=1, mode='nearest')
  got = similar._warp_all(image, similar._sampling(np.array([degrees]), np.array([scale])))  # pylint: disable=protected-access
  np.testing.assert_allclose(got[0], want, atol=1e-3)


def test_mirrored_rotated_copies_are_related_and_other_scans_are_not():
  a = _scan(2)
  t = np.deg2rad(5.0)
  m = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
  rotated = ndimage.affine_transform(a, m, 31.5 - m @ np.full(2, 31.5), order=1, mode='nearest')
  assert similar.registered_ncc(a, np.ascontiguousarray(a[:, ::-1])) > 0.999
  assert similar.registered_ncc(a, rotated) > 0.98
  thumbs = [a, np.ascontiguousarray(rotated[:, ::-1]), _scan(3), _scan(4)]
  pairs = similar.related_pairs(thumbs, min_ncc=0.98, min_coarse=-1.0)
  assert [(i, j) for i, j, _ in pairs] == [(0, 1)]
