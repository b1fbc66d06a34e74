"""Model images -> pictures: [-1, 1] floats to uint8, grids with row labels, PNG files.

The inverse of the one preprocessing (braingan/data/decode.py) and the one grid maker used by
sample grids, the report's figures of generated images and the app.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from braingan import files


def to_pixels(images: np.ndarray) -> np.ndarray:
  """Inverse of the [-1, 1] scaling, any shape kept: [-1, 1] floats -> uint8 (clipped)."""
  x = np.asarray(images, np.float32)
  return np.clip(np.round(x * 127.5 + 127.5), 0, 255).astype(np.uint8)


def to_gray_pixels(images: np.ndarray) -> np.ndarray:
  """[..., H, W, C] model inputs -> uint8 [..., H, W] of the first channel (for display)."""
  x = np.asarray(images, np.float32)
  if x.shape[-1] in (1, 3):
    x = x[..., 0]
  return to_pixels(x)


def grid(images: np.ndarray, columns: int, *, row_labels: Sequence[str] | None = None,
         padding: int = 2, label_width: int = 110) -> np.ndarray:
  """[N, H, W, C] images in [-1, 1] -> one uint8 picture [height, width] (or [.., 3] for RGB).

  `columns` images per row, rows filled in order (a class-conditional sample: `columns` images
  of class 0, then of class 1, ...). With `row_labels` (one per row) a strip `label_width`
  pixels wide at the left carries each row's label. Size: width = [label_width] +
  ncol * (W + padding) + padding, height = nrows * (H + padding) + padding.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) == 0:
    raise ValueError(f'images must be a non-empty [N,H,W,1|3], got shape {images.shape}.')
  if columns < 1:
    raise ValueError(f'columns={columns} must be >= 1.')
  n, h, w, c = images.shape
  ncol = min(columns, n)
  nrows = math.ceil(n / columns)
  if row_labels is not None and len(row_labels) != nrows:
    raise ValueError(f'{len(row_labels)} row_labels for {nrows} rows '
                     f'({n} images, {columns} per row).')
  left = label_width if row_labels is not None else 0
  canvas = np.zeros((nrows * (h + padding) + padding, left + ncol * (w + padding) + padding, c),
                    np.uint8)
  pixels = to_pixels(images)
  for i in range(n):
    row, col = divmod(i, columns)
    y, x = padding + row * (h + padding), left + padding + col * (w + padding)
    canvas[y:y + h, x:x + w] = pixels[i]
  canvas = canvas[..., 0] if c == 1 else canvas
  if row_labels is None:
    return canvas
  picture = Image.fromarray(canvas)
  draw = ImageDraw.Draw(picture)
  white = 255 if c == 1 else (255, 255, 255)
  for row, label in enumerate(row_labels):
    draw.text((4, padding + row * (h + padding) + h // 2), str(label), fill=white,
              font=ImageFont.load_default(), anchor='lm')
  return np.asarray(picture)


def upscale(pixels: np.ndarray, size: int = 256) -> np.ndarray:
  """Nearest-neighbour enlargement so a 64-128 px picture is visible (no detail invented)."""
  factor = max(1, size // pixels.shape[0])
  return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)


def save_png(path: str, pixels: np.ndarray) -> str:
  """uint8 [H, W] or [H, W, 3] -> PNG at `path`, written atomically."""
  picture = Image.fromarray(np.asarray(pixels))
  return files.atomic_write(path, lambda tmp: picture.save(tmp, format='PNG'))
