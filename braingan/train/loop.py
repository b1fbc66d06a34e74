"""THE fit loop: every model trains through `fit(recipe, run)`.

What it does for any recipe (braingan/train/recipe.py), so no model family re-implements it:
- jit the recipe's pure steps for the device mesh (batch sharded on 'data', state replicated and
  donated; learning rates are arguments, so hooks change them without a recompile);
- resume from the newest checkpoint: state, epoch, history, learning rates and hook states, so
  a resumed run follows the uninterrupted one's trajectory (the data order is seeded by
  (seed, epoch), the step's randomness by the step counter);
- read each step's metrics one step late (the device already runs the next step), checking that
  they are finite; after the epoch, check that every parameter is finite *before* saving. A
  non-finite value stops training with a message naming it, and the last good checkpoint stays
  the newest on disk;
- progress with ETA; TensorBoard + metrics.jsonl; an epoch record with train means, validation
  means (when the recipe has an eval step) and whatever the recipe adds at epoch end;
- epoch-end hooks (early stopping, reduce-on-plateau), checkpoint cadence, the best checkpoint
  kept apart and restored at the end (when the recipe names a best metric).
"""
from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from braingan import files
from braingan.runtime import distributed
from braingan.runtime import parallel
from braingan.train import checkpoint as checkpoint_lib
from braingan.train import observe


class NonFiniteError(FloatingPointError):
  """Training produced NaN/inf; the last good checkpoint is left untouched."""


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _nonfinite_message(what: str, epoch: int, last_good: int) -> str:
  return (f'Non-finite {what} in epoch {epoch}. Training stopped; the last good checkpoint '
          f'(epoch {last_good}) is kept and a rerun resumes from it. Try a lower '
          'config.optimizer.learning_rate.')


class _EpochMeans:
  """Running means of a step's metrics, fed one step late so the host never stalls the device."""

  def __init__(self, epoch: int, last_good: int, progress: observe.Progress,
               shown: tuple[str, ...]):
    self.epoch, self.last_good, self.progress, self.shown = epoch, last_good, progress, shown
    self.sums: dict[str, float] = {}
    self.count = 0

  def consume(self, metrics: Any, index: int) -> None:
    values = {k: float(v) for k, v in parallel.to_host(metrics).items()}
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:
      raise NonFiniteError(_nonfinite_message(
          f'{", ".join(bad)} ({values}) at step {index + 1} of the epoch', self.epoch,
          self.last_good))
    for k, v in values.items():
      self.sums[k] = self.sums.get(k, 0.0) + v
    self.count += 1
    self.progress.update(1, **{k: self.sums[k] / self.count for k in self.shown if k in values})

  def means(self) -> dict[str, float]:
    return {k: v / max(self.count, 1) for k, v in self.sums.items()}


class Trainer:
  """The jitted steps of a recipe on a mesh, and the pieces of one epoch."""

  def __init__(self, recipe, mesh=None):
    self.recipe = recipe
    config = recipe.config
    self.mesh = mesh if mesh is not None else parallel.make_mesh(config.num_devices or None)
    parallel.check_global_batch(config.batch_size, self.mesh)
    recipe.mesh = self.mesh
    repl = parallel.replicated_sharding(self.mesh)
    batch = parallel.batch_sharding(self.mesh)
    self.train_step = jax.jit(recipe.train_step, in_shardings=(repl, batch, repl),
                              out_shardings=(repl, repl), donate_argnums=0)
    self.eval_step = None
    if recipe.eval_step is not None:
      self.eval_step = jax.jit(recipe.eval_step, in_shardings=(repl, batch), out_shardings=repl)

  def initial_state(self) -> Any:
    return parallel.replicate(self.mesh, self.recipe.init_state())

  def place_hparams(self, hparams: dict) -> dict:
    """Learning rates as replicated float32 scalars (global arrays on several processes)."""
    return parallel.replicate(self.mesh, {k: np.float32(v) for k, v in hparams.items()})

  def step(self, state, host_batch: dict, hparams: dict | None = None):
    """One jitted train step on this process's share of a batch (tests, benchmarks)."""
    hparams = self.recipe.hparams() if hparams is None else hparams
    return self.train_step(state, parallel.shard_batch(self.mesh, host_batch),
                           self.place_hparams(hparams))

  def run_epoch(self, state, epoch: int, steps: int, hparams: dict, last_good: int):
    """One epoch of steps -> (state, train means, seconds)."""
    config = self.recipe.config
    progress = observe.Progress(steps, desc=f'epoch {epoch + 1}/{config.epochs}',
                                min_interval=config.log_every_seconds)
    means = _EpochMeans(epoch + 1, last_good, progress, self.recipe.progress_metrics)
    hp = self.place_hparams(hparams)
    start, pending = time.perf_counter(), None
    for index, batch in enumerate(self.recipe.train_batches(epoch, steps)):
      state, metrics = self.train_step(state, parallel.shard_batch(self.mesh, batch), hp)
      if pending is not None:
        means.consume(*pending)
      pending = (metrics, index)
    if pending is not None:
      means.consume(*pending)
    progress.close()
    if means.count != steps:
      raise RuntimeError(f'epoch {epoch + 1} had {means.count} batches, expected {steps}.')
    return state, means.means(), time.perf_counter() - start

  def evaluate(self, state) -> dict[str, float]:
    """Means of the recipe's eval sums over the validation split, as 'val_<name>'."""
    totals: dict[str, float] = {}
    for batch in self.recipe.eval_batches():
      out = parallel.to_host(self.eval_step(state, parallel.shard_batch(self.mesh, batch)))
      for k, v in out.items():
        totals[k] = totals.get(k, 0.0) + float(v)
    count = totals.pop('count', 0.0)
    means = {f'val_{k}': v / max(count, 1.0) for k, v in totals.items()}
    return {**means, 'val_count': int(count)}

  def check_finite(self, state, epoch: int, last_good: int) -> None:
    if not bool(parallel.host_local(_all_finite(state))):
      raise NonFiniteError(_nonfinite_message('parameters, statistics or optimizer state after '
                                              'the last update', epoch, last_good))


def _step_of(state) -> int:
  """The optimizer-step counter of a state (a TrainState, or a struct holding them)."""
  step = getattr(state, 'step', None)
  if step is None:
    step = getattr(state, 'generator').step
  return int(parallel.host_local(step))


def fit(recipe, run) -> dict[str, Any]:
  """Trains `recipe` in run directory `run` (resuming if it holds checkpoints).

  Returns the final record: the best epoch's (restored and re-evaluated) when the recipe has
  a best metric, else the last epoch's; it is also written to run.final_metrics.
  """
  config = recipe.config
  trainer = Trainer(recipe)
  state = trainer.initial_state()
  hparams, hooks = recipe.hparams(), recipe.hooks()
  ckpt = checkpoint_lib.Checkpointer(
      run.checkpoints, max_to_keep=config.keep_checkpoints, save_every=config.checkpoint_every,
      best_metric=recipe.best_metric, best_mode=recipe.best_mode)
  start_epoch, history, stopped = 0, [], False
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
    meta = ckpt.restore_meta()
    start_epoch, history, stopped = meta['epoch'], meta['history'], meta['stopped']
    hparams = meta['hparams']
    for hook, hook_state in zip(hooks, meta['hooks']):
      hook.state = hook_state
    observe.log(f'Resumed at epoch {start_epoch}, train step {_step_of(state)}.')
  writer = observe.MetricWriter(run.metrics, run.tensorboard)
  steps = recipe.steps_per_epoch()
  train_start = time.perf_counter()
  try:
    for epoch in range(start_epoch, config.epochs):
      if stopped:
        break
      record = {'epoch': epoch + 1, **hparams}
      state, train_means, seconds = trainer.run_epoch(state, epoch, steps, hparams, epoch)
      state = recipe.finalize_epoch(state, epoch)
      trainer.check_finite(state, epoch + 1, epoch)   # what is saved, statistics included
      record.update(train_means)
      record.update(seconds=seconds, steps_per_s=steps / seconds if seconds > 0 else 0.0)
      if trainer.eval_step is not None:
        record.update(trainer.evaluate(state))
      record.update(recipe.on_epoch_end(state, epoch + 1, run, writer))
      stopped = any([hook.update(record, hparams) for hook in hooks])   # every hook updates
      history.append(record)
      step = _step_of(state)
      writer.write_scalars(step, {k: v for k, v in record.items() if k != 'epoch'},
                           epoch=epoch + 1)
      observe.log(observe.epoch_line(record))
      ckpt.save(epoch + 1, state, metrics=record,
                meta={'epoch': epoch + 1, 'step': step, 'history': history, 'stopped': stopped,
                      'hparams': hparams, 'hooks': [hook.state for hook in hooks]},
                force=epoch + 1 == config.epochs or stopped)
    ckpt.wait_until_finished()
    final = dict(history[-1]) if history else {}
    final.update(train_steps=_step_of(state), epochs_run=len(history), steps_per_epoch=steps,
                 stopped_early=bool(stopped),
                 train_seconds_this_run=time.perf_counter() - train_start)
    if recipe.best_metric is not None:
      best_meta = ckpt.restore_best_meta()
      state = ckpt.restore_best(state)   # EarlyStopping(restore_best_weights=True)
      # Re-evaluated when the recipe has an eval step; else the best epoch's own record.
      scores = (trainer.evaluate(state) if trainer.eval_step is not None
                else next(dict(r) for r in history if r['epoch'] == best_meta['epoch']))
      final = {**scores, 'best_epoch': best_meta['epoch'], 'best_step': best_meta['step'],
               **{k: final[k] for k in ('train_steps', 'epochs_run', 'steps_per_epoch',
                                        'stopped_early', 'train_seconds_this_run')}}
  finally:
    ckpt.close()
    writer.close()
  if distributed.is_main_process():
    files.write_json(run.history, history)
    files.write_json(run.final_metrics, final)
  return final
