"""Run a python snippet on N fake CPU devices in a fresh process.

The device count of a JAX process is fixed when JAX starts, so multi-device tests cannot run
inside the pytest process (which already has 1 CPU device); they run their code here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_with_devices(code: str, num_devices: int = 8, timeout: float = 300) -> str:
  """Runs `code` with `num_devices` host CPU devices; returns its stdout.

  Raises RuntimeError with the snippet's stderr if it exits non-zero.
  """
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  flags.append(f'--xla_force_host_platform_device_count={num_devices}')
  env['XLA_FLAGS'] = ' '.join(flags)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = os.pathsep.join(
      [REPO_ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  result = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
  if result.returncode != 0:
    raise RuntimeError(f'Snippet failed with exit code {result.returncode}.\n'
                       f'--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}')
  return result.stdout
