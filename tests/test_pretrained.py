"""The Keras-HDF5 importer, proven by parity against tf_keras's own ResNet50.

tf_keras.applications.ResNet50(weights=None) gets random weights *and* random BatchNorm moving
statistics (otherwise BN in inference mode is close to the identity and a wrong mapping of
mean/variance would go unnoticed), is saved with `save_weights('x.h5')` (the legacy HDF5 layout of
Keras's downloadable notop file), imported into the Flax model, and both are run on the same batch.
"""
import os
import shutil

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan.models import pretrained, resnet

SIZE = 64


@pytest.fixture(scope='module')
def keras_resnet(tmp_path_factory):
  """(keras_model, weights_path): built once per session, random weights and BN statistics."""
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')
  import tf_keras
  tf_keras.utils.set_random_seed(0)
  model = tf_keras.applications.ResNet50(weights=None, include_top=False,
                                         input_shape=(SIZE, SIZE, 3))
  rng = np.random.default_rng(0)
  calib = rng.normal(0, 60, size=(8, SIZE, SIZE, 3)).astype(np.float32)
  # Calibrate BN moving statistics to the real activation scale (momentum 0 -> one batch sets
  # them) so outputs stay O(1) through 53 layers, then perturb everything randomly.
  bns = [l for l in model.layers if isinstance(l, tf_keras.layers.BatchNormalization)]
  for layer in bns:
    layer.momentum = 0.0
  model(calib, training=True)
  for layer in model.layers:
    weights = layer.get_weights()
    if not weights:
      continue
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      gamma, beta, mean, var = weights
      gamma = rng.uniform(0.5, 1.0, gamma.shape)
      beta = rng.normal(0, 0.1, beta.shape)
      mean = mean + rng.normal(0, 0.2, mean.shape) * np.sqrt(var)
      var = var * rng.uniform(0.7, 1.4, var.shape)
      weights = [gamma, beta, mean, var]
    else:
      kernel, bias = weights
      weights = [kernel, rng.normal(0, 0.05, bias.shape)]
    layer.set_weights([np.asarray(w, np.float32) for w in weights])
  path = str(tmp_path_factory.mktemp('keras') / 'resnet50_random_notop.h5')
  model.save_weights(path)
  return model, path


@pytest.fixture(scope='module')
def flax_resnet50():
  model = resnet.ResNetClassifier(preprocess='none')
  return model, resnet.init_variables(model, (1, SIZE, SIZE, 3))


def test_h5_layout_matches_keras_notop_file(keras_resnet):
  _, path = keras_resnet
  with h5py.File(path, 'r') as f:
    names = pretrained._decode(f.attrs['layer_names'])
    assert names[:3] == ['input_1', 'conv1_pad', 'conv1_conv']
    assert pretrained._decode(f['conv1_conv'].attrs['weight_names']) == [
        'conv1_conv/kernel:0', 'conv1_conv/bias:0']
    assert pretrained._decode(f['conv1_bn'].attrs['weight_names']) == [
        'conv1_bn/gamma:0', 'conv1_bn/beta:0', 'conv1_bn/moving_mean:0',
        'conv1_bn/moving_variance:0']
    assert f['conv1_conv/conv1_conv/kernel:0'].shape == (7, 7, 3, 64)
    assert len(f['conv1_pad'].attrs['weight_names']) == 0


def test_backbone_parity_with_keras(keras_resnet, flax_resnet50):
  kmodel, path = keras_resnet
  model, init = flax_resnet50
  variables = pretrained.load(init, path)
  x = np.random.default_rng(1).normal(0, 60, size=(2, SIZE, SIZE, 3)).astype(np.float32)
  want = kmodel(x, training=False).numpy()
  got = np.asarray(jax.jit(lambda v, x: model.apply(v, x, output='backbone'))(variables, x))
  assert got.shape == want.shape == (2, 2, 2, 2048)
  assert np.abs(want).max() > 0.5  # non-trivial activations, so the comparison means something.
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_full_preprocessing_path_parity(keras_resnet, flax_resnet50):
  """Keras: preprocess_input(0..255 RGB) -> ResNet50. Ours: the pipeline's [-1, 1] -> model."""
  import tf_keras
  kmodel, path = keras_resnet
  _, init = flax_resnet50
  model = resnet.ResNetClassifier(preprocess='caffe')
  variables = pretrained.load(init, path)
  rgb = np.random.default_rng(2).integers(0, 256, size=(2, SIZE, SIZE, 3)).astype(np.float32)
  keras_in = tf_keras.applications.resnet50.preprocess_input(rgb.copy())
  ours_in = np.asarray(resnet.caffe_preprocess(jnp.asarray((rgb - 127.5) / 127.5)))
  np.testing.assert_allclose(ours_in, keras_in, rtol=0, atol=1e-4)
  want = kmodel(keras_in, training=False).numpy()
  got = np.asarray(jax.jit(lambda v, x: model.apply(v, x, output='backbone'))(
      variables, (rgb - 127.5) / 127.5))
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_head_is_not_loaded_and_batch_stats_are(keras_resnet, flax_resnet50):
  kmodel, path = keras_resnet
  _, init = flax_resnet50
  variables = pretrained.load(init, path)
  np.testing.assert_array_equal(variables['params']['head_dense']['kernel'],
                                init['params']['head_dense']['kernel'])
  layer = kmodel.get_layer('conv3_block2_2_bn')
  np.testing.assert_array_equal(variables['batch_stats']['conv3_block2_2_bn']['var'],
                                layer.moving_variance.numpy())


def _edited_copy(src, dst, edit):
  shutil.copyfile(src, dst)
  with h5py.File(dst, 'r+') as f:
    edit(f)
  return dst


def test_missing_layer_error_names_it(keras_resnet, flax_resnet50, tmp_path):
  _, path = keras_resnet
  _, init = flax_resnet50

  def drop(f):
    del f['conv4_block3_2_bn']
    names = pretrained._decode(f.attrs['layer_names'])
    f.attrs['layer_names'] = [n.encode() for n in names if n != 'conv4_block3_2_bn']

  bad = _edited_copy(path, tmp_path / 'missing.h5', drop)
  with pytest.raises(pretrained.WeightFileError, match='conv4_block3_2_bn'):
    pretrained.load(init, str(bad))


def test_wrong_shape_error_names_it(keras_resnet, flax_resnet50, tmp_path):
  _, path = keras_resnet
  _, init = flax_resnet50

  def reshape(f):
    del f['conv2_block1_2_conv/conv2_block1_2_conv/kernel:0']
    f['conv2_block1_2_conv/conv2_block1_2_conv'].create_dataset(
        'kernel:0', data=np.zeros((3, 3, 64, 32), np.float32))

  bad = _edited_copy(path, tmp_path / 'shape.h5', reshape)
  with pytest.raises(pretrained.WeightFileError, match=r"conv2_block1_2_conv.*\(3, 3, 64, 32\)"):
    pretrained.load(init, str(bad))


def test_truncated_empty_and_nonfinite_files_are_clear_errors(keras_resnet, flax_resnet50,
                                                              tmp_path):
  _, path = keras_resnet
  _, init = flax_resnet50
  data = open(path, 'rb').read()
  truncated = tmp_path / 'truncated.h5'
  truncated.write_bytes(data[:len(data) // 3])   # an interrupted download
  with pytest.raises(pretrained.WeightFileError, match=f'{truncated}: cannot be read.*truncated'):
    pretrained.load(init, str(truncated))

  def empty(f):   # listed in weight_names, missing from the group
    del f['conv3_block1_1_conv/conv3_block1_1_conv/bias:0']

  bad = _edited_copy(path, tmp_path / 'empty.h5', empty)
  with pytest.raises(pretrained.WeightFileError,
                     match=r"empty\.h5: layer 'conv3_block1_1_conv' lists weight .*bias"):
    pretrained.load(init, str(bad))

  def poison(f):
    name = 'conv2_block1_2_conv/conv2_block1_2_conv/kernel:0'
    f[name][0, 0, 0, 0] = np.nan

  bad = _edited_copy(path, tmp_path / 'nan.h5', poison)
  with pytest.raises(pretrained.WeightFileError, match=r"conv2_block1_2_conv.*NaN or inf"):
    pretrained.load(init, str(bad))


def test_architecture_mismatch_is_an_error(keras_resnet):
  """A tiny model cannot silently take a subset of the ResNet50 file."""
  _, path = keras_resnet
  tiny = resnet.ResNetClassifier(stage_sizes=(1, 1, 1, 1), width=64)
  with pytest.raises(pretrained.WeightFileError, match='not in the model'):
    pretrained.load(resnet.init_variables(tiny, (1, SIZE, SIZE, 3)), path)


def test_resolve_imagenet_weights(tmp_path):
  cfg_file = tmp_path / 'w' / pretrained.NOTOP_FILENAME
  cfg_file.parent.mkdir()
  cfg_file.write_bytes(b'x')
  assert pretrained.resolve_imagenet_weights(str(cfg_file), download=False,
                                             cache_dir=str(tmp_path / 'c')) == str(cfg_file)
  assert pretrained.resolve_imagenet_weights(str(cfg_file.parent), download=False,
                                             cache_dir=str(tmp_path / 'c')) == str(cfg_file)
  with pytest.raises(FileNotFoundError, match='--config.model.pretrained=none'):
    pretrained.resolve_imagenet_weights('', download=False, cache_dir=str(tmp_path / 'c'))
  assert not os.path.exists(tmp_path / 'c' / pretrained.NOTOP_FILENAME)
