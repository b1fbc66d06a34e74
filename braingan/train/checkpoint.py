"""Orbax checkpoints: the latest few for resuming, plus the best one kept apart.

Layout on disk:
  <directory>/<step>/{state,meta}         rotated: at most `max_to_keep` of them
  <directory>/best/<step>/{state,meta}    only when `best_metric` is set: the single best

The best checkpoint lives in its own CheckpointManager so the rotation of the latest
checkpoints can never delete it, however many worse epochs follow.

Why it survives interruption: Orbax writes each step into `<step>.orbax-checkpoint-tmp-*`
and renames it to `<step>` only once every process has finished writing (on GCS, where
rename is not atomic, it writes a commit_success.txt marker instead). `latest_step()` only
lists finalized steps, so a killed save is ignored and the previous step is restored.
Leftover temporary folders are removed the next time a Checkpointer (the writer) opens the
directory. Readers (evaluation, generation, export, the app) use `CheckpointReader`, which never
writes or deletes anything, so opening a run that is still training cannot remove the half-written
folder of a save in progress.

All processes must call `save` (Orbax coordinates them; each writes its own shards), and
`directory` must be on a file system every process sees.

Restoring from a directory without checkpoints raises FileNotFoundError; call
`latest_step()` first (None means start from scratch).
"""
from __future__ import annotations

import json
import math
from typing import Any, Mapping

from etils import epath
import jax
import numpy as np
import orbax.checkpoint as ocp

_ITEMS = ('state', 'meta')


def _jsonable(value: Any) -> Any:
  """Makes metric / meta values JSON-friendly (numpy and jax scalars -> python numbers)."""
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()
  return value


def _abstract_leaf(x: Any) -> jax.ShapeDtypeStruct:
  """Target leaf -> ShapeDtypeStruct carrying the sharding the restored array should have."""
  if isinstance(x, jax.ShapeDtypeStruct):
    if x.sharding is None:
      raise ValueError(f'Restore target ShapeDtypeStruct{x.shape} has no sharding; give one '
                       '(e.g. parallel.replicated_sharding(mesh)).')
    return x
  if isinstance(x, jax.Array):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
  x = np.asarray(x)
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _leaf_names(tree: Any) -> set[str]:
  """'generator/params/Dense_0/kernel', ... of a pytree (a state or a checkpoint's metadata)."""
  return {jax.tree_util.keystr(path, simple=True, separator='/')
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _restore_leaves(folder: epath.Path, abstract: Any) -> Any:
  """The leaves of `abstract` (ShapeDtypeStructs with shardings) from a saved state folder."""
  restore_args = jax.tree.map(lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding), abstract)
  return ocp.PyTreeCheckpointer().restore(folder, args=ocp.args.PyTreeRestore(
      item=abstract, restore_args=restore_args, partial_restore=True))


class Checkpointer:
  """Saves / restores a pytree of arrays (e.g. a TrainState or {'gen':..., 'disc':...})."""

  def __init__(self, directory: str | epath.PathLike, *, max_to_keep: int = 3,
               save_every: int = 1, best_metric: str | None = None, best_mode: str = 'min',
               async_save: bool = True):
    """`save_every` is in the caller's step units (epochs, usually): `save(step)` writes
    only when step % save_every == 0, unless force=True. Best checkpoints are written
    whenever the metric improves, regardless of save_every."""
    if max_to_keep < 1:
      raise ValueError(f'max_to_keep={max_to_keep} must be >= 1.')
    if save_every < 1:
      raise ValueError(f'save_every={save_every} must be >= 1.')
    if best_mode not in ('min', 'max'):
      raise ValueError(f"best_mode={best_mode!r} must be 'min' or 'max'.")
    self.directory = epath.Path(directory).absolute()
    self.save_every = save_every
    self.best_metric = best_metric
    self.best_mode = best_mode
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, save_interval_steps=1, create=True,
            cleanup_tmp_directories=True, enable_async_checkpointing=async_save),
        item_names=_ITEMS)
    self._best_manager = None
    self._best_value = None
    if best_metric is not None:
      self._best_manager = ocp.CheckpointManager(
          self.directory / 'best',
          options=ocp.CheckpointManagerOptions(
              max_to_keep=1, create=True, cleanup_tmp_directories=True,
              best_fn=lambda metrics: metrics[best_metric], best_mode=best_mode,
              enable_async_checkpointing=async_save,
              # Both managers save the same step at once; on several processes their
              # barriers would share names ("Barrier ... is already ongoing") without this.
              multiprocessing_options=ocp.options.MultiprocessingOptions(
                  barrier_sync_key_prefix='best')),
          item_names=_ITEMS)
    # Orbax 0.12 removes leftover temporary folders in a background future; wait for it so
    # that "opened by the writer" means "cleaned" (a reader listing the directory right after
    # would otherwise still see a killed save's folder).
    for manager in (self._manager, self._best_manager):
      if manager is not None and hasattr(manager, '_maybe_await_cleanup_tmp_directory'):
        manager._maybe_await_cleanup_tmp_directory()   # pylint: disable=protected-access
    if self._best_manager is not None:
      best_step = self._best_manager.latest_step()
      if best_step is not None:   # resuming: compare new results with the stored best
        stored = self._restore_meta(self._best_manager, best_step)
        self._best_value = stored.get('metrics', {}).get(best_metric)

  # ---------------------------------------------------------------------------- queries
  def latest_step(self) -> int | None:
    """The newest finalized step, or None when the directory has no checkpoint."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def best_step(self) -> int | None:
    """The step of the best checkpoint so far (None without best_metric or before one)."""
    if self._best_manager is None:
      return None
    return self._best_manager.latest_step()

  @property
  def best_value(self) -> float | None:
    return self._best_value

  # ------------------------------------------------------------------------------- save
  def _is_better(self, value: float) -> bool:
    if math.isnan(value):
      return False
    if self._best_value is None:
      return True
    return value < self._best_value if self.best_mode == 'min' else value > self._best_value

  def save(self, step: int, state: Any, *, metrics: Mapping[str, Any] | None = None,
           meta: Mapping[str, Any] | None = None, force: bool = False) -> bool:
    """Saves `state` at `step` (every process must call this). Returns True if written.

    `metrics` (scalars) and `meta` (anything JSON-able: epoch, config hash...) go into the
    JSON 'meta' item. When `best_metric` is in `metrics` and improves, the state is also
    written as the new best checkpoint. Writing is asynchronous: call
    `wait_until_finished()` before reading the files or exiting.
    """
    step = int(step)
    metrics = _jsonable(dict(metrics or {}))
    meta_doc = {'step': step, 'metrics': metrics, **_jsonable(dict(meta or {}))}
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(meta_doc))
    # save_every is applied here and not via Orbax's save_interval_steps, which would also
    # write the very first step whatever its number.
    # A step already on disk is left as it is (e.g. a final forced save of an epoch that
    # save_every already wrote); Orbax would raise StepAlreadyExistsError.
    saved = False
    if (force or step % self.save_every == 0) and step not in self._manager.all_steps():
      saved = self._manager.save(step, args=args, force=force)
    if self._best_manager is not None and self.best_metric in metrics:
      value = float(metrics[self.best_metric])
      # The existing-step guard: a run killed between `best/N` and `N` redoes epoch N on
      # resume; a better value then must not crash on the step already in best/.
      if self._is_better(value) and step not in self._best_manager.all_steps():
        best_args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                       meta=ocp.args.JsonSave(meta_doc))
        self._best_manager.save(step, args=best_args, metrics={self.best_metric: value},
                                force=True)
        self._best_value = value
    return saved

  # ---------------------------------------------------------------------------- restore
  @staticmethod
  def _restore_state(manager: ocp.CheckpointManager, target: Any, step: int) -> Any:
    """Strict leaf for leaf (every leaf of `target` stored, nothing stored left over), but
    a subtree of `target` with no leaves need not be on disk: a state field added later and
    off in this run (e.g. GANState.lecam_anchors = {}) still resumes older runs."""
    abstract = jax.tree.map(_abstract_leaf, target)
    folder = epath.Path(manager.directory) / str(step) / 'state'
    stored = _leaf_names(ocp.PyTreeCheckpointHandler().metadata(folder))
    wanted = _leaf_names(abstract)
    if stored != wanted:
      raise ValueError(
          f'Checkpoint {folder} does not match the state to restore: missing on disk '
          f'{sorted(wanted - stored)[:5]}, not in the state {sorted(stored - wanted)[:5]} '
          '(a different config or model?).')
    return _restore_leaves(folder, abstract)

  @staticmethod
  def _restore_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored['meta'])

  def _resolve(self, step: int | None) -> int:
    self._manager.wait_until_finished()
    if step is None:
      step = self.latest_step()
      if step is None:
        raise FileNotFoundError(f'No checkpoint in {self.directory}.')
    elif step not in self._manager.all_steps():
      raise FileNotFoundError(f'No checkpoint for step {step} in {self.directory}; '
                              f'available: {self.all_steps()}.')
    return step

  def restore(self, target: Any, step: int | None = None) -> Any:
    """Restores step (default: latest) into the structure, dtypes and shardings of `target`.

    `target` is a pytree of jax.Arrays (e.g. a freshly initialized, mesh-placed state) or of
    jax.ShapeDtypeStruct with `sharding` set (e.g. from jax.eval_shape + sharding).
    """
    return self._restore_state(self._manager, target, self._resolve(step))

  def restore_meta(self, step: int | None = None) -> dict[str, Any]:
    """The JSON meta of step (default: latest): {'step', 'metrics', **meta}."""
    return self._restore_meta(self._manager, self._resolve(step))

  def _resolve_best(self) -> int:
    if self._best_manager is None:
      raise ValueError('Restoring the best checkpoint needs Checkpointer(..., best_metric=...).')
    self._best_manager.wait_until_finished()
    step = self.best_step()
    if step is None:
      raise FileNotFoundError(f'No best checkpoint in {self.directory / "best"}.')
    return step

  def restore_best(self, target: Any) -> Any:
    """Restores the best checkpoint into `target`'s structure and shardings."""
    return self._restore_state(self._best_manager, target, self._resolve_best())

  def restore_best_meta(self) -> dict[str, Any]:
    return self._restore_meta(self._best_manager, self._resolve_best())

  # -------------------------------------------------------------------------- lifecycle
  def wait_until_finished(self) -> None:
    """Blocks until pending asynchronous saves are on disk (and finalized)."""
    self._manager.wait_until_finished()
    if self._best_manager is not None:
      self._best_manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases Orbax's resources."""
    self._manager.close()
    if self._best_manager is not None:
      self._best_manager.close()

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


# ------------------------------------------------------------------------------ reading
class CheckpointReader:
  """Read-only access to a Checkpointer's directory: lists, metadata, (partial) restores.

  Unlike a CheckpointManager it opens nothing for writing: no temporary-folder cleanup, no
  directory creation. Only finalized steps (folders named by a number) are visible.
  `restore(target)` restores just the leaves of `target`, a nested dict of arrays or
  ShapeDtypeStructs mirroring part of the saved state (e.g. {'params': ..., 'batch_stats': ...}
  of a TrainState), so a reader never rebuilds an optimizer to load a model.
  """

  def __init__(self, directory: str | epath.PathLike):
    self.directory = epath.Path(directory).absolute()

  def _folder(self, best: bool) -> epath.Path:
    return self.directory / 'best' if best else self.directory

  def steps(self, best: bool = False) -> list[int]:
    folder = self._folder(best)
    if not folder.is_dir():
      return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())

  def step(self, best: bool = False) -> int:
    """The best or the latest finalized step; FileNotFoundError naming the folder if none."""
    steps = self.steps(best)
    if not steps:
      raise FileNotFoundError(f'No {"best " if best else ""}checkpoint in {self._folder(best)}.')
    return steps[-1]

  def meta(self, step: int | None = None, best: bool = False) -> dict[str, Any]:
    step = self.step(best) if step is None else step
    path = self._folder(best) / str(step) / 'meta' / 'metadata'
    return json.loads(path.read_text())

  def restore(self, target: Any, step: int | None = None, best: bool = False) -> Any:
    """The leaves of `target` from `step` (default: the latest, or the best with best=True).

    ShapeDtypeStructs without a sharding are restored onto this process's first device.
    """
    step = self.step(best) if step is None else step
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda x: _abstract_leaf(x if not isinstance(x, jax.ShapeDtypeStruct) or x.sharding
                                 else jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device)),
        target)
    return _restore_leaves(self._folder(best) / str(step) / 'state', abstract)
