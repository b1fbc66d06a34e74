"""Classifier training: pure jitted steps, and the epoch loop around them.

The loop reproduces the study's Keras `fit` callbacks on the host (they are control flow, not
math): EarlyStopping(val_loss, restore_best_weights) and ReduceLROnPlateau(val_loss, factor 0.5).
The learning rate is an argument of the jitted step, so changing it never recompiles, and it is
saved with the controller state in each checkpoint's meta, so a resumed run continues exactly.

Freezing follows Keras's trainable=False: frozen parameters are not differentiated at all (the
gradient is taken only w.r.t. the trainable ones, so XLA also drops the backward pass of the frozen
stem), their optimizer update is exactly zero, and frozen BatchNorm layers run in inference mode.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable

import flax.traverse_util as traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from braingan.data import NUM_CLASSES
from braingan.models import pretrained, resnet
from braingan.train import checkpoint as checkpoint_lib
from braingan.train import observe, optim, parallel, precision
from braingan.train.state import TrainState

# The original study's `for layer in base_model.layers[:15]: layer.trainable = False`, as
# parameter paths (layers without weights - input, pads, relus, pool - need no entry).
KERAS15 = ('conv1_conv', 'conv1_bn', 'conv2_block1_1_conv', 'conv2_block1_1_bn',
           'conv2_block1_2_conv', 'conv2_block1_2_bn', 'conv2_block1_0_conv',
           'conv2_block1_3_conv')


def freeze_prefixes(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  freeze = config.freeze
  if freeze in ('', 'none', None):
    return ()
  if freeze == 'keras15':
    return KERAS15
  if isinstance(freeze, str):
    return tuple(p.strip() for p in freeze.split(',') if p.strip())
  return tuple(freeze)


def make_model(config: ml_collections.ConfigDict) -> resnet.ResNetClassifier:
  m = config.model
  return resnet.ResNetClassifier(
      num_classes=NUM_CLASSES, stage_sizes=tuple(m.stage_sizes), width=m.width,
      head_units=m.head_units, dropout=m.dropout, preprocess=m.preprocess,
      frozen=freeze_prefixes(config), dtype=precision.compute_dtype(config))


def initial_variables(config, model, input_shape) -> dict:
  """Keras-default init, then the configured pretrained weights (no silent fallback)."""
  variables = resnet.init_variables(model, input_shape, config.seed)
  source = config.pretrained
  if source in ('none', '', None):
    return variables
  if source == 'imagenet':
    path = pretrained.resolve_imagenet_weights(config.pretrained_path,
                                               download=config.pretrained_download)
  elif os.path.isfile(source):
    path = source
  else:
    raise ValueError(f"config.pretrained={source!r}: expected 'imagenet', 'none' or a .h5 path")
  logging.info('Loading pretrained backbone from %s', path)
  return pretrained.load(variables, path, dont_load=('head_',))


def _split(params, prefixes):
  """params -> (trainable flat dict, frozen flat dict), keys '/'-joined paths."""
  flat = traverse_util.flatten_dict(params, sep='/')
  frozen = {k: v for k, v in flat.items() if resnet.path_is_frozen(k, prefixes)}
  return {k: v for k, v in flat.items() if k not in frozen}, frozen


def make_optimizer(config, params) -> optax.GradientTransformation:
  """Adam's scaling (the step multiplies by -lr); frozen leaves get an exact zero update."""
  prefixes = freeze_prefixes(config)
  flat = traverse_util.flatten_dict(params, sep='/')
  unknown = [p for p in prefixes if not any(resnet.path_is_frozen(k, (p,)) for k in flat)]
  if unknown:
    raise ValueError(f'config.freeze: no parameters under {unknown}')
  labels = traverse_util.unflatten_dict(
      {k: 'frozen' if resnet.path_is_frozen('/'.join(k), prefixes) else 'train'
       for k in traverse_util.flatten_dict(params)})
  return optax.multi_transform(
      {'train': optim.scale_by_keras_adam(eps=config.adam_epsilon),
       'frozen': optax.set_to_zero()},
      labels)


def class_weight_vector(config, data) -> np.ndarray:
  if not config.class_weights:
    return np.ones(NUM_CLASSES, np.float32)
  counts = np.array(list(data.class_counts('train').values()), np.float64)
  return (counts.sum() / (len(counts) * np.maximum(counts, 1))).astype(np.float32)


def make_train_step(model, prefixes, class_weights) -> Callable:
  """(state, batch, lr) -> (state, metrics). Dropout keys come from state.rng."""
  class_weights = jnp.asarray(class_weights, jnp.float32)

  def train_step(state: TrainState, batch, lr):
    state, dropout_key = state.split_rng()
    trainable, frozen = _split(state.params, prefixes)

    def loss_fn(trainable):
      params = traverse_util.unflatten_dict({**trainable, **frozen}, sep='/')
      logits, updates = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
          mutable=['batch_stats'], rngs={'dropout': dropout_key})
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
      loss = jnp.mean(ce * class_weights[batch['label']])
      return loss, (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    grads = traverse_util.unflatten_dict(
        {**grads, **jax.tree.map(jnp.zeros_like, frozen)}, sep='/')
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          batch_stats=batch_stats, opt_state=opt_state)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return state, {'loss': loss, 'accuracy': accuracy}

  return train_step


def make_eval_step(model) -> Callable:
  """(state, batch) -> sums of loss / correct / count over the unpadded examples."""

  def eval_step(state: TrainState, batch):
    logits = model.apply(state.variables, batch['image'], train=False)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
    mask = batch['mask'].astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32)
    return {'loss_sum': jnp.sum(ce * mask), 'correct': jnp.sum(correct * mask),
            'count': jnp.sum(mask)}

  return eval_step


def compile_steps(model, mesh, config, class_weights):
  repl, batch_sh = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
  train = jax.jit(make_train_step(model, freeze_prefixes(config), class_weights),
                  in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl),
                  donate_argnums=0)
  evaluate = jax.jit(make_eval_step(model), in_shardings=(repl, batch_sh), out_shardings=repl)
  return train, evaluate


def evaluate_split(eval_step, state, data, mesh, batch_size, split='validation') -> dict:
  totals = {'loss_sum': 0.0, 'correct': 0.0, 'count': 0.0}
  for batch in data.eval_batches(batch_size, split):
    out = parallel.to_host(eval_step(state, parallel.shard_batch(mesh, batch)))
    for k in totals:
      totals[k] += float(out[k])
  n = max(totals['count'], 1.0)
  return {'loss': totals['loss_sum'] / n, 'accuracy': totals['correct'] / n,
          'count': int(totals['count'])}


class PlateauController:
  """Keras EarlyStopping + ReduceLROnPlateau on val_loss (min_delta 0), as plain JSON state."""

  def __init__(self, config, state: dict | None = None):
    self.config = config
    self.s = state or {'lr': float(config.learning_rate), 'best': None, 'since_best': 0,
                       'since_lr_change': 0, 'stop': False}

  def update(self, val_loss: float) -> None:
    s, c = self.s, self.config
    if s['best'] is None or val_loss < s['best']:
      s.update(best=val_loss, since_best=0, since_lr_change=0)
      return
    s['since_best'] += 1
    s['since_lr_change'] += 1
    if s['since_lr_change'] >= c.reduce_lr_patience and s['lr'] > c.min_learning_rate:
      s['lr'] = max(s['lr'] * c.reduce_lr_factor, c.min_learning_rate)
      s['since_lr_change'] = 0  # Keras's cooldown=0: count afresh from the reduction.
    if s['since_best'] >= c.early_stopping_patience:
      s['stop'] = True


def _log(message: str) -> None:
  """Progress for people: printed on process 0 (Orbax's INFO logging is too chatty to use)."""
  if parallel.is_main_process():
    print(message, flush=True)


def _write_json(path, obj):
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, data=None) -> dict:
  """Trains (resuming from workdir's latest checkpoint), restores the best, returns final metrics.

  `data` may be given (tests); by default it is `pipeline.load(config.data, workdir, seed)`.
  """
  if data is None:
    from braingan.data import pipeline  # pylint: disable=g-import-not-at-top
    data = pipeline.load(config.data, workdir, config.seed)
  mesh = parallel.make_mesh(config.num_devices or None)
  parallel.check_global_batch(config.batch_size, mesh)
  size, channels = config.data.image_size, config.data.channels
  model = make_model(config)
  variables = initial_variables(config, model, (1, size, size, channels))
  tx = make_optimizer(config, variables['params'])
  state = TrainState.create(params=variables['params'], batch_stats=variables['batch_stats'],
                            tx=tx, rng=config.seed)
  state = parallel.replicate(mesh, state)
  class_weights = class_weight_vector(config, data)
  train_step, eval_step = compile_steps(model, mesh, config, class_weights)

  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                     max_to_keep=config.checkpoint_max_to_keep,
                                     best_metric='val_loss', best_mode='min')
  history, start_epoch, control = [], 0, PlateauController(config)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
    meta = ckpt.restore_meta()
    start_epoch, history = meta['epoch'], meta['history']
    control = PlateauController(config, meta['control'])
    _log(f'Resumed from epoch {start_epoch} (lr {control.s["lr"]:.3g})')
  writer = observe.MetricWriter(workdir)
  steps = data.steps_per_epoch(config.batch_size,
                               config.synthetic_ratio if config.synthetic_dir else 0.0)
  if config.max_steps_per_epoch:
    steps = min(steps, config.max_steps_per_epoch)
  t_start = time.time()
  epoch = start_epoch
  for epoch in range(start_epoch, config.epochs):
    if control.s['stop']:
      break
    control_lr = control.s['lr']
    lr = jnp.float32(control_lr)
    sums, n, t0 = {'loss': 0.0, 'accuracy': 0.0}, 0, time.time()
    progress = observe.Progress(steps, desc=f'epoch {epoch + 1}/{config.epochs}')
    batches = data.train_epoch(epoch, config.batch_size, synthetic_dir=config.synthetic_dir,
                               synthetic_ratio=config.synthetic_ratio, augment=config.augment)
    for i, batch in enumerate(batches):
      if i >= steps:
        break
      state, metrics = train_step(state, parallel.shard_batch(mesh, batch), lr)
      metrics = parallel.to_host(metrics)
      for k in sums:
        sums[k] += float(metrics[k])
      n += 1
      progress.update(1, loss=sums['loss'] / n, acc=sums['accuracy'] / n)
    progress.close()
    val = evaluate_split(eval_step, state, data, mesh, config.batch_size)
    control.update(val['loss'])
    record = {'epoch': epoch + 1, 'loss': sums['loss'] / max(n, 1),
              'accuracy': sums['accuracy'] / max(n, 1), 'val_loss': val['loss'],
              'val_accuracy': val['accuracy'], 'lr': control_lr, 'seconds': time.time() - t0}
    history.append(record)
    writer.write_scalars(int(state.step), {k: v for k, v in record.items() if k != 'epoch'},
                         epoch=epoch + 1)
    writer.flush()
    _log(f'epoch {epoch + 1}: ' + ', '.join(f'{k} {v:.4g}' for k, v in record.items()
                                             if k != 'epoch'))
    ckpt.save(epoch + 1, state, metrics={'val_loss': val['loss'],
                                         'val_accuracy': val['accuracy']},
              meta={'epoch': epoch + 1, 'history': history, 'control': control.s})
  ckpt.wait_until_finished()
  best_meta = ckpt.restore_best_meta()
  state = ckpt.restore_best(state)  # EarlyStopping(restore_best_weights=True).
  val = evaluate_split(eval_step, state, data, mesh, config.batch_size)
  final = {'best_epoch': best_meta['epoch'], 'val_loss': val['loss'],
           'val_accuracy': val['accuracy'], 'val_count': val['count'],
           'epochs_run': len(history), 'stopped_early': bool(control.s['stop']),
           'train_seconds_this_run': time.time() - t_start}
  if parallel.is_main_process():
    _write_json(os.path.join(workdir, 'history.json'), history)
    _write_json(os.path.join(workdir, 'final_metrics.json'), final)
    _write_json(os.path.join(workdir, 'config.json'), json.loads(config.to_json_best_effort()))
  writer.close()
  ckpt.close()
  return final


def load_for_inference(workdir: str, which: str = 'best'):
  """(predict_fn, config) from a finished run's best checkpoint.

  predict_fn(images float32 [B, H, W, C] in [-1, 1]) -> class probabilities [B, NUM_CLASSES];
  predict_fn.features(images) -> the 512-d penultimate activations (for FID-style statistics).
  """
  with open(os.path.join(workdir, 'config.json'), encoding='utf-8') as f:
    config = ml_collections.ConfigDict(json.load(f))
  model = make_model(config)
  size, channels = config.data.image_size, config.data.channels
  variables = resnet.init_variables(model, (1, size, size, channels))
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                     best_metric='val_loss', async_save=False)
  tx = make_optimizer(config, variables['params'])
  state = TrainState.create(params=variables['params'], batch_stats=variables['batch_stats'],
                            tx=tx, rng=0)
  state = ckpt.restore_best(state) if which == 'best' else ckpt.restore(state)
  ckpt.close()
  inference_vars = state.variables

  @jax.jit
  def _probs(images):
    return jax.nn.softmax(model.apply(inference_vars, images, train=False), axis=-1)

  @jax.jit
  def _features(images):
    return model.apply(inference_vars, images, train=False, output='features')

  def predict_fn(images: Any) -> np.ndarray:
    return np.asarray(_probs(jnp.asarray(images, jnp.float32)))

  predict_fn.features = lambda images: np.asarray(_features(jnp.asarray(images, jnp.float32)))
  # For explanations (the app's Grad-CAM): the module and the restored inference variables.
  predict_fn.model, predict_fn.variables = model, inference_vars
  return predict_fn, config
