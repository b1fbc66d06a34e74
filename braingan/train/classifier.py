"""The classifier recipe: Keras-style fine-tuning of the ResNet, steps and callbacks.

The loop's hooks reproduce the study's Keras `fit` callbacks: EarlyStopping(val_loss,
restore_best_weights) and ReduceLROnPlateau(val_loss, factor 0.5). The learning rate is an
argument of the jitted step, so changing it never recompiles, and it is saved in each
checkpoint's meta, so a resumed run continues exactly.

Freezing follows Keras's trainable=False: frozen parameters are not differentiated at all (the
gradient is taken only w.r.t. the trainable ones, so XLA also drops the backward pass of the frozen
stem), their optimizer update is exactly zero, and frozen BatchNorm layers run in inference mode.

BatchNorm statistics (config.bn_recalibration_batches > 0): Keras's moving averages (momentum
0.99) mix statistics of weights from the last ~100 steps and, in a short run, of the initial
(0, 1); when the weights still move fast, inference normalises with statistics of a network that
no longer exists, and test accuracy swings between epochs. After each epoch the statistics are
recomputed with the final weights (the mean over n training batches of each layer's batch mean
and unbiased variance; "precise BN", Wu & Johnson 2021). Training steps normalise with batch
statistics, so every step is the same with or without it; what reads val_loss (learning-rate
reductions, early stopping, the restored best epoch) may decide differently.
"""
from __future__ import annotations

import functools
import logging
import os

import flax.traverse_util as traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from braingan import models
from braingan.data import NUM_CLASSES
from braingan.models import pretrained, resnet
from braingan.runtime import parallel
from braingan.train import augment, hooks, optim
from braingan.train.recipe import Recipe
from braingan.train.state import TrainState


def frozen_prefixes(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return resnet.freeze_prefixes(config.model.freeze, config.model.stage_sizes)


def initial_variables(config: ml_collections.ConfigDict, model, input_shape) -> dict:
  """Keras-default init, then the configured pretrained weights (no silent fallback)."""
  variables = resnet.init_variables(model, input_shape, config.seed)
  source = config.model.pretrained
  if source in ('none', '', None):
    return variables
  if source == 'imagenet':
    path = pretrained.resolve_imagenet_weights(config.model.pretrained_path,
                                               download=config.model.pretrained_download)
  elif os.path.isfile(source):
    path = source
  else:
    raise ValueError(f"config.model.pretrained={source!r}: expected 'imagenet', 'none' or a "
                     '.h5 path')
  logging.info('Loading pretrained backbone from %s', path)
  return pretrained.load(variables, path, dont_load=('head_',))


def _split(params, prefixes):
  """params -> (trainable flat dict, frozen flat dict), keys '/'-joined paths."""
  flat = traverse_util.flatten_dict(params, sep='/')
  frozen = {k: v for k, v in flat.items() if resnet.path_is_frozen(k, prefixes)}
  return {k: v for k, v in flat.items() if k not in frozen}, frozen


def make_optimizer(config, params) -> optax.GradientTransformation:
  """Adam's direction (the step multiplies by -lr); frozen leaves get an exact zero update."""
  prefixes = frozen_prefixes(config)
  flat = traverse_util.flatten_dict(params, sep='/')
  unknown = [p for p in prefixes if not any(resnet.path_is_frozen(k, (p,)) for k in flat)]
  if unknown:
    raise ValueError(f'config.model.freeze: no parameters under {unknown}')
  labels = traverse_util.unflatten_dict(
      {k: 'frozen' if resnet.path_is_frozen('/'.join(k), prefixes) else 'train'
       for k in traverse_util.flatten_dict(params)})
  return optax.multi_transform(
      {'train': optim.direction(config.optimizer), 'frozen': optax.set_to_zero()}, labels)


def class_weight_vector(config, class_counts: dict[str, int]) -> np.ndarray:
  if not config.class_weights:
    return np.ones(NUM_CLASSES, np.float32)
  counts = np.array(list(class_counts.values()), np.float64)
  return (counts.sum() / (len(counts) * np.maximum(counts, 1))).astype(np.float32)


class ClassifierRecipe(Recipe):
  """Fine-tunes config.model (a registered classifier) on the prepared data."""
  best_metric = 'val_loss'
  progress_metrics = ('loss', 'accuracy')

  def __init__(self, config, data):
    super().__init__(config, data)
    self.model = models.build(config)
    if config.restore_best == 'none':
      self.best_metric = None       # the last epoch's weights are the result
    self.prefixes = frozen_prefixes(config)
    counts = data.class_counts('train') if data is not None else {c: 1 for c in range(4)}
    self.class_weights = jnp.asarray(class_weight_vector(config, counts))

  def init_state(self) -> TrainState:
    size, channels = self.config.data.image_size, self.config.data.channels
    variables = initial_variables(self.config, self.model, (1, size, size, channels))
    return TrainState.create(params=variables['params'], batch_stats=variables['batch_stats'],
                             tx=make_optimizer(self.config, variables['params']),
                             rng=self.config.seed)

  def hparams(self) -> dict[str, float]:
    return {'learning_rate': self.config.optimizer.learning_rate}

  def hooks(self) -> list:
    c = self.config
    return [hooks.EarlyStopping(c.early_stopping_patience),
            hooks.ReduceLROnPlateau(c.reduce_lr_patience, c.reduce_lr_factor,
                                    c.min_learning_rate)]

  def inference_variables(self, state: TrainState) -> dict:
    return state.variables

  @functools.cached_property
  def _batch_statistics(self):
    """jit(variables, images) -> every BatchNorm's statistics of this one batch (momentum 0),
    on the loop's mesh (set before the first epoch ends)."""
    per_batch = self.model.clone(bn_momentum=0.0)

    def statistics(variables, images):
      _, updates = per_batch.apply(variables, images, train=True, mutable=['batch_stats'],
                                   rngs={'dropout': jax.random.key(0)})
      return updates['batch_stats']

    repl = parallel.replicated_sharding(self.mesh)
    return jax.jit(statistics, in_shardings=(repl, parallel.batch_sharding(self.mesh)),
                   out_shardings=repl)

  def finalize_epoch(self, state: TrainState, epoch: int) -> TrainState:
    """BatchNorm statistics recomputed with the weights the epoch ended with (module docstring),
    from the first config.bn_recalibration_batches batches of the epoch's training stream (the
    arm's own mix of real and synthetic images; no augmentation: evaluation sees none). Frozen
    layers keep theirs."""
    count = self.config.get('bn_recalibration_batches', 0)
    if not count:
      return state
    mean, seen = None, 0
    for batch in self.train_batches(epoch, count):
      stats = self._batch_statistics(state.variables,
                                     parallel.shard_batch(self.mesh, batch)['image'])
      seen += 1
      # A running mean: statistics equal in every batch (frozen layers) stay bit-identical.
      mean = stats if mean is None else jax.tree.map(lambda m, s: m + (s - m) / seen, mean, stats)
    return state.replace(batch_stats=mean)

  def train_step(self, state: TrainState, batch: dict, hparams: dict):
    state, key = state.split_rng()
    dropout_key, augment_key = jax.random.split(key)
    images = batch['image']
    if self.config.data.augment:
      images = augment.classic(images, augment_key)
    trainable, frozen = _split(state.params, self.prefixes)

    def loss_fn(trainable):
      params = traverse_util.unflatten_dict({**trainable, **frozen}, sep='/')
      logits, updates = self.model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, images, train=True,
          mutable=['batch_stats'], rngs={'dropout': dropout_key})
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
      loss = jnp.mean(ce * self.class_weights[batch['label']])
      return loss, (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    grads = traverse_util.unflatten_dict(
        {**grads, **jax.tree.map(jnp.zeros_like, frozen)}, sep='/')
    state = state.apply_gradients(grads, hparams['learning_rate'], batch_stats)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return state, {'loss': loss, 'accuracy': accuracy}

  def eval_step(self, state: TrainState, batch: dict) -> dict:
    """Sums of loss / correct and the count over the unpadded examples."""
    logits = self.model.apply(state.variables, batch['image'], train=False)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    mask = batch['mask'].astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
    return {'loss': jnp.sum(ce * mask), 'accuracy': jnp.sum(correct * mask),
            'count': jnp.sum(mask)}

  def train_batches(self, epoch: int, steps: int):
    data = self.config.data
    return self.data.train_epoch(epoch, self.config.batch_size, steps,
                                 synthetic_dir=data.synthetic_dir,
                                 synthetic_ratio=data.synthetic_ratio,
                                 synthetic_labels=data.synthetic_labels, balance=data.balance)
