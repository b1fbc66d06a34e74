"""TrainState: optimizer updates like optax, rng handling, jit-friendliness."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from braingan.train.state import TrainState


def _params():
  return {'w': jnp.arange(6.0).reshape(2, 3), 'b': jnp.ones(3)}


def test_apply_gradients_matches_optax():
  tx = optax.adam(0.1)
  state = TrainState.create(params=_params(), tx=tx, rng=0)
  grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), _params())
  state2 = state.apply_gradients(grads, new_batch_stats={'mean': jnp.ones(3)})
  updates, _ = tx.update(grads, tx.init(_params()), _params())
  expected = optax.apply_updates(_params(), updates)
  assert int(state2.step) == 1 and state2.step.dtype == jnp.int32
  for name in ('w', 'b'):
    np.testing.assert_allclose(state2.params[name], expected[name], rtol=1e-6)
  np.testing.assert_array_equal(state2.batch_stats['mean'], 1.0)
  assert state.batch_stats == {} and state.variables.keys() == {'params'}
  assert state2.variables.keys() == {'params', 'batch_stats'}
  assert state2.apply_gradients(grads).batch_stats is state2.batch_stats  # None keeps them


def test_rng_forms_and_split():
  key = jax.random.key(3)
  from_key = TrainState.create(params=_params(), tx=optax.sgd(1.0), rng=key)
  from_int = TrainState.create(params=_params(), tx=optax.sgd(1.0), rng=3)
  from_raw = TrainState.create(params=_params(), tx=optax.sgd(1.0),
                               rng=jax.random.key_data(key))
  for state in (from_key, from_int, from_raw):
    assert state.rng.dtype == jnp.uint32
    np.testing.assert_array_equal(state.rng, jax.random.key_data(key))
  new_state, sub = from_key.split_rng()
  assert not np.array_equal(new_state.rng, from_key.rng)
  assert sub.shape == () and jnp.issubdtype(sub.dtype, jax.dtypes.prng_key)
  _, subs = from_key.split_rng(3)
  assert subs.shape == (3,)
  with pytest.raises(TypeError, match='uint32'):
    TrainState.create(params=_params(), tx=optax.sgd(1.0), rng=jnp.zeros(2, jnp.float32))


def test_jit_with_donation_and_static_tx():
  def step(state, x):
    grads = jax.grad(lambda p: jnp.sum((x @ p['w'] + p['b']) ** 2))(state.params)
    state, key = state.split_rng()
    noise = jax.random.normal(key, ())
    return state.apply_gradients(grads), noise
  step = jax.jit(step, donate_argnums=0)
  state = TrainState.create(params=_params(), tx=optax.sgd(0.01), rng=0)
  for _ in range(3):
    state, noise = step(state, jnp.ones((4, 2)))
  assert int(state.step) == 3 and np.isfinite(float(noise))
  # tx is static: it is not a leaf, so checkpoints never see it.
  leaves = jax.tree.leaves(state)   # step, params b and w, rng (plain sgd keeps no state)
  assert len(leaves) == 4 and all(isinstance(leaf, jax.Array) for leaf in leaves)
