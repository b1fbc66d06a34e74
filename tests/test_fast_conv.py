"""Patch-matmul convolutions are the same maths as XLA's convolutions, forward and backward."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan.models import fast_conv
from braingan.models import layers

jax.config.update('jax_default_matmul_precision', 'highest')


def _rand(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _assert_close(got, want):
  scale = float(jnp.abs(want).max())
  np.testing.assert_allclose(got, want, atol=1e-5 * scale, rtol=1e-5)


@pytest.mark.parametrize('kernel_hw', [(2, 2), (3, 2), (1, 1), (5, 5)])
def test_conv_valid_im2col_matches_lax_conv(kernel_hw):
  x = _rand((2, 7, 6, 3), 0)
  w = _rand(kernel_hw + (3, 4), 1)

  def ref(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), 'VALID',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  want, want_vjp = jax.vjp(ref, x, w)
  got, got_vjp = jax.vjp(fast_conv.conv_valid_im2col, x, w)
  assert got.shape == want.shape == (2, 8 - kernel_hw[0], 7 - kernel_hw[1], 4)
  _assert_close(got, want)
  cot = _rand(want.shape, 2)
  for g, r in zip(got_vjp(cot), want_vjp(cot)):   # d/dx and d/dkernel
    assert g.shape == r.shape
    _assert_close(g, r)


def test_patches_layout_matches_hwio_kernel_order():
  x = _rand((1, 3, 3, 2), 3)
  p = fast_conv.patches_valid(x, (2, 2))
  assert p.shape == (1, 2, 2, 8)
  # Window at output (1, 0): rows 1..2, cols 0..1, flattened as (kh, kw, C).
  np.testing.assert_array_equal(p[0, 1, 0], np.asarray(x[0, 1:3, 0:2, :]).reshape(-1))


def test_subpixel_layer_with_im2col_matches_flax_conv_transpose():
  # The generator's layer (4x4 kernel, stride 2) against flax's own ConvTranspose, same
  # weights: output and gradients wrt input, kernel and bias.
  x = _rand((2, 5, 4, 6), 4)
  plain = nn.ConvTranspose(7, (4, 4), (2, 2), padding='SAME')
  fast = layers.SubPixelConvTranspose(7, (4, 4), (2, 2), bias_init=nn.initializers.normal(1.0))
  variables = fast.init(jax.random.key(0), x)
  cot = _rand((2, 10, 8, 7), 5)

  def loss(module):
    return lambda v, x: jnp.sum(module.apply(v, x) * cot)

  _assert_close(fast.apply(variables, x), plain.apply(variables, x))
  got = jax.grad(loss(fast), argnums=(0, 1))(variables, x)
  want = jax.grad(loss(plain), argnums=(0, 1))(variables, x)
  for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    _assert_close(g, r)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match='smaller than'):
    fast_conv.conv_valid_im2col(jnp.zeros((1, 2, 2, 1)), jnp.zeros((3, 3, 1, 1)))
  with pytest.raises(ValueError, match='channels'):
    fast_conv.conv_valid_im2col(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 1, 1)))
