"""Mixed precision: a bf16 step computes in bf16, stores float32, and stays close to fp32."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from braingan.runtime import precision
from tests import toy_model


def test_compute_dtype_from_config_and_errors():
  config = ml_collections.ConfigDict({'dtype': 'bfloat16'})
  assert precision.compute_dtype(config) == jnp.bfloat16
  assert precision.compute_dtype(ml_collections.ConfigDict()) == jnp.float32  # no field
  assert precision.compute_dtype(None) == jnp.float32
  assert precision.compute_dtype('bf16') == jnp.bfloat16
  assert precision.compute_dtype(jnp.float32) == jnp.float32
  with pytest.raises(ValueError, match=r"config.dtype='float16'.*loss scaling"):
    precision.compute_dtype(ml_collections.ConfigDict({'dtype': 'float16'}))
  with pytest.raises(ValueError, match=r"config.gan.dtype='int8'"):
    precision.compute_dtype('int8', field='config.gan.dtype')


def check_float32(tree, what='params'):
  """Every floating leaf of `tree` is float32 (what the policy stores and updates)."""
  bad = {path: name for path, name in precision.float_dtypes(tree).items() if name != 'float32'}
  assert not bad, f'{what}: {bad}'


def test_cast_floating_leaves_labels_alone():
  batch = {'image': np.zeros((2, 3), np.float32), 'label': np.zeros(2, np.int32),
           'mask': np.ones(2, bool)}
  cast = precision.cast_floating(batch, jnp.bfloat16)
  assert cast['image'].dtype == jnp.bfloat16
  assert cast['label'].dtype == np.int32 and cast['mask'].dtype == bool
  assert precision.to_float32(cast)['image'].dtype == np.float32
  assert precision.float_dtypes({'w': jnp.ones(2), 'b': jnp.ones(2, jnp.bfloat16)}) == {
      "['b']": 'bfloat16', "['w']": 'float32'}


@pytest.fixture(scope='module')
def one_step_each():
  batch = toy_model.global_batch(16)
  out = {}
  for name in ('float32', 'bfloat16'):
    model, state = toy_model.make_state(dtype=precision.compute_dtype(name))
    step = jax.jit(toy_model.make_train_step(model))
    jaxpr = str(jax.make_jaxpr(step)(state, batch))
    new_state, metrics = step(state, batch)
    out[name] = (state, new_state, metrics, jaxpr)
  return out


def test_bf16_computes_in_bf16_but_stores_float32(one_step_each):
  _, new_state, metrics, jaxpr = one_step_each['bfloat16']
  # The convolutions really run in bf16 (operands and result)...
  convs = [l for l in jaxpr.splitlines() if 'conv_general_dilated' in l]
  assert convs and all('bf16' in l for l in convs)
  assert 'bf16' not in one_step_each['float32'][3]
  # ...while what is stored and updated stays float32.
  check_float32(new_state.params, 'params')
  check_float32(new_state.opt_state, 'opt_state')
  check_float32(new_state.batch_stats, 'batch_stats')
  assert metrics['loss'].dtype == jnp.float32


def test_bf16_step_close_to_fp32_step(one_step_each):
  before, fp32, fp32_metrics, _ = one_step_each['float32']
  _, bf16, bf16_metrics, _ = one_step_each['bfloat16']
  loss32, loss16 = float(fp32_metrics['loss']), float(bf16_metrics['loss'])
  assert abs(loss16 - loss32) / abs(loss32) < 2e-2
  # Each parameter's update points the same way (cosine) as in fp32, and the new params are
  # close in absolute terms. (Conv biases before a BatchNorm get a zero gradient in exact
  # arithmetic, ~1e-9 rounding noise in fp32: no direction to compare there.)
  p0 = dict(jax.tree_util.tree_leaves_with_path(before.params))
  p16 = dict(jax.tree_util.tree_leaves_with_path(bf16.params))
  compared = 0
  for path, p32 in jax.tree_util.tree_leaves_with_path(fp32.params):
    update32 = np.asarray(p32 - p0[path], np.float64).ravel()
    update16 = np.asarray(p16[path] - p0[path], np.float64).ravel()
    np.testing.assert_allclose(p16[path], p32, atol=5e-3, rtol=0)
    if np.linalg.norm(update32) > 1e-5:
      cosine = update16 @ update32 / (np.linalg.norm(update16) * np.linalg.norm(update32))
      assert cosine > 0.99, (jax.tree_util.keystr(path), cosine)
      compared += 1
  assert compared >= 6
  for path, s32 in jax.tree_util.tree_leaves_with_path(fp32.batch_stats):
    s16 = dict(jax.tree_util.tree_leaves_with_path(bf16.batch_stats))[path]
    np.testing.assert_allclose(s16, s32, atol=2e-2, rtol=2e-2)


# ------------------------------------------------------------------ the project's models
def _real_model_step(name, dtype):
  """(jitted step, state, batch, extra args) of the tiny GAN / classifier in `dtype`."""
  from braingan.runtime import parallel  # pylint: disable=g-import-not-at-top
  from tests import distributed_workloads as workloads  # pylint: disable=g-import-not-at-top
  original = workloads.DTYPE
  workloads.DTYPE = dtype
  try:
    mesh = parallel.make_mesh(1)
    step, state, extra, batch = workloads.WORKLOADS[name](mesh)
  finally:
    workloads.DTYPE = original
  return step, state, parallel.shard_batch(mesh, batch), extra


@pytest.mark.parametrize('name', ['gan', 'classifier'])
def test_real_models_honour_config_dtype(name):
  """config.dtype=bfloat16 reaches every heavy op of the real train steps, and the step still
  returns float32 parameters, optimizer state, BatchNorm statistics and losses.

  Traced, not compiled: XLA:CPU takes minutes to compile bf16 convolution gradients (it has
  no native bf16 convolutions); the numerics of the policy are checked on the toy model above.
  """
  step, state, batch, extra = _real_model_step(name, 'bfloat16')
  jaxpr = str(jax.make_jaxpr(step)(state, batch, *extra))
  heavy = [l for l in jaxpr.splitlines() if 'conv_general_dilated' in l or 'dot_general' in l]
  in_bf16 = sum('bf16' in l for l in heavy)
  assert heavy and in_bf16 >= 0.9 * len(heavy), f'{in_bf16} of {len(heavy)} heavy ops in bf16'
  new_state, metrics = jax.eval_shape(step, state, batch, *extra)
  check_float32(new_state, 'state')
  check_float32(metrics, 'metrics')
  # And float32 stays float32 everywhere (the default path is unchanged).
  step, state, batch, extra = _real_model_step(name, 'float32')
  assert 'bf16' not in str(jax.make_jaxpr(step)(state, batch, *extra))
