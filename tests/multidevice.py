"""Run a python snippet on N fake CPU devices in a fresh process (or in several processes).

The device count of a JAX process is fixed when JAX starts, so multi-device tests cannot run
inside the pytest process (which already has 1 CPU device); they run their code here.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

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


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


_MULTIPROCESS_PREAMBLE = '''
import sys
import jax
jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU collectives across processes
from braingan.runtime import distributed, parallel
PROCESS_ID = int(sys.argv[1])
distributed.initialize({'coordinator_address': sys.argv[2], 'num_processes': int(sys.argv[3]),
                        'process_id': PROCESS_ID})
'''


def run_multiprocess(code: str, num_processes: int = 2, devices_per_process: int = 4,
                     timeout: float = 120) -> list[str]:
  """Runs `code` as `num_processes` JAX processes joined by jax.distributed (CPU, gloo).

  The snippet starts with the distributed runtime initialized and PROCESS_ID defined, like
  one host of a multi-host job. Returns each process's stdout; raises RuntimeError with
  every process's stderr if one fails or the group exceeds `timeout` seconds.
  """
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  flags.append(f'--xla_force_host_platform_device_count={devices_per_process}')
  env.update(XLA_FLAGS=' '.join(flags), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join(
                 [REPO_ROOT] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else [])))
  program = _MULTIPROCESS_PREAMBLE + textwrap.dedent(code)
  address = f'localhost:{_free_port()}'
  procs = [subprocess.Popen([sys.executable, '-c', program, str(i), address, str(num_processes)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for i in range(num_processes)]
  deadline = time.monotonic() + timeout
  outputs, failed = [], False
  for proc in procs:
    try:
      out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
      for other in procs:
        other.kill()
      out, err = proc.communicate()
      failed = True
      err = f'TIMEOUT after {timeout}s\n{err}'
    failed = failed or proc.returncode != 0
    outputs.append((out, err, proc.returncode))
  if failed:
    report = '\n'.join(f'--- process {i} (exit {rc}) ---\n{out}\n{err[-4000:]}'
                       for i, (out, err, rc) in enumerate(outputs))
    raise RuntimeError(f'Multi-process snippet failed.\n{report}')
  return [out for out, _, _ in outputs]
