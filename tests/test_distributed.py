"""Multi-host for real: two JAX processes on localhost (CPU, gloo) against one process.

The processes join through the BRAINGAN_* environment variables (the path a launcher uses),
each feeds its own half of the global batch, and the data-parallel steps of a conv+BatchNorm
model must give what a single process gives on the whole batch. The 2-process run also writes
an Orbax checkpoint that this (single) process restores.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from braingan.train import distributed
from braingan.train import parallel
from tests import toy_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def launch(code: str, num_processes: int = 2, devices_per_process: int = 1,
           timeout: float = 120) -> list[str]:
  """Runs `code` in `num_processes` processes joined via BRAINGAN_* variables.

  Returns each stdout. On failure or timeout every process is killed and the error shows
  every process's output.
  """
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  flags.append(f'--xla_force_host_platform_device_count={devices_per_process}')
  env.update(XLA_FLAGS=' '.join(flags), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join([REPO_ROOT] + (
                 [env['PYTHONPATH']] if env.get('PYTHONPATH') else [])),
             **{distributed.ENV_COORDINATOR: f'127.0.0.1:{_free_port()}',
                distributed.ENV_NUM_PROCESSES: str(num_processes)})
  procs = []
  try:
    for i in range(num_processes):
      procs.append(subprocess.Popen(
          [sys.executable, '-c', textwrap.dedent(code)], cwd=REPO_ROOT,
          env={**env, distributed.ENV_PROCESS_ID: str(i)}, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + timeout
    outputs, failed = [], False
    for proc in procs:
      try:
        out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
      except subprocess.TimeoutExpired:
        for other in procs:
          other.kill()
        out, err = proc.communicate()
        err, failed = f'TIMEOUT after {timeout}s\n{err}', True
      failed = failed or proc.returncode != 0
      outputs.append((out, err, proc.returncode))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  if failed:
    raise RuntimeError('Multi-process run failed.\n' + '\n'.join(
        f'--- process {i} (exit {rc}) ---\n{out[-3000:]}\n{err[-5000:]}'
        for i, (out, err, rc) in enumerate(outputs)))
  return [out for out, _, _ in outputs]


def result_of(stdout: str) -> dict:
  return json.loads([l for l in stdout.splitlines() if l.startswith('RESULT ')][-1][7:])


# ----------------------------------------------------------------------------- resolve()
def test_resolve_precedence_and_errors(monkeypatch):
  env = {distributed.ENV_COORDINATOR: 'h0:1234', distributed.ENV_NUM_PROCESSES: '4',
         distributed.ENV_PROCESS_ID: '3'}
  assert distributed.resolve(None, environ={}).source == 'single'
  got = distributed.resolve(None, environ=env)
  assert (got.source, got.coordinator_address, got.num_processes, got.process_id) == (
      'env', 'h0:1234', 4, 3)
  cfg = distributed.default_config()
  cfg.coordinator_address, cfg.num_processes, cfg.process_id = 'h1:99', 2, 1
  got = distributed.resolve({'distributed': cfg}, environ=env)   # config wins over env
  assert (got.source, got.coordinator_address, got.num_processes) == ('config', 'h1:99', 2)
  flat = {'coordinator_address': 'h2:5', 'num_processes': 2, 'process_id': 0}
  assert distributed.resolve(flat, environ={}).coordinator_address == 'h2:5'
  with pytest.raises(ValueError, match='BRAINGAN_PROCESS_ID=4'):
    distributed.resolve(None, environ={**env, distributed.ENV_PROCESS_ID: '4'})
  with pytest.raises(ValueError, match='must be integers'):
    distributed.resolve(None, environ={distributed.ENV_COORDINATOR: 'h0:1'})
  with pytest.raises(ValueError, match='config.distributed.coordinator_address'):
    distributed.resolve({'num_processes': 2}, environ={})
  with pytest.raises(ValueError, match='host:port'):
    distributed.resolve({'coordinator_address': 'h0', 'num_processes': 2, 'process_id': 0})
  with pytest.raises(ValueError, match='cluster_detection'):
    distributed.resolve({'cluster_detection': 'maybe'}, environ={})
  # A multi-task SLURM job is left to JAX's own detection; a one-task job is a single process.
  slurm = {'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'n[1-2]', 'SLURM_NTASKS': '2',
           'SLURM_PROCID': '1', 'SLURM_LOCALID': '0'}
  for name, value in slurm.items():
    monkeypatch.setenv(name, value)
  assert distributed.resolve(None, environ={}).source == 'cluster:SlurmCluster'
  assert distributed.resolve({'cluster_detection': 'off'}, environ={}).source == 'single'
  monkeypatch.setenv('SLURM_NTASKS', '1')
  assert distributed.resolve(None, environ={}).source == 'single'


def test_single_process_helpers():
  assert not distributed.initialize(None, environ={}).is_distributed
  assert distributed.is_main_process() and parallel.is_main_process()
  assert distributed.on_main_process(lambda a, b=0: a + b, 2, b=3) == 5
  distributed.sync('noop')  # must not block alone
  assert distributed.describe().startswith('process 0/1, 1 local / 1 global')


# ------------------------------------------------------------------ two real processes
_TWO_PROCESS_SNIPPET = r'''
import json, sys
from braingan.train import distributed
settings = distributed.initialize()          # from BRAINGAN_* variables
import jax
from braingan.train import parallel
from braingan.train.checkpoint import Checkpointer
from tests import toy_model

mesh = parallel.make_mesh()
batch = toy_model.global_batch(16)
parallel.check_global_batch(16, mesh)
local_rows = 16 // jax.process_count()
start = jax.process_index() * local_rows      # this process's half of the global batch
local = {k: v[start:start + local_rows] for k, v in batch.items()}
model, state = toy_model.make_state()
repl, data = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
state = parallel.replicate(mesh, state)
step = jax.jit(toy_model.make_train_step(model), in_shardings=(repl, data),
               out_shardings=(repl, repl), donate_argnums=0)
losses = []
for _ in range(STEPS):
  state, metrics = step(state, parallel.shard_batch(mesh, local))
  losses.append(float(parallel.host_local(metrics['loss'])))
with Checkpointer(CKPT) as ckpt:              # every process calls save
  ckpt.save(STEPS, state, force=True)
  ckpt.wait_until_finished()
print('RESULT', json.dumps({
    'source': settings.source, 'processes': jax.process_count(), 'index': jax.process_index(),
    'devices': jax.device_count(), 'local_devices': jax.local_device_count(),
    'main': distributed.is_main_process(), 'losses': losses,
    'state': toy_model.host_tree(parallel.to_host(state))}))
'''


def _single_process_reference():
  model, state = toy_model.make_state()
  step = jax.jit(toy_model.make_train_step(model))
  batch = toy_model.global_batch(16)
  losses = []
  for _ in range(STEPS):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss']))
  return state, losses


def _assert_trees_close(a, b, atol):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               atol=atol, rtol=0)


def test_two_processes_match_one_process_and_checkpoint_restores(tmp_path):
  ckpt_dir = str(tmp_path / 'ckpt')
  code = _TWO_PROCESS_SNIPPET.replace('STEPS', str(STEPS)).replace('CKPT', repr(ckpt_dir))
  results = [result_of(out) for out in launch(code, num_processes=2, devices_per_process=1)]

  assert [r['index'] for r in results] == [0, 1]
  assert [r['main'] for r in results] == [True, False]
  for r in results:
    assert r['source'] == 'env' and r['processes'] == 2
    assert r['devices'] == 2 and r['local_devices'] == 1
  # Both processes hold the same replicated state, bit for bit.
  assert results[0]['state'] == results[1]['state']

  reference, ref_losses = _single_process_reference()
  ref_tree = toy_model.host_tree(reference)
  np.testing.assert_allclose(results[0]['losses'], ref_losses, atol=1e-5, rtol=0)
  assert results[0]['losses'][-1] < results[0]['losses'][0]        # it trains
  assert results[0]['state']['step'] == STEPS
  _assert_trees_close(results[0]['state'], ref_tree, atol=1e-5)

  # Restore the 2-process checkpoint in this single process: identical to what was saved.
  from braingan.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  _, target = toy_model.make_state()
  with Checkpointer(ckpt_dir) as ckpt:
    assert ckpt.latest_step() == STEPS
    restored = ckpt.restore(target)
  restored_tree = toy_model.host_tree(restored)
  assert restored_tree == results[0]['state']
