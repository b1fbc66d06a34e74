"""Our classifier step against the tf.keras twin that `bench classifier` times (keras_resnet.py).

1. `resnet.KerasBatchNorm` computes what tf_keras's BatchNormalization computes on NHWC maps,
   including the moving variance, which Keras updates with the *unbiased* batch variance.
2. Same step: with the same weights and batch, one step of our jitted step (ResNet50 + the
   study's head, the first 15 Keras layers frozen, Keras's Adam) and Keras's `train_on_batch`
   give the same loss, BatchNorm moving statistics and (see test_adam_updates_match) updates.
   Dropout is 0 in both (the two frameworks draw different masks); 32 px keeps it fast (conv5
   maps are 1x1, so the moving-variance correction n / (n - 1) is 8 / 7 there and would show).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan.bench import keras_resnet
from braingan.models import pretrained, resnet
from braingan.train import classifier
from braingan.train.state import TrainState
from configs import classifier as classifier_config

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order
tf.config.set_visible_devices([], 'GPU')
import tf_keras  # pylint: disable=g-import-not-at-top,wrong-import-order

SIZE, BATCH, LR = 32, 8, 1e-3


@pytest.mark.parametrize('shape', [(4, 3, 5, 6), (2, 1, 1, 3)])
def test_keras_batchnorm_matches_tf_keras(shape):
  rng = np.random.default_rng(0)
  x = rng.normal(1.5, 3.0, shape).astype(np.float32)
  gamma, beta = rng.uniform(0.5, 2, shape[-1:]), rng.normal(0, 1, shape[-1:])
  mean, var = rng.normal(0, 1, shape[-1:]), rng.uniform(0.5, 2, shape[-1:])
  weights = [np.asarray(w, np.float32) for w in (gamma, beta, mean, var)]
  keras_bn = tf_keras.layers.BatchNormalization(momentum=0.9, epsilon=resnet.BN_EPSILON)
  keras_bn.build(shape)
  keras_bn.set_weights(weights)
  ours = resnet.KerasBatchNorm(use_running_average=False, momentum=0.9)
  variables = {'params': {'scale': weights[0], 'bias': weights[1]},
               'batch_stats': {'mean': weights[2], 'var': weights[3]}}
  y, updates = ours.apply(variables, x, mutable=['batch_stats'])
  y_keras = keras_bn(x, training=True).numpy()
  np.testing.assert_allclose(y, y_keras, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(updates['batch_stats']['mean'], keras_bn.moving_mean.numpy(),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(updates['batch_stats']['var'], keras_bn.moving_variance.numpy(),
                             rtol=1e-6)
  # Inference mode: normalises with the (just updated) moving statistics.
  y_inf = resnet.KerasBatchNorm(use_running_average=True).apply(
      {'params': variables['params'], 'batch_stats': updates['batch_stats']}, x)
  np.testing.assert_allclose(y_inf, keras_bn(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


def _keras_variables(keras_model, like, path):
  """Keras's current weights as our variable tree, through the HDF5 importer (same layer names,
  the head included: the twin names its Dense layers head_dense / head_logits)."""
  keras_model.save_weights(path)
  return pretrained.load(like, path, dont_load=())


@pytest.fixture(scope='module')
def one_step(tmp_path_factory):
  """(initial, ours after one step, Keras after one step, our loss, Keras's loss)."""
  weights_dir = tmp_path_factory.mktemp('keras_step')
  tf_keras.utils.set_random_seed(0)
  keras_model = keras_resnet.build(SIZE, dropout=0.0, learning_rate=LR)
  config = classifier_config.get_config()
  config.model.pretrained, config.model.dropout, config.data.image_size = 'none', 0.0, SIZE
  recipe = classifier.ClassifierRecipe(config, None)
  model = recipe.model
  initial = _keras_variables(keras_model, resnet.init_variables(model, (1, SIZE, SIZE, 1)),
                             str(weights_dir / 'initial.h5'))
  state = TrainState.create(params=initial['params'], batch_stats=initial['batch_stats'],
                            tx=classifier.make_optimizer(config, initial['params']), rng=0)
  step = jax.jit(recipe.train_step)

  rng = np.random.default_rng(1)
  images = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 1)).astype(np.float32)
  labels = rng.integers(0, 4, BATCH).astype(np.int32)
  state, metrics = step(state, {'image': images, 'label': labels},
                        {'learning_rate': jnp.float32(LR)})
  keras_images = np.asarray(resnet.caffe_preprocess(jnp.asarray(images)))
  keras_loss = float(keras_model.train_on_batch(keras_images, labels)[0])
  ours = jax.tree.map(np.asarray, {'params': state.params, 'batch_stats': state.batch_stats})
  after = _keras_variables(keras_model, initial, str(weights_dir / 'after_step.h5'))
  return (_leaves(initial), _leaves(ours), _leaves(after),
          float(metrics['loss']), keras_loss)


def _leaves(tree):
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _is_frozen(key):
  return any(f"['{layer}']" in key for layer in resnet.KERAS15)


def test_loss_and_moving_statistics_match(one_step):
  """Both depend only on the forward pass, which is well conditioned: tight tolerances."""
  start, ours, keras, ours_loss, keras_loss = one_step
  assert ours_loss == pytest.approx(keras_loss, rel=1e-4)
  stats = [k for k in keras if k.startswith("['batch_stats']") and not _is_frozen(k)]
  assert len(stats) == 2 * (53 - 3)    # mean and var of every trainable BatchNorm
  for key in stats:
    assert np.max(np.abs(keras[key] - start[key])) > 0, key
    np.testing.assert_allclose(ours[key], keras[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_frozen_layers_unchanged_in_both(one_step):
  start, ours, keras, _, _ = one_step
  frozen = [k for k in keras if _is_frozen(k)]
  assert len(frozen) == 5 * 2 + 3 * 4     # 5 convs (kernel, bias), 3 BNs (4 arrays)
  for key in frozen:
    np.testing.assert_array_equal(ours[key], start[key], err_msg=key)
    np.testing.assert_array_equal(keras[key], start[key], err_msg=key)


def test_adam_updates_match(one_step):
  """Keras's first Adam step is lr * g / (|g| + eps'), about lr * sign(g) where |g| >> eps'.

  The gradients of a from-scratch ResNet50 are ill-conditioned in float32: against a float64
  computation, both ours and Keras's are off by 1-20 % (max-norm) in conv4/conv5 kernels, so a
  few elements with tiny gradients get different update signs. What must agree: nearly every
  element's update, and each leaf's in bulk. Conv biases before a training-mode BatchNorm are
  left out: BatchNorm removes any shift, so their gradient is zero up to rounding on both sides.
  """
  start, ours, keras, _, _ = one_step
  agree = total = 0
  for key in keras:
    if key.startswith("['batch_stats']") or _is_frozen(key):
      continue
    if key.endswith("['bias']") and '_conv' in key:
      assert np.max(np.abs(ours[key] - start[key])) <= 1.01 * LR, key
      continue
    ours_update, keras_update = ours[key] - start[key], keras[key] - start[key]
    assert np.max(np.abs(keras_update)) > 0.5 * LR, key
    close = np.abs(ours_update - keras_update) <= 0.02 * LR
    assert close.mean() > 0.9, (key, close.mean())
    agree, total = agree + close.sum(), total + close.size
  assert total > 20_000_000 and agree / total > 0.995, agree / total
