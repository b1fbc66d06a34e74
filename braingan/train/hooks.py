"""Epoch-end controllers for the fit loop: Keras's EarlyStopping and ReduceLROnPlateau, and a
linear learning-rate decay over the last epochs (GANs).

They are host-side control flow, not math. Each keeps its state in a plain JSON-able dict that
the loop stores in every checkpoint's meta, so a resumed run continues exactly where it was.
`update(record, hparams)` sees the epoch's record (e.g. val_loss) and may change `hparams` (a
learning rate) or ask the loop to stop; it returns True to stop.
"""
from __future__ import annotations

import math


class _Monitor:
  """Tracks the best value of `monitor` (lower is better, min_delta 0) and epochs since."""

  def __init__(self, monitor: str):
    self.monitor = monitor
    self.state = {'best': None, 'wait': 0}

  def _improved(self, record: dict) -> bool:
    value = record.get(self.monitor)
    if value is None or not math.isfinite(value):
      raise ValueError(f'{type(self).__name__} monitors {self.monitor!r}, which the epoch '
                       f'record does not hold as a finite number: {record}')
    if self.state['best'] is None or value < self.state['best']:
      self.state.update(best=value, wait=0)
      return True
    self.state['wait'] += 1
    return False


class EarlyStopping(_Monitor):
  """Stop after `patience` epochs without improvement (restore-best is the loop's job)."""

  def __init__(self, patience: int, monitor: str = 'val_loss'):
    super().__init__(monitor)
    self.patience = patience

  def update(self, record: dict, hparams: dict) -> bool:
    del hparams
    return not self._improved(record) and self.state['wait'] >= self.patience


class ReduceLROnPlateau(_Monitor):
  """Multiply hparams[key] by `factor` after `patience` epochs without improvement (Keras's
  cooldown=0: count afresh after a reduction), never below `min_value`."""

  def __init__(self, patience: int, factor: float, min_value: float,
               monitor: str = 'val_loss', key: str = 'learning_rate'):
    super().__init__(monitor)
    self.patience, self.factor, self.min_value, self.key = patience, factor, min_value, key

  def update(self, record: dict, hparams: dict) -> bool:
    if not self._improved(record) and self.state['wait'] >= self.patience:
      if hparams[self.key] > self.min_value:
        hparams[self.key] = max(hparams[self.key] * self.factor, self.min_value)
        self.state['wait'] = 0
    return False


class LinearDecay:
  """Learning rates held until epoch `start`, then decayed linearly: epoch n > start trains at
  base * (end - n + 1) / (end - start + 1), the last epoch (end) at 1 / (end - start + 1).

  Why (GANs): the raw generator's class agreement swings by 15-20 points between epochs at a
  constant learning rate; shrinking the steps at the end settles the final generator.
  Stateless: the rates follow from the epoch, so a resumed run continues the same schedule."""

  def __init__(self, base: dict, start: int, end: int):
    if not 0 < start < end:
      raise ValueError(f'LinearDecay: need 0 < start ({start}) < end ({end}).')
    self.base, self.start, self.end = dict(base), start, end
    self.state = {}

  def update(self, record: dict, hparams: dict) -> bool:
    upcoming = record['epoch'] + 1   # record['epoch']: epochs completed so far (1-based)
    if upcoming > self.start:
      fraction = max(self.end - upcoming + 1, 1) / (self.end - self.start + 1)
      hparams.update({k: v * fraction for k, v in self.base.items()})
    return False
