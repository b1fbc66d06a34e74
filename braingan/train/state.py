"""The training state: one explicit pytree per model being trained.

Like `flax.training.train_state.TrainState` but with the pieces our models need (BatchNorm
statistics, a PRNG key) and nothing bound to an `apply_fn`, so the same class serves the
classifier (one state) and the GAN (a generator and a discriminator state side by side in
one pytree). The key is stored as raw uint32 key data, because Orbax saves plain arrays and
not typed PRNG keys; `rng_key` / `split_rng` give back a typed key.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


def _raw_key_data(rng: Any) -> jax.Array:
  """Typed key or raw uint32 key data (or an int seed) -> raw uint32 key data."""
  if isinstance(rng, int):
    rng = jax.random.key(rng)
  rng = jnp.asarray(rng) if not isinstance(rng, jax.Array) else rng
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(rng)
  if rng.dtype != jnp.uint32:
    raise TypeError(f'rng must be a PRNG key or uint32 key data, got dtype {rng.dtype}.')
  return rng


@flax.struct.dataclass
class TrainState:
  """Step counter, weights, BatchNorm statistics, optimizer state and PRNG key.

  `tx` is static (not a pytree leaf): it is code, not data, so jit treats it as part of
  the function and checkpoints do not try to save it.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: optax.OptState
  rng: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, *, params: Any, tx: optax.GradientTransformation, rng: Any,
             batch_stats: Any = None) -> 'TrainState':
    """A step-0 state. `rng` may be a typed key, raw uint32 key data or an int seed."""
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               batch_stats={} if batch_stats is None else batch_stats,
               opt_state=tx.init(params), rng=_raw_key_data(rng), tx=tx)

  def apply_gradients(self, grads: Any, learning_rate: Any = None,
                      new_batch_stats: Any = None) -> 'TrainState':
    """One optimizer update; step + 1. `new_batch_stats=None` keeps the old statistics.

    `tx` gives the update direction (braingan.train.optim: Adam's scaling without the learning
    rate); with `learning_rate` the step is `-learning_rate * update`, so the rate can be a
    traced argument of the jitted step (changing it never recompiles). Without it, `tx` is
    taken to include the rate (any optax optimizer).
    """
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    if learning_rate is not None:
      updates = jax.tree.map(lambda u: -learning_rate * u, updates)
    params = optax.apply_updates(self.params, updates)
    batch_stats = self.batch_stats if new_batch_stats is None else new_batch_stats
    return self.replace(step=self.step + 1, params=params, batch_stats=batch_stats,
                        opt_state=opt_state)

  @property
  def rng_key(self) -> jax.Array:
    """The stored key as a typed PRNG key."""
    return jax.random.wrap_key_data(self.rng)

  def split_rng(self, num: int = 1) -> tuple['TrainState', jax.Array]:
    """Returns (state with a fresh key, `num` typed keys for this step; 1 -> a single key)."""
    keys = jax.random.split(self.rng_key, num + 1)
    new_state = self.replace(rng=jax.random.key_data(keys[0]))
    return new_state, (keys[1] if num == 1 else keys[1:])

  @property
  def variables(self) -> dict[str, Any]:
    """{'params': ..., 'batch_stats': ...} for `module.apply` (no batch_stats key if empty)."""
    if self.batch_stats is None or not jax.tree.leaves(self.batch_stats):
      return {'params': self.params}
    return {'params': self.params, 'batch_stats': self.batch_stats}
