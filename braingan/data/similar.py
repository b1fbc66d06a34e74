"""Related images: flipped, slightly cropped, rotated or shifted copies of one scan.

Exact and near-duplicate copies (same bytes, or 64-bit perceptual hashes within 2 bits) are
found by `split.group_duplicates`. Those hashes do not survive a left-right flip, a 5 % crop or
a 5-degree rotation (measured on the shared Training set: such copies land 6-20 bits apart,
where distinct images' nearest neighbours are 4-12 bits apart), so a second, slower check finds
copies under small geometric changes:

1. candidates: for every image, its `candidates` nearest neighbours by the cosine similarity of
   a 16x16 thumbnail (the image and its mirror image);
2. verification: the candidate is registered onto the image at 64x64 (blurred, sigma 1 px) over
   a flip, rotations of +-7 degrees, scales 0.92-1.08 and shifts of +-4 px (a coarse grid,
   then a finer one around its best point); the pair is related when the best normalised
   cross-correlation reaches `min_ncc`.

Calibration on 600 images of the shared set (`min_ncc` 0.98): a flipped copy scores 1.0, a
5 %-cropped one 0.95-1.0 (median 0.999), a 5-degree-rotated one 0.985-1.0 (median 0.999); a
distinct image's nearest neighbour scores 0.87-1.0 (median 0.94, 10 % above 0.98: mostly
neighbouring slices of one scan). Related images are not dropped: they are kept and placed on
the same side of the split (`split.split_records`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

SIZE = 64
_COARSE_ANGLES = np.arange(-6.0, 6.1, 3.0)
_COARSE_SCALES = np.arange(0.92, 1.081, 0.04)
_MAX_SHIFT = 4


def thumbnail(gray: np.ndarray) -> np.ndarray:
  """uint8 [H, W] -> float32 [SIZE, SIZE], blurred: what registration compares."""
  small = Image.fromarray(np.ascontiguousarray(gray)).resize((SIZE, SIZE),
                                                            Image.Resampling.BILINEAR)
  return ndimage.gaussian_filter(np.asarray(small, np.float32), 1.0)


def _coarse(thumb: np.ndarray) -> np.ndarray:
  v = np.asarray(Image.fromarray(thumb).resize((16, 16), Image.Resampling.BILINEAR),
                 np.float32).ravel()
  v = v - v.mean()
  return v / max(float(np.linalg.norm(v)), 1e-6)


def _warp(image: np.ndarray, degrees: float, scale: float) -> np.ndarray:
  t = np.deg2rad(degrees)
  m = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) / scale
  c = np.full(2, (SIZE - 1) / 2)
  return ndimage.affine_transform(image, m, c - m @ c, order=1, mode='nearest')


def _ncc_over_shifts(a_fft: np.ndarray, a_norm: float, b: np.ndarray) -> float:
  """max over shifts within +-_MAX_SHIFT px of the normalised cross-correlation of a and b."""
  b = b - b.mean()
  cc = np.fft.irfft2(a_fft * np.conj(np.fft.rfft2(b)), s=b.shape)
  k = _MAX_SHIFT
  window = np.concatenate([cc[-k:], cc[:k + 1]], 0)
  window = np.concatenate([window[:, -k:], window[:, :k + 1]], 1)
  return float(window.max() / (a_norm * float(np.linalg.norm(b)) + 1e-9))


def registered_ncc(a: np.ndarray, b: np.ndarray) -> float:
  """Best NCC of thumbnail b (or its mirror) moved onto thumbnail a (coarse grid, then fine)."""
  a0 = a - a.mean()
  a_fft, a_norm = np.fft.rfft2(a0), float(np.linalg.norm(a0))
  best, best_at = -1.0, None
  for mirrored, image in ((False, b), (True, b[:, ::-1])):
    for degrees in _COARSE_ANGLES:
      for scale in _COARSE_SCALES:
        score = _ncc_over_shifts(a_fft, a_norm, _warp(image, degrees, scale))
        if score > best:
          best, best_at = score, (mirrored, degrees, scale)
  mirrored, degrees, scale = best_at
  image = b[:, ::-1] if mirrored else b
  for d in degrees + np.array([-2.0, -1.0, 0.0, 1.0, 2.0]):
    for s in scale + np.array([-0.02, -0.01, 0.0, 0.01, 0.02]):
      best = max(best, _ncc_over_shifts(a_fft, a_norm, _warp(image, d, s)))
  return best


def _coarse_set(thumbs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  return (np.stack([_coarse(t) for t in thumbs]),
          np.stack([_coarse(np.ascontiguousarray(t[:, ::-1])) for t in thumbs]))


def related_pairs(thumbs: list[np.ndarray], min_ncc: float, candidates: int = 3,
                  min_coarse: float = 0.8,
                  references: list[np.ndarray] | None = None) -> list[tuple[int, int, float]]:
  """Related pairs whose registered NCC reaches min_ncc: (i, j, ncc) with i < j within
  `thumbs`, or (i in thumbs, j in references) when `references` is given."""
  others = thumbs if references is None else references
  if not thumbs or len(others) < (2 if references is None else 1):
    return []
  coarse, _ = _coarse_set(thumbs)
  other, other_mirrored = _coarse_set(others)
  sim = np.maximum(coarse @ other.T, coarse @ other_mirrored.T)
  if references is None:
    np.fill_diagonal(sim, -np.inf)
  pairs, seen = [], set()
  for i in range(len(thumbs)):
    for j in np.argsort(-sim[i])[:candidates]:
      j = int(j)
      key = (min(i, j), max(i, j)) if references is None else (i, j)
      if key in seen or sim[i, j] < min_coarse:
        continue
      seen.add(key)
      first = thumbs[key[0]]
      second = (thumbs if references is None else references)[key[1]]
      score = registered_ncc(first, second)
      if score >= min_ncc:
        pairs.append((key[0], key[1], score))
  return pairs
