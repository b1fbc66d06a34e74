"""A compact conditional GAN for small data and small compute (config.model.name='compact_cgan').

Why a second architecture: on the 2-core CPU the GANForge nets (braingan/models/cdcgan.py) take
~1 s per step at 64 px, so a 20-minute budget is ~1,000 steps, too few to learn the classes.
This DCGAN-style pair is several times cheaper per step and carries the class (the recipe
search behind configs/cgan_conditioned.py):

Generator: z -> Dense -> 4x4xbase -> BatchNorm + ReLU -> [sub-pixel transposed conv 4x4/2 ->
  BatchNorm + ReLU] per width -> conv 3x3 -> tanh. BatchNorm normalises with batch statistics in
  training (layer_mode 'training'); with g_conditioning='cbn' each BatchNorm has a shared affine
  plus a per-class gain and bias offset (scaled by the transitional-conditioning factor).
Discriminator: [conv 4x4/2 -> LeakyReLU] per width, a minibatch-standard-deviation channel
  (StyleGAN) before the last conv, global sum pooling -> h; logit = Dense(h) [+ projection
  <embed(y), h>] and, with an auxiliary head, class logits = Dense(h) (AC-GAN). Optional
  spectral normalisation; no BatchNorm and no dropout, so real and fake can share a batch.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from braingan.models import cdcgan
from braingan.models import conditioning
from braingan.models import layers

GLOROT = conditioning.GLOROT


def minibatch_stddev(x: jax.Array, group: int) -> jax.Array:
  """One extra channel: the feature standard deviation within groups of `group` consecutive
  samples (averaged over features and positions), broadcast to every position."""
  b, h, w, _ = x.shape
  g = min(group, b)
  if b % g:
    raise ValueError(f'minibatch-std group {g} does not divide the batch {b}.')
  sd = jnp.sqrt(x.reshape(b // g, g, h, w, -1).astype(jnp.float32).var(axis=1) + 1e-8)
  sd = jnp.repeat(sd.mean(axis=(1, 2, 3)), g)[:, None, None, None]
  return jnp.concatenate([x, jnp.broadcast_to(sd, (b, h, w, 1)).astype(x.dtype)], axis=-1)


class Generator(nn.Module):
  image_size: int = 64
  channels: int = 1
  num_classes: int = 4
  base_depth: int = 128
  widths: Sequence[int] = (64, 32, 16, 8)
  conditioning: str = 'cbn'        # 'cbn' or 'none' (no label in G)
  bn_momentum: float = 0.9
  spectral_norm: bool = False
  keras_double_bn_update: bool = False   # GANForge's Keras quirk; not this model's
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, labels, train: bool = True, cond_scale: Any = 1.0,
               update_stats: bool = False):
    del update_stats
    base = self.image_size // 2 ** len(self.widths)
    def norm(name):
      if self.conditioning == 'cbn':
        return conditioning.ConditionalBatchNorm(self.num_classes, not train, self.bn_momentum,
                                                 1e-5, self.dtype, shared_affine=True,
                                                 name=name)
      return lambda x, labels, scale: nn.BatchNorm(
          use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
          dtype=self.dtype, param_dtype=jnp.float32, name=name)(x)

    x = nn.Dense(base * base * self.base_depth, kernel_init=GLOROT, dtype=self.dtype,
                 name='Dense_0')(z).reshape(z.shape[0], base, base, self.base_depth)
    x = nn.relu(norm('in_bn')(x, labels, cond_scale))
    for i, width in enumerate(self.widths):
      x = layers.SubPixelConvTranspose(width, (4, 4), (2, 2), kernel_init=GLOROT,
                                       dtype=self.dtype, name=f'up{i}')(x)
      x = nn.relu(norm(f'up{i}_bn')(x, labels, cond_scale))
    x = layers.Conv2D(self.channels, (3, 3), impl='shift_add', kernel_init=GLOROT,
                      dtype=self.dtype, name='to_image')(x)
    return jnp.tanh(x).astype(jnp.float32)


class Discriminator(nn.Module):
  image_size: int = 64
  num_classes: int = 4
  widths: Sequence[int] = (32, 64, 128, 256)
  conditioning: frozenset = frozenset({'projection', 'auxiliary'})
  leaky_slope: float = 0.2
  mbstd_group: int = 4             # 0: no minibatch-std channel
  spectral_norm: bool = False
  dtype: Any = jnp.float32
  has_batch_layers = False   # no BatchNorm, no dropout: real and fake can share one call ...

  @property
  def pair_block(self) -> int:   # ... in blocks of whole minibatch-std groups
    return max(self.mbstd_group, 1)

  @nn.compact
  def __call__(self, images, labels, train: bool = True, cond_scale: Any = 1.0,
               update_stats: bool = False):
    del train
    sn = lambda layer: cdcgan.maybe_spectral_norm(layer, self.spectral_norm,  # noqa: E731
                                                  update_stats)
    x = images.astype(self.dtype)
    for i, width in enumerate(self.widths):
      if self.mbstd_group and i == len(self.widths) - 1:
        x = minibatch_stddev(x, self.mbstd_group)
      impl = 'im2col' if x.shape[1] // 2 * x.shape[2] // 2 <= 16 else (
          'fast_input_grad' if x.shape[1] >= 32 else 'xla')
      x = sn(layers.Conv2D(width, (4, 4), (2, 2), impl=impl, kernel_init=GLOROT,
                           dtype=self.dtype, name=f'conv{i}'))(x)
      x = nn.leaky_relu(x, self.leaky_slope)
    h = jnp.sum(x, axis=(1, 2))                     # global sum pooling (SNGAN, BigGAN)
    return conditioning.discriminator_outputs(h, labels, self.conditioning, self.num_classes,
                                              cond_scale, sn, self.dtype)


def build(model_cfg: ml_collections.ConfigDict, image_size: int, channels: int,
          num_classes: int, dtype: Any = jnp.float32) -> tuple[Generator, Discriminator]:
  scale = 2 ** len(model_cfg.g_widths)
  if image_size % scale or image_size % 2 ** len(model_cfg.d_widths):
    raise ValueError(f'config.data.image_size={image_size} must be divisible by {scale} '
                     '(2 ** len(config.model.g_widths)) and 2 ** len(config.model.d_widths).')
  if model_cfg.g_conditioning not in ('cbn', 'none'):
    raise ValueError(f"config.model.g_conditioning={model_cfg.g_conditioning!r}: this model "
                     "takes 'cbn' or 'none'.")
  parts = conditioning.discriminator_parts(model_cfg.d_conditioning)
  if 'concat' in parts:
    raise ValueError("config.model.d_conditioning: 'concat' is GANForge's (model 'cdcgan').")
  if model_cfg.spectral_norm not in ('none', 'd'):
    raise ValueError(f"config.model.spectral_norm={model_cfg.spectral_norm!r}: 'none' or 'd'.")
  generator = Generator(image_size=image_size, channels=channels, num_classes=num_classes,
                        base_depth=model_cfg.g_base_depth, widths=tuple(model_cfg.g_widths),
                        conditioning=model_cfg.g_conditioning,
                        bn_momentum=model_cfg.bn_momentum, dtype=dtype)
  discriminator = Discriminator(image_size=image_size, num_classes=num_classes,
                                widths=tuple(model_cfg.d_widths), conditioning=parts,
                                leaky_slope=model_cfg.leaky_slope,
                                mbstd_group=model_cfg.mbstd_group,
                                spectral_norm=model_cfg.spectral_norm == 'd', dtype=dtype)
  return generator, discriminator
