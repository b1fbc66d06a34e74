"""Shapes, presets and the equivalence of the fast and plain models."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan.models import cdcgan
from configs import cgan


def _tiny(cfg):
  cfg.g_base_depth = 8
  cfg.g_widths = (8, 8, 4, 4)
  cfg.d_widths = (4, 4, 8, 8, 8)
  cfg.latent_dim = 16
  return cfg


@pytest.mark.parametrize('size', [64, 128, 256])
@pytest.mark.parametrize('channels', [1, 3])
def test_shapes_for_sizes_and_channels(size, channels):
  generator, discriminator = cdcgan.build(_tiny(cgan.model_config()), size, channels, 4)
  z = jnp.zeros((2, 16))
  labels = jnp.array([0, 3])
  g_shapes = jax.eval_shape(lambda: generator.init_with_output(
      jax.random.key(0), z, labels, train=False))
  images = g_shapes[0]
  assert images.shape == (2, size, size, channels)
  d_out = jax.eval_shape(lambda: discriminator.init_with_output(
      jax.random.key(0), jnp.zeros((2, size, size, channels)), labels, train=False))[0]
  assert d_out[0].shape == (2,) and d_out[1] is None   # (logits, no auxiliary head)
  # Base grid is size / 16: the generator's first Dense has (size/16)^2 * base_depth outputs.
  assert g_shapes[1]['params']['Dense_0']['kernel'].shape == (16, (size // 16) ** 2 * 8)


def test_default_preset_is_ganforge():
  generator, discriminator = cdcgan.build(cgan.model_config(), 128, 1, 4)
  labels = jnp.zeros((2,), jnp.int32)
  g = jax.eval_shape(lambda: generator.init(jax.random.key(0), jnp.zeros((2, 256)), labels))
  d = jax.eval_shape(lambda: discriminator.init(
      jax.random.key(0), jnp.zeros((2, 128, 128, 1)), labels))
  gp, dp = g['params'], d['params']
  assert gp['Dense_0']['kernel'].shape == (256, 8 * 8 * 256)
  assert gp['LabelPlane_0']['Embed_0']['embedding'].shape == (4, 50)
  assert gp['LabelPlane_0']['Dense_0']['kernel'].shape == (50, 64)
  assert [gp[f'up{i}']['kernel'].shape for i in range(4)] == [
      (4, 4, 257, 256), (4, 4, 256, 128), (4, 4, 128, 64), (4, 4, 64, 64)]
  assert gp['to_image']['kernel'].shape == (5, 5, 64, 1)
  assert dp['LabelPlane_0']['Dense_0']['kernel'].shape == (50, 128 * 128)
  assert [dp[f'conv{i}']['kernel'].shape[2:] for i in range(5)] == [
      (2, 32), (32, 64), (64, 128), (128, 256), (256, 256)]
  assert dp['Dense_0']['kernel'].shape == (4 * 4 * 256, 1)
  n_params = sum(x.size for x in jax.tree.leaves(gp)) + sum(x.size for x in jax.tree.leaves(dp))
  assert n_params > 5_000_000


def test_fast_and_plain_models_agree():
  """Same parameters -> same images, logits and gradients with and without fast layers."""
  jax.config.update('jax_default_matmul_precision', 'highest')
  try:
    fast_g, fast_d = cdcgan.build(_tiny(cgan.model_config()), 32, 1, 4)
    plain_cfg = _tiny(cgan.model_config())
    plain_cfg.fast_layers = False
    plain_g, plain_d = cdcgan.build(plain_cfg, 32, 1, 4)
    z = jax.random.normal(jax.random.key(1), (4, 16))
    labels = jnp.array([0, 1, 2, 3])
    gv = fast_g.init(jax.random.key(2), z, labels)
    plain_gv = plain_g.init(jax.random.key(2), z, labels)
    # Same names, shapes and initial values: checkpoints are interchangeable.
    assert jax.tree.structure(plain_gv) == jax.tree.structure(gv)
    for a, b in zip(jax.tree.leaves(plain_gv), jax.tree.leaves(gv)):
      np.testing.assert_array_equal(a, b)

    def g_loss(v, g):
      out, _ = g.apply(v, z, labels, train=True, mutable=['batch_stats'])
      return jnp.sum(out ** 2), out

    # Jitted: op by op, the plain model's gradient took over a minute on 2 cores.
    grad_of = lambda g: jax.jit(jax.value_and_grad(lambda v: g_loss(v, g), has_aux=True))  # noqa: E731
    (_, out_f), grad_f = grad_of(fast_g)(gv)
    (_, out_p), grad_p = grad_of(plain_g)(plain_gv)
    np.testing.assert_allclose(out_f, out_p, atol=1e-5)
    # Float error scales with the model's gradients, not a leaf's own: the bias of a conv that
    # BatchNorm follows has a true gradient of 0, so both sides hold rounding noise (~1e-4
    # against gradients of ~400 on an AMD EPYC), which a per-leaf tolerance failed on.
    scale = max(float(jnp.abs(b).max()) for b in jax.tree.leaves(grad_p))
    for a, b in zip(jax.tree.leaves(grad_f), jax.tree.leaves(grad_p)):
      np.testing.assert_allclose(a, b, atol=1e-5 * scale, rtol=1e-4)

    dv = fast_d.init(jax.random.key(3), out_f, labels)
    np.testing.assert_allclose(fast_d.apply(dv, out_f, labels, train=False)[0],
                               plain_d.apply(dv, out_f, labels, train=False)[0], atol=1e-5)
  finally:
    jax.config.update('jax_default_matmul_precision', None)


def test_bad_config_names_the_field():
  with pytest.raises(ValueError, match='config.data.image_size=100'):
    cdcgan.build(cgan.model_config(), 100, 1, 4)
  with pytest.raises(ValueError, match='config.data.channels=2'):
    cdcgan.build(cgan.model_config(), 64, 2, 4)
