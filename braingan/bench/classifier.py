"""Classifier training-step benchmark: `python -m braingan.bench classifier [--json] [--profile]`.

Times our jitted ResNet50 fine-tuning step (128 px, batch 32, the study's first 15 Keras layers
frozen, after compilation) and, in the same process, the tf.keras twin of the same model and step
(`keras_resnet.py`). The two are timed interleaved (ours, Keras, ours, Keras, ...) so that load
from other processes on a shared machine hits both alike; the ratio is what to compare.

FLOPs come from XLA's cost analysis of our compiled step (it counts a multiply-add as 2 FLOPs; the
frozen stem has no backward pass); the fraction of peak compares with a measured dense matmul.
`--profile` adds a per-op-kind and per-layer breakdown of one step from a JAX profiler trace.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax

from braingan.bench import common


def _parse(argv):
  p = argparse.ArgumentParser(prog='python -m braingan.bench classifier')
  p.add_argument('--json', action='store_true', help='Print one JSON object.')
  p.add_argument('--image_size', type=int, default=128)
  p.add_argument('--batch_size', type=int, default=32)
  p.add_argument('--steps', '--rounds', type=int, default=4,
                 help='Alternating rounds (each implementation per round: settle + per_round).')
  p.add_argument('--per_round', type=int, default=2, help='Timed steps per round.')
  p.add_argument('--settle', type=int, default=1,
                 help='Untimed steps after each switch of implementation.')
  p.add_argument('--freeze', default='keras15')
  p.add_argument('--no_keras', action='store_true', help='Skip the tf.keras reference.')
  p.add_argument('--profile', action='store_true', help='Per-op / per-layer time breakdown.')
  p.add_argument('--bf16', action='store_true',
                 help='Also time both steps in bfloat16 (automatic when the CPU has AMX or '
                      'AVX512-BF16).')
  return p.parse_args(argv)


def build_step(image_size: int, batch_size: int, freeze: str, dtype: str = 'float32'):
  """Our classifier step (common.CompiledStep) at this size, freezing and dtype."""
  from configs import classifier as classifier_config  # pylint: disable=g-import-not-at-top
  config = classifier_config.get_config()
  config.model.pretrained, config.model.freeze = 'none', freeze
  config.data.image_size, config.batch_size, config.dtype = image_size, batch_size, dtype
  return common.CompiledStep(config)


def bf16_comparison(args, hardware: str | None) -> dict:
  """Both steps in bfloat16 compute (ours: config.dtype; Keras: the mixed_bfloat16 policy).

  On a CPU with AMX or AVX512-BF16, TensorFlow's oneDNN runs bf16 convolutions on those units;
  XLA:CPU in our jaxlib does not, so a Keras user with mixed_bfloat16 can be several times
  faster there. The ratio says how much (same process, interleaved rounds).
  """
  from braingan.bench import keras_resnet  # pylint: disable=g-import-not-at-top
  step = build_step(args.image_size, args.batch_size, args.freeze, 'bfloat16')

  keras_step = keras_resnet.make_train_fn(
      keras_resnet.build(args.image_size, policy='mixed_bfloat16'), args.batch_size,
      args.image_size)
  return {'hardware': hardware or 'not detected (forced with --bf16)',
          'jax_compile_s': round(step.compile_s, 2),
          **common.compare(step.run, keras_step, args.steps, args.per_round, args.settle)}


def profile_step(run_once, compiled) -> dict:
  """Milliseconds per op kind (fwd/bwd x primitive) and per layer, from a profiler trace."""
  hlo = compiled.as_text()
  info = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(
      r'\n\s*(?:ROOT )?%([\w.\-]+) = (\S+) [^\n]*?op_name="([^"]*)"', hlo)}
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    run_once()
    jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True))[-1]
    with gzip.open(path) as f:
      events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  by_kind, by_layer = collections.Counter(), collections.Counter()
  for e in events:
    if e.get('ph') != 'X' or e.get('name') not in info:
      continue
    shape, op = info[e['name']]
    ms = e.get('dur', 0) / 1000
    direction = 'bwd' if 'transpose(' in op else 'fwd'
    prim = op.split('/')[-1]
    if direction == 'bwd' and prim == 'conv_general_dilated' and re.match(
        r'f32\[\d+,\d+,\d+,\d+\]', shape) and re.match(r'f32\[\d+,(3|7),(3|7),\d+\]', shape):
      prim += ' (weight grad)'
    layer = re.search(r'/(conv\d_block\d+_\d_(?:conv|bn)|conv1_\w+|head_\w+)', op)
    by_kind[f'{direction} {prim}'] += ms
    by_layer[f'{direction} {layer.group(1) if layer else "(between layers) " + prim}'] += ms
  return {'total_ms': round(sum(by_kind.values()), 1),
          'by_kind_ms': {k: round(v, 1) for k, v in by_kind.most_common(16)},
          'by_layer_ms': {k: round(v, 1) for k, v in by_layer.most_common(16)}}


def main(argv=None) -> int:
  """Entry point of `python -m braingan.bench classifier`; prints the result, returns 0."""
  run(argv)
  return 0


def run(argv=None) -> dict:
  """Runs the benchmark, prints it (table or --json) and returns the result dict."""
  args = _parse(argv or [])
  step = build_step(args.image_size, args.batch_size, args.freeze)
  compiled, compile_s, ours = step.compiled, step.compile_s, step.run

  ours()  # Warm-up (first execution allocates).
  keras_step = None
  if not args.no_keras:
    from braingan.bench import keras_resnet  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    keras_model = keras_resnet.build(args.image_size)
    keras_step = keras_resnet.make_train_fn(keras_model, args.batch_size, args.image_size)
    keras_step()
    keras_first_s = time.perf_counter() - start
    keras_step()
  # Interleaved rounds: both see the same background load (common.interleaved_times).
  fns = {'ours': ours} if keras_step is None else {'ours': ours, 'keras': keras_step}
  times = common.interleaved_times(fns, args.steps, per_round=args.per_round,
                                   settle=args.settle)
  ours_t, keras_t = times['ours'], times.get('keras', [])
  step_s = common.median(ours_t)
  flops = common.compiled_flops(compiled)
  peak = common.peak_matmul_gflops()
  memory = common.compiled_memory_bytes(compiled)
  achieved = None if flops is None else flops / step_s / 1e9
  result = {
      'benchmark': 'classifier', 'model': 'ResNet50 (Keras layout) + 512 head, keras15 frozen'
      if args.freeze == 'keras15' else f'ResNet50, freeze={args.freeze}',
      'device': jax.devices()[0].device_kind, 'num_devices': jax.device_count(),
      'image_size': args.image_size, 'batch_size': args.batch_size,
      'compile_s': round(compile_s, 2), 'rounds': args.steps, 'per_round': args.per_round,
      'settle': args.settle, 'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
      # Key names shared with `bench gan`: jax_* = ours, reference_* = the tf.keras twin.
      'jax_step_s': round(step_s, 4), 'jax_step_times_s': [round(t, 4) for t in ours_t],
      'jax_images_per_s': round(args.batch_size / step_s, 2),
      'step_gflop': None if flops is None else round(flops / 1e9, 1),
      'gflop_per_image': None if flops is None else round(flops / 1e9 / args.batch_size, 2),
      'achieved_gflops': None if achieved is None else round(achieved, 1),
      'peak_matmul_gflops': round(peak, 1),
      'fraction_of_peak': None if achieved is None else round(achieved / peak, 3),
      'step_peak_memory_gib': None if memory is None else round(common.gib(memory['peak_bytes']), 3),
      'process_max_rss_gib': round(common.gib(common.max_rss_bytes()), 3),
      'load_average_1min': round(os.getloadavg()[0], 2), 'cpu_count': os.cpu_count(),
  }
  if keras_step is not None:
    keras_s = common.median(keras_t)
    result.update({
        'reference': 'tf_keras ResNet50 + head, layers[:15] frozen, train_on_batch',
        'reference_step_s': round(keras_s, 4),
        'reference_step_times_s': [round(t, 4) for t in keras_t],
        'reference_images_per_s': round(args.batch_size / keras_s, 2),
        'reference_first_step_s': round(keras_first_s, 2),
        'ratio': round(keras_s / step_s, 3)})  # ours / Keras images per second.
  hardware = common.cpu_bf16_hardware() if jax.default_backend() == 'cpu' else None
  if (hardware or args.bf16) and not args.no_keras:
    result['bf16'] = bf16_comparison(args, hardware)
  if args.profile:
    result['profile'] = profile_step(ours, compiled)
  if args.json:
    print(json.dumps(result))
  else:
    for key, value in result.items():
      if key == 'profile':
        print('profile (ms in one step):')
        for section, table in value.items():
          if isinstance(table, dict):
            print(f'  {section}:')
            for name, ms in table.items():
              print(f'    {ms:9.1f}  {name}')
          else:
            print(f'  {section}: {table}')
      else:
        print(f'{key}: {common.fmt(value) if not isinstance(value, list) else value}')
  return result


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top
  main(sys.argv[1:])
