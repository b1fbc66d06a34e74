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

import concurrent.futures
import functools
import os

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


def _sampling(degrees: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Bilinear sampling of rotations by `degrees` and zooms by `scales` about the centre, edges
  extended: flat source indices [T, SIZE*SIZE, 4] and weights [T, SIZE*SIZE, 4]. It computes
  what ndimage.affine_transform(order=1, mode='nearest') does, for T transforms at once (one
  gather instead of T calls: the registration's cost was those calls)."""
  theta = np.deg2rad(np.asarray(degrees, np.float64))[:, None]
  scales = np.asarray(scales, np.float64)[:, None]
  cos, sin = np.cos(theta) / scales, np.sin(theta) / scales
  centre = (SIZE - 1) / 2
  row, col = (g.ravel()[None] - centre for g in np.indices((SIZE, SIZE), np.float64))
  y = np.clip(cos * row - sin * col + centre, 0, SIZE - 1)
  x = np.clip(sin * row + cos * col + centre, 0, SIZE - 1)
  y0, x0 = np.floor(y), np.floor(x)
  wy, wx = y - y0, x - x0
  y0, x0 = y0.astype(np.int32), x0.astype(np.int32)
  y1, x1 = np.minimum(y0 + 1, SIZE - 1), np.minimum(x0 + 1, SIZE - 1)
  index = np.stack([y0 * SIZE + x0, y0 * SIZE + x1, y1 * SIZE + x0, y1 * SIZE + x1], -1)
  weight = np.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx], -1)
  return index, weight.astype(np.float32)


def _warp_all(image: np.ndarray, sampling: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
  """[SIZE, SIZE] -> [T, SIZE, SIZE]: the image under each transform of `sampling`."""
  index, weight = sampling
  flat = np.ascontiguousarray(image, np.float32).ravel()
  return np.einsum('tpk,tpk->tp', flat[index], weight).reshape(-1, SIZE, SIZE)


def _ncc_over_shifts(a_fft: np.ndarray, a_norm: float, b: np.ndarray) -> np.ndarray:
  """[T, SIZE, SIZE] -> [T]: max over shifts within +-_MAX_SHIFT px of the normalised
  cross-correlation of a with each b."""
  b = b - b.mean(axis=(1, 2), keepdims=True)
  cc = np.fft.irfft2(a_fft * np.conj(np.fft.rfft2(b)), s=b.shape[1:])
  k = _MAX_SHIFT
  window = np.concatenate([cc[:, -k:], cc[:, :k + 1]], 1)
  window = np.concatenate([window[:, :, -k:], window[:, :, :k + 1]], 2)
  norms = np.sqrt(np.sum(np.square(b, dtype=np.float64), axis=(1, 2)))
  return window.max(axis=(1, 2)) / (a_norm * norms + 1e-9)


_COARSE_GRID = [(d, s) for d in _COARSE_ANGLES for s in _COARSE_SCALES]
_FINE_STEPS = [(d, s) for d in (-2.0, -1.0, 0.0, 1.0, 2.0) for s in (-0.02, -0.01, 0.0, 0.01, 0.02)]


@functools.lru_cache(maxsize=None)
def _grid_sampling(at: int | None) -> tuple[np.ndarray, np.ndarray]:
  """The coarse grid's sampling (at=None), or the fine grid's around coarse point `at` (25
  points at most, 3 MB each: computed once per process, not once per pair)."""
  grid = np.array(_COARSE_GRID if at is None else _FINE_STEPS) + (
      (0.0, 0.0) if at is None else _COARSE_GRID[at])
  return _sampling(*grid.T)


def registered_ncc(a: np.ndarray, b: np.ndarray) -> float:
  """Best NCC of thumbnail b (or its mirror) moved onto thumbnail a (coarse grid, then fine)."""
  a0 = a - a.mean()
  a_fft, a_norm = np.fft.rfft2(a0), float(np.linalg.norm(a0))
  images = (b, np.ascontiguousarray(b[:, ::-1]))
  coarse = [_ncc_over_shifts(a_fft, a_norm, _warp_all(image, _grid_sampling(None)))
            for image in images]
  mirrored, at = np.unravel_index(int(np.argmax(np.stack(coarse))), (2, len(_COARSE_GRID)))
  fine = _grid_sampling(int(at))
  fine_best = _ncc_over_shifts(a_fft, a_norm, _warp_all(images[mirrored], fine)).max()
  return float(max(coarse[mirrored][at], fine_best))


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
  keys, seen = [], set()
  for i in range(len(thumbs)):
    for j in np.argsort(-sim[i])[:candidates]:
      j = int(j)
      key = (min(i, j), max(i, j)) if references is None else (i, j)
      if key not in seen and sim[i, j] >= min_coarse:
        seen.add(key)
        keys.append(key)
  # numpy's gathers and FFTs release the GIL: threads use every core (1.8x on 2 cores).
  with concurrent.futures.ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
    scores = pool.map(lambda key: registered_ncc(thumbs[key[0]], others[key[1]]), keys)
    return [(i, j, score) for (i, j), score in zip(keys, scores) if score >= min_ncc]
