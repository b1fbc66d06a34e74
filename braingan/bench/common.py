"""Timing, FLOP and memory helpers shared by the benchmarks (`python -m braingan.bench ...`).

Benchmarks on a shared CPU are noisy, so every figure is a median over several timed calls
after a warm-up, and reference implementations are timed in the same process run, right
next to ours, so that their ratio is meaningful even when absolute numbers drift.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def block(tree: Any) -> Any:
  """Waits for every array of `tree` (JAX dispatch is asynchronous)."""
  return jax.block_until_ready(tree)


def time_calls(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 3) -> list[float]:
  """Seconds per call of `fn()` (which must block until its work is done)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def interleaved_times(fns: dict[str, Callable[[], Any]], rounds: int, per_round: int = 1,
                      settle: int = 1) -> dict[str, list[float]]:
  """Seconds per call of each blocking `fn`, timed in alternating rounds.

  Each round runs every fn in turn: `settle` untimed calls, then `per_round` timed ones. Both
  implementations see the same machine load (they alternate within seconds), and the untimed
  call after each switch keeps one framework's after-effects (the other's thread pools going
  idle, caches refilled with its own working set) out of the other's figure; measured on the
  GAN step, our step ran ~15% slower right after a Keras step than after one of its own.
  """
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      for _ in range(settle):
        fn()
      times[name].extend(time_calls(fn, warmup=0, repeats=per_round))
  return times


def cpu_bf16_hardware() -> str | None:
  """'amx_bf16' or 'avx512_bf16' when this CPU has bfloat16 matrix units, else None."""
  try:
    with open('/proc/cpuinfo', encoding='ascii', errors='ignore') as f:
      flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
  except OSError:
    return None
  return next((name for name in ('amx_bf16', 'avx512_bf16') if name in flags), None)


def compare(ours: Callable[[], Any], reference: Callable[[], Any], rounds: int,
            per_round: int = 1, settle: int = 1) -> dict:
  """Median seconds of two blocking steps timed in interleaved rounds, and their ratio
  (reference seconds / ours: above 1 means ours is faster)."""
  ours()
  reference()
  times = interleaved_times({'ours': ours, 'reference': reference}, rounds, per_round, settle)
  jax_s, ref_s = median(times['ours']), median(times['reference'])
  return {'jax_step_s': round(jax_s, 4), 'reference_step_s': round(ref_s, 4),
          'ratio': round(ref_s / jax_s, 3)}


def median(values: list[float]) -> float:
  return float(statistics.median(values))


def compile_jitted(jitted: Callable, *args: Any) -> tuple[Any, float]:
  """(compiled executable, seconds spent in lowering + XLA compilation)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def compiled_flops(compiled: Any) -> float | None:
  """FLOPs of one call of a compiled executable, from XLA's cost analysis (None if absent)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  (backend without cost analysis)
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])


def compiled_memory_bytes(compiled: Any) -> dict[str, int] | None:
  """XLA's static memory plan of an executable: arguments, outputs, temporaries (bytes).

  `peak_bytes` = arguments + outputs + temporaries - aliased (donated) bytes: what the step
  needs on the device at its peak.
  """
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if m is None:
    return None
  out = {
      'argument_bytes': int(m.argument_size_in_bytes),
      'output_bytes': int(m.output_size_in_bytes),
      'temp_bytes': int(m.temp_size_in_bytes),
      'alias_bytes': int(m.alias_size_in_bytes),
  }
  out['peak_bytes'] = (out['argument_bytes'] + out['output_bytes'] + out['temp_bytes']
                       - out['alias_bytes'])
  return out


def max_rss_bytes() -> int:
  """Peak resident memory of this process so far (all of it: Python, TF, XLA)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(rss if sys.platform == 'darwin' else rss * 1024)


def peak_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
  """Measured dense float32 matmul throughput of the default JAX device, in GFLOP/s.

  The machine's practical ceiling for dense math: the best of `repeats` timed n x n @ n x n
  products (2 n^3 FLOPs each), jitted, after a warm-up. Taking the best (not the median)
  estimates the peak that an uncontended machine reaches.
  """
  key = jax.random.key(0)
  a = jax.random.normal(key, (n, n), jnp.float32)
  b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32)
  matmul = jax.jit(lambda x, y: x @ y)
  times = time_calls(lambda: block(matmul(a, b)), warmup=2, repeats=repeats)
  return 2.0 * n ** 3 / min(times) / 1e9


def gib(num_bytes: float | None) -> float | None:
  return None if num_bytes is None else float(num_bytes) / 2 ** 30


def fmt(value: Any, digits: int = 3) -> str:
  if value is None:
    return 'n/a'
  if isinstance(value, float):
    return f'{value:.{digits}g}'
  return str(value)


def summary_line(name: str, values: list[float]) -> str:
  arr = np.asarray(values)
  return f'{name}: median {np.median(arr):.3f} s (min {arr.min():.3f}, max {arr.max():.3f}, n={len(arr)})'


class CompiledStep:
  """One training step of a config, compiled for the mesh, on random data; `run()` takes one
  blocking step (the state carried from call to call, as in training)."""

  def __init__(self, config, num_devices: int | None = None, seed: int = 0):
    from braingan import train  # pylint: disable=import-outside-toplevel
    from braingan.runtime import parallel  # pylint: disable=import-outside-toplevel
    from braingan.train import loop  # pylint: disable=import-outside-toplevel
    if num_devices is not None:
      config.num_devices = num_devices
    self.config = config
    self.trainer = loop.Trainer(train.recipe_class(config)(config, None))
    size, channels, n = config.data.image_size, config.data.channels, config.batch_size
    rng = np.random.default_rng(seed)
    self.host_batch = {
        'image': rng.uniform(-1, 1, (n, size, size, channels)).astype(np.float32),
        'label': rng.integers(0, 4, n).astype(np.int32)}
    self.batch = parallel.shard_batch(self.trainer.mesh, self.host_batch)
    self.state = self.trainer.initial_state()
    self.hparams = self.trainer.place_hparams(self.trainer.recipe.hparams())
    self.compiled, self.compile_s = compile_jitted(self.trainer.train_step, self.state,
                                                   self.batch, self.hparams)
    self.flops = compiled_flops(self.compiled)
    self.memory = compiled_memory_bytes(self.compiled)

  def run(self) -> None:
    self.state, metrics = self.compiled(self.state, self.batch, self.hparams)
    block(metrics)
