"""What every entry point does the same way: flags, start-up, quiet logs, clear failures.

  train_gan.py / train_classifier.py / evaluate.py / python -m braingan.study|generate|export

- `define_flags()`: --coordinator_address/--num_processes/--process_id (multi-host) and
  --verbose (show TensorFlow / TFDS / Orbax chatter; hidden by default).
- `start(FLAGS)`: joins the distributed runtime before JAX touches a device, quiets the
  libraries' logs unless --verbose, turns on the persistent compilation cache.
- `run_training(fn, config, workdir)`: runs a trainer and turns the errors a user can fix (bad
  config, locked run, unreadable data, NaN) into one clear message and exit status 1, without a
  traceback; prints the final record as JSON.
- `run(main)`: re-executes with huge-page malloc (runtime/hostmem.py), then absl's app.run.
"""
from __future__ import annotations

import json
import logging as std_logging
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')   # Before TensorFlow loads: no C++ INFO.

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position

from braingan.runtime import distributed  # pylint: disable=g-import-not-at-top,wrong-import-position
from braingan.runtime import hostmem  # pylint: disable=g-import-not-at-top,wrong-import-position


VERBOSE_ENV = 'BRAINGAN_VERBOSE'


def define_flags() -> None:
  distributed.define_flags()
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool('verbose', False, 'Show TensorFlow, TFDS and Orbax log output.')


def quiet_libraries(verbose: bool = False) -> None:
  """Hides TFDS progress bars and TF/Orbax INFO lines (they garble log files) unless verbose."""
  os.environ[VERBOSE_ENV] = '1' if verbose else '0'   # read by data/tfds_builder.py
  if verbose:
    return
  logging.set_verbosity(logging.WARNING)
  for name in ('tensorflow', 'tensorflow_datasets', 'absl', 'orbax', 'jax._src.xla_bridge'):
    std_logging.getLogger(name).setLevel(std_logging.ERROR)


def start(flag_values) -> None:
  distributed.initialize(flag_values)
  quiet_libraries(getattr(flag_values, 'verbose', False))
  from braingan.runtime import compile_cache  # pylint: disable=import-outside-toplevel
  compile_cache.enable()


def user_errors() -> tuple[type, ...]:
  """Errors whose message is the whole story: shown without a traceback."""
  from braingan import config_check  # pylint: disable=import-outside-toplevel
  from braingan.data import scan  # pylint: disable=import-outside-toplevel
  from braingan.run_dir import RunLockedError  # pylint: disable=import-outside-toplevel
  from braingan.train.loop import NonFiniteError  # pylint: disable=import-outside-toplevel
  return (config_check.ConfigError, RunLockedError, NonFiniteError, scan.DataError,
          FileNotFoundError)


def run_training(fn, config, workdir: str, show_final: bool = True):
  try:
    final = fn(config, workdir)
  except user_errors() as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.exit(1)
  if show_final and distributed.is_main_process():
    print('Final:', json.dumps(final, default=float), flush=True)
  return final


def run(main) -> None:
  hostmem.ensure_hugepage_malloc()   # re-executes once; see braingan/runtime/hostmem.py
  app.run(lambda argv: main(argv) and None)
