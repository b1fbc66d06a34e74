"""What a model family tells the fit loop: its state, its pure steps, its data, its hooks.

The loop (braingan/train/loop.py) owns everything that is the same for every model: devices
and shardings, jit, resume, checkpoints, finite checks, progress, metrics files. A recipe owns
what differs: how the state is initialised, one training step, optionally an evaluation step,
which batches an epoch has, and what to do after an epoch (sample grids, conditioning
metrics). Two recipes exist: braingan/train/gan.py and braingan/train/classifier.py.

Step functions are pure: `train_step(state, batch, hparams) -> (state, metrics)` with
`hparams` a dict of float scalars (learning rates) that hooks may change between epochs
without recompiling; `eval_step(state, batch) -> sums` over the unpadded rows of a batch
(batch['mask']). Both are jitted by the loop, the batch sharded over devices, the state
replicated and donated.
"""
from __future__ import annotations

from typing import Any, Iterator

import ml_collections


class Recipe:
  """Base class: override what your model needs; the defaults are 'not used'."""

  # Checkpoint kept apart as the best one, and restored at the end (e.g. 'val_loss'); None:
  # the last epoch is the result.
  best_metric: str | None = None
  best_mode: str = 'min'
  # Step metrics shown on the progress bar/line (running epoch means).
  progress_metrics: tuple[str, ...] = ()

  def __init__(self, config: ml_collections.ConfigDict, data: Any):
    self.config = config
    self.data = data
    self.mesh = None   # set by the loop: the device mesh the steps run on

  # ------------------------------------------------------------------ state and steps
  def init_state(self) -> Any:
    """The step-0 state (host or device arrays), deterministic from config.seed."""
    raise NotImplementedError

  def train_step(self, state: Any, batch: dict, hparams: dict) -> tuple[Any, dict]:
    raise NotImplementedError

  eval_step = None   # (state, batch) -> {name: sum over unpadded rows, 'count': n}

  def hparams(self) -> dict[str, float]:
    """Scalars passed to every train_step (learning rates); hooks may change them."""
    return {}

  def hooks(self) -> list:
    """Epoch-end controllers (braingan/train/hooks.py), e.g. early stopping."""
    return []

  def inference_variables(self, state: Any) -> dict:
    """The variables a reader needs to run the trained model (no optimizer state)."""
    raise NotImplementedError

  # ----------------------------------------------------------------------------- data
  def steps_per_epoch(self) -> int:
    """config.steps_per_epoch, or the real training images // batch size."""
    if self.config.steps_per_epoch:
      return int(self.config.steps_per_epoch)
    steps = self.data.num_examples('train') // self.config.batch_size
    if steps < 1:
      raise ValueError(f'config.batch_size={self.config.batch_size} is larger than the '
                       f'{self.data.num_examples("train")} training images: no full batch.')
    return steps

  def train_batches(self, epoch: int, steps: int) -> Iterator[dict]:
    return self.data.train_epoch(epoch, self.config.batch_size, steps)

  def eval_batches(self) -> Iterator[dict]:
    return self.data.eval_batches(self.config.batch_size, 'validation')

  # -------------------------------------------------------------------------- epochs
  def finalize_epoch(self, state: Any, epoch: int) -> Any:
    """The state after epoch `epoch` (0-based) that validation, the checkpoint and the result
    use; e.g. the classifier recomputes its BatchNorm statistics here. Default: unchanged."""
    del epoch
    return state

  def on_epoch_end(self, state: Any, epoch: int, run: Any, writer: Any) -> dict[str, float]:
    """After epoch `epoch` (1-based): extra scalars for the record (e.g. conditioning metrics);
    may write images through `writer` and files under `run`. Runs on every process."""
    del state, epoch, run, writer
    return {}
