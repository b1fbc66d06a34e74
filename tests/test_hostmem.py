"""Huge-page malloc for the entry points (braingan/runtime/hostmem.py): when it applies, and that it works."""
import os
import subprocess
import sys

import pytest

from braingan.runtime import hostmem
from tests.conftest import REPO_ROOT


def test_tuned_environment_rules():
  env = hostmem.tuned_environment({'PATH': '/bin'}, (2, 36), 'madvise')
  assert env['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1' and env['PATH'] == '/bin'
  kept = hostmem.tuned_environment({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, (2, 36),
                                   'always')
  assert kept['GLIBC_TUNABLES'] == 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
  assert hostmem.tuned_environment({'BRAINGAN_MALLOC': 'default'}, (2, 36), 'madvise') is None
  assert hostmem.tuned_environment({}, (2, 34), 'madvise') is None     # tunable is 2.35+
  assert hostmem.tuned_environment({}, None, 'madvise') is None        # not glibc
  assert hostmem.tuned_environment({}, (2, 36), 'never') is None       # THP off
  assert hostmem.tuned_environment(
      {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, (2, 36), 'madvise') is None  # user's choice
  assert hostmem.tuned_environment(env, (2, 36), 'madvise') is None    # already re-executed


_PROBE = r'''
import resource, sys
from braingan.runtime import hostmem
hostmem.ensure_hugepage_malloc()
import os
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.tanh(x * 2.0) + jnp.sin(x))   # 256 MB out, fresh every call
x = jnp.ones((64 * 2**20,), jnp.float32)
jax.block_until_ready(f(x))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
  jax.block_until_ready(f(x))
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(os.environ.get('GLIBC_TUNABLES', ''), faults)
'''


def _probe(extra_env):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS='cpu', **extra_env)
  env.pop('GLIBC_TUNABLES', None)
  env.pop('BRAINGAN_MALLOC_REEXEC', None)
  out = subprocess.run([sys.executable, '-c', _PROBE], env=env, capture_output=True, text=True,
                       timeout=120, check=True).stdout.strip().splitlines()[-1]
  tunables, faults = out.rsplit(' ', 1) if ' ' in out else ('', out)
  return tunables, int(faults)


def test_reexec_cuts_page_faults_of_fresh_step_buffers():
  if hostmem.tuned_environment({}, hostmem._glibc_version(), hostmem._thp_mode()) is None:
    pytest.skip('no glibc >= 2.35 with transparent huge pages here')
  tunables, faults = _probe({})
  default_tunables, default_faults = _probe({'BRAINGAN_MALLOC': 'default'})
  assert tunables == hostmem.TUNABLE and default_tunables == ''
  # 3 calls x 256 MB: ~196,000 4 KB pages by default, a few hundred 2 MB pages with THP.
  assert default_faults > 100_000
  assert faults < default_faults / 20
