"""The fast lowerings are the same maths as XLA's convolutions, forward and backward."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan.models import layers

jax.config.update('jax_default_matmul_precision', 'highest')


def _rand(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _ref_transpose(x, w, s):
  return jax.lax.conv_transpose(x, w, (s, s), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('kernel,stride,size', [(4, 2, 5), (6, 3, 4)])
@pytest.mark.parametrize('patch_matmul', [True, False])
def test_subpixel_matches_conv_transpose_forward_and_gradients(kernel, stride, size,
                                                              patch_matmul):
  x = _rand((2, size, size + 1, 3), 0)
  w = _rand((kernel, kernel, 3, 5), 1) * 0.3
  cot = _rand((2, size * stride, (size + 1) * stride, 5), 2)
  ref_out, ref_vjp = jax.vjp(lambda x, w: _ref_transpose(x, w, stride), x, w)
  out, vjp = jax.vjp(lambda x, w: layers.conv_transpose_subpixel(
      x, w, (stride, stride), patch_matmul=patch_matmul), x, w)
  assert out.shape == ref_out.shape == (2, size * stride, (size + 1) * stride, 5)
  np.testing.assert_allclose(out, ref_out, atol=1e-5, rtol=1e-5)
  for got, want in zip(vjp(cot), ref_vjp(cot)):   # d/dx and d/dkernel
    np.testing.assert_allclose(got, want, atol=1e-5 * float(jnp.abs(want).max()), rtol=1e-5)


def test_module_is_a_drop_in_for_flax_conv_transpose():
  x = _rand((2, 4, 4, 6), 3)
  plain = nn.ConvTranspose(7, (4, 4), (2, 2), padding='SAME')
  fast = layers.SubPixelConvTranspose(7, (4, 4), (2, 2), bias_init=nn.initializers.normal(1.0))
  variables = fast.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, plain.init(jax.random.key(0), x))
  np.testing.assert_allclose(fast.apply(variables, x), plain.apply(variables, x), atol=1e-5)
  g_fast = jax.grad(lambda v: jnp.sum(fast.apply(v, x) ** 2))(variables)
  g_plain = jax.grad(lambda v: jnp.sum(plain.apply(v, x) ** 2))(variables)
  for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_keras_kernel_conversion_matches_tf_conv2d_transpose():
  tf = pytest.importorskip('tensorflow')
  x = _rand((2, 5, 6, 3), 4)
  w = _rand((4, 4, 3, 5), 5)
  ours = layers.conv_transpose_subpixel(x, w, (2, 2))
  keras_w = layers.keras_kernel_from_flax(np.asarray(w))
  ref = tf.nn.conv2d_transpose(np.asarray(x), keras_w, output_shape=(2, 10, 12, 5),
                               strides=2, padding='SAME').numpy()
  np.testing.assert_allclose(ours, ref, atol=1e-4)
  np.testing.assert_array_equal(layers.flax_kernel_from_keras(keras_w), np.asarray(w))


@pytest.mark.parametrize('size,kernel,stride', [(9, 5, 2), (4, 5, 2), (6, 5, 1)])
def test_im2col_and_shift_add_match_xla_conv(size, kernel, stride):
  x = _rand((2, size, size + 2, 3), 6)
  w = _rand((kernel, kernel, 3, 4), 7)

  def ref(x, w):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  impls = [lambda x, w: layers.conv2d_im2col(x, w, (stride, stride))]
  if stride == 1:
    impls.append(layers.conv2d_shift_add)
  want, want_vjp = jax.vjp(ref, x, w)
  cot = _rand(want.shape, 8)
  for impl in impls:
    got, got_vjp = jax.vjp(impl, x, w)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    for a, b in zip(got_vjp(cot), want_vjp(cot)):
      np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('size,kernel,stride', [(8, 5, 2), (12, 4, 2), (9, 5, 3), (6, 3, 2)])
def test_space_to_depth_and_fast_input_grad_match_xla_conv(size, kernel, stride):
  """Forward and both gradients equal XLA's strided 'SAME' convolution (to 1e-5)."""
  x = _rand((2, size, 2 * size if size % 2 == 0 else size, 3), 9)
  w = _rand((kernel, kernel, 3, 4), 10)

  def ref(x, w):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  want, want_vjp = jax.vjp(ref, x, w)
  cot = _rand(want.shape, 11)
  for impl in (lambda x, w: layers.conv2d_space_to_depth(x, w, (stride, stride)),
               lambda x, w: layers.conv2d_fast_input_grad(x, w, (stride, stride))):
    got, got_vjp = jax.vjp(impl, x, w)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    for a, b in zip(got_vjp(cot), want_vjp(cot)):
      np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(b).max()), rtol=1e-5)
  # Inside jit and as a module, too.
  module = layers.Conv2D(4, (kernel, kernel), (stride, stride), impl='fast_input_grad')
  variables = module.init(jax.random.key(0), x)
  plain = layers.Conv2D(4, (kernel, kernel), (stride, stride), impl='xla')
  g_fast = jax.jit(jax.grad(lambda v, x: jnp.sum(module.apply(v, x) ** 2), argnums=(0, 1)))
  g_plain = jax.jit(jax.grad(lambda v, x: jnp.sum(plain.apply(v, x) ** 2), argnums=(0, 1)))
  for a, b in zip(jax.tree.leaves(g_fast(variables, x)), jax.tree.leaves(g_plain(variables, x))):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_space_to_depth_needs_divisible_sizes():
  with pytest.raises(ValueError, match='divisible by the strides'):
    layers.conv2d_space_to_depth(jnp.zeros((1, 5, 4, 1)), jnp.zeros((5, 5, 1, 1)), (2, 2))


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match='kernel % stride'):
    layers.conv_transpose_subpixel(jnp.zeros((1, 2, 2, 1)), jnp.zeros((3, 3, 1, 1)), (2, 2))
  with pytest.raises(ValueError, match='impl'):
    layers.Conv2D(2, impl='fft').init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
