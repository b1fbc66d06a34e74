"""Multi-host start-up: `jax.distributed.initialize` from config, environment or cluster.

Why one function: every script (train_gan.py, train_classifier.py, the benches) must join the
distributed runtime BEFORE anything touches a device, and the settings can come from several
places. `initialize(config)` looks, in this order, at:

  1. flags or config: `--coordinator_address --num_processes --process_id` (absl flags that
     scripts define with `define_flags()` and pass as `initialize(flags.FLAGS)`), or the same
     fields in a config (`config.distributed.*` or top-level), when the address is non-empty;
  2. the environment: BRAINGAN_COORDINATOR (host:port of process 0),
     BRAINGAN_NUM_PROCESSES, BRAINGAN_PROCESS_ID. Handy for launchers that export
     per-process variables (torchrun-like wrappers, plain ssh loops, k8s indexed jobs);
  3. JAX's own cluster detection (SLURM with more than one task, Open MPI, Cloud TPU pods,
     GKE TPU): `jax.distributed.initialize()` with no arguments, which reads the cluster's
     variables itself. Set `config.distributed.cluster_detection='off'` (or
     BRAINGAN_CLUSTER_DETECTION=off) to run one independent process per task instead.

Nothing found -> single process, nothing to do. Calling it twice is harmless.

On CPU, processes exchange data with the gloo collectives (`jax_cpu_collectives_implementation`,
already JAX 0.10's default; set here explicitly when unset so localhost multi-process tests
work whatever the default). GPUs use NCCL, TPUs their interconnect; nothing to configure.

After initialize: `jax.devices()` lists every process's devices, `jax.local_devices()` this
process's. Build the mesh over `jax.devices()` (parallel.make_mesh) and give `shard_batch`
this process's share of each global batch (what the data pipeline yields).
"""
from __future__ import annotations

import dataclasses
import logging as std_logging
import os
from typing import Any, Mapping

from absl import logging
import jax

ENV_COORDINATOR = 'BRAINGAN_COORDINATOR'
ENV_NUM_PROCESSES = 'BRAINGAN_NUM_PROCESSES'
ENV_PROCESS_ID = 'BRAINGAN_PROCESS_ID'
ENV_CLUSTER_DETECTION = 'BRAINGAN_CLUSTER_DETECTION'

def define_flags(flag_values: Any = None) -> None:
  """Defines --coordinator_address, --num_processes, --process_id (absl) for a script.

  Per-process values belong on the command line or in the environment rather than in a config
  file that every host shares; `initialize(flags.FLAGS)` reads them. Safe to call twice.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS if flag_values is None else flag_values
  if 'coordinator_address' in flag_values:
    return
  flags.DEFINE_string('coordinator_address', '',
                      'host:port of process 0 for a multi-process run (or set '
                      f'{ENV_COORDINATOR}); empty: environment / cluster detection.',
                      flag_values=flag_values)
  flags.DEFINE_integer('num_processes', 0, 'Processes in the run (with --coordinator_address).',
                       flag_values=flag_values)
  flags.DEFINE_integer('process_id', -1, 'This process, 0..num_processes-1.',
                       flag_values=flag_values)


@dataclasses.dataclass(frozen=True)
class Settings:
  """Where the distributed settings came from and what they are (None: detected by JAX)."""
  source: str                      # 'single', 'flags' (or config), 'env', 'cluster:<name>'
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  timeout_s: int = 300

  @property
  def is_distributed(self) -> bool:
    return self.source != 'single'


def _field(obj: Any, name: str, default: Any) -> Any:
  if obj is None:
    return default
  if isinstance(obj, Mapping):
    return obj.get(name, default)
  try:
    return getattr(obj, name)
  except Exception:  # pylint: disable=broad-except  # AttributeError/KeyError; absl's own errors
    return default


def _section(config: Any) -> Any:
  """config.distributed when present, else the config itself (flat fields / FLAGS)."""
  sub = _field(config, 'distributed', None)
  return sub if sub is not None else config


def _checked(address: str, num_processes: Any, process_id: Any, where: str,
             names: tuple[str, str]) -> tuple[str, int, int]:
  try:
    num, pid = int(num_processes), int(process_id)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{names[0]}={num_processes!r} and {names[1]}={process_id!r} ({where}) '
                     'must be integers.') from e
  if num < 1:
    raise ValueError(f'{names[0]}={num} ({where}) must be >= 1 when a coordinator address '
                     f'({address}) is given.')
  if not 0 <= pid < num:
    raise ValueError(f'{names[1]}={pid} ({where}) must be in [0, {names[0]}={num}).')
  if ':' not in address:
    raise ValueError(f'coordinator address {address!r} ({where}) must be host:port.')
  return address, num, pid


def _detected_cluster() -> str | None:
  """Name of the cluster environment JAX would auto-detect, or None.

  Only environments with more than one process count: a one-task SLURM job or a single TPU
  VM is a plain single-process run.
  """
  from jax._src import clusters  # pylint: disable=g-import-not-at-top
  for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
    if env.opt_in_only_method:
      continue
    try:
      if not env.is_env_present():
        continue
      count = env.get_process_count()
    except Exception:  # pylint: disable=broad-except  # a half-configured cluster env
      logging.warning('Cluster environment %s present but unreadable; ignoring it.',
                      env.__name__)
      continue
    if count is None or count > 1:
      return env.__name__
  return None


def resolve(config: Any = None, environ: Mapping[str, str] | None = None) -> Settings:
  """Works out the distributed settings without initializing anything (testable)."""
  environ = os.environ if environ is None else environ
  section = _section(config)
  timeout = int(_field(section, 'initialization_timeout', 300) or 300)
  address = str(_field(section, 'coordinator_address', '') or '')
  num = _field(section, 'num_processes', 0)
  pid = _field(section, 'process_id', -1)
  if address:
    address, num, pid = _checked(address, num, pid, 'flags/config',
                                 ('num_processes', 'process_id'))
    return Settings('flags', address, num, pid, timeout)
  if num and int(num) > 1:
    raise ValueError(f'num_processes={num} (flags/config) needs a coordinator_address '
                     '(host:port of process 0).')
  env_address = environ.get(ENV_COORDINATOR, '')
  if env_address:
    address, num, pid = _checked(env_address, environ.get(ENV_NUM_PROCESSES),
                                 environ.get(ENV_PROCESS_ID), 'environment',
                                 (ENV_NUM_PROCESSES, ENV_PROCESS_ID))
    return Settings('env', address, num, pid, timeout)
  detection = str(environ.get(ENV_CLUSTER_DETECTION, '') or
                  _field(section, 'cluster_detection', 'auto') or 'auto')
  if detection not in ('auto', 'off'):
    raise ValueError(f"cluster_detection={detection!r} must be 'auto' or 'off'.")
  if detection == 'auto':
    cluster = _detected_cluster()
    if cluster is not None:
      return Settings(f'cluster:{cluster}', timeout_s=timeout)
  return Settings('single')


def _backends_initialized() -> bool:
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  return xla_bridge.backends_are_initialized()


def initialize(config: Any = None, environ: Mapping[str, str] | None = None) -> Settings:
  """Joins the distributed runtime when config/environment/cluster asks for it.

  Call first thing in main(), before any jax.devices()/jnp call. Returns the Settings used
  (`settings.is_distributed` is False for a single process). Idempotent.
  """
  settings = resolve(config, environ)
  if not settings.is_distributed:
    return settings
  if jax.distributed.is_initialized():
    return settings
  if _backends_initialized():
    raise RuntimeError(
        f'Distributed settings found ({settings.source}) but JAX already started its '
        'devices in this process; call braingan.runtime.distributed.initialize() before any '
        'other JAX call.')
  if str(jax.config.jax_cpu_collectives_implementation or 'none') == 'none':
    # Without collectives, CPU processes cannot all-reduce across hosts.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                             num_processes=settings.num_processes,
                             process_id=settings.process_id,
                             initialization_timeout=settings.timeout_s)
  if jax.process_index() != 0:
    quiet_non_main_logging()
  logging.info('Joined the distributed runtime (%s): %s', settings.source, describe())
  return settings


# ------------------------------------------------------------------ process-0-only helpers
def is_main_process() -> bool:
  """True on process 0: the one that logs, writes metrics, sample grids and generated files."""
  return jax.process_index() == 0


def sync(name: str) -> None:
  """Barrier: every process waits here until all reach the same `name` (no-op alone).

  E.g. process 0 prepares the data, then everybody syncs before anyone reads it.
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def quiet_non_main_logging() -> None:
  """absl INFO logs from process 0 only; other processes keep warnings and errors."""
  if is_main_process():
    return
  logging.set_verbosity(logging.WARNING)
  std_logging.getLogger('absl').setLevel(std_logging.WARNING)


def describe() -> str:
  """One line for the log: process, devices, platform."""
  return (f'process {jax.process_index()}/{jax.process_count()}, '
          f'{jax.local_device_count()} local / {jax.device_count()} global '
          f'{jax.default_backend()} devices')
