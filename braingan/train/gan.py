"""The GAN recipe: one step (D, then G), losses and augmentations by name, EMA of G, grids.

The state (`GANState`) holds both nets' TrainStates, the EMA of the generator's weights and the
augmentation probability (ADA). The step's randomness is `fold_in(generator.rng, step)`: the
stored key never changes and the step counter is checkpointed, so a resumed run draws exactly
the noise the uninterrupted run would have drawn.

The step follows GANForge's `train_step`, generalised: one latent draw per step; the
discriminator minimises loss.discriminator(D(aug(x)), D(aug(G(z)))) (+ the auxiliary class
cross-entropy on real images, and a twin head's on fake ones); then the generator, through the
*updated* discriminator, minimises loss.generator(D(aug(G(z)))) (+ the class cross-entropy of
its images, minus the twin's: losses.generator_class_loss). The
generator's forward pass is shared by both updates (GANForge runs it twice on the same z with
the same parameters, which gives the same images).

`layer_mode` says how BatchNorm and Dropout run during training (config.model.layer_mode):
- 'inference' is what the original study actually trained. GANForge calls its networks
  without `training=True` inside `model.fit`, and Keras then runs every layer in inference
  mode: BatchNorm normalises with its moving statistics, which are never updated and stay at
  their initial mean 0 / variance 1 (so each BatchNorm is a learned per-channel affine map),
  and Dropout is off (tests/test_keras_gan.py shows it on tf_keras). With no batch dependence
  left, D scores the real and the fake batch in one call.
- 'training' is the textbook DCGAN: batch statistics (real and fake batches normalised
  separately, running averages updated by every call, as Keras does with training=True) and
  dropout. On the shared MRI set its discriminator wins within two epochs in our step and in
  the Keras twin alike.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from braingan import config_check
from braingan import images as images_lib
from braingan import models
from braingan.models import cdcgan
from braingan.data import CLASSES, NUM_CLASSES
from braingan.runtime import compile_cache
from braingan.runtime import distributed
from braingan.runtime import parallel
from braingan.train import augment as augment_lib
from braingan.train import hooks
from braingan.train import losses
from braingan.train import optim
from braingan.train.recipe import Recipe
from braingan.train.state import TrainState

LAYER_MODES = ('inference', 'training')


@flax.struct.dataclass
class GANState:
  generator: TrainState
  discriminator: TrainState
  ema_params: Any          # EMA of the generator's params ({} when config.ema.decay == 0)
  augment_p: jax.Array     # float32 []: per-op augmentation probability (ADA moves it)
  # LeCam's anchors, moving averages of D's mean logit on reals and fakes before bias
  # correction ({'real', 'fake'}; {} when config.lecam_weight == 0, as in runs that predate it).
  lecam_anchors: Any = flax.struct.field(default_factory=dict)


def check_layer_mode(layer_mode: str) -> str:
  if layer_mode not in LAYER_MODES:
    raise ValueError(f'config.model.layer_mode={layer_mode!r}: expected one of {LAYER_MODES}.')
  return layer_mode


def step_randomness(g_state: TrainState, batch_size: int, latent_dim: int):
  """(latents z [batch, latent_dim], key for dropout and augmentation) of step g_state.step."""
  z_key, key = jax.random.split(jax.random.fold_in(g_state.rng_key, g_state.step))
  return jax.random.normal(z_key, (batch_size, latent_dim), jnp.float32), key


latents = cdcgan.latents


def condition_scale(config, step: Any) -> Any:
  """Transitional conditioning: the label's weight at `step` (1 when off)."""
  return cdcgan.condition_scale(config.transition_steps, step)


def _interleave(a: jax.Array, b: jax.Array, block: int = 1) -> jax.Array:
  """[a-block 0, b-block 0, a-block 1, ...] of `block` rows each: keeps each device's rows of
  a and b on that device, and a group of `block` rows (D's minibatch-std) all real or all fake."""
  blocks = lambda x: x.reshape((-1, block) + x.shape[1:])  # noqa: E731
  return jnp.stack([blocks(a), blocks(b)], axis=1).reshape((-1,) + a.shape[1:])


def _split_pairs(x: jax.Array | None, block: int):
  """Inverse of _interleave on D's outputs: (rows of a, rows of b), or (None, None)."""
  if x is None:
    return None, None
  pairs = x.reshape((-1, 2, block) + x.shape[1:])
  return (pairs[:, 0].reshape((-1,) + x.shape[1:]), pairs[:, 1].reshape((-1,) + x.shape[1:]))


def _keras_double_update(new_stats, old_stats, momentum: float):
  """GANForge runs G twice per step in training mode, moving BatchNorm's averages twice with
  the same batch statistics b: r2 = m r1 + (1 - m) b with r1 = m r0 + (1 - m) b, so
  r2 = (1 + m) r1 - m r0. Spectral-norm vectors in the same collection are left alone."""
  def fix(path, new, old):
    if getattr(path[-1], 'key', None) in ('mean', 'var'):
      return (1.0 + momentum) * new - momentum * old
    return new
  return jax.tree_util.tree_map_with_path(fix, new_stats, old_stats)


class GANRecipe(Recipe):
  """A class-conditional GAN (config.model.name registers the nets; configs/cgan.py)."""
  progress_metrics = ('d_loss', 'g_loss', 'd_real', 'd_fake')

  def __init__(self, config, data=None):
    super().__init__(config, data)
    self.generator, self.discriminator = models.build(config)
    self.layer_mode = check_layer_mode(config.model.layer_mode)
    self.loss = losses.get(config.loss)
    self.policy = augment_lib.parse_policy(config.diffaug.policy)
    self.latent_dim = config.model.latent_dim
    self.auxiliary = 'auxiliary' in self.discriminator.conditioning
    self.twin = 'twin' in self.discriminator.conditioning
    # Spectral norm keeps its power-iteration vectors in 'batch_stats': D is applied mutably.
    self.d_mutable = self.layer_mode == 'training' or self.discriminator.spectral_norm
    self.g_mutable = self.layer_mode == 'training' or self.generator.spectral_norm
    self._sampler = jax.jit(self._sample)
    # config.select_generator: the loop keeps the best-scoring checkpoint apart and makes it the
    # result (readers load it: inference.load_generator).
    mode = config_check.selection_mode(config.get('select_generator', 'last'))
    if mode is not None:
      self.best_metric, self.best_mode = config.select_generator, mode

  # ------------------------------------------------------------------------------- state
  def init_state(self) -> GANState:
    config = self.config
    key = jax.random.key(config.seed)
    # The discriminator's own key is unused by the step but must be a distinct buffer
    # (both states are donated together).
    init_g, init_d, step_key, d_key = jax.random.split(key, 4)
    size, channels = config.data.image_size, config.data.channels
    z = jnp.zeros((2, self.latent_dim), jnp.float32)
    labels = jnp.zeros((2,), jnp.int32)
    images = jnp.zeros((2, size, size, channels), jnp.float32)
    g_vars = compile_cache.run_once(lambda k: self.generator.init(k, z, labels, train=False),
                                    init_g)
    d_vars = compile_cache.run_once(
        lambda k: self.discriminator.init(k, images, labels, train=False), init_d)
    tx = optim.direction(config.optimizer)
    g_state = TrainState.create(params=g_vars['params'], tx=tx, rng=step_key,
                                batch_stats=g_vars.get('batch_stats', {}))
    d_state = TrainState.create(params=d_vars['params'], tx=tx, rng=d_key,
                                batch_stats=d_vars.get('batch_stats', {}))
    ema = jax.tree.map(jnp.copy, g_state.params) if config.ema.decay > 0 else {}
    anchors = ({'real': jnp.float32(0), 'fake': jnp.float32(0)}
               if config.get('lecam_weight', 0.0) > 0 else {})
    return GANState(generator=g_state, discriminator=d_state, ema_params=ema,
                    augment_p=jnp.float32(config.diffaug.probability), lecam_anchors=anchors)

  def hparams(self) -> dict[str, float]:
    opt = self.config.optimizer
    return {'learning_rate': opt.learning_rate,
            'd_learning_rate': opt.d_learning_rate or opt.learning_rate}

  def hooks(self) -> list:
    start = self.config.lr_decay_after_epoch
    if not start or start >= self.config.epochs:
      return []
    return [hooks.LinearDecay(self.hparams(), start, self.config.epochs)]

  def inference_variables(self, state: GANState, use_ema: bool = True) -> dict:
    """The generator's variables for sampling: its EMA weights when the run keeps them (with
    BatchNorm statistics of their own, cdcgan.ema_sampling_variables)."""
    g = state.generator
    if not (use_ema and state.ema_params):
      return {'params': g.params, 'batch_stats': g.batch_stats}
    return cdcgan.ema_sampling_variables(self.generator, self.config, state.ema_params,
                                         g.batch_stats, g.step)

  # -------------------------------------------------------------------------------- step
  def _apply_d(self, params, stats, images, labels, rng, cond, update):
    """D(images, labels) -> (logits, class logits, batch_stats after the call)."""
    variables = {'params': params, 'batch_stats': stats}
    kwargs = dict(train=self.layer_mode == 'training', cond_scale=cond, update_stats=update,
                  rngs={'dropout': rng})
    if self.d_mutable:
      (logits, cls), new = self.discriminator.apply(variables, images, labels,
                                                    mutable=['batch_stats'], **kwargs)
      return logits, cls, new['batch_stats']
    logits, cls = self.discriminator.apply(variables, images, labels, **kwargs)
    return logits, cls, stats

  def _score_pair(self, d_params, d_stats, real, fake, labels, fake_labels, rngs, cond):
    """D on the real and the fake batch -> (logits, class logits) of each, and new stats."""
    if self.layer_mode == 'inference' or not self.discriminator.has_batch_layers:
      # No row sees another (fixed BatchNorm, no dropout; minibatch-std groups kept whole),
      # so real and fake go through D as one batch.
      block = self.discriminator.pair_block
      logits, cls, stats = self._apply_d(d_params, d_stats, _interleave(real, fake, block),
                                         _interleave(labels, fake_labels, block), rngs[0], cond,
                                         True)
      (real_logits, fake_logits), (real_cls, fake_cls) = (_split_pairs(logits, block),
                                                          _split_pairs(cls, block))
      return (real_logits, real_cls), (fake_logits, fake_cls), stats
    real_logits, real_cls, stats = self._apply_d(d_params, d_stats, real, labels, rngs[0],
                                                 cond, True)
    fake_logits, fake_cls, stats = self._apply_d(d_params, stats, fake, fake_labels, rngs[1],
                                                 cond, True)
    return (real_logits, real_cls), (fake_logits, fake_cls), stats

  def _augment(self, images, key, p):
    return augment_lib.augment(images, key, self.policy, p) if self.policy else images

  def train_step(self, state: GANState, batch: dict, hparams: dict):
    """One discriminator update, then one generator update. Pure; the loop jits it."""
    config = self.config
    g, d = state.generator, state.discriminator
    real, labels = batch['image'], batch['label']
    z, key = step_randomness(g, real.shape[0], self.latent_dim)
    drop_real, drop_fake, drop_g, aug_real, aug_fake, aug_g = jax.random.split(key, 6)
    cond = condition_scale(config, g.step)
    aux_weight = config.aux_weight * cond
    half = real.shape[0] // 2
    # Mode seeking compares rows i and i + half: give both the label of row i (a draw from the
    # data's class mix all the same). Without it fakes are drawn with the real batch's labels.
    fake_labels = (jnp.concatenate([labels[:half], labels[:half], labels[2 * half:]])
                   if config.mode_seeking > 0 else labels)

    def g_forward(g_params):
      variables = {'params': g_params, 'batch_stats': g.batch_stats}
      kwargs = dict(train=self.layer_mode == 'training', cond_scale=cond, update_stats=True)
      if self.g_mutable:
        fake, new = self.generator.apply(variables, z, fake_labels, mutable=['batch_stats'],
                                         **kwargs)
        return fake, new['batch_stats']
      return self.generator.apply(variables, z, fake_labels, **kwargs), g.batch_stats

    fake, g_vjp, g_stats = jax.vjp(g_forward, g.params, has_aux=True)
    if self.layer_mode == 'training' and self.generator.keras_double_bn_update:
      g_stats = _keras_double_update(g_stats, g.batch_stats, self.generator.bn_momentum)

    def d_loss_fn(d_params):
      real_in = self._augment(real, aug_real, state.augment_p)
      fake_in = self._augment(jax.lax.stop_gradient(fake).astype(real.dtype), aug_fake,
                              state.augment_p)
      (real_logits, real_cls), (fake_logits, fake_cls), stats = self._score_pair(
          d_params, d.batch_stats, real_in, fake_in, labels, fake_labels, (drop_real, drop_fake),
          cond)
      loss = self.loss.discriminator(real_logits, fake_logits)
      if self.auxiliary:
        loss = loss + aux_weight * losses.discriminator_class_loss(
            real_cls, fake_cls, labels, fake_labels, self.twin)
      anchors, lecam = self._lecam(state.lecam_anchors, real_logits, fake_logits, d.step)
      if state.lecam_anchors:
        loss = loss + config.lecam_weight * lecam
      return loss, (stats, real_logits, fake_logits, real_cls, anchors, lecam)

    (d_loss, (d_stats, real_logits, fake_logits, real_cls, anchors, lecam)), d_grads = (
        jax.value_and_grad(d_loss_fn, has_aux=True)(d.params))
    d = d.apply_gradients(d_grads, hparams['d_learning_rate'], d_stats)

    def g_loss_fn(images):   # through the updated discriminator
      logits, cls, stats = self._apply_d(d.params, d.batch_stats,
                                         self._augment(images, aug_g, state.augment_p),
                                         fake_labels, drop_g, cond, False)
      loss = self.loss.generator(logits)
      if self.auxiliary:
        loss = loss + aux_weight * losses.generator_class_loss(cls, fake_labels, self.twin)
      if config.mode_seeking > 0:
        loss = loss + config.mode_seeking * losses.mode_seeking(
            images[:half], images[half:2 * half], z[:half], z[half:2 * half])
      return loss, stats

    (g_loss, d_stats), d_fake_images = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
    (g_grads,) = g_vjp(d_fake_images)
    g = g.apply_gradients(g_grads, hparams['learning_rate'], g_stats)
    d = d.replace(batch_stats=d_stats)
    state = state.replace(generator=g, discriminator=d,
                          ema_params=self._ema(state.ema_params, g.params, g.step),
                          augment_p=self._ada(state.augment_p, real_logits),
                          lecam_anchors=anchors)
    metrics = {'d_loss': d_loss, 'g_loss': g_loss,
               'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),   # mean D(x)
               'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits))}   # mean D(G(z)) before D's update
    if self.auxiliary:
      real_aux, _ = losses.split_class_logits(real_cls, self.twin)
      metrics['d_class_acc'] = jnp.mean(jnp.argmax(real_aux, -1) == labels)
    if config.diffaug.ada_target > 0:
      metrics['augment_p'] = state.augment_p
      metrics['real_sign'] = jnp.mean(jnp.sign(real_logits))
    if state.lecam_anchors:
      metrics['lecam'] = lecam
    return state, metrics

  def _lecam(self, anchors, real_logits, fake_logits, step):
    """(updated anchors, LeCam term) at D's step `step`: the anchors move by this batch's mean
    logits first (decay config.lecam_decay) and are bias-corrected as Adam's moments are, as
    in the authors' code (zero-debiased moving averages); ({}, 0) when off."""
    if not anchors:
      return anchors, jnp.float32(0)
    decay = self.config.lecam_decay
    means = {'real': jnp.mean(real_logits), 'fake': jnp.mean(fake_logits)}
    anchors = {k: decay * anchors[k] + (1.0 - decay) * jax.lax.stop_gradient(
        means[k].astype(jnp.float32)) for k in anchors}
    correction = 1.0 - decay ** (step.astype(jnp.float32) + 1.0)
    return anchors, losses.lecam(real_logits, fake_logits, anchors['real'] / correction,
                                 anchors['fake'] / correction)

  def _ema(self, ema, params, step):
    ema_cfg = self.config.ema
    if ema_cfg.decay <= 0:
      return ema
    decay = jnp.where(step <= ema_cfg.start_step, 0.0, ema_cfg.decay)
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)

  def _ada(self, p, real_logits):
    diffaug = self.config.diffaug
    if diffaug.ada_target <= 0 or not self.policy:
      return p
    return augment_lib.ada_update(p, real_logits, diffaug.ada_target, diffaug.ada_kimg * 1000.0)

  # ---------------------------------------------------------------------------- sampling
  def _sample(self, variables, z, labels, cond):
    return self.generator.apply(variables, z, labels, train=False, cond_scale=cond)

  def sample(self, variables, z, labels, step: int) -> np.ndarray:
    """Images in [-1, 1] for (z, labels) with the generator's variables (jitted; any process
    count: call it on every process)."""
    inputs = (z, labels, jnp.float32(condition_scale(self.config, step)))
    if self.mesh is not None:   # several processes: every input must be a global array
      inputs = parallel.replicate(self.mesh, inputs)
    return np.asarray(parallel.host_local(self._sampler(variables, *inputs)))

  def grid_inputs(self) -> tuple[jax.Array, jax.Array]:
    """Noise and labels of the per-epoch grid: row c = class c, same noise every epoch."""
    per_class = self.config.grid_per_class
    z = latents(self.config.seed + 0x6772, np.arange(NUM_CLASSES * per_class), self.latent_dim)
    return z, jnp.repeat(jnp.arange(NUM_CLASSES, dtype=jnp.int32), per_class)

  def on_epoch_end(self, state: GANState, epoch: int, run, writer) -> dict[str, float]:
    step = int(parallel.host_local(state.generator.step))
    variables = self.inference_variables(state)
    z, labels = self.grid_inputs()
    pictures = self.sample(variables, z, labels, step)
    if distributed.is_main_process():
      pixels = images_lib.grid(pictures, self.config.grid_per_class, row_labels=CLASSES)
      images_lib.save_png(run.sample_grid(epoch), pixels)
      writer.write_image(step, 'samples', pixels)
    judge = self.config.judge
    if judge.run_dir and (epoch % judge.every_epochs == 0 or epoch == self.config.epochs):
      from braingan.eval import conditioning  # pylint: disable=import-outside-toplevel
      return conditioning.during_training(self, variables, step, epoch)
    return {}
