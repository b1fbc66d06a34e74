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

# What decoding an image may cost, checked from its header before a pixel is decoded: the
# decoded bytes (width x height x bytes per pixel of its mode, x2 for the conversion to one gray
# channel). A 6000x6000 RGB scan (216 MB) is fine for training data; the app passes a smaller
# budget (braingan/serve.py). Pillow's own decompression-bomb check stays on as a second line.
MAX_DECODE_BYTES = 512 * 2**20
ImageFile.LOAD_TRUNCATED_IMAGES = False  # A truncated JPEG is an error, never silently gray.
# Bytes per pixel of Pillow's modes (unknown modes count as 4).
_MODE_BYTES = {'1': 1, 'L': 1, 'P': 1, 'LA': 2, 'PA': 2, 'I;16': 2, 'I;16B': 2, 'I;16L': 2,
               'RGB': 3, 'YCbCr': 3, 'LAB': 3, 'HSV': 3, 'RGBA': 4, 'RGBX': 4, 'CMYK': 4,
               'I': 4, 'F': 4}

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


def decoded_bytes(image: Image.Image) -> int:
  """Bytes decoding `image` costs: its pixels in its mode, and their gray conversion."""
  width, height = image.size
  per_pixel = _MODE_BYTES.get(image.mode, 4)
  # Gray conversion: 16/32-bit modes are rescaled through float32 (4 bytes per pixel).
  convert = 4 if image.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F') else 1
  return width * height * (per_pixel + convert)


def _open(source: Source, max_bytes: int = MAX_DECODE_BYTES,
          formats: tuple[str, ...] | None = None) -> Image.Image:
  """Opens `source` lazily (header only) and refuses what would cost more than `max_bytes` to
  decode, or whose format is not in `formats` (None: any format Pillow reads)."""
  name = _name(source)
  try:
    if isinstance(source, (bytes, bytearray)):
      if not source:
        raise ImageError(name, 'empty file (0 bytes)')
      image = Image.open(io.BytesIO(source), formats=formats)
    else:
      if os.path.getsize(source) == 0:
        raise ImageError(name, 'empty file (0 bytes)')
      image = Image.open(source, formats=formats)
  except ImageError:
    raise
  except UnidentifiedImageError:
    allowed = f' (accepted: {", ".join(formats)})' if formats else ''
    raise ImageError(name, f'not an image in a readable format{allowed}') from None
  except Image.DecompressionBombError as e:
    raise ImageError(name, f'image too large to decode safely ({e})') from None
  except OSError as e:
    if e.errno is not None:  # The file system refused: missing, a link loop, no permission.
      raise ImageError(name, f'cannot read: {e.strerror or e}') from None
    raise ImageError(name, f'corrupt or truncated image: {e}') from None
  cost = decoded_bytes(image)
  if cost > max_bytes:
    (width, height), mode = image.size, image.mode
    image.close()
    raise ImageError(name, f'image too large ({width}x{height} {mode} would take '
                     f'{cost / 2**20:.0f} MB to decode; the limit is {max_bytes / 2**20:.0f} MB)')
  return image


def _to_gray(image: Image.Image) -> Image.Image:
  """Converts any Pillow mode to 8-bit luminance.

  16-bit and 32-bit modes ('I;16', 'I', 'F') are rescaled by their own range instead of being
  clipped at 255, which would turn most 16-bit MRI exports white.
  """
  if image.mode == 'L':
    return image
  if image.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):
    arr = np.asarray(image, dtype=np.float32)   # float32: 16-bit values are exact in it
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
      arr[:] = 0.0
    else:
      arr -= lo
      arr *= 255.0 / (hi - lo)
    np.round(arr, out=arr)
    return Image.fromarray(arr.astype(np.uint8), mode='L')
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


def load_gray(source: Source, image_size: int | None = None, resize: str = 'squash', *,
              max_bytes: int = MAX_DECODE_BYTES,
              formats: tuple[str, ...] | None = None) -> np.ndarray:
  """Decodes `source` (a path or the file's bytes) to a uint8 [H, W] grayscale array.

  With `image_size`, the image is resized to image_size x image_size (`resize` says how).
  Raises ImageError (naming the file) for anything that is not a complete, decodable image,
  costs more than `max_bytes` to decode, or is not one of `formats` (Pillow format names).
  """
  if resize not in RESIZE_MODES:
    raise ValueError(f'config.data.resize={resize!r} is not one of {RESIZE_MODES}')
  name = _name(source)
  image = _open(source, max_bytes, formats)
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


def preprocess_file(source: Source, data_cfg, **limits) -> np.ndarray:
  """The full preprocessing of one file as training sees it: float32 [H, W, C] in [-1, 1].

  `limits`: max_bytes / formats for load_gray (the app is stricter than training data).
  """
  gray = load_gray(source, data_cfg.image_size, data_cfg.resize, **limits)
  return to_model_input(gray, data_cfg.channels)
