"""Differentiable image augmentation in JAX: DiffAugment/ADA for the GAN, classic for classifiers.

Why in the jitted step and not in tf.data: a GAN's discriminator must see the *same kind* of
augmentation on real and generated images, and the generator's gradient has to flow through the
augmentation of its images (Zhao et al. 2020, DiffAugment; Karras et al. 2020, ADA), so every
op here is differentiable with respect to the images. The classifier's label-preserving
augmentation uses the same ops (on device, no host round trip).

Images are NHWC in [-1, 1]. Geometric ops fill uncovered pixels with -1, the black MRI
background. There are no colour ops (the images are grayscale), and the only flip is
left-right: a brain is roughly left-right symmetric, while an up-down flip is no anatomy.

Each op of a policy is applied to each image independently with probability `p` (DiffAugment:
p = 1; ADA adapts p). The same key on two batches of one size draws the same parameters, so a
real/fake pair can share its transforms when asked.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

FILL = -1.0


def _uniform(key, n, low, high):
  return jax.random.uniform(key, (n,), jnp.float32, low, high)


def _shift_one(image, dy, dx, margin):
  h, w, c = image.shape
  padded = jnp.pad(image, ((margin, margin), (margin, margin), (0, 0)), constant_values=FILL)
  return jax.lax.dynamic_slice(padded, (margin - dy, margin - dx, 0), (h, w, c))


def translation(x, key, ratio: float = 0.125):
  """Integer shifts of up to ratio * size pixels per axis (DiffAugment's 1/8)."""
  n, h, w, _ = x.shape
  margin = max(1, int(round(max(h, w) * ratio)))
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (n,), -margin, margin + 1)
  dx = jax.random.randint(kx, (n,), -margin, margin + 1)
  return jax.vmap(lambda im, a, b: _shift_one(im, a, b, margin))(x, dy, dx)


def cutout(x, key, ratio: float = 0.5):
  """A square hole of ratio * size (DiffAugment's 1/2) at a random centre, filled with -1."""
  n, h, w, _ = x.shape
  ky, kx = jax.random.split(key)
  cy = _uniform(ky, n, 0, h)[:, None, None]
  cx = _uniform(kx, n, 0, w)[:, None, None]
  rows = jnp.arange(h, dtype=jnp.float32)[None, :, None]
  cols = jnp.arange(w, dtype=jnp.float32)[None, None, :]
  hole = (jnp.abs(rows - cy) < h * ratio / 2) & (jnp.abs(cols - cx) < w * ratio / 2)
  return jnp.where(hole[..., None], jnp.asarray(FILL, x.dtype), x)


def brightness(x, key, amount: float = 0.5):
  """x + U(-amount, amount) per image (DiffAugment: 0.5 on [-1, 1] images)."""
  return x + _uniform(key, x.shape[0], -amount, amount)[:, None, None, None].astype(x.dtype)


def contrast(x, key, low: float = 0.5, high: float = 1.5):
  """(x - mean) * U(low, high) + mean per image (DiffAugment: 0.5..1.5)."""
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  factor = _uniform(key, x.shape[0], low, high)[:, None, None, None].astype(x.dtype)
  return (x - mean) * factor + mean


def flip(x, key):
  """Left-right flip of every image (the per-image probability does the choosing)."""
  del key
  return x[:, :, ::-1, :]


def _resample(image, matrix):
  """image [H, W, C] sampled bilinearly at matrix @ (output coords - centre) + centre."""
  h, w, c = image.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing='ij')
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  src_y = matrix[0, 0] * (ys - cy) + matrix[0, 1] * (xs - cx) + cy
  src_x = matrix[1, 0] * (ys - cy) + matrix[1, 1] * (xs - cx) + cx
  channels = [jax.scipy.ndimage.map_coordinates(image[..., k], [src_y, src_x], order=1,
                                                mode='constant', cval=FILL) for k in range(c)]
  return jnp.stack(channels, axis=-1)


def affine(x, key, max_degrees: float = 10.0, scale_range: tuple[float, float] = (0.9, 1.1)):
  """Rotation by U(-max_degrees, max_degrees) and zoom by U(*scale_range), bilinear."""
  n = x.shape[0]
  ka, ks = jax.random.split(key)
  angle = _uniform(ka, n, -max_degrees, max_degrees) * (math.pi / 180.0)
  zoom = _uniform(ks, n, *scale_range)
  cos, sin = jnp.cos(angle) / zoom, jnp.sin(angle) / zoom   # output -> input: inverse map
  matrix = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
  return jax.vmap(_resample)(x, matrix).astype(x.dtype)


# DiffAugment's ops for the GAN (config.diffaug.policy) ...
DIFFAUG_OPS: dict[str, Callable[..., jax.Array]] = {
    'translation': translation, 'cutout': cutout, 'brightness': brightness,
    'contrast': contrast, 'flip': flip,
}
# ... and the classifier's label-preserving augmentation (config.data.augment).
CLASSIC_OPS: dict[str, Callable[..., jax.Array]] = {
    'flip': flip, 'affine': affine,
    'brightness': lambda x, key: brightness(x, key, 0.1),
    'contrast': lambda x, key: contrast(x, key, 0.9, 1.1),
}


def parse_policy(policy: str, field: str = 'config.diffaug.policy') -> tuple[str, ...]:
  names = tuple(p.strip() for p in policy.split(',') if p.strip())
  unknown = [n for n in names if n not in DIFFAUG_OPS]
  if unknown:
    raise ValueError(f'{field}={policy!r}: unknown op(s) {unknown}; expected a comma list of '
                     f'{sorted(DIFFAUG_OPS)}.')
  return names


def augment(x: jax.Array, key: jax.Array, ops: Sequence[str], p: Any = 1.0,
            table: dict[str, Callable[..., jax.Array]] = DIFFAUG_OPS) -> jax.Array:
  """Applies each op of `ops` in order, to each image with probability `p` (p = 0: identity)."""
  n = x.shape[0]
  for name, op_key in zip(ops, jax.random.split(key, max(len(ops), 1))):
    k_apply, k_op = jax.random.split(op_key)
    chosen = jax.random.uniform(k_apply, (n,)) < p
    x = jnp.where(chosen[:, None, None, None], table[name](x, k_op), x)
  return x


def classic(x: jax.Array, key: jax.Array) -> jax.Array:
  """The classifier's augmentation: flip (p 0.5), rotation/zoom, brightness, contrast."""
  k_flip, k_rest = jax.random.split(key)
  x = augment(x, k_flip, ('flip',), 0.5, CLASSIC_OPS)
  return jnp.clip(augment(x, k_rest, ('affine', 'brightness', 'contrast'), 1.0, CLASSIC_OPS),
                  -1.0, 1.0)


def ada_update(p: jax.Array, real_logits: jax.Array, target: float, images_to_move: float
               ) -> jax.Array:
  """ADA's controller (Karras et al. 2020): raise p while E[sign D(real)] > target, else lower.

  D's overconfidence on reals, r = E[sign D(x)], is the overfitting signal; p moves by
  batch / images_to_move per step in the direction of sign(r - target), within [0, 1].
  """
  r = jnp.mean(jnp.sign(real_logits))
  step = real_logits.shape[0] / images_to_move
  return jnp.clip(p + jnp.sign(r - target) * step, 0.0, 1.0)
