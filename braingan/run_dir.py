"""A run directory: every path of a run, its config written once at start, one writer at a time.

Layout (old run directories from before this layout are not readable; retrain them):

  <run>/config.json          the config the run trains with (written at every start, after
                             the resume check; budget fields such as epochs may change)
  <run>/.lock                host, pid and start time of the process training in it
  <run>/checkpoints/<epoch>  Orbax checkpoints (+ checkpoints/best/<epoch> for classifiers)
  <run>/metrics.jsonl        one JSON record per epoch (readers: files.read_jsonl)
  <run>/tensorboard/         the same scalars (and sample grids) for TensorBoard
  <run>/history.json, final_metrics.json   a classifier's per-epoch records and result
  <run>/samples/epoch_NNN.png              a GAN's per-epoch grid (one row per class)
  <run>/generated/<class>/*.png            a GAN's balanced synthetic set (+ manifest.json)
  <prepared>/manifest.csv, data_summary.json, tfds/   the data (prepared = config.data.prepared_dir
                             or the run folder itself)

Readers (evaluation, generation, export, the app) only read: `reader()` gives a read-only
checkpoint view, and nothing here creates or deletes files unless a trainer asks for it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time

import ml_collections

from braingan import files
from braingan.train import checkpoint

CONFIG = 'config.json'
LOCK = '.lock'


class RunLockedError(RuntimeError):
  """Another live process is training in this run directory."""


class RunDir:
  """The paths of one run, and the operations that touch more than one of them."""

  def __init__(self, root: str):
    self.root = os.path.abspath(root)

  def _path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)

  @property
  def config_path(self) -> str:
    return self._path(CONFIG)

  @property
  def checkpoints(self) -> str:
    return self._path('checkpoints')

  @property
  def metrics(self) -> str:
    return self._path('metrics.jsonl')

  @property
  def tensorboard(self) -> str:
    return self._path('tensorboard')

  @property
  def history(self) -> str:
    return self._path('history.json')

  @property
  def final_metrics(self) -> str:
    return self._path('final_metrics.json')

  @property
  def generated(self) -> str:
    return self._path('generated')

  @property
  def exports(self) -> str:
    return self._path('exports')

  def sample_grid(self, epoch: int) -> str:
    return self._path('samples', f'epoch_{epoch:03d}.png')

  def prepared_dir(self, data_cfg: ml_collections.ConfigDict) -> str:
    """Where this run's data (manifest.csv, TFDS copy) is prepared."""
    return os.path.abspath(data_cfg.prepared_dir) if data_cfg.prepared_dir else self.root

  # ------------------------------------------------------------------------------- config
  def read_config(self) -> ml_collections.ConfigDict:
    if not os.path.exists(self.config_path):
      raise FileNotFoundError(f'{self.config_path} not found: is {self.root} a training run '
                              '(train_gan.py / train_classifier.py --workdir=...)?')
    return ml_collections.ConfigDict(files.read_json(self.config_path))

  def manifest(self) -> str:
    """The manifest.csv this run was trained on (from its own config)."""
    path = os.path.join(self.prepared_dir(self.read_config().data), 'manifest.csv')
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path} not found: the data of run {self.root} is missing.')
    return path

  def write_config(self, config: ml_collections.ConfigDict) -> None:
    """Writes config.json at the start of training. On resume, a config that changes the model
    or the data is an error listing the differences (config_check.resume_differences)."""
    from braingan import config_check  # pylint: disable=import-outside-toplevel
    if os.path.exists(self.config_path):
      differences = config_check.resume_differences(self.read_config(), config)
      if differences:
        raise ValueError(f'{self.root} was started with another config; resuming would mix two '
                         'runs. Use a new --workdir, or the run\'s own values for:\n  ' +
                         '\n  '.join(differences))
    files.write_text(self.config_path, config.to_json(indent=2) + '\n')

  # --------------------------------------------------------------------------------- lock
  def lock(self) -> 'RunLock':
    return RunLock(self._path(LOCK))

  # ------------------------------------------------------------------------------ readers
  def reader(self) -> checkpoint.CheckpointReader:
    return checkpoint.CheckpointReader(self.checkpoints)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # Alive, owned by someone else.
    return True
  return True


class RunLock:
  """A lock file naming its holder; a second trainer gets an error that names the holder.

  A lock left by a process that died on this host (its pid is gone) is taken over with a
  warning. A lock from another host is never taken over automatically: remove the file by hand
  once you know that run is dead.
  """

  def __init__(self, path: str):
    self.path = path
    self.owned = False

  def _holder(self) -> dict:
    try:
      return files.read_json(self.path)
    except (OSError, json.JSONDecodeError):
      return {}

  def acquire(self) -> 'RunLock':
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    me = {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    for _ in range(2):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder = self._holder()
        stale = (holder.get('host') == me['host'] and isinstance(holder.get('pid'), int)
                 and not _pid_alive(holder['pid']))
        if not stale:
          raise RunLockedError(
              f'{os.path.dirname(self.path)} is in use by pid {holder.get("pid", "?")} on host '
              f'{holder.get("host", "?")} (since {holder.get("started", "?")}); two trainers in '
              f'one run directory would overwrite each other. If that process is dead, delete '
              f'{self.path}.') from None
        logging.warning('Taking over the stale lock %s of dead pid %s.', self.path,
                        holder['pid'])
        os.remove(self.path)
        continue
      with os.fdopen(fd, 'w', encoding='utf-8') as f:
        json.dump(me, f)
      self.owned = True
      return self
    raise RunLockedError(f'Could not take {self.path}: another process is taking it too.')

  def release(self) -> None:
    if self.owned and self._holder().get('pid') == os.getpid():
      os.remove(self.path)
    self.owned = False

  def __enter__(self) -> 'RunLock':
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
