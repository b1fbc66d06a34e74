"""The GAN's state, its one jitted train step (D then G), and the jitted sampler.

The state is a plain dict {'generator': TrainState, 'discriminator': TrainState}. The step's
randomness is `fold_in(generator.rng, generator.step)`: the stored key never changes and the
step counter is checkpointed, so a resumed run draws exactly the noise and dropout masks the
uninterrupted run would have drawn.

The step follows GANForge's `train_step`: one latent draw per step; the discriminator
minimises (BCE(D(x), 1) + BCE(D(G(z)), 0)) / 2; then the generator, re-run on the same
latents, minimises the non-saturating BCE(D(G(z)), 1) through the updated discriminator.
The generator's forward pass is shared by both updates (GANForge runs it twice on the same z
with the same parameters, which gives the same images).

`layer_mode` says how BatchNorm and Dropout run during training (config.model.layer_mode):
- 'inference' is what the original study actually trained. GANForge calls its networks
  without `training=True` inside `model.fit`, and Keras then runs every layer in inference
  mode: BatchNorm normalises with its moving statistics, which are never updated and stay at
  their initial mean 0 / variance 1 (so each BatchNorm is a learned per-channel affine map),
  and Dropout is off. Verified on tf_keras (braingan/bench/keras_gan.py, tests/test_keras_gan.py).
  With no batch dependence left, D scores the real and the fake batch in one call.
- 'training' is the textbook DCGAN: batch statistics (real and fake batches normalised
  separately, running averages updated by every call, as Keras does with training=True) and
  dropout. On the shared MRI set at 64 px its discriminator wins within two epochs (D(G(z))
  ~0.002) in our JAX step and in the Keras twin alike; see the closing notes of issue 3.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from braingan.train import optim
from braingan.train import parallel
from braingan.train.state import TrainState

GANState = dict  # {'generator': TrainState, 'discriminator': TrainState}


def make_optimizer(opt_cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Keras's Adam (braingan.train.optim, epsilon 1e-7), from config.optimizer."""
  if opt_cfg.learning_rate <= 0:
    raise ValueError(f'config.optimizer.learning_rate={opt_cfg.learning_rate} must be > 0.')
  if not 0.0 <= opt_cfg.beta1 < 1.0:
    raise ValueError(f'config.optimizer.beta1={opt_cfg.beta1} must be in [0, 1).')
  return optim.keras_adam(opt_cfg.learning_rate, b1=opt_cfg.beta1, b2=opt_cfg.beta2,
                          eps=opt_cfg.epsilon)


def create_state(generator: nn.Module, discriminator: nn.Module, *, latent_dim: int,
                 image_size: int, channels: int, tx_g: optax.GradientTransformation,
                 tx_d: optax.GradientTransformation, seed: int) -> GANState:
  """Fresh parameters for both nets (deterministic given seed)."""
  key = jax.random.key(seed)
  # The discriminator's own key is unused by the step but must be a distinct buffer
  # (both states are donated together).
  init_g, init_d, step_key, d_key = jax.random.split(key, 4)
  z = jnp.zeros((2, latent_dim), jnp.float32)
  labels = jnp.zeros((2,), jnp.int32)
  images = jnp.zeros((2, image_size, image_size, channels), jnp.float32)
  g_vars = jax.jit(lambda k: generator.init(k, z, labels, train=False))(init_g)
  d_vars = jax.jit(lambda k: discriminator.init(k, images, labels, train=False))(init_d)
  return {
      'generator': TrainState.create(params=g_vars['params'], tx=tx_g, rng=step_key,
                                     batch_stats=g_vars.get('batch_stats', {})),
      'discriminator': TrainState.create(params=d_vars['params'], tx=tx_d, rng=d_key,
                                         batch_stats=d_vars.get('batch_stats', {})),
  }


def _bce(logits: jax.Array, target: float) -> jax.Array:
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)))


LAYER_MODES = ('inference', 'training')


def check_layer_mode(layer_mode: str) -> str:
  if layer_mode not in LAYER_MODES:
    raise ValueError(f'config.model.layer_mode={layer_mode!r}: expected one of {LAYER_MODES}.')
  return layer_mode


def _metrics(d_loss, g_loss, logits_real, logits_fake) -> dict[str, jax.Array]:
  return {
      'd_loss': d_loss,
      'g_loss': g_loss,
      'd_real': jnp.mean(jax.nn.sigmoid(logits_real)),   # mean D(x)
      'd_fake': jnp.mean(jax.nn.sigmoid(logits_fake)),   # mean D(G(z)) before the D update
  }


def step_randomness(g_state, batch_size: int, latent_dim: int) -> tuple[jax.Array, jax.Array]:
  """(latents z [batch, latent_dim], dropout key) of the step `g_state.step`."""
  rng = jax.random.fold_in(g_state.rng_key, g_state.step)
  z_key, drop_key = jax.random.split(rng)
  return jax.random.normal(z_key, (batch_size, latent_dim), jnp.float32), drop_key


def train_step(state: GANState, batch: dict[str, jax.Array], *, generator: nn.Module,
               discriminator: nn.Module, latent_dim: int,
               layer_mode: str = 'inference') -> tuple[GANState, dict[str, Any]]:
  """One discriminator update, then one generator update. Pure; jit it with `make_train_step`."""
  z, drop_key = step_randomness(state['generator'], batch['image'].shape[0], latent_dim)
  if check_layer_mode(layer_mode) == 'inference':
    return _step_inference_layers(state, batch, z, generator, discriminator)
  return _step_training_layers(state, batch, z, drop_key, generator, discriminator)


def _step_inference_layers(state, batch, z, generator, discriminator):
  """GANForge as it ran: BatchNorm on its (fixed) moving statistics, no dropout."""
  g_state, d_state = state['generator'], state['discriminator']
  real, labels = batch['image'], batch['label']

  def g_forward(g_params):
    return generator.apply({'params': g_params, 'batch_stats': g_state.batch_stats}, z, labels,
                           train=False)

  fake, g_vjp = jax.vjp(g_forward, g_state.params)
  # Every example is scored independently, so real and fake go through D as one batch.
  # Interleaving them (real_i, fake_i) keeps each device's rows on that device.
  both = jnp.stack([real, jax.lax.stop_gradient(fake).astype(real.dtype)], axis=1)
  both = both.reshape((-1,) + real.shape[1:])
  both_labels = jnp.repeat(labels, 2)

  def d_loss_fn(d_params):
    logits = discriminator.apply({'params': d_params, 'batch_stats': d_state.batch_stats},
                                 both, both_labels, train=False).reshape(-1, 2)
    logits_real, logits_fake = logits[:, 0], logits[:, 1]
    loss = 0.5 * (_bce(logits_real, 1.0) + _bce(logits_fake, 0.0))
    return loss, (logits_real, logits_fake)

  (d_loss, (logits_real, logits_fake)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(d_state.params)
  d_state = d_state.apply_gradients(d_grads)

  def g_adversarial_loss(images):  # non-saturating: -log D(G(z)), through the updated D
    return _bce(discriminator.apply(d_state.variables, images, labels, train=False), 1.0)

  g_loss, d_fake_images = jax.value_and_grad(g_adversarial_loss)(fake)
  (g_grads,) = g_vjp(d_fake_images)
  g_state = g_state.apply_gradients(g_grads)
  return ({'generator': g_state, 'discriminator': d_state},
          _metrics(d_loss, g_loss, logits_real, logits_fake))


def _step_training_layers(state, batch, z, drop_key, generator, discriminator):
  """Batch statistics and dropout; real and fake batches normalised separately, as in Keras."""
  g_state, d_state = state['generator'], state['discriminator']
  real, labels = batch['image'], batch['label']
  drop_real, drop_fake, drop_g = jax.random.split(drop_key, 3)

  def g_forward(g_params):
    fake, upd = generator.apply({'params': g_params, 'batch_stats': g_state.batch_stats}, z,
                                labels, train=True, mutable=['batch_stats'])
    return fake, upd['batch_stats']

  fake, g_vjp, g_stats = jax.vjp(g_forward, g_state.params, has_aux=True)
  # Keras moved the running averages twice with the same batch statistics b:
  # r2 = m * r1 + (1 - m) * b with r1 = m * r0 + (1 - m) * b, i.e. r2 = (1 + m) r1 - m r0.
  m = generator.bn_momentum
  g_stats = jax.tree.map(lambda r1, r0: (1.0 + m) * r1 - m * r0, g_stats, g_state.batch_stats)

  def d_loss_fn(d_params):
    logits_real, upd = discriminator.apply(
        {'params': d_params, 'batch_stats': d_state.batch_stats}, real, labels, train=True,
        rngs={'dropout': drop_real}, mutable=['batch_stats'])
    logits_fake, upd = discriminator.apply(
        {'params': d_params, 'batch_stats': upd['batch_stats']}, jax.lax.stop_gradient(fake),
        labels, train=True, rngs={'dropout': drop_fake}, mutable=['batch_stats'])
    loss = 0.5 * (_bce(logits_real, 1.0) + _bce(logits_fake, 0.0))
    return loss, (upd['batch_stats'], logits_real, logits_fake)

  (d_loss, (d_stats, logits_real, logits_fake)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(d_state.params)
  d_state = d_state.apply_gradients(d_grads, d_stats)

  def g_adversarial_loss(images):  # non-saturating: -log D(G(z)), through the updated D
    logits, d_upd = discriminator.apply(d_state.variables, images, labels, train=True,
                                        rngs={'dropout': drop_g}, mutable=['batch_stats'])
    return _bce(logits, 1.0), d_upd['batch_stats']

  (g_loss, d_stats), d_fake_images = jax.value_and_grad(g_adversarial_loss, has_aux=True)(fake)
  (g_grads,) = g_vjp(d_fake_images)
  g_state = g_state.apply_gradients(g_grads, g_stats)
  d_state = d_state.replace(batch_stats=d_stats)
  return ({'generator': g_state, 'discriminator': d_state},
          _metrics(d_loss, g_loss, logits_real, logits_fake))


def make_train_step(generator: nn.Module, discriminator: nn.Module, latent_dim: int,
                    mesh: jax.sharding.Mesh, layer_mode: str = 'inference') -> Callable:
  """`train_step` jitted for the mesh: batch sharded on 'data', state replicated and donated."""
  repl = parallel.replicated_sharding(mesh)
  check_layer_mode(layer_mode)

  def fn(state, batch):
    return train_step(state, batch, generator=generator, discriminator=discriminator,
                      latent_dim=latent_dim, layer_mode=layer_mode)

  return jax.jit(fn, in_shardings=(repl, parallel.batch_sharding(mesh)),
                 out_shardings=(repl, repl), donate_argnums=0)


def make_sampler(generator: nn.Module) -> Callable:
  """Jitted (generator variables, z, labels) -> images in [-1, 1], inference-mode BatchNorm."""

  def sample(variables, z, labels):
    return generator.apply(variables, z, labels, train=False)

  return jax.jit(sample)
