"""Compile time of one study cell, without and with the persistent compilation cache.

  python -m braingan.bench compile_cache [--model=classifier|gan] [--image_size=64] [--json]

Runs the same short training run (a reduced-study classifier or the conditioned GAN, on the
shipped sample, one epoch of two steps) three times in fresh processes: cache off, cache on and
empty (fills it), cache on again (a second run of the cell). Prints, per run, the seconds XLA
spent compiling (JAX's backend-compile events), the seconds spent loading from the cache and
the wall time of the process.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_RUN = r'''
import json, sys
import jax
durations = {}
def listen(event, duration, **kwargs):
  durations[event] = durations.get(event, 0.0) + duration
jax.monitoring.register_event_duration_secs_listener(listen)
from braingan import cli, train
cli.quiet_libraries()
from braingan.runtime import compile_cache
compile_cache.enable()
from braingan.study import plan
model, size, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if model == 'gan':
  from configs import cgan_conditioned
  config = cgan_conditioned.get_config()
else:
  from configs import study_reduced
  config, _ = plan.classifier_config(study_reduced.get_config(), workdir, arm='baseline',
                                     fraction=1.0, seed=0, transfer='scratch',
                                     steps_per_epoch=2, per_real=1.0)
  config.data.prepared_dir = ''
config.data.data_dir, config.data.image_size = 'data/sample', size
config.epochs, config.steps_per_epoch, config.batch_size = 1, 2, 16
train.train_and_evaluate(config, workdir)
print('RESULT', json.dumps({
    'compile_s': durations.get('/jax/core/compile/backend_compile_duration', 0.0),
    'cache_load_s': durations.get('/jax/compilation_cache/cache_retrieval_time_sec', 0.0),
    'saved_s': durations.get('/jax/compilation_cache/compile_time_saved_sec', 0.0)}))
'''


def _run(model: str, size: int, cache: str) -> dict:
  env = dict(os.environ, BRAINGAN_COMPILE_CACHE=cache, PYTHONPATH=os.getcwd(),
             TF_CPP_MIN_LOG_LEVEL='2')
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, '-c', _RUN, model, str(size), workdir], env=env,
                         capture_output=True, text=True, check=True).stdout
  result = json.loads(out.split('RESULT ')[1].splitlines()[0])
  result['wall_s'] = time.perf_counter() - start
  return result


def main(argv) -> int:
  parser = argparse.ArgumentParser(prog='python -m braingan.bench compile_cache')
  parser.add_argument('--model', default='classifier', choices=('classifier', 'gan'))
  parser.add_argument('--image_size', type=int, default=64)
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as cache:
    runs = {'cache off': _run(args.model, args.image_size, 'off'),
            'first run (fills the cache)': _run(args.model, args.image_size, cache),
            'second run (from the cache)': _run(args.model, args.image_size, cache)}
  if args.json:
    print(json.dumps(runs))
  else:
    for name, r in runs.items():
      print(f'{name:30s} compile {r["compile_s"]:6.1f} s   cache load {r["cache_load_s"]:5.1f} s'
            f'   process wall {r["wall_s"]:6.1f} s')
  return 0
