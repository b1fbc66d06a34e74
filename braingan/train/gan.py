"""The GAN training loop: epochs, metrics, sample grids, checkpoints, resume, generation.

Checkpoints are numbered by completed epochs (`<workdir>/checkpoints/<epoch>`). Resuming
restores the full state (parameters, BatchNorm statistics, both Adam states, step counter and
the PRNG key) and continues with the next epoch; the data pipeline is seeded by (seed, epoch)
and the step's randomness by the step counter, so a resumed run follows the same trajectory
as an uninterrupted one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from braingan.data import CLASSES, NUM_CLASSES
from braingan.models import cdcgan
from braingan.train import gan_step
from braingan.train import parallel
from braingan.train import precision
from braingan.train.checkpoint import Checkpointer
from braingan.train.observe import MetricWriter, Progress, save_image_grid

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
SAMPLES_DIR = 'samples'
METRIC_NAMES = ('d_loss', 'g_loss', 'd_real', 'd_fake')


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the last good checkpoint is left untouched."""


def build_models(config: ml_collections.ConfigDict):
  # config.dtype: compute dtype (float32 or bfloat16); absent in older run configs -> float32.
  return cdcgan.build(config.model, config.data.image_size, config.data.channels, NUM_CLASSES,
                      dtype=precision.compute_dtype(config))


def initial_state(config: ml_collections.ConfigDict, generator, discriminator) -> dict:
  tx = gan_step.make_optimizer(config.optimizer)
  return gan_step.create_state(
      generator, discriminator, latent_dim=config.model.latent_dim,
      image_size=config.data.image_size, channels=config.data.channels,
      tx_g=tx, tx_d=gan_step.make_optimizer(config.optimizer), seed=config.seed)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was trained with (written when training starts)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir} a GAN training workdir?')
  with open(path, encoding='utf-8') as f:
    return ml_collections.ConfigDict(json.load(f))


def restore_generator(workdir: str, step: int | None = None):
  """(config, generator module, generator variables, checkpoint meta) of a trained run."""
  config = load_config(workdir)
  generator, discriminator = build_models(config)
  # Shapes only (jax.eval_shape): restoring needs no real initialisation, which would compile
  # both networks' init just to overwrite the result.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                       jax.eval_shape(lambda: initial_state(config, generator, discriminator)))
  with Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), async_save=False) as ckpt:
    state = ckpt.restore(state, step)
    meta = ckpt.restore_meta(step)
  return config, generator, state['generator'].variables, meta


def fixed_grid_inputs(config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """Noise and labels of the per-epoch grid: row c = class c, same noise every epoch."""
  per_class = config.grid_per_class
  key = jax.random.fold_in(jax.random.key(config.seed), 0x6772)  # 'gr': apart from training
  z = jax.random.normal(key, (NUM_CLASSES * per_class, config.model.latent_dim))
  labels = jnp.repeat(jnp.arange(NUM_CLASSES, dtype=jnp.int32), per_class)
  return z, labels


def _check_config(config: ml_collections.ConfigDict) -> None:
  for field in ('num_epochs', 'checkpoint_every', 'keep_checkpoints', 'grid_per_class'):
    if config[field] < 1:
      raise ValueError(f'config.{field}={config[field]} must be >= 1.')
  gan_step.check_layer_mode(config.model.layer_mode)
  if config.max_steps_per_epoch < 0:
    raise ValueError(f'config.max_steps_per_epoch={config.max_steps_per_epoch} must be >= 0.')


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns a summary of the last epoch."""
  from braingan.data import pipeline  # pylint: disable=import-outside-toplevel  (imports TF)
  _check_config(config)
  mesh = parallel.make_mesh(config.num_devices or None)
  parallel.check_global_batch(config.batch_size, mesh)
  os.makedirs(workdir, exist_ok=True)
  if parallel.is_main_process():
    with open(os.path.join(workdir, CONFIG_FILE), 'w', encoding='utf-8') as f:
      f.write(config.to_json(indent=2))

  data = pipeline.load(config.data, workdir, config.seed)
  generator, discriminator = build_models(config)
  state = parallel.replicate(mesh, initial_state(config, generator, discriminator))
  ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR), max_to_keep=config.keep_checkpoints,
                      save_every=config.checkpoint_every)
  start_epoch = 0
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
    start_epoch = int(ckpt.restore_meta()['epoch'])
    logging.info('Resumed from %s at epoch %d (train step %d).', ckpt.directory, start_epoch,
                 int(parallel.host_local(state['generator'].step)))
    if parallel.is_main_process():
      print(f'Resumed at epoch {start_epoch}, train step '
            f'{int(parallel.host_local(state["generator"].step))}.', flush=True)

  step_fn = gan_step.make_train_step(generator, discriminator, config.model.latent_dim, mesh,
                                     config.model.layer_mode)
  sampler = gan_step.make_sampler(generator)
  # Replicated on the mesh like the state: with several processes every input of a jitted
  # call must be a global array (the same values on every process).
  grid_z, grid_labels = parallel.replicate(mesh, fixed_grid_inputs(config))
  steps = data.steps_per_epoch(config.batch_size)
  if config.max_steps_per_epoch:
    steps = min(steps, config.max_steps_per_epoch)
  if steps < 1:
    raise ValueError(f'config.batch_size={config.batch_size} is larger than the training split '
                     f'({data.num_examples("train")} images): no full batch per epoch.')
  writer = MetricWriter(workdir)
  summary: dict[str, Any] = {'start_epoch': start_epoch}
  try:
    for epoch in range(start_epoch, config.num_epochs):
      scalars = _run_epoch(config, data, step_fn, state, epoch, steps, mesh)
      state = scalars.pop('_state')
      train_step = int(parallel.host_local(state['generator'].step))
      writer.write_scalars(train_step, scalars, epoch=epoch + 1, split='train')
      # Every process runs the sampler (a program over all devices needs all processes);
      # process 0 alone writes the grid.
      images = np.asarray(parallel.host_local(
          sampler(state['generator'].variables, grid_z, grid_labels)))
      if parallel.is_main_process():
        path = os.path.join(workdir, SAMPLES_DIR, f'epoch_{epoch + 1:03d}.png')
        save_image_grid(path, images, nrow=config.grid_per_class, row_labels=CLASSES)
        grid = np.asarray(Image.open(path))
        writer.write_image(train_step, 'samples', grid)
      writer.flush()
      ckpt.save(epoch + 1, state, metrics=scalars,
                meta={'epoch': epoch + 1, 'train_step': train_step},
                force=epoch + 1 == config.num_epochs)
      summary.update(epoch=epoch + 1, train_step=train_step, **scalars)
  finally:
    ckpt.close()
    writer.close()
  summary['final_epoch'] = config.num_epochs
  return summary


def _run_epoch(config, data, step_fn, state, epoch: int, steps: int, mesh) -> dict[str, Any]:
  """One epoch of steps. Metrics are read one step late so the host never stalls the device."""
  progress = Progress(steps, desc=f'epoch {epoch + 1}/{config.num_epochs}',
                      min_interval=config.log_every_seconds)
  sums = {name: 0.0 for name in METRIC_NAMES}
  count = 0
  start = time.perf_counter()

  def consume(metrics, index):
    nonlocal count
    values = {k: float(v) for k, v in parallel.to_host(metrics).items()}
    bad = [k for k in ('d_loss', 'g_loss') if not math.isfinite(values[k])]
    if bad:
      raise NonFiniteLossError(
          f'Non-finite {", ".join(bad)} ({values}) at epoch {epoch + 1}, step {index + 1} of the '
          f'epoch. Training stopped; the last good checkpoint (epoch <= {epoch}) is kept. '
          'Try a lower config.optimizer.learning_rate.')
    for k in METRIC_NAMES:
      sums[k] += values[k]
    count += 1
    progress.update(1, d_loss=values['d_loss'], g_loss=values['g_loss'])

  pending = None
  for index, batch in enumerate(data.train_epoch(epoch, config.batch_size)):
    if index >= steps:
      break
    state, metrics = step_fn(state, parallel.shard_batch(mesh, batch))
    if pending is not None:
      consume(*pending)
    pending = (metrics, index)
  if pending is not None:
    consume(*pending)
  progress.close()
  seconds = time.perf_counter() - start
  scalars = {k: v / max(count, 1) for k, v in sums.items()}
  scalars['steps_per_s'] = count / seconds if seconds > 0 else 0.0
  scalars['epoch_seconds'] = seconds
  scalars['_state'] = state
  return scalars
