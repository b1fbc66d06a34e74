"""What the Streamlit app does, without Streamlit: load a run once, classify an upload, explain it.

Kept apart from `app.py` so it can be tested directly and so the page script stays layout only.
An upload goes through `decode.preprocess_file` - the same function training and `evaluate.py`
use - so the app's probabilities are the ones `evaluate.py` reports for the same file.

Grad-CAM (Selvaraju et al. 2017) is taken on the last convolutional stage (conv5, the
`output='backbone'` map). Its gradient is computed with `jax.grad` on the Flax model itself: a
method interceptor adds a zero perturbation to the backbone's output, and the gradient of the
class logit w.r.t. that perturbation is exactly d logit / d conv5. So the head is never re-written
here and cannot drift from the model.
"""
from __future__ import annotations

import dataclasses
import io
import os
import threading
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from braingan.data import CLASSES
from braingan import artifact
from braingan import images as images_lib
from braingan.data import decode

DICOM_SUFFIXES = ('.dcm', '.dicom')
MAX_SAMPLES = 16  # Images per generator request (the app offers 4, 8 or 16).
# What one upload may cost. Formats are Pillow's names; anything else is refused unread.
UPLOAD_FORMATS = ('PNG', 'JPEG', 'BMP', 'TIFF')
UPLOAD_SUFFIXES = ('png', 'jpg', 'jpeg', 'bmp', 'tif', 'tiff')
MAX_UPLOAD_MB = 20                        # also server.maxUploadSize in .streamlit/config.toml
MAX_DECODE_BYTES = 64 * 2**20             # decoded size, checked from the header first
MAX_CONCURRENT_PREDICTIONS = 2            # more requests wait; each holds a few hundred MB
BUSY_TIMEOUT_S = 60.0


def dicom_available() -> bool:
  try:
    import pydicom  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def upload_types() -> list[str]:
  """File suffixes the uploader accepts; DICOM only when pydicom can read it."""
  types = list(UPLOAD_SUFFIXES)
  return types + ['dcm', 'dicom'] if dicom_available() else types


class BusyError(RuntimeError):
  """Too many predictions at once; the request should be retried."""


class CheckpointError(RuntimeError):
  """A classifier or GAN run that cannot be loaded; the message names the path and the reason."""


def dicom_pixels_to_png(pixels: np.ndarray, invert: bool = False) -> bytes:
  """A DICOM pixel array -> 16-bit grayscale PNG bytes for `decode` (which rescales 16-bit by range).

  Going through PNG keeps `decode.preprocess_file` the one preprocessing path. Linear rescale
  (slope/intercept) does not matter: the range normalisation undoes it. MONOCHROME1 is inverted.
  """
  arr = np.asarray(pixels, np.float64)
  if arr.ndim == 3 and arr.shape[-1] in (3, 4):
    arr = arr[..., :3].mean(-1)
  if arr.ndim == 3:  # A multi-frame series: the middle slice.
    arr = arr[arr.shape[0] // 2]
  if arr.ndim != 2 or arr.size == 0:
    raise decode.ImageError('<dicom>', f'unsupported DICOM pixel data shape {pixels.shape}')
  lo, hi = float(arr.min()), float(arr.max())
  scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo)
  if invert:
    scaled = 1.0 - scaled
  buf = io.BytesIO()
  Image.fromarray(np.round(scaled * 65535).astype(np.uint16)).save(buf, format='PNG')
  return buf.getvalue()


def _dicom_to_png(data: bytes, name: str) -> bytes:
  import pydicom  # pylint: disable=g-import-not-at-top
  try:
    ds = pydicom.dcmread(io.BytesIO(data))
    pixels = ds.pixel_array
  except Exception as e:  # pydicom raises many types for bad files.
    raise decode.ImageError(name, f'not a readable DICOM file ({e})') from None
  frames = int(getattr(ds, 'NumberOfFrames', 1) or 1)
  if int(getattr(ds, 'Rows', 0)) * int(getattr(ds, 'Columns', 0)) * frames * 8 > MAX_DECODE_BYTES:
    raise decode.ImageError(name, 'image too large')
  return dicom_pixels_to_png(pixels, getattr(ds, 'PhotometricInterpretation', '') == 'MONOCHROME1')


def preprocess_upload(data: bytes, name: str, data_cfg) -> np.ndarray:
  """Upload bytes -> float32 [H, W, C] in [-1, 1], exactly as training saw its files.

  Raises decode.ImageError whose `.reason` says what is wrong (empty, not an image, ...).
  """
  if name.lower().endswith(DICOM_SUFFIXES):
    if not dicom_available():
      raise decode.ImageError(name, 'DICOM files need the pydicom package, which is not '
                              'installed; export the slice as PNG or JPEG')
    data = _dicom_to_png(data, name)
  if len(data) > MAX_UPLOAD_MB * 2**20:
    raise decode.ImageError(name, f'file larger than {MAX_UPLOAD_MB} MB')
  try:
    return decode.preprocess_file(bytes(data), data_cfg, max_bytes=MAX_DECODE_BYTES,
                                  formats=UPLOAD_FORMATS)
  except decode.ImageError as e:
    raise decode.ImageError(name, e.reason) from None


def _conv5_logit(model: nn.Module, variables: Any) -> Callable:
  """(images, delta, class) -> that class's logit with `delta` added to the conv5 map.

  The interceptor sees the bound clone of `model`, so it matches on the module's type and the
  method name; d logit / d delta at delta = 0 is d logit / d conv5.
  """

  def logit(images, delta, class_index):
    def add_delta(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name == 'backbone' and type(context.module) is type(model):
        out = out + delta
      return out
    with nn.intercept_methods(add_delta):
      logits = model.apply(variables, images, train=False)
    return logits[0, class_index]

  return logit


def make_gradcam(model: nn.Module, variables: Any) -> Callable:
  """jitted (images [1, H, W, C], class index) -> Grad-CAM [H, W] in [0, 1] for that class."""
  logit = _conv5_logit(model, variables)

  @jax.jit
  def gradcam(images, class_index):
    fmap = model.apply(variables, images, train=False, output='backbone')  # [1, h, w, K]
    grads = jax.grad(logit, argnums=1)(images, jnp.zeros_like(fmap), class_index)
    weights = grads.mean(axis=(1, 2), keepdims=True)                    # alpha_k
    cam = nn.relu(jnp.sum(weights * fmap, axis=-1))[0]                  # [h, w]
    cam = jax.image.resize(cam, images.shape[1:3], 'bilinear')
    cam = jnp.maximum(cam, 0.0)
    return cam / jnp.maximum(cam.max(), 1e-12)

  return gradcam


@dataclasses.dataclass
class Prediction:
  image: np.ndarray        # float32 [H, W, C] in [-1, 1]: what the model sees.
  probs: np.ndarray        # float32 [NUM_CLASSES], canonical CLASSES order.
  cam: np.ndarray          # float32 [H, W] in [0, 1]: Grad-CAM of the predicted class.
  cam_grid: tuple          # (h, w) of the conv5 map the CAM was upsampled from.
  seconds: float           # Upload bytes -> probabilities and CAM, wall clock.

  @property
  def label(self) -> int:
    return int(np.argmax(self.probs))

  @property
  def class_name(self) -> str:
    return CLASSES[self.label]


class ClassifierService:
  """A finished classifier run, loaded once: predict + explain uploads."""

  def __init__(self, workdir: str):
    from braingan import inference  # pylint: disable=g-import-not-at-top
    self.workdir = workdir
    self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_PREDICTIONS)
    self.model = inference.load_classifier(workdir)
    self.config = self.model.config
    self.data_cfg = self.config.data
    module, variables = self.model.module, self.model.variables
    self._gradcam = make_gradcam(module, variables)
    size, channels = self.data_cfg.image_size, self.data_cfg.channels
    self.cam_grid = tuple(jax.eval_shape(
        lambda x: module.apply(variables, x, output='backbone'),
        jax.ShapeDtypeStruct((1, size, size, channels), jnp.float32)).shape[1:3])
    # Compile both functions now, so the first upload is as fast as the others.
    # (Same argument types as `predict`, or jit would compile again on the first upload.)
    warm = np.zeros((size, size, channels), np.float32)
    self.model.probs(warm[None])
    self.gradcam(warm, 0)

  def gradcam(self, image: np.ndarray, class_index: int) -> np.ndarray:
    return np.asarray(self._gradcam(jnp.asarray(image[None], jnp.float32),
                                    jnp.int32(class_index)))

  def predict(self, data: bytes, name: str = '<upload>') -> Prediction:
    """Raises decode.ImageError for anything that is not a usable image, BusyError when
    MAX_CONCURRENT_PREDICTIONS requests are already running for BUSY_TIMEOUT_S."""
    if not self._slots.acquire(timeout=BUSY_TIMEOUT_S):
      raise BusyError('The classifier is busy with other requests; please try again.')
    try:
      return self._predict(data, name)
    finally:
      self._slots.release()

  def _predict(self, data: bytes, name: str) -> Prediction:
    t0 = time.perf_counter()
    image = preprocess_upload(data, name, self.data_cfg)
    probs = self.model.probs(image[None])[0]
    cam = self.gradcam(image, int(np.argmax(probs)))
    return Prediction(image=image, probs=probs, cam=cam, cam_grid=self.cam_grid,
                      seconds=time.perf_counter() - t0)


def model_size_bytes(path: str) -> int:
  """Bytes of the weights the app loaded: an export's weights file, or a run's checkpoints."""
  if artifact.is_export(path):
    return os.path.getsize(os.path.join(path, artifact.WEIGHTS))
  total = 0
  for root, _, names in os.walk(os.path.join(path, 'checkpoints')):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in names)
  return total


def load_classifier(workdir: str) -> ClassifierService:
  """ClassifierService, or CheckpointError naming `workdir` and what is wrong with it."""
  if not workdir:
    raise CheckpointError('no classifier run given: start the app with '
                          '`streamlit run braingan/app.py -- --classifier=runs/clf_aug`')
  if not os.path.isdir(workdir):
    raise CheckpointError(f'{workdir}: no such directory (expected an export or a finished '
                          'classifier run)')
  if not artifact.is_export(workdir):
    for needed in ('config.json', 'checkpoints'):
      if not os.path.exists(os.path.join(workdir, needed)):
        raise CheckpointError(f'{workdir}: no {needed}; is this an export (python -m '
                              'braingan.export) or a finished classifier run?')
  try:
    return ClassifierService(workdir)
  except artifact.ArtifactError as e:
    raise CheckpointError(str(e)) from e
  except Exception as e:  # Orbax/Flax raise many types for a checkpoint that does not fit.
    raise CheckpointError(f'{workdir}: the checkpoint could not be loaded as a classifier '
                          f'({type(e).__name__}: {_first_line(e)})') from e


def _first_line(e: Exception, limit: int = 300) -> str:
  text = str(e).strip().splitlines()[0] if str(e).strip() else ''
  return text[:limit]


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
  """Grayscale model input + CAM -> uint8 RGB [H, W, 3] (jet-like colour map, blended)."""
  gray = images_lib.to_gray_pixels(image).astype(np.float32) / 255.0
  c = np.clip(cam, 0.0, 1.0)
  heat = np.stack([np.clip(1.5 - np.abs(4 * c - 3), 0, 1),   # red
                   np.clip(1.5 - np.abs(4 * c - 2), 0, 1),   # green
                   np.clip(1.5 - np.abs(4 * c - 1), 0, 1)], -1)  # blue
  rgb = (1 - alpha) * gray[..., None] + alpha * heat
  return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


class GeneratorService:
  """A finished cGAN run's generator, loaded once: a grid of images for (class, seed).

  Image i of a request uses the noise N(0, I) drawn from fold_in(key(seed), i), as
  `braingan.generate` does (the EMA weights when the run kept them), so a (class, seed, count) request always gives the same images
  and a larger count only appends images.
  """

  def __init__(self, workdir: str):
    from braingan import inference  # pylint: disable=g-import-not-at-top
    self.workdir = workdir
    self.generator = inference.load_generator(workdir)
    self.config, self.meta = self.generator.config, self.generator.meta
    self.sample(CLASSES[0], 0, 1)  # Compile now, not on the first click.

  def sample(self, class_name: str, seed: int, count: int) -> np.ndarray:
    """float32 [count, H, W, C] in [-1, 1], count <= MAX_SAMPLES.

    Always runs a batch of MAX_SAMPLES and keeps the first `count` (inference-mode BatchNorm
    makes images independent of one another), so no request compiles the sampler again.
    """
    if class_name not in CLASSES:
      raise ValueError(f'class {class_name!r} is not one of {CLASSES}')
    if not 1 <= count <= MAX_SAMPLES:
      raise ValueError(f'count={count} must be in 1..{MAX_SAMPLES}')
    labels = np.full((MAX_SAMPLES,), CLASSES.index(class_name), np.int32)
    images = self.generator.sample(self.generator.latents(seed, np.arange(MAX_SAMPLES)), labels)
    return images[:count]


def load_generator(workdir: str) -> GeneratorService:
  """GeneratorService, or CheckpointError naming `workdir` and what is wrong with it."""
  if not os.path.isdir(workdir):
    raise CheckpointError(f'{workdir}: no such directory (expected a finished cGAN run)')
  try:
    return GeneratorService(workdir)
  except Exception as e:  # A missing config, no checkpoint, or one of another network.
    raise CheckpointError(f'{workdir}: the generator could not be loaded '
                          f'({type(e).__name__}: {_first_line(e)})') from e
