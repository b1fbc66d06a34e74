"""Any image file -> one grayscale channel -> resized -> [-1, 1].

This is the one place preprocessing lives. Training (through the TFDS builder), evaluation,
generated-image read-back and the Streamlit app all call these functions, so a prediction in
the app equals the one `evaluate.py` makes for the same file.
"""
from __future__ import annotations

import io
import os
from typing import Union

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

# We refuse images above this many pixels instead of letting Pillow allocate gigabytes. A
# 6000x6000 scan (36 MP) is fine; a 20000x20000 upload (400 MP) is refused with a message.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = None  # We do our own, clearer, check below.
ImageFile.LOAD_TRUNCATED_IMAGES = False  # A truncated JPEG is an error, never silently gray.

RESIZE_MODES = ('squash', 'pad')
Source = Union[str, os.PathLike, bytes]


class ImageError(ValueError):
  """A file that cannot be used as an image; the message names the file and the reason."""

  def __init__(self, name: str, reason: str):
    super().__init__(f'{name}: {reason}')
    self.name = name
    self.reason = reason


def _name(source: Source) -> str:
  return '<bytes>' if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def _open(source: Source) -> Image.Image:
  name = _name(source)
  try:
    if isinstance(source, (bytes, bytearray)):
      if not source:
        raise ImageError(name, 'empty file (0 bytes)')
      image = Image.open(io.BytesIO(source))
    else:
      if os.path.getsize(source) == 0:
        raise ImageError(name, 'empty file (0 bytes)')
      image = Image.open(source)
  except ImageError:
    raise
  except UnidentifiedImageError:
    raise ImageError(name, 'not an image (format not recognised)') from None
  except OSError as e:
    if e.errno is not None:  # The file system refused: missing, a link loop, no permission.
      raise ImageError(name, f'cannot read: {e.strerror or e}') from None
    raise ImageError(name, f'corrupt or truncated image: {e}') from None
  width, height = image.size
  if width * height > MAX_PIXELS:
    raise ImageError(name, f'image too large ({width}x{height} > {MAX_PIXELS} pixels)')
  return image


def _to_gray(image: Image.Image) -> Image.Image:
  """Converts any Pillow mode to 8-bit luminance.

  16-bit and 32-bit modes ('I;16', 'I', 'F') are rescaled by their own range instead of being
  clipped at 255, which would turn most 16-bit MRI exports white.
  """
  if image.mode == 'L':
    return image
  if image.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode='L')
  if image.mode in ('RGBA', 'LA', 'PA') or (image.mode == 'P' and 'transparency' in image.info):
    # Composite on black: MRI backgrounds are black, so transparent padding stays background.
    rgba = image.convert('RGBA')
    background = Image.new('RGBA', rgba.size, (0, 0, 0, 255))
    image = Image.alpha_composite(background, rgba)
  return image.convert('L')


def _resize(gray: Image.Image, image_size: int, resize: str) -> Image.Image:
  if resize == 'squash':
    return gray.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
  if resize == 'pad':
    w, h = gray.size
    scale = image_size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = gray.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas = Image.new('L', (image_size, image_size), 0)
    canvas.paste(resized, ((image_size - new_w) // 2, (image_size - new_h) // 2))
    return canvas
  raise ValueError(f'config.data.resize={resize!r} is not one of {RESIZE_MODES}')


def load_gray(source: Source, image_size: int | None = None, resize: str = 'squash') -> np.ndarray:
  """Decodes `source` (a path or the file's bytes) to a uint8 [H, W] grayscale array.

  With `image_size`, the image is resized to image_size x image_size (`resize` says how).
  Raises ImageError (naming the file) for anything that is not a complete, decodable image.
  """
  if resize not in RESIZE_MODES:
    raise ValueError(f'config.data.resize={resize!r} is not one of {RESIZE_MODES}')
  name = _name(source)
  image = _open(source)
  try:
    if image_size is not None and image.format == 'JPEG':
      # Let libjpeg decode at a reduced scale (1/2, 1/4, 1/8) that is still >= the target:
      # 4x less work for 512 -> 128 and a better anti-aliased result than point sampling.
      image.draft('L', (image_size, image_size))
    image.load()
    gray = _to_gray(image)
    if image_size is not None:
      gray = _resize(gray, image_size, resize)
    return np.asarray(gray, dtype=np.uint8).copy()
  except ImageError:
    raise
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    raise ImageError(name, f'corrupt or truncated image: {e}') from None
  finally:
    image.close()


def to_model_input(gray: np.ndarray, channels: int = 1) -> np.ndarray:
  """uint8 [..., H, W] -> float32 [..., H, W, channels] in [-1, 1] ((x - 127.5) / 127.5)."""
  if channels not in (1, 3):
    raise ValueError(f'config.data.channels={channels} must be 1 or 3')
  x = (np.asarray(gray, np.float32) - 127.5) / 127.5
  x = x[..., None]
  return np.repeat(x, channels, axis=-1) if channels == 3 else x


def preprocess_file(source: Source, data_cfg) -> np.ndarray:
  """The full preprocessing of one file as training sees it: float32 [H, W, C] in [-1, 1]."""
  gray = load_gray(source, data_cfg.image_size, data_cfg.resize)
  return to_model_input(gray, data_cfg.channels)
