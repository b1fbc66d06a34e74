"""Our GAN step against the Keras original (GANForge's train_step, braingan/bench/keras_gan.py).

1. How GANForge really trained: it calls its networks without `training=True` inside
   `model.fit`, and tf_keras then runs BatchNorm on its moving statistics (never updated) and
   skips Dropout. `configs/cgan.py`'s default `model.layer_mode='inference'` rests on this.
2. Same numerics: with the same weights, batch and latents, one or two steps of our jitted step
   and of the Keras twin give the same losses and the same updated weights, in both layer modes.
"""
import jax
import numpy as np
import pytest

from braingan.bench import keras_gan
from braingan.models.layers import keras_kernel_from_flax
from braingan.train import gan
from tests.test_train_gan import _batch, tiny_config, trainer_for

tf = keras_gan._tf()  # pylint: disable=protected-access
import tf_keras as keras  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_layers_called_without_training_run_in_inference_mode_under_fit():
  inputs = keras.Input((4,))
  outputs = keras.layers.Dropout(0.5)(keras.layers.BatchNormalization()(inputs))
  model = keras.Model(inputs, outputs)
  x = tf.constant(np.random.default_rng(0).uniform(5, 15, (8, 4)).astype(np.float32))

  class GANForgeLike(keras.Model):   # the call convention of GANForge's train_step
    def __init__(self, net):
      super().__init__()
      self.net = net

    def train_step(self, data):
      y = self.net(data)
      return {'max_abs_diff': tf.reduce_max(tf.abs(y - self.net(data, training=False)))}

  wrapper = GANForgeLike(model)
  wrapper.compile(optimizer='adam')
  history = wrapper.fit(x, batch_size=8, epochs=1, verbose=0).history
  assert history['max_abs_diff'][0] == pytest.approx(0.0, abs=1e-6)   # inference mode
  bn = model.layers[1]
  np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(4))  # never updated
  np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(4))
  # The same call with training=True normalises with batch statistics instead.
  assert float(tf.reduce_max(tf.abs(model(x, training=True) - model(x)))) > 1.0


def jax_to_np(tree):
  return jax.tree.map(np.asarray, tree)


def _by_type(model, cls):
  return [layer for layer in model.layers if isinstance(layer, cls)]


def _copy_weights(g_vars, d_vars, k_gen, k_disc, latent_dim):
  """Flax variables -> the Keras twin (kernel layouts per braingan.models.layers)."""
  L = keras.layers

  def bn(layer, params, stats):
    layer.set_weights([params['scale'], params['bias'], stats['mean'], stats['var']])

  def label_plane(model, params):
    _by_type(model, L.Embedding)[0].set_weights([params['Embed_0']['embedding']])
    shape = tuple(params['Dense_0']['kernel'].shape)
    dense = [d for d in _by_type(model, L.Dense) if tuple(d.kernel.shape) == shape]
    dense[0].set_weights([params['Dense_0']['kernel'], params['Dense_0']['bias']])

  gp, gs = g_vars['params'], g_vars['batch_stats']
  label_plane(k_gen, gp['LabelPlane_0'])
  z_dense = [d for d in _by_type(k_gen, L.Dense) if d.kernel.shape[0] == latent_dim]
  z_dense[0].set_weights([gp['Dense_0']['kernel'], gp['Dense_0']['bias']])
  for i, layer in enumerate(_by_type(k_gen, L.Conv2DTranspose)):
    layer.set_weights([keras_kernel_from_flax(gp[f'up{i}']['kernel']), gp[f'up{i}']['bias']])
  for i, layer in enumerate(_by_type(k_gen, L.BatchNormalization)):
    bn(layer, gp[f'up{i}_bn'], gs[f'up{i}_bn'])
  _by_type(k_gen, L.Conv2D)[-1].set_weights([gp['to_image']['kernel'], gp['to_image']['bias']])

  dp, ds = d_vars['params'], d_vars['batch_stats']
  label_plane(k_disc, dp['LabelPlane_0'])
  _by_type(k_disc, L.Dense)[-1].set_weights([dp['Dense_0']['kernel'], dp['Dense_0']['bias']])
  convs = [c for c in _by_type(k_disc, L.Conv2D) if not isinstance(c, L.Conv2DTranspose)]
  for i, layer in enumerate(convs):
    layer.set_weights([dp[f'conv{i}']['kernel'], dp[f'conv{i}']['bias']])
  for i, layer in enumerate(_by_type(k_disc, L.BatchNormalization)):
    bn(layer, dp[f'conv{i}_bn'], ds[f'conv{i}_bn'])


@pytest.mark.parametrize('layer_mode', ['inference', 'training'])
def test_step_matches_the_keras_original(layer_mode):
  # Dropout masks cannot match across frameworks (a no-op in inference mode anyway).
  config = tiny_config(**{'model.layer_mode': layer_mode, 'model.dropout': 0.0,
                          'num_devices': 1})
  trainer = trainer_for(config)
  state = trainer.initial_state()
  m = config.model
  tf.keras.utils.set_random_seed(0)
  k_gen, k_disc = keras_gan.build(config.data.image_size, 1, m.latent_dim, embed_dim=m.embed_dim,
                                  g_widths=m.g_widths, d_widths=m.d_widths,
                                  g_base_depth=m.g_base_depth, dropout=0.0)
  _copy_weights(jax_to_np(state.generator.variables),
                jax_to_np(state.discriminator.variables), k_gen, k_disc, m.latent_dim)
  k_step = keras_gan.make_train_step(k_gen, k_disc, m.latent_dim, layer_mode=layer_mode)

  for i in range(2):
    batch = _batch(config, 8, seed=i)
    z, _ = gan.step_randomness(state.generator, 8, m.latent_dim)
    k_d, k_g = k_step(tf.constant(batch['image']),
                      tf.constant(batch['label'][:, None].astype(np.float32)),
                      tf.constant(np.asarray(z)))
    state, metrics = trainer.step(state, batch)
    assert float(metrics['d_loss']) == pytest.approx(float(k_d), rel=1e-4, abs=1e-5), i
    assert float(metrics['g_loss']) == pytest.approx(float(k_g), rel=1e-4, abs=1e-5), i

  # The updated weights agree too (checked on the kernels that every update moves).
  gp = jax_to_np(state.generator.params)
  dp = jax_to_np(state.discriminator.params)
  for i, layer in enumerate(_by_type(k_gen, keras.layers.Conv2DTranspose)):
    np.testing.assert_allclose(layer.get_weights()[0],
                               keras_kernel_from_flax(gp[f'up{i}']['kernel']), atol=5e-6, rtol=1e-4)
  for i, layer in enumerate(_by_type(k_disc, keras.layers.Conv2D)):
    np.testing.assert_allclose(layer.get_weights()[0], dp[f'conv{i}']['kernel'], atol=5e-6,
                               rtol=1e-4)
  if layer_mode == 'training':   # running averages moved the same way (Keras: twice per step)
    gs = jax_to_np(state.generator.batch_stats)
    for i, layer in enumerate(_by_type(k_gen, keras.layers.BatchNormalization)):
      np.testing.assert_allclose(layer.moving_mean.numpy(), gs[f'up{i}_bn']['mean'], atol=1e-5)
