"""Seeing what training does: metrics (TensorBoard + JSON lines), progress, image grids.

metrics.jsonl is the machine-readable record (the evaluator and the app read it back with
`read_jsonl`); TensorBoard is for looking at curves while a run is going. Only process 0
writes; on other processes the writer is a no-op so callers need no `if`.
"""
from __future__ import annotations

import io
import json
import math
import os
import sys
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from braingan.data import decode

METRICS_FILE = 'metrics.jsonl'


def _import_tf_cpu():
  """TensorFlow, imported lazily and kept off the GPUs (JAX owns them)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # devices already initialized; they were hidden by whoever did it
    pass
  return tf


def _summary_metadata(tf, plugin_name: str):
  """Metadata that tells TensorBoard which plugin (scalars/images) shows a summary.

  We write summaries with the core op `tf.summary.write` plus this metadata instead of
  `tf.summary.scalar`/`image`, because those live in the `tensorboard` pip package, which
  is not a dependency (the event files are the same; TensorBoard reads them as usual).
  """
  metadata = tf.compat.v1.SummaryMetadata()
  metadata.plugin_data.plugin_name = plugin_name
  return metadata


def _scalar(value: Any) -> float | int:
  value = np.asarray(value)
  if value.size != 1:
    raise ValueError(f'Expected a scalar metric, got shape {value.shape}.')
  value = value.reshape(()).item()
  return value


class MetricWriter:
  """Scalars to TensorBoard (<workdir>/tensorboard) and to <workdir>/metrics.jsonl.

  `write_scalars(step, {'loss': ...}, epoch=3, split='train')` writes one JSON line
  {"step": .., "epoch": 3, "split": "train", "loss": ..} and TensorBoard tags
  'train/loss'. Extra keyword context (epoch, split, ...) is stored in the JSON only.
  """

  def __init__(self, workdir: str, *, tensorboard: bool = True,
               enabled: bool | None = None):
    self.workdir = workdir
    self.enabled = (jax.process_index() == 0) if enabled is None else enabled
    self.jsonl_path = os.path.join(workdir, METRICS_FILE)
    self._tb = None
    self._jsonl = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(self.jsonl_path, 'a', encoding='utf-8')
    if tensorboard:
      tf = _import_tf_cpu()
      self._tf = tf
      self._tb = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))

  def write_scalars(self, step: int, scalars: Mapping[str, Any], **context: Any) -> None:
    if not self.enabled:
      return
    values = {name: _scalar(v) for name, v in scalars.items()}
    record = {'step': int(step), **context, **values}
    self._jsonl.write(json.dumps(record, allow_nan=True) + '\n')
    if self._tb is not None:
      split = context.get('split')
      with self._tb.as_default(step=int(step)):
        for name, value in values.items():
          tag = f'{split}/{name}' if split else name
          self._tf.summary.write(tag, self._tf.constant(float(value), self._tf.float32),
                                 metadata=_summary_metadata(self._tf, 'scalars'))

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """One image [H,W,C] or [H,W], uint8 or float in [-1,1], to TensorBoard."""
    if not self.enabled or self._tb is None:
      return
    image = np.asarray(image)
    if image.dtype != np.uint8:
      image = decode.to_pixels(image)
    if image.ndim == 3 and image.shape[-1] == 1:
      image = image[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='PNG')
    height, width = image.shape[:2]
    tensor = self._tf.constant([str(width), str(height), buffer.getvalue()])
    with self._tb.as_default(step=int(step)):
      self._tf.summary.write(name, tensor, metadata=_summary_metadata(self._tf, 'images'))

  def flush(self) -> None:
    if not self.enabled:
      return
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if not self.enabled or self._jsonl is None:
      return
    self.flush()
    self._jsonl.close()
    self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """All records of a metrics.jsonl (a truncated last line from a crash is skipped)."""
  records = []
  with open(path, encoding='utf-8') as f:
    lines = f.read().splitlines()
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i == len(lines) - 1:
        break
      raise
  return records


def _format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


class Progress:
  """A console progress line for one loop: done/total, percent, rate, ETA, metrics.

  Prints at most every `min_interval` seconds (and always at the end), as whole lines so
  that it reads well in log files as well as terminals. Process 0 only by default.

    progress = Progress(steps, desc=f'epoch {epoch}')
    for batch in batches:
      ...
      progress.update(1, loss=float(loss))
    progress.close()
  """

  def __init__(self, total: int | None, *, desc: str = '', unit: str = 'step',
               min_interval: float = 10.0, stream=None, enabled: bool | None = None):
    self.total = total
    self.desc = desc
    self.unit = unit
    self.min_interval = min_interval
    self.stream = stream if stream is not None else sys.stdout
    self.enabled = (jax.process_index() == 0) if enabled is None else enabled
    self.count = 0
    self.metrics: dict[str, Any] = {}
    self._start = time.perf_counter()
    self._last_print = -math.inf
    self._closed = False

  @property
  def elapsed(self) -> float:
    return time.perf_counter() - self._start

  def rate(self) -> float:
    elapsed = self.elapsed
    return self.count / elapsed if elapsed > 0 else 0.0

  def eta(self) -> float:
    """Seconds left at the current rate (inf when unknown)."""
    rate = self.rate()
    if self.total is None or rate <= 0:
      return math.inf
    return max(self.total - self.count, 0) / rate

  def line(self) -> str:
    parts = [self.desc] if self.desc else []
    if self.total:
      width = len(str(self.total))
      parts.append(f'{self.count:>{width}}/{self.total} {100.0 * self.count / self.total:5.1f}%')
    else:
      parts.append(f'{self.count}')
    parts.append(f'{self.rate():.2f} {self.unit}/s')
    parts.append(f'elapsed {_format_seconds(self.elapsed)}')
    if self.total:
      parts.append(f'ETA {_format_seconds(self.eta())}')
    for name, value in self.metrics.items():
      parts.append(f'{name}={value:.4g}' if isinstance(value, float) else f'{name}={value}')
    return ' | '.join(parts)

  def update(self, n: int = 1, **metrics: Any) -> None:
    self.count += n
    self.metrics.update(metrics)
    now = time.perf_counter()
    if self.enabled and now - self._last_print >= self.min_interval:
      self._last_print = now
      print(self.line(), file=self.stream, flush=True)

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    if self.enabled:
      print(self.line(), file=self.stream, flush=True)


def save_image_grid(path: str, images: np.ndarray, nrow: int,
                    row_labels: Sequence[str] | None = None, *, padding: int = 2,
                    label_width: int = 110) -> str:
  """Writes a PNG grid of `images` ([N,H,W,C], floats in [-1,1]); returns `path`.

  `nrow` images per row, rows filled in order (so for a class-conditional sample, put
  nrow images of class 0, then nrow of class 1, ...). With `row_labels` (one per row)
  a strip `label_width` pixels wide at the left carries each row's label.
  Size: width = [label_width] + ncol*(W+padding) + padding,
  height = nrows*(H+padding) + padding, with ncol = min(nrow, N).
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'images must be [N,H,W,1|3], got shape {images.shape}.')
  if nrow < 1:
    raise ValueError(f'nrow={nrow} must be >= 1.')
  n, h, w, c = images.shape
  ncol = min(nrow, n)
  nrows = math.ceil(n / nrow)
  if row_labels is not None and len(row_labels) != nrows:
    raise ValueError(f'{len(row_labels)} row_labels for {nrows} rows '
                     f'({n} images, {nrow} per row).')
  left = label_width if row_labels is not None else 0
  width = left + ncol * (w + padding) + padding
  height = nrows * (h + padding) + padding
  pixels = decode.to_pixels(images)
  canvas = np.zeros((height, width, c), np.uint8)
  for i in range(n):
    row, col = divmod(i, nrow)
    y = padding + row * (h + padding)
    x = left + padding + col * (w + padding)
    canvas[y:y + h, x:x + w] = pixels[i]
  mode = 'L' if c == 1 else 'RGB'
  picture = Image.fromarray(canvas[..., 0] if c == 1 else canvas, mode=mode)
  if row_labels is not None:
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    white = 255 if c == 1 else (255, 255, 255)
    for row, label in enumerate(row_labels):
      y = padding + row * (h + padding) + h // 2
      draw.text((4, y), str(label), fill=white, font=font, anchor='lm')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  picture.save(path)
  return path
