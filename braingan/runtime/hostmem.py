"""Back large host buffers with transparent huge pages, so jitted steps stop page-faulting.

Why: XLA:CPU allocates a step's temporaries when the step starts (1.1 GB for the 128 px GAN
step, 1.3 GB for the ResNet50 step) and frees them when it ends. glibc serves such requests
with a fresh `mmap` and unmaps them on free, so every step first-touched ~300,000 new 4 KB
pages: 0.6-1.4 s of kernel time per 2-3 s step on the 2-core CPU (a ReLU over 32 MB ran at
2.8 GB/s instead of 18). glibc's `malloc.hugetlb=1` tunable asks for transparent huge pages on
those mappings: 2 MB pages, ~2,500 faults per step instead of ~300,000, and nothing else
changes (memory is still returned to the OS, so the footprint stays the same).

glibc reads tunables only when a process starts, so `ensure_hugepage_malloc()` re-executes the
current command once with GLIBC_TUNABLES extended; the entry points (train_gan.py,
train_classifier.py, evaluate.py, `python -m braingan.study|generate|bench`) call it first.
It does nothing where it cannot help: not Linux/glibc >= 2.35, THP set to 'never', or
BRAINGAN_MALLOC=default in the environment (which also turns it off on purpose).
(Also tried: mallopt with one arena, no mmap and no trimming at run time. Zero faults at
first, but the heap fragmented and grew by ~1 GB every few steps; not used.)
"""
from __future__ import annotations

import os
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
_GUARD = 'BRAINGAN_MALLOC_REEXEC'
_THP = '/sys/kernel/mm/transparent_hugepage/enabled'


def _glibc_version() -> tuple[int, int] | None:
  try:
    name, version = os.confstr('CS_GNU_LIBC_VERSION').split()
  except (AttributeError, ValueError, OSError):
    return None
  if name != 'glibc':
    return None
  major, minor = version.split('.')[:2]
  return int(major), int(minor)


def _thp_mode() -> str:
  try:
    with open(_THP, encoding='ascii') as f:
      text = f.read()
  except OSError:
    return 'never'
  return text[text.index('[') + 1:text.index(']')] if '[' in text else 'never'


def tuned_environment(environ: dict[str, str], glibc: tuple[int, int] | None,
                      thp_mode: str) -> dict[str, str] | None:
  """The environment to re-execute with, or None when there is nothing to do."""
  if environ.get('BRAINGAN_MALLOC') == 'default' or environ.get(_GUARD):
    return None
  if glibc is None or glibc < (2, 35) or thp_mode == 'never':
    return None
  tunables = environ.get('GLIBC_TUNABLES', '')
  if 'glibc.malloc.hugetlb=' in tunables:
    return None  # The user chose a value; keep it.
  env = dict(environ)
  env['GLIBC_TUNABLES'] = f'{tunables}:{TUNABLE}' if tunables else TUNABLE
  env[_GUARD] = '1'
  return env


def ensure_hugepage_malloc() -> None:
  """Re-executes this command once with huge-page malloc (see the module doc), else returns."""
  if sys.platform != 'linux':
    return
  env = tuned_environment(dict(os.environ), _glibc_version(), _thp_mode())
  if env is None:
    return
  argv = [sys.executable] + list(getattr(sys, 'orig_argv', sys.argv)[1:])
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, argv, env)
