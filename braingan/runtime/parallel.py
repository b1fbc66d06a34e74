"""Data parallelism with `jax.jit` over a one-axis `Mesh` (axis name 'data').

Why a Mesh and not pmap: with NamedSharding the same jitted step runs on 1 CPU, 8 fake CPU
devices in tests, one GPU or many hosts; XLA inserts the gradient all-reduce itself because
params are replicated and the batch is sharded on 'data'. Nothing in the training code
has to know how many devices there are, except that the global batch must divide evenly.

Typical use:

  mesh = parallel.make_mesh()
  parallel.check_global_batch(config.batch_size, mesh)
  state = parallel.replicate(mesh, state)
  step = jax.jit(train_step, in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl),
                 donate_argnums=0)
  for host_batch in batches:    # this process's share of the global batch
    state, metrics = step(state, parallel.shard_batch(mesh, host_batch), rng)
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXIS = 'data'


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh named 'data' over all devices, or the first `num_devices` of them."""
  devices = jax.devices()
  if num_devices is not None:
    if num_devices < 1 or num_devices > len(devices):
      raise ValueError(f'num_devices={num_devices} but {len(devices)} devices are available.')
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ValueError('A subset of devices is not supported with several processes '
                       f'(num_devices={num_devices}, {len(devices)} devices).')
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over 'data'; other dimensions whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (params, optimizer state, rng, step)."""
  return NamedSharding(mesh, P())


def check_global_batch(global_batch: int, mesh: Mesh, field: str = 'config.batch_size') -> None:
  """Raises ValueError naming `field` when the batch cannot be split evenly."""
  num_devices = mesh.devices.size
  if global_batch < 1:
    raise ValueError(f'{field}={global_batch} must be positive.')
  if global_batch % num_devices:
    raise ValueError(f'{field}={global_batch} is not divisible by {num_devices} devices.')
  if global_batch % jax.process_count():
    raise ValueError(f'{field}={global_batch} is not divisible by '
                     f'{jax.process_count()} processes.')


def shard_batch(mesh: Mesh, host_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
  """This process's share of the global batch -> global arrays sharded on 'data'.

  Each process passes its own `global_batch // process_count` rows; the result has the
  global batch size as its leading dimension. Works unchanged on one or many hosts.
  """
  sharding = batch_sharding(mesh)
  local_devices = len(mesh.local_devices)
  out = {}
  for name, value in host_batch.items():
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] % local_devices:
      raise ValueError(f"batch['{name}'] has shape {value.shape}; its leading dimension must "
                       f'be divisible by the {local_devices} local devices.')
    out[name] = jax.make_array_from_process_local_data(sharding, value)
  return out


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Places every array of `tree` fully replicated on the mesh."""
  return jax.device_put(tree, replicated_sharding(mesh))


def host_local(x: Any) -> np.ndarray | Any:
  """One array -> numpy, for arrays this process can read entirely.

  Fully addressable arrays (single process) and fully replicated arrays (params, metrics
  returned by a jitted step with replicated out_shardings) are fine. For a batch-sharded
  array spanning several hosts use `gather_to_host`, which is a collective.
  Non-array leaves (python numbers, strings) pass through.
  """
  if isinstance(x, jax.Array):
    if x.is_fully_addressable:
      return np.asarray(x)
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    raise ValueError(f'Array of shape {x.shape} with sharding {x.sharding} is split across '
                     'processes; use parallel.gather_to_host (all processes must call it).')
  if isinstance(x, np.ndarray | np.generic):
    return np.asarray(x)
  return x


def to_host(tree: Any) -> Any:
  """`host_local` on every leaf of a pytree."""
  return jax.tree.map(host_local, tree)


def gather_to_host(tree: Any) -> Any:
  """Every leaf as a full numpy array on every process (a collective on multi-host)."""
  if jax.process_count() == 1:
    return to_host(tree)
  return multihost_utils.process_allgather(tree, tiled=True)
