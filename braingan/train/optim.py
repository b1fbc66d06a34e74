"""Adam exactly as Keras computes it, for both trainers.

Keras (tf_keras and Keras 3) applies Adam's bias correction to the learning rate, not to the
moments: `w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`. optax's `adam`
corrects the moments instead, `m_hat / (sqrt(v_hat) + eps)`, which is the same except that
Keras's epsilon is in effect `eps / sqrt(1 - b2^t)` (3e-6 instead of 1e-7 at the first step).
The two differ only where gradients are tiny, but that is where Adam's first steps are most
sensitive, so with optax's Adam our weights drifted from the Keras original's after a step;
with this one they agree to float rounding (tests/test_keras_gan.py).
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByKerasAdamState(NamedTuple):
  count: jax.Array   # int32 [], steps taken
  mu: optax.Updates  # first moment (not bias-corrected)
  nu: optax.Updates  # second moment (not bias-corrected)


def scale_by_keras_adam(b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-7) -> optax.GradientTransformation:
  """Adam's scaling with Keras's bias correction (multiply by -lr afterwards)."""

  def init_fn(params):
    zeros = lambda p: jnp.zeros_like(p, dtype=jnp.float32)  # noqa: E731
    return ScaleByKerasAdamState(count=jnp.zeros([], jnp.int32),
                                 mu=jax.tree.map(zeros, params), nu=jax.tree.map(zeros, params))

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    t = count.astype(jnp.float32)
    correction = jnp.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
    updates = jax.tree.map(lambda m, v: correction * m / (jnp.sqrt(v) + eps), mu, nu)
    return updates, ScaleByKerasAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def direction(opt_cfg, field: str = 'config.optimizer') -> optax.GradientTransformation:
  """The update direction named by `config.optimizer` (the learning rate is applied by the step).

  Only 'adam' (Keras's, above) exists today; another optimizer is one more branch here.
  """
  if opt_cfg.name != 'adam':
    raise ValueError(f"{field}.name={opt_cfg.name!r}: expected 'adam'.")
  if not 0.0 <= opt_cfg.beta1 < 1.0:
    raise ValueError(f'{field}.beta1={opt_cfg.beta1} must be in [0, 1).')
  if not 0.0 <= opt_cfg.beta2 < 1.0:
    raise ValueError(f'{field}.beta2={opt_cfg.beta2} must be in [0, 1).')
  if opt_cfg.epsilon <= 0:
    raise ValueError(f'{field}.epsilon={opt_cfg.epsilon} must be > 0.')
  return scale_by_keras_adam(opt_cfg.beta1, opt_cfg.beta2, opt_cfg.epsilon)
