"""Scaling: images/s of the GAN and classifier train steps at 1, 2, 4, 8 devices.

  python -m braingan.bench scaling [--json] [--devices=1,2,4,8] [--models=gan,classifier]
      [--image_size=64] [--per_device_batch=4] [--steps=3] [--dtypes=float32,bfloat16]

The per-device batch is fixed, so the global batch grows with the device count (weak scaling,
how data parallelism is used). For every (model, dtype, devices) it reports the compile time,
the median step time, images/s, speedup over 1 device, scaling efficiency (speedup / devices),
and the achieved FLOP/s (XLA's cost analysis of the compiled step, which counts one device's
share, times the devices) against the measured dense-matmul peak (bench/common.py).

Where the devices come from:
  * GPU/TPU: the real devices of this host, in this process (device counts above what the
    host has are skipped). float32 and bfloat16 are both measured by default.
  * CPU: each device count runs in a fresh subprocess with
    XLA_FLAGS=--xla_force_host_platform_device_count=N. Those N "devices" share the same CPU
    cores, so the ideal here is a FLAT images/s (speedup 1, efficiency 1/N): the CPU table
    measures what partitioning costs (collectives, per-device dispatch), not parallel speedup.
    The matmul peak is the whole machine's (one matmul uses every core), so %peak compares
    the step with what the machine can do. float32 only by default (XLA:CPU has no fast bf16).

The default run is short on purpose (64 px images, per-device batch 4, 3 timed steps after one
warm-up, so about a minute per device count per model on 2 CPU cores, most of it compilation);
use --image_size=128 and more --steps for numbers comparable with the training runs.

Flags are parsed with argparse (not absl) so that this module can be dispatched from
`python -m braingan.bench` next to benches that define absl flags of the same names.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

import jax
import jax.numpy as jnp

from braingan.bench import common

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ('gan', 'classifier')


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='python -m braingan.bench scaling',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--devices', default='1,2,4,8', help='Device counts, comma-separated.')
  parser.add_argument('--models', default='gan,classifier', help='gan and/or classifier.')
  parser.add_argument('--dtypes', default='auto',
                      help="Compute dtypes; 'auto' = float32 on CPU, float32,bfloat16 else.")
  parser.add_argument('--image_size', type=int, default=64)
  parser.add_argument('--per_device_batch', type=int, default=4)
  parser.add_argument('--steps', type=int, default=3, help='Timed steps (median reported).')
  parser.add_argument('--warmup', type=int, default=1, help='Untimed steps after compiling.')
  parser.add_argument('--worker_timeout', type=float, default=1200,
                      help='Seconds allowed per CPU subprocess (one device count).')
  parser.add_argument('--json', action='store_true', help='Print one JSON object.')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.devices = [int(d) for d in str(args.devices).split(',') if d]
  args.models = [m for m in str(args.models).split(',') if m]
  for model in args.models:
    if model not in MODELS:
      parser.error(f'--models: unknown model {model!r}; choose from {MODELS}.')
  if args.per_device_batch < 1 or args.steps < 1 or min(args.devices, default=0) < 1:
    parser.error('--per_device_batch, --steps and --devices must be positive.')
  return args


def resolve_dtypes(spec: str, platform: str) -> list[str]:
  if spec == 'auto':
    return ['float32'] if platform == 'cpu' else ['float32', 'bfloat16']
  return [d for d in spec.split(',') if d]


# ------------------------------------------------------------------------------ workloads
def _gan_workload(dtype: str, image_size: int, global_batch: int):
  from configs import cgan  # pylint: disable=g-import-not-at-top
  config = cgan.get_config()
  config.dtype, config.data.image_size, config.batch_size = dtype, image_size, global_batch
  return config


def _classifier_workload(dtype: str, image_size: int, global_batch: int):
  from configs import classifier  # pylint: disable=g-import-not-at-top
  config = classifier.get_config()
  config.dtype, config.data.image_size, config.batch_size = dtype, image_size, global_batch
  config.model.pretrained = 'none'  # Weights do not change the speed; no download.
  return config


WORKLOADS: dict[str, Callable] = {'gan': _gan_workload, 'classifier': _classifier_workload}


def measure(model: str, num_devices: int, dtype: str, args: argparse.Namespace) -> dict:
  """Compiles and times one step configuration in this process."""
  global_batch = args.per_device_batch * num_devices
  config = WORKLOADS[model](dtype, args.image_size, global_batch)
  step = common.CompiledStep(config, num_devices)
  compile_s, flops_per_device = step.compile_s, step.flops
  times = common.time_calls(step.run, warmup=args.warmup, repeats=args.steps)
  step_s = common.median(times)
  return {
      'model': model, 'dtype': dtype, 'devices': num_devices, 'global_batch': global_batch,
      'compile_s': compile_s, 'step_s': step_s, 'step_times_s': times,
      'images_per_s': global_batch / step_s,
      'gflop_per_step': None if flops_per_device is None
                        else flops_per_device * num_devices / 1e9,
  }


def peak_gflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
  """Dense n x n matmul throughput of one device in `dtype` (float32: common's helper)."""
  if dtype == 'float32':
    return common.peak_matmul_gflops(n=n, repeats=repeats)
  key = jax.random.key(0)
  a = jax.random.normal(key, (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32).astype(dtype)
  matmul = jax.jit(lambda x, y: x @ y)
  times = common.time_calls(lambda: common.block(matmul(a, b)), warmup=2, repeats=repeats)
  return 2.0 * n ** 3 / min(times) / 1e9


# ---------------------------------------------------------------------- running all of it
def _worker(args: argparse.Namespace) -> None:
  """One device count (CPU subprocess): prints RESULT lines, one per (model, dtype)."""
  num_devices = args.devices[0]
  if jax.device_count() < num_devices:
    raise RuntimeError(f'worker wants {num_devices} devices, JAX has {jax.device_count()}')
  for model in args.models:
    for dtype in resolve_dtypes(args.dtypes, jax.default_backend()):
      print('RESULT', json.dumps(measure(model, num_devices, dtype, args)), flush=True)


def _cpu_subprocess(num_devices: int, argv: list[str], timeout: float,
                    cache_dir: str) -> list[dict]:
  """Runs one device count in a fresh process with N forced host devices.

  `cache_dir` (fresh per benchmark run) is JAX's persistent compilation cache, shared by the
  runs of the different device counts: the models' init programs are the same for all of them
  and compile once; the measured train steps differ per device count, so each one is compiled
  for real and its compile time is genuine.
  """
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  flags.append(f'--xla_force_host_platform_device_count={num_devices}')
  env.update(XLA_FLAGS=' '.join(flags), JAX_PLATFORMS='cpu',
             JAX_COMPILATION_CACHE_DIR=cache_dir,
             TF_CPP_MIN_LOG_LEVEL=env.get('TF_CPP_MIN_LOG_LEVEL', '2'),
             PYTHONPATH=os.pathsep.join([REPO_ROOT] + (
                 [env['PYTHONPATH']] if env.get('PYTHONPATH') else [])))
  cmd = [sys.executable, '-m', 'braingan.bench.scaling', '--worker',
         f'--devices={num_devices}'] + argv
  proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
    raise RuntimeError(f'{num_devices}-device run exceeded {timeout:.0f}s.\n{err[-3000:]}')
  if proc.returncode != 0:
    raise RuntimeError(f'{num_devices}-device run failed (exit {proc.returncode}).\n'
                       f'{err[-5000:]}')
  return [json.loads(line[len('RESULT '):]) for line in out.splitlines()
          if line.startswith('RESULT ')]


def add_derived(rows: list[dict], peaks: dict[str, float], shared_cores: bool) -> None:
  """Speedup / efficiency vs the 1-device row, achieved GFLOP/s and % of peak, in place."""
  base = {(r['model'], r['dtype']): r for r in rows if r['devices'] == 1}
  for r in rows:
    ref = base.get((r['model'], r['dtype']))
    r['speedup'] = r['images_per_s'] / ref['images_per_s'] if ref else None
    r['efficiency'] = r['speedup'] / r['devices'] if ref else None
    gflop = r['gflop_per_step']
    r['achieved_gflops'] = gflop / r['step_s'] if gflop is not None else None
    peak = peaks.get(r['dtype'])
    if peak and r['achieved_gflops'] is not None:
      ceiling = peak if shared_cores else peak * r['devices']
      r['peak_gflops'] = ceiling
      r['pct_of_peak'] = 100.0 * r['achieved_gflops'] / ceiling
    else:
      r['peak_gflops'] = r['pct_of_peak'] = None


def run(args: argparse.Namespace) -> dict:
  platform = jax.default_backend()
  dtypes = resolve_dtypes(args.dtypes, platform)
  start = time.perf_counter()
  peaks = {d: peak_gflops(d) for d in dtypes}
  rows, skipped = [], []
  worker_argv = [f'--models={",".join(args.models)}', f'--dtypes={",".join(dtypes)}',
                 f'--image_size={args.image_size}', f'--per_device_batch={args.per_device_batch}',
                 f'--steps={args.steps}', f'--warmup={args.warmup}']
  cache_dir = tempfile.mkdtemp(prefix='braingan_scaling_cache_')
  try:
    for n in args.devices:
      if platform == 'cpu':
        rows += _cpu_subprocess(n, worker_argv, args.worker_timeout, cache_dir)
      elif n <= jax.device_count():
        rows += [measure(m, n, d, args) for m in args.models for d in dtypes]
      else:
        skipped.append(n)
  finally:
    shutil.rmtree(cache_dir, ignore_errors=True)
  add_derived(rows, peaks, shared_cores=platform == 'cpu')
  device = jax.devices()[0]
  return {
      'benchmark': 'scaling', 'platform': platform, 'device_kind': device.device_kind,
      'host_cpus': os.cpu_count(), 'devices_available': jax.device_count(),
      'forced_host_devices': platform == 'cpu', 'image_size': args.image_size,
      'per_device_batch': args.per_device_batch, 'timed_steps': args.steps,
      'warmup_steps': args.warmup, 'peak_matmul_gflops_per_device': peaks,
      'skipped_device_counts': skipped, 'total_seconds': time.perf_counter() - start,
      'rows': rows,
  }


def format_table(result: dict) -> str:
  shared = result['forced_host_devices']
  lines = [
      f"Scaling on {result['platform']} ({result['device_kind']}, {result['host_cpus']} host "
      f"CPUs): {result['image_size']} px, per-device batch {result['per_device_batch']}, "
      f"median of {result['timed_steps']} steps after {result['warmup_steps']} warm-up",
      'Dense matmul peak: ' + ', '.join(
          f'{d} {common.fmt(p)} GFLOP/s' for d, p in
          result['peak_matmul_gflops_per_device'].items()) +
      (' (whole machine: forced host devices share its cores)' if shared else ' per device'),
  ]
  header = ('model', 'dtype', 'dev', 'batch', 'compile_s', 'step_ms', 'img/s', 'speedup',
            'effic', 'GFLOP/step', 'GFLOP/s', '%peak')
  table = [header]
  for r in result['rows']:
    table.append((r['model'], r['dtype'], str(r['devices']), str(r['global_batch']),
                  f"{r['compile_s']:.1f}", f"{1000 * r['step_s']:.0f}",
                  f"{r['images_per_s']:.1f}", common.fmt(r['speedup'], 3),
                  common.fmt(r['efficiency'], 3), common.fmt(r['gflop_per_step'], 3),
                  common.fmt(r['achieved_gflops'], 3), common.fmt(r['pct_of_peak'], 3)))
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  lines += ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
  if shared:
    lines.append('CPU note: N forced devices share the same cores, so ideal scaling here is '
                 'flat img/s (speedup 1.0, efficiency 1/N); lower speedup is partitioning '
                 'overhead.')
  if result['skipped_device_counts']:
    lines.append(f"Skipped (not enough devices): {result['skipped_device_counts']}")
  lines.append(f"Total {result['total_seconds']:.0f} s.")
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  if args.worker:
    _worker(args)
    return 0
  result = run(args)
  print(json.dumps(result) if args.json else format_table(result), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
