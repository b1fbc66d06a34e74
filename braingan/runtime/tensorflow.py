"""TensorFlow for tf.data, TFDS and TensorBoard: imported once, quietly, kept off the GPUs.

Why one place: TensorFlow must not grab the GPU memory JAX needs (its GPUs are hidden before any
pipeline is built), and importing it prints several lines of C++ start-up chatter (oneDNN, CUDA
probing) to stderr before its own log settings apply, which garbles every log file. Unless
BRAINGAN_VERBOSE=1 (`--verbose` on the entry points), stderr is muted at the file-descriptor
level for the duration of the import only; an import error still raises normally.
"""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _muted_stderr():
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def get():
  """The `tensorflow` module, GPUs hidden from it."""
  if 'tensorflow' not in sys.modules:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    verbose = os.environ.get('BRAINGAN_VERBOSE', '0') == '1'
    with contextlib.nullcontext() if verbose else _muted_stderr():
      import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # Devices already initialised; whoever did it hid them.
    pass
  return tf
