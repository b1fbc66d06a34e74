"""Data parallelism: 8 fake CPU devices give the same step as 1 device."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan.runtime import parallel
from tests.multidevice import run_multiprocess, run_with_devices

_DP_SNIPPET = r'''
import json
import jax, jax.numpy as jnp, numpy as np, optax
from braingan.runtime import parallel
from braingan.train.state import TrainState

assert jax.device_count() == 8, jax.devices()

def loss_fn(params, batch):
  pred = batch['x'] @ params['w'] + params['b']
  return jnp.mean((pred - batch['y']) ** 2)

def train_step(state, batch):
  loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
  return state.apply_gradients(grads), {'loss': loss}

rng = np.random.default_rng(0)
batch = {'x': rng.normal(size=(32, 5)).astype(np.float32),
         'y': rng.normal(size=(32, 3)).astype(np.float32)}
params = {'w': rng.normal(size=(5, 3)).astype(np.float32), 'b': np.zeros(3, np.float32)}
out = {}
for n in (1, 8):
  mesh = parallel.make_mesh(n)
  parallel.check_global_batch(32, mesh)
  repl, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
  state = parallel.replicate(mesh, TrainState.create(params=params, tx=optax.sgd(0.1), rng=0))
  step = jax.jit(train_step, in_shardings=(repl, data), out_shardings=(repl, repl),
                 donate_argnums=0)
  for _ in range(3):
    sharded = parallel.shard_batch(mesh, batch)
    state, metrics = step(state, sharded)
  host = parallel.to_host({'params': state.params, 'loss': metrics['loss'], 'step': state.step})
  out[n] = {'w': host['params']['w'].tolist(), 'b': host['params']['b'].tolist(),
            'loss': float(host['loss']), 'step': int(host['step']),
            'shards': len(sharded['x'].addressable_shards),
            'shard_rows': sharded['x'].addressable_shards[0].data.shape[0],
            'global_rows': sharded['x'].shape[0]}
try:
  parallel.check_global_batch(30, parallel.make_mesh(8), field='config.gan.batch_size')
  out['error'] = None
except ValueError as e:
  out['error'] = str(e)
print('RESULT', json.dumps(out))
'''


def _numpy_reference(steps=3, lr=0.1):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(32, 5))
  y = rng.normal(size=(32, 3))
  w = rng.normal(size=(5, 3)).astype(np.float32).astype(np.float64)
  b = np.zeros(3)
  for _ in range(steps):
    err = x @ w + b - y
    loss = np.mean(err ** 2)
    gw = 2 * x.T @ err / err.size
    gb = 2 * err.sum(0) / err.size
    w, b = w - lr * gw, b - lr * gb
  return w, b, loss


@pytest.fixture(scope='module')
def dp_result():
  stdout = run_with_devices(_DP_SNIPPET, num_devices=8)
  line = [l for l in stdout.splitlines() if l.startswith('RESULT ')][-1]
  return {str(k): v for k, v in json.loads(line[len('RESULT '):]).items()}


def test_eight_devices_match_one_device(dp_result):
  one, eight = dp_result['1'], dp_result['8']
  assert eight['shards'] == 8 and eight['shard_rows'] == 4 and eight['global_rows'] == 32
  assert one['shards'] == 1 and one['shard_rows'] == 32
  np.testing.assert_allclose(eight['w'], one['w'], atol=1e-5)
  np.testing.assert_allclose(eight['b'], one['b'], atol=1e-5)
  assert abs(eight['loss'] - one['loss']) < 1e-5
  assert eight['step'] == one['step'] == 3


def test_data_parallel_step_is_the_full_batch_gradient(dp_result):
  w, b, loss = _numpy_reference()
  np.testing.assert_allclose(dp_result['8']['w'], w, atol=1e-5)
  np.testing.assert_allclose(dp_result['8']['b'], b, atol=1e-5)
  assert abs(dp_result['8']['loss'] - loss) < 1e-4


def test_check_global_batch_names_the_field(dp_result):
  assert dp_result['error'] == 'config.gan.batch_size=30 is not divisible by 8 devices.'


def test_check_global_batch_single_device():
  mesh = parallel.make_mesh()
  parallel.check_global_batch(7, mesh)  # anything positive divides over 1 device
  with pytest.raises(ValueError, match='config.batch_size=0'):
    parallel.check_global_batch(0, mesh)


def test_make_mesh_axis_and_bad_count():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ('data',)
  assert mesh.devices.size == jax.device_count()
  with pytest.raises(ValueError, match='num_devices=99'):
    parallel.make_mesh(99)


def test_shard_batch_replicate_and_to_host():
  mesh = parallel.make_mesh(1)
  batch = {'image': np.arange(24, dtype=np.float32).reshape(4, 2, 3, 1),
           'label': np.arange(4, dtype=np.int32)}
  sharded = parallel.shard_batch(mesh, batch)
  assert sharded['image'].sharding == parallel.batch_sharding(mesh)
  back = parallel.to_host(sharded)
  np.testing.assert_array_equal(back['image'], batch['image'])
  assert back['label'].dtype == np.int32
  tree = parallel.replicate(mesh, {'w': jnp.ones((2, 2)), 'n': 3})
  assert tree['w'].sharding.is_fully_replicated
  host = parallel.to_host(tree)
  assert isinstance(host['w'], np.ndarray) and host['n'] == 3


_MULTIPROCESS_SNIPPET = r'''
import json
import jax.numpy as jnp, numpy as np
from braingan.train.checkpoint import Checkpointer
mesh = parallel.make_mesh()
parallel.check_global_batch(16, mesh)
x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
local = x[PROCESS_ID * 8:(PROCESS_ID + 1) * 8]          # this host's share
batch = parallel.shard_batch(mesh, {'x': local})
total = jax.jit(lambda b: jnp.sum(b['x'], 0),
                out_shardings=parallel.replicated_sharding(mesh))(batch)
ckpt = Checkpointer(DIRECTORY, best_metric='loss')
ckpt.save(1, {'x': batch['x'], 'total': total}, metrics={'loss': 1.0})
ckpt.wait_until_finished()
restored = ckpt.restore({'x': batch['x'], 'total': total})
ckpt.close()
print('RESULT', json.dumps({
    'processes': jax.process_count(), 'devices': jax.device_count(),
    'main': jax.process_index() == 0, 'global_rows': batch['x'].shape[0],
    'sum_ok': bool(np.allclose(parallel.host_local(total), x.sum(0), atol=1e-5)),
    'gather_ok': bool(np.array_equal(parallel.gather_to_host(batch)['x'], x)),
    'restore_ok': bool(np.array_equal(parallel.gather_to_host(restored)['x'], x)),
    'latest': ckpt.latest_step(), 'best': ckpt.best_step()}))
'''


def test_two_processes_shard_reduce_and_checkpoint(tmp_path):
  """Two JAX processes x 4 devices: the multi-host path (shard_batch, gather, Orbax)."""
  code = _MULTIPROCESS_SNIPPET.replace('DIRECTORY', repr(str(tmp_path / 'ckpt')))
  results = [json.loads([l for l in out.splitlines() if l.startswith('RESULT ')][-1][7:])
             for out in run_multiprocess(code, num_processes=2, devices_per_process=4)]
  assert [r['main'] for r in results] == [True, False]
  for r in results:
    assert r['processes'] == 2 and r['devices'] == 8 and r['global_rows'] == 16
    assert r['sum_ok'] and r['gather_ok'] and r['restore_ok']
    assert r['latest'] == 1 and r['best'] == 1
  assert sorted(os.listdir(tmp_path / 'ckpt')) == ['1', 'best']
