"""Accuracy under image corruptions: does augmentation buy robustness, not just accuracy?

Five corruptions, each at three severities, applied to model inputs (float32 [N, H, W, C] in
[-1, 1], the project's one input format); every output stays in [-1, 1] with the same shape
and dtype. Random corruptions draw from a generator seeded by (seed, corruption, severity,
image index), so an image gets the same corruption whatever batch it falls in.

The severities are fixed here (not in a config) on purpose: they define the benchmark, and
two runs are only comparable if they saw the same corruptions.
"""
from __future__ import annotations

import io
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from braingan import images as images_lib

SEVERITIES = (1, 2, 3)
# Per corruption: severity -> parameter. Intensities are in [0, 1] units (half the [-1, 1]
# range); blur sigma is in pixels of a 128-pixel-wide image and scales with the width.
SEVERITY_PARAMS = {
    'gaussian_noise': {1: 0.04, 2: 0.08, 3: 0.16},       # noise std
    'gaussian_blur': {1: 0.75, 2: 1.5, 3: 3.0},          # sigma (px at width 128)
    'brightness_contrast': {1: (0.05, 0.9), 2: (0.1, 0.75), 3: (0.2, 0.5)},  # (shift, contrast)
    'jpeg': {1: 50, 2: 25, 3: 10},                       # Pillow JPEG quality
    'rotation': {1: 5.0, 2: 10.0, 3: 15.0},              # degrees, random sign per image
}
CORRUPTIONS = tuple(SEVERITY_PARAMS)


def describe(name: str, severity: int) -> str:
  """Human-readable parameter of one corruption level, for report tables."""
  p = SEVERITY_PARAMS[name][severity]
  return {
      'gaussian_noise': lambda: f'std {p:g}',
      'gaussian_blur': lambda: f'sigma {p:g}px@128',
      'brightness_contrast': lambda: f'+{p[0]:g} brightness, x{p[1]:g} contrast',
      'jpeg': lambda: f'quality {p}',
      'rotation': lambda: f'+/-{p:g} deg',
  }[name]()


def _image_rngs(seed: int, name: str, severity: int, start: int, n: int):
  cid = CORRUPTIONS.index(name)
  return [np.random.default_rng([seed, cid, severity, start + i]) for i in range(n)]


def _gaussian_noise(x, std, rngs):
  noise = np.stack([r.standard_normal(x.shape[1:], dtype=np.float32) for r in rngs])
  return x + noise * np.float32(2 * std)


def _gaussian_blur(x, sigma, rngs):
  del rngs
  s = sigma * x.shape[2] / 128.0
  return ndimage.gaussian_filter(x, sigma=(0, s, s, 0), mode='reflect')


def _brightness_contrast(x, params, rngs):
  del rngs
  shift, contrast = params
  x01 = (x + 1.0) / 2.0
  return ((x01 - 0.5) * contrast + 0.5 + shift) * 2.0 - 1.0


def _jpeg(x, quality, rngs):
  del rngs
  out = np.empty_like(x)
  c = x.shape[-1]
  for i, img in enumerate(images_lib.to_pixels(x)):
    # Grayscale and RGB encode as such (as a real file would be); other channel counts
    # are re-encoded channel by channel.
    planes = [img] if c == 3 else [img[..., j] for j in range(c)]
    decoded = []
    for plane in planes:
      buf = io.BytesIO()
      Image.fromarray(plane).save(buf, format='JPEG', quality=int(quality))
      decoded.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
    arr = decoded[0] if c == 3 else np.stack(decoded, axis=-1)
    out[i] = arr.astype(np.float32) / 127.5 - 1.0
  return out


def _rotation(x, degrees, rngs):
  out = np.empty_like(x)
  for i, (img, r) in enumerate(zip(x, rngs)):
    angle = degrees if r.random() < 0.5 else -degrees
    # Corners uncovered by the rotation are filled with black (-1), the MRI background.
    out[i] = ndimage.rotate(img, angle, axes=(1, 0), reshape=False, order=1,
                            mode='constant', cval=-1.0)
  return out


_FUNCTIONS = {
    'gaussian_noise': _gaussian_noise,
    'gaussian_blur': _gaussian_blur,
    'brightness_contrast': _brightness_contrast,
    'jpeg': _jpeg,
    'rotation': _rotation,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0,
            index_offset: int = 0) -> np.ndarray:
  """Applies one corruption at one severity to images float32 [N, H, W, C] in [-1, 1].

  `index_offset` is the index of images[0] in the full set, so corrupting a batch gives the
  same pixels as corrupting the whole set and slicing.
  """
  if name not in _FUNCTIONS:
    raise ValueError(f'unknown corruption {name!r}; expected one of {CORRUPTIONS}')
  if severity not in SEVERITY_PARAMS[name]:
    raise ValueError(f'severity={severity} for {name}; expected one of {SEVERITIES}')
  x = np.asarray(images, dtype=np.float32)
  if x.ndim != 4:
    raise ValueError(f'images must be [N, H, W, C]; got shape {x.shape}')
  rngs = _image_rngs(seed, name, severity, index_offset, x.shape[0])
  out = _FUNCTIONS[name](x, SEVERITY_PARAMS[name][severity], rngs)
  return np.clip(out, -1.0, 1.0).astype(np.float32)


def psnr(reference: np.ndarray, distorted: np.ndarray) -> float:
  """Peak signal-to-noise ratio in dB for images in [-1, 1] (peak-to-peak 2)."""
  mse = float(np.mean((np.asarray(reference, np.float64) - np.asarray(distorted, np.float64)) ** 2))
  return float('inf') if mse == 0 else float(10 * np.log10(4.0 / mse))


def _predicted_labels(predict_fn, batch):
  out = np.asarray(predict_fn(batch))
  return out.argmax(axis=-1) if out.ndim == 2 else out.reshape(-1)


def _accuracy(predict_fn, images, labels, batch_size, transform: Optional[Callable]) -> float:
  correct = 0
  for start in range(0, images.shape[0], batch_size):
    batch = images[start:start + batch_size]
    if transform is not None:
      batch = transform(batch, start)
    correct += int(np.sum(_predicted_labels(predict_fn, batch) == labels[start:start + batch_size]))
  return correct / images.shape[0]


def robustness_table(predict_fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                     labels, batch_size: int = 64, seed: int = 0,
                     corruptions: Sequence[str] = CORRUPTIONS,
                     severities: Sequence[int] = SEVERITIES) -> dict:
  """Accuracy of predict_fn on clean and corrupted images.

  Args:
    predict_fn: images float32 [b, H, W, C] -> class probabilities/logits [b, K] or labels [b].
    images: float32 [N, H, W, C] in [-1, 1].
    labels: int [N].
    batch_size: images per predict_fn call (does not change the corruptions).
    seed: seeds the random corruptions.

  Returns:
    {'clean': acc, corruption: {str(severity): acc}}; severity keys are strings so the table
    survives a JSON round trip unchanged.
  """
  images = np.asarray(images, dtype=np.float32)
  labels = np.asarray(labels).reshape(-1)
  if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
    raise ValueError(f'{images.shape[0]} images but {labels.shape[0]} labels (need > 0 of each)')
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size} must be >= 1')
  table = {'clean': _accuracy(predict_fn, images, labels, batch_size, None)}
  for name in corruptions:
    table[name] = {}
    for severity in severities:
      def transform(batch, start, name=name, severity=severity):
        return corrupt(batch, name, severity, seed, index_offset=start)
      table[name][str(severity)] = _accuracy(predict_fn, images, labels, batch_size, transform)
  return table
