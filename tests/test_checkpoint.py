"""Orbax checkpoints: exact round trip, rotation, best kept, sharded restore, interruption."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from braingan.train.checkpoint import Checkpointer
from braingan.train.state import TrainState
from tests.multidevice import run_with_devices


def _state(seed: int, steps: int = 2) -> TrainState:
  """An adam TrainState after `steps` updates, so opt_state moments are non-trivial."""
  rng = np.random.default_rng(seed)
  params = {'dense': {'kernel': jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                      'bias': jnp.zeros(3, jnp.float32)}}
  state = TrainState.create(params=params, tx=optax.adam(1e-2), rng=jax.random.key(seed),
                            batch_stats={'bn': {'mean': jnp.asarray(rng.normal(size=3),
                                                                    jnp.float32)}})
  for _ in range(steps):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    state = state.apply_gradients(grads)
  return state


def _leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))
      for x, y in zip(la, lb))


def test_round_trip_is_bit_identical(tmp_path):
  saved = {'gen': _state(1, steps=3), 'disc': _state(2, steps=1)}
  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() is None
    assert ckpt.save(5, saved, metrics={'loss': np.float32(0.25)},
                     meta={'epoch': 5, 'config_hash': 'abc'})
    ckpt.wait_until_finished()
  target = {'gen': _state(10, steps=0), 'disc': _state(11, steps=0)}
  with Checkpointer(tmp_path) as ckpt:   # a fresh process would see the same
    assert ckpt.latest_step() == 5
    restored = ckpt.restore(target)
    meta = ckpt.restore_meta()
  assert isinstance(restored['gen'], TrainState)
  assert restored['gen'].tx is target['gen'].tx
  assert _leaves_equal(restored, saved)
  assert int(restored['gen'].step) == 3 and restored['gen'].rng.dtype == jnp.uint32
  assert not _leaves_equal(restored, target)
  assert meta == {'step': 5, 'metrics': {'loss': 0.25}, 'epoch': 5, 'config_hash': 'abc'}
  # The restored state keeps training exactly like the original would.
  grads = jax.tree.map(jnp.ones_like, saved['gen'].params)
  assert _leaves_equal(restored['gen'].apply_gradients(grads), saved['gen'].apply_gradients(grads))


def test_restore_is_strict_per_leaf_but_accepts_a_new_empty_field(tmp_path):
  """A run saved before a state field existed resumes when that field is empty in this run
  (GANState.lecam_anchors = {} with LeCam off); a leaf missing on disk or left over on disk is
  an error naming it."""
  saved = {'gen': _state(1), 'aug': jnp.float32(0.5)}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, saved)
  with Checkpointer(tmp_path) as ckpt:
    restored = ckpt.restore({'gen': _state(2, steps=0), 'aug': jnp.float32(0), 'new': {}})
    assert restored['new'] == {} and _leaves_equal(
        {'gen': restored['gen'], 'aug': restored['aug']}, saved)
    with pytest.raises(ValueError, match='missing on disk.*new/real'):
      ckpt.restore({'gen': _state(2, steps=0), 'aug': jnp.float32(0),
                    'new': {'real': jnp.float32(0)}})
    with pytest.raises(ValueError, match="not in the state.*'aug'"):
      ckpt.restore({'gen': _state(2, steps=0)})


def test_empty_directory(tmp_path):
  with Checkpointer(tmp_path / 'none', best_metric='loss') as ckpt:
    assert ckpt.latest_step() is None and ckpt.best_step() is None
    with pytest.raises(FileNotFoundError, match='No checkpoint'):
      ckpt.restore({'a': jnp.zeros(2)})
    with pytest.raises(FileNotFoundError, match='No best checkpoint'):
      ckpt.restore_best({'a': jnp.zeros(2)})


def test_max_to_keep_and_save_every(tmp_path):
  with Checkpointer(tmp_path, max_to_keep=2, save_every=2) as ckpt:
    written = [ckpt.save(step, {'x': jnp.full((2,), step)}) for step in range(1, 8)]
    ckpt.save(7, {'x': jnp.full((2,), 7)}, force=True)
    ckpt.wait_until_finished()
    assert written == [False, True, False, True, False, True, False]
    assert ckpt.all_steps() == [6, 7]
    assert ckpt.latest_step() == 7
    np.testing.assert_array_equal(ckpt.restore({'x': jnp.zeros(2, jnp.int32)}, step=6)['x'], 6)
    with pytest.raises(FileNotFoundError, match='step 2'):
      ckpt.restore({'x': jnp.zeros(2, jnp.int32)}, step=2)


def test_best_survives_rotation_and_resume(tmp_path):
  losses = {1: 3.0, 2: 1.0, 3: 2.0, 4: 4.0, 5: 5.0}
  with Checkpointer(tmp_path, max_to_keep=2, best_metric='val_loss') as ckpt:
    for step, loss in losses.items():
      ckpt.save(step, {'x': jnp.full((3,), float(step))}, metrics={'val_loss': loss})
    ckpt.wait_until_finished()
    assert ckpt.all_steps() == [4, 5]
    assert ckpt.best_step() == 2 and ckpt.best_value == 1.0
  target = {'x': jnp.zeros(3)}
  # Resuming: the stored best is remembered, a worse result does not replace it.
  with Checkpointer(tmp_path, max_to_keep=2, best_metric='val_loss') as ckpt:
    assert ckpt.best_value == 1.0
    ckpt.save(6, {'x': jnp.full((3,), 6.0)}, metrics={'val_loss': 1.5})
    ckpt.save(7, {'x': jnp.full((3,), 7.0)}, metrics={'val_loss': float('nan')})
    ckpt.wait_until_finished()
    assert ckpt.best_step() == 2
    np.testing.assert_array_equal(ckpt.restore_best(target)['x'], 2.0)
    assert ckpt.restore_best_meta()['metrics'] == {'val_loss': 1.0}
    ckpt.save(8, {'x': jnp.full((3,), 8.0)}, metrics={'val_loss': 0.5})
    ckpt.wait_until_finished()
    assert ckpt.best_step() == 8
    np.testing.assert_array_equal(ckpt.restore_best(target)['x'], 8.0)
    assert os.listdir(tmp_path / 'best') == ['8']
  with Checkpointer(tmp_path / 'acc', best_metric='acc', best_mode='max') as ckpt:
    for step, acc in enumerate([0.5, 0.9, 0.7]):
      ckpt.save(step, {'x': jnp.zeros(1)}, metrics={'acc': acc})
    ckpt.wait_until_finished()
    assert ckpt.best_step() == 1


_SHARDED_SNIPPET = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from braingan.runtime import parallel
from braingan.train.checkpoint import Checkpointer
directory = sys.argv[1] if len(sys.argv) > 1 else DIRECTORY
mesh = parallel.make_mesh(8)
rows = parallel.batch_sharding(mesh)
repl = parallel.replicated_sharding(mesh)
tree = {'rows': jax.device_put(jnp.arange(32.0).reshape(8, 4), rows),
        'w': jax.device_put(jnp.arange(6.0).reshape(2, 3), repl)}
with Checkpointer(directory) as ckpt:
  ckpt.save(1, tree)
  ckpt.wait_until_finished()
  abstract = {'rows': jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=rows),
              'w': jax.ShapeDtypeStruct((2, 3), jnp.float32, sharding=repl)}
  out = ckpt.restore(abstract)
print('RESULT', json.dumps({
    'rows_sharding_ok': out['rows'].sharding == rows,
    'w_sharding_ok': out['w'].sharding.is_fully_replicated and len(out['w'].sharding.device_set) == 8,
    'shards': len(out['rows'].addressable_shards),
    'rows': np.asarray(out['rows']).tolist(), 'w': np.asarray(out['w']).tolist()}))
'''


def test_restore_onto_mesh_sharded_target(tmp_path):
  code = _SHARDED_SNIPPET.replace('DIRECTORY', repr(str(tmp_path / 'sharded')))
  stdout = run_with_devices(code, num_devices=8)
  result = json.loads([l for l in stdout.splitlines() if l.startswith('RESULT ')][-1][7:])
  assert result['rows_sharding_ok'] and result['w_sharding_ok'] and result['shards'] == 8
  np.testing.assert_array_equal(result['rows'], np.arange(32.0).reshape(8, 4))
  # Saved on 8 devices, restored here on 1: the topology may change between runs.
  with Checkpointer(tmp_path / 'sharded') as ckpt:
    out = ckpt.restore({'rows': jnp.zeros((8, 4)), 'w': jnp.zeros((2, 3))})
  np.testing.assert_array_equal(out['rows'], np.arange(32.0).reshape(8, 4))
  np.testing.assert_array_equal(out['w'], np.arange(6.0).reshape(2, 3))


_KILLED_SNIPPET = r'''
import os
import jax.numpy as jnp, numpy as np
from braingan.train.checkpoint import Checkpointer
ckpt = Checkpointer(DIRECTORY)
ckpt.save(1, {'x': jnp.full((1000, 1000), 1.0)})
ckpt.wait_until_finished()
ckpt.save(2, {'x': jnp.full((1000, 1000), 2.0)})   # asynchronous: still being written
print('KILLED', flush=True)
os._exit(0)                                         # like a preemption / kill -9
'''


def test_interrupted_save_is_never_latest(tmp_path):
  directory = tmp_path / 'killed'
  stdout = run_with_devices(_KILLED_SNIPPET.replace('DIRECTORY', repr(str(directory))),
                            num_devices=1)
  assert 'KILLED' in stdout
  leftovers = [name for name in os.listdir(directory) if 'tmp' in name]
  target = {'x': jnp.zeros((1000, 1000))}
  with Checkpointer(directory) as ckpt:
    latest = ckpt.latest_step()
    restored = ckpt.restore(target)
    assert os.listdir(directory) == [str(latest)]   # stale temporary folders are cleaned up
  if leftovers:   # the usual case: the save of step 2 was cut short
    assert latest == 1
  assert latest in (1, 2)
  np.testing.assert_array_equal(np.asarray(restored['x']), float(latest))


def test_async_save_is_safe_with_donated_state(tmp_path):
  """Trainers donate the state to the next step right after save() returns."""
  state = {'w': jnp.full((256, 256), 1.0)}
  bump = jax.jit(lambda tree: jax.tree.map(lambda a: a + 6.0, tree), donate_argnums=0)
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state)
    new_state = bump(state)          # overwrites / frees the saved buffers
    np.testing.assert_array_equal(np.asarray(new_state['w']), 7.0)
    ckpt.wait_until_finished()
    restored = ckpt.restore({'w': jnp.zeros((256, 256))})
  np.testing.assert_array_equal(np.asarray(restored['w']), 1.0)


def test_saving_an_existing_step_keeps_the_first(tmp_path):
  with Checkpointer(tmp_path) as ckpt:
    assert ckpt.save(3, {'x': jnp.full((2,), 1.0)})
    ckpt.wait_until_finished()
    assert not ckpt.save(3, {'x': jnp.full((2,), 2.0)}, force=True)
    assert not ckpt.save(2, {'x': jnp.full((2,), 2.0)})   # older than the latest
    ckpt.wait_until_finished()
    np.testing.assert_array_equal(ckpt.restore({'x': jnp.zeros(2)})['x'], 1.0)
    assert ckpt.all_steps() == [3]
