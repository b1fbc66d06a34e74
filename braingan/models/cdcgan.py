"""Class-conditional DCGAN (the original study's GANForge `ConditionalDCGAN`) in Flax, with options.

Defaults reproduce GANForge's architecture for 128 px images; the base grid of the generator
is image_size / 2**len(g_widths), so 64 and 256 px work unchanged. Keras defaults are kept where
they change numerics: Glorot-uniform kernels, zero biases, Embedding init U(-0.05, 0.05),
BatchNorm momentum 0.99 and epsilon 1e-3. With every option at its default the parameter tree
and the numbers are GANForge's (tests/test_keras_gan.py).

Options (configs/cgan.py documents them): where the label enters each net
(braingan/models/conditioning.py), BatchNorm or no normalisation in D, spectral normalisation.
The discriminator returns (logits [B], class logits [B, K] or None): GANForge ends in a sigmoid;
our losses apply it, which is the same function but numerically stable.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from braingan.models import conditioning
from braingan.models import layers

GLOROT = conditioning.GLOROT


def _batch_norm(train: bool, momentum: float, epsilon: float, name: str,
                dtype: Any = jnp.float32) -> nn.BatchNorm:
  # With dtype=bfloat16, Flax still computes the batch statistics and keeps the running
  # averages in float32 (force_float32_reductions); only the normalised output is bf16.
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                      dtype=dtype, param_dtype=jnp.float32, name=name)


def maybe_spectral_norm(layer: nn.Module, on: bool, update_stats: bool):
  """`layer` itself, or wrapped in spectral normalisation (u and sigma in 'batch_stats')."""
  if not on:
    return layer
  wrapped = nn.SpectralNorm(layer, name=f'{layer.name}_sn')
  return lambda x: wrapped(x, update_stats=update_stats)


class Generator(nn.Module):
  """(z [B, latent], labels [B]) -> images [B, S, S, C] in [-1, 1] (tanh)."""
  image_size: int = 128
  channels: int = 1
  num_classes: int = 4
  embed_dim: int = 50
  base_depth: int = 256
  widths: Sequence[int] = (256, 128, 64, 64)
  leaky_slope: float = 0.2
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  conditioning: str = 'concat'      # 'concat' (label plane) or 'cbn'
  spectral_norm: bool = False
  # GANForge ran G twice per step in Keras, so BatchNorm averages moved twice (train/gan.py).
  keras_double_bn_update: bool = True
  # True: the exactly equivalent fast lowerings of braingan.models.layers; False: plain
  # nn.ConvTranspose / nn.Conv (same maths and parameters, much slower on XLA:CPU).
  fast_layers: bool = True
  # Compute dtype (config.dtype via braingan.runtime.precision); parameters, BatchNorm
  # statistics and the output images stay float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool = True,
               cond_scale: Any = 1.0, update_stats: bool = False) -> jax.Array:
    scale = 2 ** len(self.widths)
    if self.image_size % scale:
      raise ValueError(f'image_size={self.image_size} must be divisible by {scale} '
                       f'(one factor 2 per generator width {tuple(self.widths)}).')
    sn = lambda layer: maybe_spectral_norm(layer, self.spectral_norm, update_stats)  # noqa: E731
    base = self.image_size // scale
    x = sn(nn.Dense(base * base * self.base_depth, kernel_init=GLOROT, dtype=self.dtype,
                    name='Dense_0'))(z)
    x = x.reshape(z.shape[0], base, base, self.base_depth)
    if self.conditioning == 'concat':
      plane = conditioning.LabelPlane(self.num_classes, self.embed_dim, base, base, self.dtype,
                                      name='LabelPlane_0')(labels, cond_scale)
      x = jnp.concatenate([x, plane.astype(x.dtype)], axis=-1)
    # Explicit names: the fast and plain variants have identical parameter trees.
    for i, width in enumerate(self.widths):
      if self.fast_layers:
        up = layers.SubPixelConvTranspose(width, (4, 4), (2, 2), kernel_init=GLOROT,
                                          dtype=self.dtype, name=f'up{i}')
      else:
        up = nn.ConvTranspose(width, (4, 4), (2, 2), padding='SAME', kernel_init=GLOROT,
                              dtype=self.dtype, name=f'up{i}')
      x = sn(up)(x)
      if self.conditioning == 'cbn':
        x = conditioning.ConditionalBatchNorm(
            self.num_classes, not train, self.bn_momentum, self.bn_epsilon, self.dtype,
            name=f'up{i}_cbn')(x, labels, cond_scale)
      else:
        x = _batch_norm(train, self.bn_momentum, self.bn_epsilon, f'up{i}_bn', self.dtype)(x)
      x = nn.leaky_relu(x, self.leaky_slope)
    # Few output channels at full resolution: one matmul to all taps + shifted sums.
    x = sn(layers.Conv2D(self.channels, (5, 5), impl='shift_add' if self.fast_layers else 'xla',
                         kernel_init=GLOROT, dtype=self.dtype, name='to_image'))(x)
    return jnp.tanh(x).astype(jnp.float32)


class Discriminator(nn.Module):
  """(images [B, S, S, C], labels [B]) -> (real/fake logits [B], class logits [B, K] or None)."""
  image_size: int = 128
  num_classes: int = 4
  embed_dim: int = 50
  widths: Sequence[int] = (32, 64, 128, 256, 256)
  dropout: float = 0.4
  leaky_slope: float = 0.2
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  conditioning: frozenset = frozenset({'concat'})   # parts: concat, projection, auxiliary
  norm: str = 'batch'               # 'batch' or 'none'
  spectral_norm: bool = False
  fast_layers: bool = True
  # With fast_layers, maps with at most this many output pixels use the im2col matmul.
  im2col_max_pixels: int = 16
  # With fast_layers, inputs at least this large get the stride-1 input gradient
  # (layers.conv2d_fast_input_grad); measured faster from 32 px up, slower at 16 px.
  fast_input_grad_min_size: int = 32
  # Compute dtype (config.dtype via braingan.runtime.precision); parameters, BatchNorm
  # statistics and the logits stay float32.
  dtype: Any = jnp.float32
  pair_block = 1   # rows scored together in one call need no grouping (train/gan.py)

  @property
  def has_batch_layers(self) -> bool:
    """True when a training-mode call mixes rows (BatchNorm statistics, dropout)."""
    return self.norm == 'batch' or self.dropout > 0

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool = True,
               cond_scale: Any = 1.0, update_stats: bool = False):
    b, h, w, _ = images.shape
    if h != self.image_size or w != self.image_size:
      raise ValueError(f'Discriminator built for {self.image_size} px got images {images.shape}.')
    sn = lambda layer: maybe_spectral_norm(layer, self.spectral_norm, update_stats)  # noqa: E731
    x = images.astype(self.dtype)
    if 'concat' in self.conditioning:
      plane = conditioning.LabelPlane(self.num_classes, self.embed_dim, h, w, self.dtype,
                                      name='LabelPlane_0')(labels, cond_scale)
      x = jnp.concatenate([x, plane.astype(x.dtype)], axis=-1)
    for i, width in enumerate(self.widths):
      out_pixels = -(-x.shape[1] // 2) * -(-x.shape[2] // 2)
      impl = 'xla'
      if self.fast_layers and out_pixels <= self.im2col_max_pixels:
        impl = 'im2col'
      elif self.fast_layers and min(x.shape[1:3]) >= self.fast_input_grad_min_size:
        impl = 'fast_input_grad'
      x = sn(layers.Conv2D(width, (5, 5), (2, 2), impl=impl, kernel_init=GLOROT,
                           dtype=self.dtype, name=f'conv{i}'))(x)
      if self.norm == 'batch':
        x = _batch_norm(train, self.bn_momentum, self.bn_epsilon, f'conv{i}_bn', self.dtype)(x)
      x = nn.leaky_relu(x, self.leaky_slope)
    features = x.reshape(b, -1)
    features = nn.Dropout(self.dropout, deterministic=not train)(features)
    return conditioning.discriminator_outputs(features, labels, self.conditioning, self.num_classes,
                                              cond_scale, sn, self.dtype)


def latents(seed: int, indices: Any, latent_dim: int) -> jax.Array:
  """Noise of generated image i: N(0, I) from fold_in(key(seed), i), whatever the batching."""
  key = jax.random.key(seed)
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent_dim,)))(
      jnp.asarray(indices))


def ema_sampling_variables(generator: nn.Module, config: ml_collections.ConfigDict,
                           ema_params: Any, batch_stats: Any, step: Any) -> dict:
  """Variables to sample a GAN run's EMA weights with: BatchNorm statistics recomputed for them
  when G's BatchNorm trained on batch statistics (layer_mode 'training'), else the stored ones
  (GANForge's 'inference' mode never used batch statistics)."""
  variables = {'params': ema_params, 'batch_stats': batch_stats}
  if config.model.layer_mode != 'training':
    return variables
  cond = jnp.float32(condition_scale(config.transition_steps, step))
  return standing_batch_stats(generator, variables, config.model.latent_dim, cond)


@functools.partial(jax.jit, static_argnames=('generator', 'latent_dim', 'batches', 'batch_size'))
def standing_batch_stats(generator: nn.Module, variables: dict, latent_dim: int,
                         cond_scale: Any = 1.0, batches: int = 64, batch_size: int = 64) -> dict:
  """BatchNorm running statistics recomputed for variables['params'] (BigGAN's "standing
  statistics"); variables unchanged when the generator has no BatchNorm.

  Why: an EMA of G's weights is another network than the raw G whose running statistics the
  state holds, and sampling (train=False) with the raw G's statistics mis-normalises every
  layer (the compact preset with an EMA: class agreement 25 %, FID 687 after 1,000 steps).
  The statistics are the average over `batches` batches of fixed noise and balanced labels of
  each batch's own (a momentum of 0 per batch, then the mean: PyTorch's momentum=None).
  Spectral-norm vectors are left as they are."""
  if not variables.get('batch_stats'):
    return variables
  one_batch_stats = generator.clone(bn_momentum=0.0)
  labels = jnp.arange(batch_size) % generator.num_classes

  def one_batch(_, i):
    z = latents(0x57a7, i * batch_size + jnp.arange(batch_size), latent_dim)
    _, new = one_batch_stats.apply(variables, z, labels, train=True, cond_scale=cond_scale,
                                   update_stats=False, mutable=['batch_stats'])
    return None, new['batch_stats']

  _, per_batch = jax.lax.scan(one_batch, None, jnp.arange(batches))
  return {**variables, 'batch_stats': jax.tree.map(lambda x: x.mean(axis=0), per_batch)}


def condition_scale(transition_steps: int, step: Any) -> Any:
  """Transitional conditioning (config.transition_steps): the label's weight at `step`, rising
  linearly from 0 to 1 over transition_steps; 1 when off."""
  if not transition_steps:
    return 1.0
  return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / transition_steps)


def build(model_cfg: ml_collections.ConfigDict, image_size: int, channels: int,
          num_classes: int, dtype: Any = jnp.float32) -> tuple[Generator, Discriminator]:
  """Generator and discriminator from the config's `model` section (configs/cgan.py).

  `dtype` is the compute dtype (precision.compute_dtype(config)); parameters stay float32.
  """
  if channels not in (1, 3):
    raise ValueError(f'config.data.channels={channels} must be 1 or 3.')
  if model_cfg.latent_dim < 1:
    raise ValueError(f'config.model.latent_dim={model_cfg.latent_dim} must be positive.')
  scale = 2 ** len(model_cfg.g_widths)
  if image_size % scale or image_size // scale < 1:
    raise ValueError(f'config.data.image_size={image_size} must be a positive multiple of '
                     f'{scale} (2 ** len(config.model.g_widths)).')
  if image_size % (2 ** len(model_cfg.d_widths)):
    raise ValueError(f'config.data.image_size={image_size} must be divisible by '
                     f'{2 ** len(model_cfg.d_widths)} (2 ** len(config.model.d_widths)).')
  if model_cfg.g_conditioning not in conditioning.GENERATOR_MODES:
    raise ValueError(f'config.model.g_conditioning={model_cfg.g_conditioning!r}: expected one '
                     f'of {conditioning.GENERATOR_MODES}.')
  if model_cfg.d_norm not in ('batch', 'none'):
    raise ValueError(f"config.model.d_norm={model_cfg.d_norm!r}: expected 'batch' or 'none'.")
  if model_cfg.spectral_norm not in ('none', 'd', 'gd'):
    raise ValueError(f"config.model.spectral_norm={model_cfg.spectral_norm!r}: expected 'none', "
                     "'d' or 'gd'.")
  common = dict(num_classes=num_classes, embed_dim=model_cfg.embed_dim,
                leaky_slope=model_cfg.leaky_slope, bn_momentum=model_cfg.bn_momentum,
                bn_epsilon=model_cfg.bn_epsilon, image_size=image_size,
                fast_layers=model_cfg.fast_layers, dtype=dtype)
  generator = Generator(channels=channels, base_depth=model_cfg.g_base_depth,
                        widths=tuple(model_cfg.g_widths), conditioning=model_cfg.g_conditioning,
                        spectral_norm=model_cfg.spectral_norm == 'gd', **common)
  discriminator = Discriminator(
      widths=tuple(model_cfg.d_widths), dropout=model_cfg.dropout,
      conditioning=conditioning.discriminator_parts(model_cfg.d_conditioning),
      norm=model_cfg.d_norm, spectral_norm=model_cfg.spectral_norm in ('d', 'gd'), **common)
  return generator, discriminator
