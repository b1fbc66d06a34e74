"""The GAN's state, its one jitted train step (D then G), and the jitted sampler.

The state is a plain dict {'generator': TrainState, 'discriminator': TrainState}. The step's
randomness is `fold_in(generator.rng, generator.step)`: the stored key never changes and the
step counter is checkpointed, so a resumed run draws exactly the noise and dropout masks the
uninterrupted run would have drawn.

The step follows GANForge's `train_step`: one latent draw per step; the discriminator sees the
real batch and the fake batch in two separate calls (so each has its own BatchNorm batch
statistics) and minimises (BCE(real, 1) + BCE(fake, 0)) / 2; then the generator, re-run on the
same latents, minimises the non-saturating BCE(D(G(z)), 1) through the updated discriminator.
Running BatchNorm averages of both nets are updated by every training-mode call, as in Keras.
The generator's forward pass is shared by both updates (see `train_step`).
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from braingan.train import parallel
from braingan.train.state import TrainState

GANState = dict  # {'generator': TrainState, 'discriminator': TrainState}


def make_optimizer(opt_cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam as Keras configures it (epsilon 1e-7), from config.optimizer."""
  if opt_cfg.learning_rate <= 0:
    raise ValueError(f'config.optimizer.learning_rate={opt_cfg.learning_rate} must be > 0.')
  if not 0.0 <= opt_cfg.beta1 < 1.0:
    raise ValueError(f'config.optimizer.beta1={opt_cfg.beta1} must be in [0, 1).')
  return optax.adam(opt_cfg.learning_rate, b1=opt_cfg.beta1, b2=opt_cfg.beta2,
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


def train_step(state: GANState, batch: dict[str, jax.Array], *, generator: nn.Module,
               discriminator: nn.Module, latent_dim: int) -> tuple[GANState, dict[str, Any]]:
  """One discriminator update, then one generator update. Pure; jit it with `make_train_step`."""
  g_state, d_state = state['generator'], state['discriminator']
  real, labels = batch['image'], batch['label']
  rng = jax.random.fold_in(g_state.rng_key, g_state.step)
  z_key, drop_real, drop_fake, drop_g = jax.random.split(rng, 4)
  z = jax.random.normal(z_key, (real.shape[0], latent_dim), real.dtype)

  # The generator runs forward ONCE: GANForge runs it twice on the same z with the same
  # parameters (once for the D update, once under the G tape), which gives the same images
  # and BatchNorm batch statistics, so we keep the VJP of the first pass for the G update.
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

  metrics = {
      'd_loss': d_loss,
      'g_loss': g_loss,
      'd_real': jnp.mean(jax.nn.sigmoid(logits_real)),   # mean D(x)
      'd_fake': jnp.mean(jax.nn.sigmoid(logits_fake)),   # mean D(G(z)) before the D update
  }
  return {'generator': g_state, 'discriminator': d_state}, metrics


def make_train_step(generator: nn.Module, discriminator: nn.Module, latent_dim: int,
                    mesh: jax.sharding.Mesh) -> Callable:
  """`train_step` jitted for the mesh: batch sharded on 'data', state replicated and donated."""
  repl = parallel.replicated_sharding(mesh)

  def fn(state, batch):
    return train_step(state, batch, generator=generator, discriminator=discriminator,
                      latent_dim=latent_dim)

  return jax.jit(fn, in_shardings=(repl, parallel.batch_sharding(mesh)),
                 out_shardings=(repl, repl), donate_argnums=0)


def make_sampler(generator: nn.Module) -> Callable:
  """Jitted (generator variables, z, labels) -> images in [-1, 1], inference-mode BatchNorm."""

  def sample(variables, z, labels):
    return generator.apply(variables, z, labels, train=False)

  return jax.jit(sample)
