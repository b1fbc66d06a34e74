"""Mixed precision: `--config.dtype=bfloat16` computes in bf16, keeps everything else float32.

Why this split: bf16 halves activation memory and runs matmuls/convolutions on the fast units
of GPUs/TPUs, but it has only 8 mantissa bits. Accumulating small updates into bf16 weights
loses them (w + 1e-4 * g == w for most w), so parameters, optimizer state (Adam moments) and
the update stay float32. BatchNorm statistics (mean/variance over a batch, running averages)
and losses are reductions, where bf16 rounding accumulates, so they are float32 too. bf16 has
float32's exponent range, so unlike float16 it needs no loss scaling; float16 is refused.

The policy in a Flax (Linen) module:

  class Net(nn.Module):
    dtype: Any = jnp.float32              # the compute dtype, from precision.compute_dtype(config)

    @nn.compact
    def __call__(self, x, train):
      x = x.astype(self.dtype)                              # or precision.cast_floating(batch)
      x = nn.Conv(32, (3, 3), **precision.layer_kwargs(self.dtype))(x)
      x = nn.BatchNorm(use_running_average=not train, **precision.layer_kwargs(self.dtype))(x)
      ...
      return nn.Dense(4, **precision.layer_kwargs(self.dtype))(x).astype(jnp.float32)

  * `dtype=compute, param_dtype=float32` on every layer: weights are stored float32 and cast to
    bf16 inside the layer; their gradients come back float32 (the cast's transpose).
  * Flax's BatchNorm with dtype=bf16 still computes mean/var in float32 and keeps
    `batch_stats` float32 (its `force_float32_reductions=True` default); only its output is bf16.
  * Cast logits / discriminator outputs to float32 before the loss (`to_float32`).
  * Custom layers that call lax directly must cast their own kernel: `w.astype(x.dtype)`.

With dtype=float32 all of this is the identity, so the fp32 path is unchanged.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

SUPPORTED = ('float32', 'bfloat16')
PARAM_DTYPE = jnp.float32


def compute_dtype(config: Any = None, field: str = 'config.dtype') -> jnp.dtype:
  """The compute dtype named by `config.dtype` (a config, a string, or None = float32).

  Raises ValueError naming `field` for anything but 'float32' / 'bfloat16'.
  """
  if config is None:
    name = 'float32'
  elif isinstance(config, str):
    name = config
  elif isinstance(config, (np.dtype, type)) and not hasattr(config, 'get'):
    name = np.dtype(config).name
  else:
    name = config.get('dtype', 'float32') if hasattr(config, 'get') else getattr(
        config, 'dtype', 'float32')
  name = str(name or 'float32')
  if name in ('fp32', 'f32'):
    name = 'float32'
  if name in ('bf16',):
    name = 'bfloat16'
  if name not in SUPPORTED:
    hint = (' float16 would need loss scaling; use bfloat16.' if 'float16' in name or
            name in ('fp16', 'f16', 'half') else '')
    raise ValueError(f'{field}={name!r} is not supported; use one of {SUPPORTED}.{hint}')
  return jnp.dtype(name)


def layer_kwargs(dtype: Any) -> dict[str, Any]:
  """Keyword arguments for flax.linen Conv/Dense/BatchNorm/ConvTranspose under the policy."""
  return {'dtype': jnp.dtype(dtype), 'param_dtype': PARAM_DTYPE}


def _is_floating(x: Any) -> bool:
  return hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.floating)


def cast_floating(tree: Any, dtype: Any) -> Any:
  """Casts the floating leaves of `tree` (e.g. a batch's images) to `dtype`; labels, masks and
  keys are left alone. Use on model inputs, never on params or optimizer state."""
  dtype = jnp.dtype(dtype)
  return jax.tree.map(lambda x: x.astype(dtype) if _is_floating(x) and x.dtype != dtype else x,
                      tree)


def to_float32(tree: Any) -> Any:
  """Floating leaves -> float32: model outputs before a loss, metrics before logging."""
  return cast_floating(tree, jnp.float32)


def float_dtypes(tree: Any) -> dict[str, str]:
  """{'path/to/leaf': dtype name} for every floating leaf (for tests and error messages)."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    if _is_floating(leaf):
      out[jax.tree_util.keystr(path)] = jnp.dtype(leaf.dtype).name
  return out
