"""A tiny conv + BatchNorm classifier and its data-parallel train step, shared by the
distributed and precision tests (and importable by their subprocesses).

BatchNorm in training mode makes the step depend on statistics of the WHOLE global batch,
which is the part of data parallelism that goes wrong when a batch is split (per-device
statistics instead of global ones). So matching a 1-device run with it is a real check.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from braingan.runtime import precision
from braingan.train.state import TrainState

IMAGE = 8
CLASSES = 4


class ToyNet(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    kw = precision.layer_kwargs(self.dtype)
    x = x.astype(self.dtype)
    x = nn.Conv(8, (3, 3), strides=(2, 2), **kw)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, **kw)(x)
    x = nn.relu(x)
    x = nn.Conv(16, (3, 3), strides=(2, 2), **kw)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, **kw)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    return precision.to_float32(nn.Dense(CLASSES, **kw)(x))


def global_batch(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (n, IMAGE, IMAGE, 1)).astype(np.float32),
          'label': rng.integers(0, CLASSES, n).astype(np.int32)}


def make_state(dtype: Any = jnp.float32, learning_rate: float = 0.1) -> tuple[ToyNet, TrainState]:
  model = ToyNet(dtype=dtype)
  tx = optax.sgd(learning_rate, momentum=0.9)

  # Weights from numpy at the shapes Flax would create: `model.init` itself would compile
  # Flax's initializers (several seconds on a loaded CPU, in every test process).
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((2, IMAGE, IMAGE, 1)), train=False))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'kernel' in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return rng.normal(0, fan_in ** -0.5, leaf.shape).astype(np.float32)
    if "'scale'" in name or "'var'" in name:
      return np.ones(leaf.shape, np.float32)
    return np.zeros(leaf.shape, np.float32)

  variables = jax.tree_util.tree_map_with_path(fill, shapes)
  return model, TrainState.create(params=variables['params'], tx=tx, rng=1,
                                  batch_stats=variables['batch_stats'])


def make_train_step(model: ToyNet):
  """(state, batch) -> (state, {'loss'}): cross-entropy, BN statistics over the global batch."""

  def train_step(state, batch):
    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                    batch['image'], train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
      return loss, updates['batch_stats']

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads, new_batch_stats=stats), {'loss': loss}

  return train_step


def host_tree(state: TrainState) -> dict[str, Any]:
  """params + batch_stats + step as nested lists (JSON-able, exact for float32)."""
  tree = {'params': state.params, 'batch_stats': state.batch_stats, 'step': state.step}
  return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)
