"""The Flax ResNet itself: layout, shapes, preprocessing, frozen-BN behaviour (no TF needed)."""
import jax
import jax.numpy as jnp
import numpy as np

from braingan.models import resnet

TINY = dict(stage_sizes=(1, 1, 1, 1), width=8, head_units=16)


def _init(model, shape):
  variables = resnet.init_variables(model, shape)
  # Random BN statistics and biases so that the tests below see them matter.
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map_with_path(
      lambda p, x: x if p[-1].key == 'kernel' else x + jnp.asarray(
          rng.uniform(0.0, 0.2, x.shape).astype(np.float32)), variables)


def _apply(model, *args, **kwargs):
  # One compiled program instead of op-by-op dispatch keeps these tests fast.
  static = ('train', 'output', 'mutable')
  return jax.jit(model.apply, static_argnames=static)(*args, **kwargs)


def test_resnet50_param_count_and_names_match_keras_notop():
  """keras.applications.ResNet50(include_top=False) has 23,587,712 weights; 106 layers with weights."""
  model = resnet.ResNetClassifier()
  shapes = jax.eval_shape(lambda: _init(model, (1, 64, 64, 3)))
  backbone = {k: v for k, v in shapes['params'].items() if not k.startswith('head_')}
  n = sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(backbone))
  n += sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes['batch_stats']))
  assert n == 23_587_712
  assert len(backbone) == 106
  assert backbone['conv1_conv']['kernel'].shape == (7, 7, 3, 64)
  assert backbone['conv3_block1_1_conv']['kernel'].shape == (1, 1, 256, 128)
  assert backbone['conv5_block1_0_conv']['kernel'].shape == (1, 1, 1024, 2048)
  assert 'conv2_block2_0_conv' not in backbone  # identity shortcut after the first block.
  assert shapes['params']['head_dense']['kernel'].shape == (2048, 512)
  assert shapes['params']['head_logits']['kernel'].shape == (512, 4)


def test_output_shapes():
  size = 64
  model = resnet.ResNetClassifier(**TINY)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, size, size, 1), minval=-1, maxval=1)
  variables = _init(model, x.shape)
  logits = _apply(model, variables, x)
  feats = _apply(model, variables, x, output='features')
  fmap = _apply(model, variables, x, output='backbone')
  assert logits.shape == (2, 4) and feats.shape == (2, 16)
  assert fmap.shape == (2, size // 32, size // 32, 8 * 32)
  assert np.all(np.isfinite(logits)) and np.all(feats >= 0)


def test_grayscale_is_repeated_to_rgb():
  model = resnet.ResNetClassifier(**TINY)
  gray = jax.random.uniform(jax.random.PRNGKey(2), (2, 32, 32, 1), minval=-1, maxval=1)
  variables = _init(model, (2, 32, 32, 3))
  a = _apply(model, variables, gray, output='backbone')
  b = _apply(model, variables, jnp.repeat(gray, 3, axis=-1), output='backbone')
  np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_caffe_preprocess_values():
  # Pure red (255, 0, 0) in RGB -> BGR (0, 0, 255) minus mean.
  rgb = np.array([255.0, 0.0, 0.0], np.float32)
  x = (rgb - 127.5) / 127.5
  out = np.asarray(resnet.caffe_preprocess(jnp.asarray(x)[None, None, None]))[0, 0, 0]
  np.testing.assert_allclose(out, [-103.939, -116.779, 255 - 123.68], atol=1e-4)


def test_strided_1x1_conv_equals_lax_strided_conv():
  """The speed reformulation (subsample + matmul) is exactly a stride-2 VALID 1x1 conv."""
  conv = resnet.KerasConv(5, 1, 2)
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 9, 9, 3))
  rng = np.random.default_rng(4)
  v = {'params': {'kernel': jnp.asarray(rng.normal(size=(1, 1, 3, 5)), jnp.float32),
                  'bias': jnp.asarray(rng.normal(size=(5,)), jnp.float32)}}
  ours = jax.jit(conv.apply)(v, x)
  ref = jax.lax.conv_general_dilated(x, v['params']['kernel'], (2, 2), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  ref = ref + v['params']['bias']
  np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_3x3_same_conv_as_patch_matmul_equals_lax_conv_and_its_gradients():
  """The CPU speed path (patch matmul) gives the lax conv's outputs and both gradients."""
  x = jax.random.normal(jax.random.PRNGKey(5), (2, 7, 6, 4))
  rng = np.random.default_rng(6)
  v = {'params': {'kernel': jnp.asarray(rng.normal(size=(3, 3, 4, 5)), jnp.float32),
                  'bias': jnp.asarray(rng.normal(size=(5,)), jnp.float32)}}

  def loss(conv):
    return jax.jit(jax.value_and_grad(
        lambda v, x: jnp.sum(jnp.sin(conv.apply(v, x))), argnums=(0, 1)))

  fast = loss(resnet.KerasConv(5, 3, 1, 'same', patch_matmul=True))(v, x)
  plain = loss(resnet.KerasConv(5, 3, 1, 'same', patch_matmul=False))(v, x)
  assert resnet.KerasConv(5, 3, 1, 'same').apply(v, x).shape == (2, 7, 6, 5)
  for a, b in zip(jax.tree_util.tree_leaves(fast), jax.tree_util.tree_leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_frozen_bn_uses_running_stats_in_training():
  frozen = ('conv1_bn',)
  model = resnet.ResNetClassifier(frozen=frozen, **TINY)
  x = jax.random.uniform(jax.random.PRNGKey(5), (4, 32, 32, 3), minval=-1, maxval=1)
  variables = _init(model, x.shape)
  _, updates = _apply(model, variables, x, train=True, mutable=('batch_stats',),
                           rngs={'dropout': jax.random.PRNGKey(0)})
  old, new = variables['batch_stats'], updates['batch_stats']
  np.testing.assert_array_equal(old['conv1_bn']['mean'], new['conv1_bn']['mean'])
  np.testing.assert_array_equal(old['conv1_bn']['var'], new['conv1_bn']['var'])
  assert not np.array_equal(old['conv2_block1_1_bn']['mean'], new['conv2_block1_1_bn']['mean'])


def test_path_is_frozen_matches_whole_components():
  assert resnet.path_is_frozen('conv1_conv/kernel', ['conv1_conv'])
  assert resnet.path_is_frozen('conv1_conv', ['conv1_conv'])
  assert not resnet.path_is_frozen('conv1_conv_x/kernel', ['conv1_conv'])
  assert not resnet.path_is_frozen('conv2_block1_0_bn/scale', ['conv2_block1_0_conv'])


def test_bn_train_custom_vjp_matches_autodiff_of_the_formula():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(1.0, 2.0, (4, 3, 3, 5)), jnp.float32)
  scale, bias = jnp.linspace(0.5, 1.5, 5), jnp.linspace(-1.0, 1.0, 5)
  weights = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

  def reference(x, scale, bias):
    mean = x.mean((0, 1, 2))
    var = jnp.square(x - mean).mean((0, 1, 2))
    return jnp.sum(weights * ((x - mean) * jax.lax.rsqrt(var + 1e-3) * scale + bias))

  def ours(x, scale, bias):
    return jnp.sum(weights * resnet.bn_train(x, scale, bias, 1e-3)[0])

  np.testing.assert_allclose(ours(x, scale, bias), reference(x, scale, bias), rtol=1e-6)
  for got, want in zip(jax.grad(ours, (0, 1, 2))(x, scale, bias),
                       jax.grad(reference, (0, 1, 2))(x, scale, bias)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
