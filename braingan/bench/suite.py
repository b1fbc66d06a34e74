"""One prepared command for an accelerator lease: every throughput figure, partial results safe.

  python -m braingan.bench suite --out=bench_out [--budget_s=480] [--tiny]

Parts, each with its own time budget (a part that runs out stops after the measurement in
progress; results.json and results.md are rewritten after every measurement, so a lease that
ends early still leaves what was measured):
  gan         GANForge and the conditioned preset, 64 / 128 px, batch 32 / 256, float32 / bf16
  classifier  ResNet50 step at 128 and 224 px, bfloat16 (and float32)
  pipeline    input images/s at 128 px from the prepared dataset (data/sample by default)
  scaling     1 -> N devices for the GAN step when JAX sees N > 1 (bench scaling)
  trace       one profiler trace of one GAN step (open it with TensorBoard / Perfetto)
Each step figure: compile seconds, median step seconds, images/s, peak device memory (XLA's
buffer plan), FLOPs from XLA's cost analysis and MFU against the device's peak (PEAK_TFLOPS;
unknown devices report achieved TFLOP/s only). --tiny: small shapes for a CPU test run.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, Callable

# Dense peak TFLOP/s by device kind: (bfloat16, float32 as XLA runs it: TF32 on tensor cores).
PEAK_TFLOPS = {
    'NVIDIA H200': (989.0, 494.0), 'NVIDIA H100 80GB HBM3': (989.0, 494.0),
    'NVIDIA H100': (989.0, 494.0), 'NVIDIA A100-SXM4-80GB': (312.0, 156.0),
    'NVIDIA A100-SXM4-40GB': (312.0, 156.0), 'NVIDIA A100': (312.0, 156.0),
    'NVIDIA L4': (121.0, 60.0), 'NVIDIA A10G': (70.0, 35.0), 'Tesla T4': (65.0, 8.1),
    'TPU v4': (275.0, 275.0), 'TPU v5 lite': (197.0, 197.0), 'TPU v5e': (197.0, 197.0),
    'TPU v5p': (459.0, 459.0),
}


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  for name, (bf16, fp32) in PEAK_TFLOPS.items():
    if device_kind == name or device_kind.startswith(name):
      return bf16 if dtype == 'bfloat16' else fp32
  return None


def mfu(flops: float | None, seconds: float, peak: float | None) -> float | None:
  """Achieved FLOP/s over the device's peak (None when either is unknown)."""
  if not flops or not peak or seconds <= 0:
    return None
  return flops / seconds / (peak * 1e12)


class Suite:
  """Collects results part by part and rewrites results.json / results.md after each one."""

  def __init__(self, out: str, budgets: dict[str, float]):
    import jax  # pylint: disable=import-outside-toplevel
    self.out, self.budgets = out, budgets
    os.makedirs(out, exist_ok=True)
    devices = jax.devices()
    self.results: dict[str, Any] = {
        'device_kind': devices[0].device_kind, 'platform': devices[0].platform,
        'num_devices': len(devices), 'date': time.strftime('%Y-%m-%d'),
        'jax': jax.__version__, 'parts': {}}

  def part(self, name: str, measurements: list[tuple[str, Callable[[], dict]]]) -> None:
    start = time.perf_counter()
    entry = {'rows': [], 'status': 'complete', 'budget_s': self.budgets[name]}
    self.results['parts'][name] = entry
    for label, measure in measurements:
      if time.perf_counter() - start > self.budgets[name]:
        entry['status'] = f'stopped by its {self.budgets[name]:g} s budget before {label}'
        break
      try:
        entry['rows'].append({'name': label, **measure()})
      except Exception as e:  # pylint: disable=broad-except  (one failure must not end a lease)
        entry['rows'].append({'name': label, 'error': f'{type(e).__name__}: {e}'[:500]})
      entry['seconds'] = time.perf_counter() - start
      self.write()
    entry['seconds'] = time.perf_counter() - start
    self.write()

  def write(self) -> None:
    from braingan import files  # pylint: disable=import-outside-toplevel
    files.write_json(os.path.join(self.out, 'results.json'), self.results, default=str)
    files.write_text(os.path.join(self.out, 'results.md'), markdown(self.results))


def markdown(results: dict) -> str:
  lines = [f'Device: {results["num_devices"]} x {results["device_kind"]} '
           f'({results["platform"]}), jax {results["jax"]}, {results["date"]}.', '']
  for name, part in results['parts'].items():
    lines += [f'### {name} ({part["status"]}, {part.get("seconds", 0):.0f} s)', '']
    rows = part['rows']
    if not rows:
      lines += ['(nothing measured)', '']
      continue
    keys = [k for k in ('name', 'compile_s', 'step_s', 'images_per_s', 'peak_memory_gib',
                        'tflops', 'mfu', 'value', 'error') if any(k in r for r in rows)]
    lines.append('| ' + ' | '.join(keys) + ' |')
    lines.append('|' + '---|' * len(keys))
    for r in rows:
      cells = []
      for k in keys:
        v = r.get(k, '')
        cells.append(f'{v:.4g}' if isinstance(v, float) else str(v))
      lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
  return '\n'.join(lines)


def step_measurement(config, device_kind: str, repeats: int = 5) -> dict:
  """Compile + time one training step of `config` on random data."""
  from braingan.bench import common  # pylint: disable=import-outside-toplevel
  step = common.CompiledStep(config)
  flops, memory, compile_s = step.flops, step.memory, step.compile_s
  times = common.time_calls(step.run, warmup=2, repeats=repeats)
  step_s = common.median(times)
  peak = peak_tflops(device_kind, config.dtype)
  return {'compile_s': compile_s, 'step_s': step_s,
          'images_per_s': config.batch_size / step_s,
          'peak_memory_gib': common.gib(memory['peak_bytes']) if memory else None,
          'tflops': flops / step_s / 1e12 if flops else None,
          'mfu': mfu(flops, step_s, peak), 'step_gflop': flops / 1e9 if flops else None}


def _gan_configs(tiny: bool):
  from configs import cgan, cgan_conditioned  # pylint: disable=import-outside-toplevel
  grid = ([(32, 8, 'float32')] if tiny else
          [(s, b, d) for s in (64, 128) for b in (32, 256) for d in ('float32', 'bfloat16')])
  for preset, get in (('ganforge', cgan.get_config), ('conditioned', cgan_conditioned.get_config)):
    for size, batch, dtype in grid:
      config = get()
      config.data.image_size, config.batch_size, config.dtype = size, batch, dtype
      if tiny:
        config.model.latent_dim, config.model.g_base_depth = 16, 16
        config.model.g_widths = (16, 8, 8, 8)
        config.model.d_widths = (8, 8, 8, 8, 8) if preset == 'ganforge' else (8, 8, 8, 8)
      yield f'{preset} {size}px b{batch} {dtype}', config


def _classifier_configs(tiny: bool):
  from configs import classifier  # pylint: disable=import-outside-toplevel
  grid = [(32, 8, 'float32')] if tiny else [(128, 32, 'bfloat16'), (224, 32, 'bfloat16'),
                                             (128, 32, 'float32')]
  for size, batch, dtype in grid:
    config = classifier.get_config()
    config.model.pretrained = 'none'
    config.data.image_size, config.batch_size, config.dtype = size, batch, dtype
    if tiny:
      config.model.stage_sizes, config.model.width, config.model.head_units = (1, 1, 1, 1), 8, 16
    yield f'resnet{"-tiny" if tiny else "50"} {size}px b{batch} {dtype}', config


def _pipeline(data_dir: str, out: str, tiny: bool) -> dict:
  from braingan.data import pipeline  # pylint: disable=import-outside-toplevel
  from configs import common as common_config  # pylint: disable=import-outside-toplevel
  cfg = common_config.data_config()
  cfg.data_dir, cfg.image_size = data_dir, 32 if tiny else 128
  source = pipeline.load(cfg, os.path.join(out, 'prepared'), seed=0)
  steps = 5 if tiny else 50
  start = time.perf_counter()
  n = sum(len(b['label']) for b in source.train_epoch(0, 32, steps))
  return {'images_per_s': n / (time.perf_counter() - start), 'value': f'{n} images'}


def _trace(out: str, tiny: bool) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  from braingan.bench import common  # pylint: disable=import-outside-toplevel
  name, config = next(_gan_configs(tiny))
  step = common.CompiledStep(config)
  step.run()                                       # allocation outside the trace
  trace_dir = os.path.join(out, 'trace')
  jax.profiler.start_trace(trace_dir)
  step.run()
  jax.profiler.stop_trace()
  return {'value': f'{name}: {trace_dir}'}


def main(argv) -> int:
  parser = argparse.ArgumentParser(prog='python -m braingan.bench suite')
  parser.add_argument('--out', default='bench_out')
  parser.add_argument('--budget_s', type=float, default=480.0, help='all parts together')
  parser.add_argument('--tiny', action='store_true', help='small shapes (a CPU test run)')
  parser.add_argument('--data_dir', default='data/sample')
  parser.add_argument('--parts', default='gan,classifier,pipeline,scaling,trace')
  args = parser.parse_args(argv)
  import jax  # pylint: disable=import-outside-toplevel
  parts = [p for p in args.parts.split(',') if p]
  shares = {'gan': 0.45, 'classifier': 0.3, 'pipeline': 0.08, 'scaling': 0.12, 'trace': 0.05}
  total = sum(shares[p] for p in parts)
  suite = Suite(args.out, {p: args.budget_s * shares[p] / total for p in parts})
  kind = suite.results['device_kind']
  if 'gan' in parts:
    suite.part('gan', [(n, lambda c=c: step_measurement(c, kind, 3 if args.tiny else 5))
                       for n, c in _gan_configs(args.tiny)])
  if 'classifier' in parts:
    suite.part('classifier', [(n, lambda c=c: step_measurement(c, kind, 3 if args.tiny else 5))
                              for n, c in _classifier_configs(args.tiny)])
  if 'pipeline' in parts:
    suite.part('pipeline', [(f'{32 if args.tiny else 128} px from the prepared dataset',
                             lambda: _pipeline(args.data_dir, args.out, args.tiny))])
  if 'scaling' in parts and jax.device_count() > 1:
    from braingan.bench import scaling  # pylint: disable=import-outside-toplevel
    counts = [n for n in (1, 2, 4, 8, 16) if n <= jax.device_count()]
    suite.part('scaling', [(f'gan {n} devices', lambda n=n: scaling.measure(
        'gan', n, 'bfloat16', argparse.Namespace(per_device_batch=32, image_size=128,
                                                 steps=5, warmup=1))) for n in counts])
  if 'trace' in parts:
    suite.part('trace', [('one GAN step', lambda: _trace(args.out, args.tiny))])
  print(markdown(suite.results))
  print(json.dumps({'out': args.out}))
  return 0
