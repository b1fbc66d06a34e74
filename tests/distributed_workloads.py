"""Train-step workloads run both by 2-process jobs and by the single-process reference.

Each workload builds (jitted step, replicated state, extra step args, global batch) on a mesh;
`run` feeds THIS process's contiguous slice of the global batch (what each host would read)
for a few steps. The same code then runs in every process of a multi-process job and in the
single-process test, so any difference comes from the distribution alone.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.serialization
import jax
import numpy as np

from braingan.runtime import parallel
from tests import toy_model

GLOBAL_BATCH = 8
CLASSIFIER_SIZE = 32
GAN_SIZE = 32
# Adam with a tiny epsilon turns rounding noise into full-size steps: a gradient that is zero
# in exact arithmetic (a conv bias before BatchNorm) is ~1e-9 of noise, and m/(sqrt(v)+1e-7)
# makes that a +-lr update whose sign depends on summation order. With epsilon 1 the update of
# a small gradient is ~lr*g, so two correct runs agree to float rounding and any real
# difference (per-device BatchNorm statistics, un-averaged gradients) still shows.
ADAM_EPSILON = 1.0
DTYPE = 'float32'   # config.dtype of the classifier / GAN workloads (tests/test_precision.py)


def _images(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (n, size, size, 1)).astype(np.float32),
          'label': (np.arange(n) % 4).astype(np.int32)}


def toy(mesh):
  model, state = toy_model.make_state()
  repl, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
  step = jax.jit(toy_model.make_train_step(model), in_shardings=(repl, data),
                 out_shardings=(repl, repl), donate_argnums=0)
  return step, parallel.replicate(mesh, state), (), toy_model.global_batch(16)


def classifier_config():
  """A tiny Keras-layout ResNet (1 block per stage, width 8), dropout and freezing on."""
  from configs import classifier as classifier_config_lib  # pylint: disable=g-import-not-at-top
  config = classifier_config_lib.get_config()
  config.data.image_size = CLASSIFIER_SIZE
  config.model.stage_sizes = (1, 1, 1, 1)
  config.model.width = 8
  config.model.head_units = 16
  config.model.pretrained = 'none'
  config.batch_size = GLOBAL_BATCH
  config.optimizer.learning_rate = 1e-2
  config.optimizer.epsilon = ADAM_EPSILON
  config.dtype = DTYPE
  return config


def _trainer(config, mesh):
  """The training loop's jitted step for `config` on `mesh` (no data needed)."""
  from braingan import train  # pylint: disable=g-import-not-at-top
  from braingan.train import loop  # pylint: disable=g-import-not-at-top
  return loop.Trainer(train.recipe_class(config)(config, None), mesh)


def classifier(mesh):
  trainer = _trainer(classifier_config(), mesh)
  return (trainer.train_step, trainer.initial_state(),
          (trainer.place_hparams(trainer.recipe.hparams()),),
          _images(GLOBAL_BATCH, CLASSIFIER_SIZE, 1))


def _numpy_filled(shapes: Any, seed: int) -> Any:
  """A state pytree with Keras-like random weights drawn by NumPy at the given shapes.

  Why: the trainers' `jax.jit(model.init)` compiles Flax's initializers, tens of seconds on a
  busy 2-core CPU and in every process of the job; the train step under test is the same.
  Weights: glorot-uniform kernels, U(-0.05, 0.05) embeddings, BN scale / running var 1; zero
  elsewhere (biases, Adam moments, counters); PRNG key data from the seed.
  """
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    in_params = '.params[' in name
    if name.endswith('.rng'):
      return rng.integers(0, 2**32, leaf.shape, dtype=np.uint32)
    if in_params and name.endswith("['kernel']"):
      receptive = int(np.prod(leaf.shape[:-2])) if len(leaf.shape) > 2 else 1
      limit = np.sqrt(6.0 / (leaf.shape[-2] * receptive + leaf.shape[-1] * receptive))
      return rng.uniform(-limit, limit, leaf.shape).astype(leaf.dtype)
    if in_params and name.endswith("['embedding']"):
      return rng.uniform(-0.05, 0.05, leaf.shape).astype(leaf.dtype)
    if name.endswith(("['scale']", "['var']")) and ('.params[' in name or '.batch_stats[' in name):
      return np.ones(leaf.shape, leaf.dtype)
    return np.zeros(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def gan_config():
  """A tiny cDCGAN (same layers as GANForge's preset, narrow), dropout on."""
  from configs import cgan  # pylint: disable=g-import-not-at-top
  config = cgan.get_config()
  config.data.image_size = GAN_SIZE
  config.model.latent_dim = 16
  config.model.embed_dim = 4
  config.model.g_base_depth = 16
  config.model.g_widths = (16, 8, 8, 8)
  config.model.d_widths = (4, 8, 8, 16, 16)
  config.optimizer.learning_rate = 1e-2
  config.optimizer.epsilon = ADAM_EPSILON
  config.batch_size = GLOBAL_BATCH
  config.dtype = DTYPE
  return config


def gan(mesh):
  trainer = _trainer(gan_config(), mesh)
  state = _numpy_filled(jax.eval_shape(trainer.recipe.init_state), seed=3)
  return (trainer.train_step, parallel.replicate(mesh, state),
          (trainer.place_hparams(trainer.recipe.hparams()),),
          _images(GLOBAL_BATCH, GAN_SIZE, 2))


WORKLOADS: dict[str, Callable] = {'toy': toy, 'classifier': classifier, 'gan': gan}


def run(name: str, mesh, steps: int) -> tuple[Any, list[dict[str, float]]]:
  """`steps` train steps of workload `name`; returns (final state, per-step host metrics)."""
  step, state, extra, batch = WORKLOADS[name](mesh)
  n = len(batch['label'])
  parallel.check_global_batch(n, mesh)
  rows = n // jax.process_count()
  start = jax.process_index() * rows
  local = {k: v[start:start + rows] for k, v in batch.items()}
  history = []
  for _ in range(steps):
    state, metrics = step(state, parallel.shard_batch(mesh, local), *extra)
    history.append({k: float(v) for k, v in parallel.to_host(metrics).items()})
  return state, history


def host_state(state: Any) -> Any:
  """The state's arrays as nested lists (JSON-able, exact for float32)."""
  tree = flax.serialization.to_state_dict(parallel.to_host(state))
  return jax.tree.map(lambda x: np.asarray(x).tolist(), tree)
