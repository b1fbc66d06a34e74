"""Keras's Adam (braingan.train.optim) against tf_keras's own, step by step."""
import jax.numpy as jnp
import numpy as np
import optax

from braingan.train import optim


def test_keras_adam_matches_tf_keras_adam_including_tiny_gradients():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(64,)).astype(np.float32)
  # Gradients spanning 1e-9 .. 1: where optax.adam and Keras disagree most is |g| ~ eps.
  grads = [(rng.normal(size=(64,)) * 10.0 ** rng.uniform(-9, 0, 64)).astype(np.float32)
           for _ in range(5)]
  var = tf.Variable(w0)
  keras_opt = keras.optimizers.Adam(2e-4, beta_1=0.5)
  tx = optim.scale_by_keras_adam(b1=0.5)
  params, state = jnp.asarray(w0), tx.init(jnp.asarray(w0))
  plain = optax.adam(2e-4, b1=0.5, eps=1e-7)
  plain_params, plain_state = jnp.asarray(w0), plain.init(jnp.asarray(w0))
  for g in grads:
    keras_opt.apply_gradients([(tf.constant(g), var)])
    updates, state = tx.update(jnp.asarray(g), state, params)
    params = optax.apply_updates(params, optax.tree.scale(-2e-4, updates))  # as TrainState does
    plain_updates, plain_state = plain.update(jnp.asarray(g), plain_state, plain_params)
    plain_params = optax.apply_updates(plain_params, plain_updates)
    np.testing.assert_allclose(np.asarray(params), var.numpy(), atol=1e-7, rtol=0)
  # optax's own Adam is measurably different on the same gradients (why optim.py exists).
  assert np.abs(np.asarray(plain_params) - var.numpy()).max() > 1e-5
