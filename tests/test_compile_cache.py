"""The persistent compilation cache (braingan/runtime/compile_cache.py) is really used."""
import os
import subprocess
import sys

from braingan.runtime import compile_cache
from tests.conftest import REPO_ROOT

_SNIPPET = '''
import sys
import jax, jax.numpy as jnp
from braingan.runtime import compile_cache
compile_cache.enable(sys.argv[1], min_compile_seconds=0.0)
events = []
jax.monitoring.register_event_listener(lambda name, **kwargs: events.append(name))
step = jax.jit(lambda w, x: jnp.tanh(x @ w) @ w.T)
step(jnp.ones((32, 32)), jnp.ones((8, 32))).block_until_ready()
print('HITS', events.count('/jax/compilation_cache/cache_hits'),
      'MISSES', events.count('/jax/compilation_cache/cache_misses'))
'''


def _run(cache_dir):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _SNIPPET, cache_dir], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=120, check=True).stdout
  hits, misses = out.split('HITS ')[1].split(' MISSES ')
  return int(hits), int(misses)


def test_second_process_hits_the_cache(tmp_path):
  cache = str(tmp_path / 'cache')
  first = _run(cache)
  assert first[0] == 0 and first[1] >= 1            # compiled and stored ...
  assert any(name.endswith('-cache') for name in os.listdir(cache))
  second = _run(cache)
  assert second[0] >= 1 and second[1] == 0          # ... then loaded, not compiled again


def test_cache_directory_setting():
  assert compile_cache.cache_dir({}) == compile_cache.DEFAULT_DIR
  assert compile_cache.cache_dir({compile_cache.ENV: '/x/y'}) == '/x/y'
  assert compile_cache.cache_dir({compile_cache.ENV: 'off'}) is None


def test_run_once_gives_the_optimised_programs_values():
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  draw = lambda key: {'w': jax.random.normal(key, (3, 5)),  # noqa: E731
                      'b': jax.random.uniform(jax.random.fold_in(key, 1), (5,))}
  key = jax.random.key(7)
  got, want = compile_cache.run_once(draw, key), jax.jit(draw)(key)
  for name in ('w', 'b'):
    np.testing.assert_array_equal(got[name], want[name])
  assert float(np.std(got['w'])) > 0.1   # real draws, not zeros


def test_run_once_inside_a_transformation_traces_through():
  import jax  # pylint: disable=import-outside-toplevel
  shapes = jax.eval_shape(lambda k: compile_cache.run_once(
      lambda key: jax.random.normal(key, (2, 3)), k), jax.random.key(0))
  assert shapes.shape == (2, 3)
