"""GAN train-step throughput: our jitted JAX step vs the Keras original, in one process.

python -m braingan.bench gan [--json] [--rounds=3] [--batch_size=32] [--image_size=128]

Both steps run the same cDCGAN (configs/cgan.py's model, GANForge's preset) on the same
batch shape. After compiling/tracing, rounds alternate the two (per round and implementation:
one untimed step, then --per_round timed ones; common.interleaved_times says why), so both see
the same machine load; the figures are medians over all timed steps. FLOPs of our step
come from XLA's cost analysis of the compiled executable; peak memory from XLA's buffer plan
(arguments + outputs + temporaries - donated) and, for the whole process, the max RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _parse(argv):
  from braingan.train import gan  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(prog='python -m braingan.bench gan')
  parser.add_argument('--json', action='store_true', help='print one JSON object')
  parser.add_argument('--rounds', type=int, default=3,
                      help='alternating rounds (each implementation per round: settle + per_round)')
  parser.add_argument('--per_round', type=int, default=2, help='timed steps per round')
  parser.add_argument('--settle', type=int, default=1,
                      help='untimed steps after each switch of implementation')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--image_size', type=int, default=128)
  parser.add_argument('--channels', type=int, default=1)
  parser.add_argument('--layer_mode', default='inference', choices=gan.LAYER_MODES,
                      help="BatchNorm/Dropout mode of both steps (configs/cgan.py's model.layer_mode)")
  parser.add_argument('--no_reference', action='store_true', help='skip the Keras twin')
  parser.add_argument('--bf16', action='store_true',
                      help='also time both steps in bfloat16 (automatic on a CPU with AMX or '
                           'AVX512-BF16)')
  parser.add_argument('--plain_layers', action='store_true',
                      help='time plain flax ConvTranspose/Conv instead of the fast lowerings')
  return parser.parse_args(argv)


def main(argv) -> int:
  args = _parse(argv)
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from braingan.bench import common  # pylint: disable=import-outside-toplevel
  from configs import cgan  # pylint: disable=import-outside-toplevel

  config = cgan.get_config()
  config.data.image_size = args.image_size
  config.data.channels = args.channels
  config.batch_size = args.batch_size
  config.model.fast_layers = not args.plain_layers
  config.model.layer_mode = args.layer_mode
  step = common.CompiledStep(config)
  mesh, host_batch = step.trainer.mesh, step.host_batch
  compile_s, flops, memory = step.compile_s, step.flops, step.memory
  jax_step = step.run

  start = time.perf_counter()
  jax_step()  # first run (allocation, thread pools)
  first_jax_s = time.perf_counter() - start

  keras_step = None
  keras_first_s = None
  if not args.no_reference:
    from braingan.bench import keras_gan  # pylint: disable=import-outside-toplevel
    tf = keras_gan._tf()  # pylint: disable=protected-access
    tf.random.set_seed(0)
    k_gen, k_disc = keras_gan.build(args.image_size, args.channels, config.model.latent_dim)
    k_train = keras_gan.make_train_step(k_gen, k_disc, config.model.latent_dim,
                                        layer_mode=config.model.layer_mode)
    k_real = tf.constant(host_batch['image'])
    k_label = tf.constant(host_batch['label'][:, None].astype(np.float32))

    def keras_step():
      _ = [float(v) for v in k_train(k_real, k_label)]

    start = time.perf_counter()
    keras_step()  # tracing + graph optimisation + first run
    keras_first_s = time.perf_counter() - start

  steps = {'jax': jax_step} if keras_step is None else {'jax': jax_step, 'keras': keras_step}
  times = common.interleaved_times(steps, args.rounds, per_round=args.per_round,
                                   settle=args.settle)
  jax_times, keras_times = times['jax'], times.get('keras', [])
  peak = common.peak_matmul_gflops()

  jax_step_s = common.median(jax_times)
  result = {
      'device': str(jax.devices()[0].device_kind), 'num_devices': int(mesh.devices.size),
      'batch_size': args.batch_size, 'image_size': args.image_size, 'channels': args.channels,
      'fast_layers': not args.plain_layers, 'layer_mode': args.layer_mode, 'rounds': args.rounds,
      'per_round': args.per_round, 'settle': args.settle,
      'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
      'compile_s': compile_s, 'first_step_s': first_jax_s,
      'jax_step_s': jax_step_s, 'jax_step_times_s': jax_times,
      'jax_images_per_s': args.batch_size / jax_step_s,
      'step_gflop': None if flops is None else flops / 1e9,
      'achieved_gflops': None if flops is None else flops / jax_step_s / 1e9,
      'peak_matmul_gflops': peak,
      'fraction_of_peak': None if flops is None else flops / jax_step_s / 1e9 / peak,
      'step_peak_memory_gib': common.gib(memory['peak_bytes']) if memory else None,
      'step_memory_bytes': memory,
      'process_max_rss_gib': common.gib(common.max_rss_bytes()),
      'reference': None if keras_step is None else 'GANForge cDCGAN, tf_keras tf.function',
      'reference_first_step_s': keras_first_s,
      'reference_step_s': common.median(keras_times) if keras_times else None,
      'reference_step_times_s': keras_times,
      'reference_images_per_s': (args.batch_size / common.median(keras_times)
                                 if keras_times else None),
  }
  result['ratio'] = (result['jax_images_per_s'] / result['reference_images_per_s']
                     if result['reference_images_per_s'] else None)
  hardware = common.cpu_bf16_hardware() if jax.default_backend() == 'cpu' else None
  if (hardware or args.bf16) and keras_step is not None:
    result['bf16'] = _bf16_comparison(args, config, hardware)
  if args.json:
    print(json.dumps(result))
  else:
    f = common.fmt
    print(f"GAN train step, batch {args.batch_size}, {args.image_size} px, {args.channels} ch, "
          f"{result['num_devices']} x {result['device']}")
    print(f"  JAX   : {f(result['jax_images_per_s'])} images/s ({f(jax_step_s)} s/step), "
          f"compile {f(compile_s)} s")
    print(f"  FLOPs : {f(result['step_gflop'])} GFLOP/step -> {f(result['achieved_gflops'])} "
          f"GFLOP/s = {f(result['fraction_of_peak'])} of measured matmul peak "
          f"{f(peak)} GFLOP/s")
    print(f"  memory: step peak {f(result['step_peak_memory_gib'])} GiB (XLA plan), "
          f"process max RSS {f(result['process_max_rss_gib'])} GiB")
    if keras_times:
      print(f"  Keras : {f(result['reference_images_per_s'])} images/s "
            f"({f(result['reference_step_s'])} s/step)")
      print(f"  ratio : {f(result['ratio'])}x")
    if 'bf16' in result:
      print(f"  bf16  : {result['bf16']}")
  return 0


def _bf16_comparison(args, config, hardware) -> dict:
  """Both steps in bfloat16 compute: ours (config.dtype) vs Keras's mixed_bfloat16 policy."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from braingan.bench import common, keras_gan  # pylint: disable=import-outside-toplevel
  config.dtype = 'bfloat16'
  step = common.CompiledStep(config)
  tf = keras_gan._tf()  # pylint: disable=protected-access
  k_gen, k_disc = keras_gan.build(args.image_size, args.channels, config.model.latent_dim,
                                  policy='mixed_bfloat16')
  k_train = keras_gan.make_train_step(k_gen, k_disc, config.model.latent_dim,
                                      layer_mode=config.model.layer_mode)
  real = tf.constant(step.host_batch['image'])
  label = tf.constant(step.host_batch['label'][:, None].astype(np.float32))
  return {'hardware': hardware or 'not detected (forced with --bf16)',
          'jax_compile_s': round(step.compile_s, 2),
          **common.compare(step.run, lambda: [float(v) for v in k_train(real, label)],
                           args.rounds, args.per_round, args.settle)}
