"""Seeing what training does: metrics (TensorBoard + JSON lines) and progress.

metrics.jsonl is the machine-readable record (readers use files.read_jsonl, which skips a torn
last line and keeps the last record of an epoch that a resumed run wrote again); TensorBoard is
for looking at curves while a run is going. Only process 0 writes; on other processes the
writer is a no-op so callers need no `if`.

Progress: on a terminal, one tqdm bar per epoch with ETA and the key metrics; anywhere else
(a log file, a pipe, a cluster job) plain whole lines at most every `min_interval` seconds, so
logs stay readable: no carriage returns, no escape codes.
"""
from __future__ import annotations

import io
import math
import os
import sys
import time
from typing import Any, Mapping

import jax
import numpy as np
from PIL import Image

from braingan import files
from braingan.runtime import tensorflow


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
  return value.reshape(()).item()


class MetricWriter:
  """Scalars to TensorBoard (<run>/tensorboard) and to <run>/metrics.jsonl.

  `write_scalars(step, {'loss': ...}, epoch=3)` writes one JSON line
  {"step": .., "epoch": 3, "loss": ..} and TensorBoard tags 'loss'. Extra keyword context
  (epoch, ...) is stored in the JSON only.
  """

  def __init__(self, metrics_path: str, tensorboard_dir: str | None, *,
               enabled: bool | None = None):
    self.metrics_path = metrics_path
    self.enabled = (jax.process_index() == 0) if enabled is None else enabled
    self._tb = None
    if self.enabled and tensorboard_dir:
      self._tf = tensorflow.get()
      self._tb = self._tf.summary.create_file_writer(tensorboard_dir)

  def write_scalars(self, step: int, scalars: Mapping[str, Any], **context: Any) -> None:
    if not self.enabled:
      return
    values = {name: _scalar(v) for name, v in scalars.items()}
    os.makedirs(os.path.dirname(os.path.abspath(self.metrics_path)), exist_ok=True)
    files.append_jsonl(self.metrics_path, [{'step': int(step), **context, **values}])
    if self._tb is not None:
      with self._tb.as_default(step=int(step)):
        for name, value in values.items():
          self._tf.summary.write(name, self._tf.constant(float(value), self._tf.float32),
                                 metadata=_summary_metadata(self._tf, 'scalars'))
      self._tb.flush()

  def write_image(self, step: int, name: str, pixels: np.ndarray) -> None:
    """One uint8 picture [H, W] or [H, W, 3] to TensorBoard."""
    if not self.enabled or self._tb is None:
      return
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, format='PNG')
    height, width = pixels.shape[:2]
    tensor = self._tf.constant([str(width), str(height), buffer.getvalue()])
    with self._tb.as_default(step=int(step)):
      self._tf.summary.write(name, tensor, metadata=_summary_metadata(self._tf, 'images'))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def format_seconds(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


def _format_metrics(metrics: Mapping[str, Any]) -> str:
  return ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                  for k, v in metrics.items())


class Progress:
  """Progress of one loop (an epoch): a tqdm bar on a terminal, plain lines otherwise.

    progress = Progress(steps, desc=f'epoch {epoch}')
    for batch in batches:
      ...
      progress.update(1, loss=float(loss))
    progress.close()
  """

  def __init__(self, total: int | None, *, desc: str = '', unit: str = 'step',
               min_interval: float = 10.0, stream=None, enabled: bool | None = None):
    self.total, self.desc, self.unit, self.min_interval = total, desc, unit, min_interval
    self.stream = stream if stream is not None else sys.stdout
    self.enabled = (jax.process_index() == 0) if enabled is None else enabled
    self.count = 0
    self.metrics: dict[str, Any] = {}
    self._start = time.perf_counter()
    self._last_print = time.perf_counter()
    self._closed = False
    self._bar = None
    isatty = getattr(self.stream, 'isatty', lambda: False)()
    if self.enabled and isatty:
      from tqdm import tqdm  # pylint: disable=import-outside-toplevel
      self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True)

  @property
  def elapsed(self) -> float:
    return time.perf_counter() - self._start

  def rate(self) -> float:
    return self.count / self.elapsed if self.elapsed > 0 else 0.0

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
    parts.append(f'elapsed {format_seconds(self.elapsed)}')
    if self.total:
      parts.append(f'ETA {format_seconds(self.eta())}')
    if self.metrics:
      parts.append(_format_metrics(self.metrics))
    return ' | '.join(parts)

  def update(self, n: int = 1, **metrics: Any) -> None:
    self.count += n
    self.metrics.update(metrics)
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.set_postfix_str(_format_metrics(self.metrics), refresh=False)
      self._bar.update(n)
      return
    now = time.perf_counter()
    if now - self._last_print >= self.min_interval:
      self._last_print = now
      print(self.line(), file=self.stream, flush=True)

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    if self._bar is not None:
      self._bar.close()
    elif self.enabled:
      print(self.line(), file=self.stream, flush=True)


def log(message: str) -> None:
  """A line for people, printed on process 0 (Orbax's INFO logging is too chatty to use)."""
  if jax.process_index() == 0:
    print(message, flush=True)


def epoch_line(record: Mapping[str, Any]) -> str:
  """One line summarising an epoch's record for the log."""
  return f'epoch {record["epoch"]}: ' + _format_metrics(
      {k: v for k, v in record.items() if k != 'epoch'})

