"""Trained models for readers: restore only the variables inference needs, and only read.

Evaluation, generation, export and the app load runs through here. Nothing is written to the
run directory (braingan/train/checkpoint.CheckpointReader), no optimizer is rebuilt: the
restore target is the shape of the model's own variables (jax.eval_shape of its init), and only
those leaves are read from the checkpoint. An export folder (braingan/artifact.py) loads the
same way, checked against the model its config describes, without Orbax.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from braingan import artifact
from braingan import models
from braingan.models import cdcgan


def _variable_shapes(module, *args, **kwargs) -> dict:
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
  return {k: v for k, v in shapes.items() if k in ('params', 'batch_stats')}


class Classifier:
  """A trained classifier: probabilities, penultimate features, and its module/variables.

  `probs(images)` and `features(images)` take float32 [B, H, W, C] in [-1, 1] (the one
  preprocessing, braingan/data/decode.py) and return numpy arrays.
  """

  def __init__(self, config: ml_collections.ConfigDict, module: Any, variables: dict,
               meta: dict | None = None):
    self.config, self.module, self.variables, self.meta = config, module, variables, meta or {}
    self.image_size = int(config.data.image_size)
    self.channels = int(config.data.channels)
    self._probs = jax.jit(lambda v, x: jax.nn.softmax(module.apply(v, x, train=False), -1))
    self._features = jax.jit(lambda v, x: module.apply(v, x, train=False, output='features'))

  def probs(self, images: Any) -> np.ndarray:
    return np.asarray(self._probs(self.variables, jnp.asarray(images, jnp.float32)))

  def features(self, images: Any) -> np.ndarray:
    return np.asarray(self._features(self.variables, jnp.asarray(images, jnp.float32)))

  __call__ = probs


def _from_export(path: str, kind: str, shapes_of):
  description, config, variables = artifact.load(path, kind)
  module = models.build(config)
  artifact.check_against(variables, shapes_of(config, module), path)
  return description, config, module, jax.tree.map(jnp.asarray, variables)


def _classifier_shapes(config, module) -> dict:
  size, channels = config.data.image_size, config.data.channels
  return _variable_shapes(module, jnp.zeros((1, size, size, channels), jnp.float32))


def load_classifier(workdir: str, which: str = 'best') -> Classifier:
  """The classifier of a finished run (its best checkpoint, or 'latest'), or of an export.

  A run trained with restore_best='none' kept no best checkpoint: its result is the latest."""
  if artifact.is_export(workdir):
    description, config, module, variables = _from_export(workdir, 'classifier',
                                                          _classifier_shapes)
    return Classifier(config, module, variables, description['provenance'])
  from braingan.run_dir import RunDir  # pylint: disable=import-outside-toplevel
  run = RunDir(workdir)
  config = run.read_config()
  module = models.build(config)
  target = _classifier_shapes(config, module)
  reader = run.reader()
  best = which == 'best' and config.get('restore_best', 'val_loss') != 'none'
  variables = reader.restore(target, best=best)
  return Classifier(config, module, variables, reader.meta(best=best))


class Generator:
  """A trained generator: `sample(z, labels)` -> float32 images [B, H, W, C] in [-1, 1]."""

  def __init__(self, config: ml_collections.ConfigDict, module: Any, variables: dict,
               step: int, meta: dict | None = None):
    self.config, self.module, self.variables, self.meta = config, module, variables, meta or {}
    self.step = int(step)
    self.latent_dim = int(config.model.latent_dim)
    cond = jnp.float32(cdcgan.condition_scale(config.transition_steps, self.step))
    self._sample = jax.jit(lambda v, z, y: module.apply(v, z, y, train=False, cond_scale=cond))

  def sample(self, z: Any, labels: Any) -> np.ndarray:
    return np.asarray(self._sample(self.variables, jnp.asarray(z, jnp.float32),
                                   jnp.asarray(labels, jnp.int32)))

  def latents(self, seed: int, indices: Any) -> jax.Array:
    return cdcgan.latents(seed, indices, self.latent_dim)


def _generator_shapes(config, modules) -> dict:
  generator = modules[0] if isinstance(modules, tuple) else modules
  return _variable_shapes(generator, jnp.zeros((1, config.model.latent_dim), jnp.float32),
                          jnp.zeros((1,), jnp.int32), train=False)


def load_generator(workdir: str, step: int | None = None, use_ema: bool = True) -> Generator:
  """The generator of a GAN run at `step` (default: the run's result: the checkpoint that
  config.select_generator kept, else the latest), its EMA weights if it kept them (and
  use_ema); or of an export (which holds the weights it was exported with)."""
  if artifact.is_export(workdir):
    description, config, modules, variables = _from_export(workdir, 'generator',
                                                           _generator_shapes)
    return Generator(config, modules[0], variables, description['provenance']['step'],
                     description['provenance'])
  from braingan.run_dir import RunDir  # pylint: disable=import-outside-toplevel
  run = RunDir(workdir)
  config = run.read_config()
  generator, _ = models.build(config)
  shapes = _generator_shapes(config, generator)
  target = {'generator': {**shapes, 'step': jax.ShapeDtypeStruct((), jnp.int32)}}
  ema = use_ema and config.ema.decay > 0
  if ema:
    target['ema_params'] = shapes['params']
  reader = run.reader()
  best = step is None and config.get('select_generator', 'last') != 'last'
  restored = reader.restore(target, step, best=best)
  variables = dict(restored['generator'])
  train_step = int(variables.pop('step'))
  if ema:
    variables = cdcgan.ema_sampling_variables(generator, config, restored['ema_params'],
                                              variables.get('batch_stats', {}), train_step)
  return Generator(config, generator, variables, train_step, reader.meta(step, best=best))
