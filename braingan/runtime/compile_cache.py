"""JAX's persistent compilation cache, on by default for every entry point.

Why: every run used to compile its steps from scratch (seconds for a 128 px GAN step, tens of
seconds for ResNet50 on a CPU), and a study runs many cells with the same shapes. With the
cache, the second run of a cell loads its executables from disk. JAX's cache key covers the
program (HLO), the compile options, the backend and the JAX/XLA versions, so two configs that
compile to different programs never share an entry, and a jaxlib upgrade never reuses a stale
one.

Where: $BRAINGAN_COMPILE_CACHE if set ('off' disables it), else ~/.cache/braingan/jax.
"""
from __future__ import annotations

import os

ENV = 'BRAINGAN_COMPILE_CACHE'
DEFAULT_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'braingan', 'jax')


def cache_dir(environ=None) -> str | None:
  """The directory the cache uses, or None when it is turned off."""
  value = (os.environ if environ is None else environ).get(ENV, '')
  if value.lower() in ('off', '0', 'none', 'false'):
    return None
  return value or DEFAULT_DIR


def enable(directory: str | None = None, min_compile_seconds: float = 0.5) -> str | None:
  """Points JAX at the cache (call before the first jit); returns the directory or None."""
  import jax  # pylint: disable=import-outside-toplevel
  directory = directory or cache_dir()
  if directory is None:
    return None
  os.makedirs(directory, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', directory)
  # Cache anything that took at least this long to compile (JAX's default is 1 s).
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_seconds)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return directory


def run_once(fn, *args):
  """fn(*args), jit-compiled without XLA's backend optimisation: for programs that run once,
  like drawing a GAN's initial parameters. Their threefry draws make XLA:CPU's optimising
  backend slow (the recommended 64 px generator's init: 15.8 s to compile, 1.0 s without it,
  bit-identical values); optimising a program that runs once never pays back."""
  import jax  # pylint: disable=import-outside-toplevel
  if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args)):
    return fn(*args)   # inside an outer transformation (eval_shape, jit): it compiles fn
  compiled = jax.jit(fn).lower(*args).compile(
      compiler_options={'xla_backend_optimization_level': 0})
  return compiled(*args)
