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
import tempfile
import textwrap
import time

import jax
import numpy as np
import pytest

from braingan.runtime import distributed
from braingan.runtime import parallel
from tests import distributed_workloads as workloads
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

  Returns each stdout. Output goes to files, not pipes: a process blocked on a full pipe
  would stall the others at the runtime's shutdown barrier. On failure or timeout every
  process is killed and the error shows every process's output.
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
  procs, logs = [], []
  with tempfile.TemporaryDirectory() as logdir:
    try:
      for i in range(num_processes):
        out = open(os.path.join(logdir, f'{i}.out'), 'w+', encoding='utf-8')
        err = open(os.path.join(logdir, f'{i}.err'), 'w+', encoding='utf-8')
        logs.append((out, err))
        procs.append(subprocess.Popen(
            [sys.executable, '-c', textwrap.dedent(code)], cwd=REPO_ROOT,
            env={**env, distributed.ENV_PROCESS_ID: str(i)}, stdout=out, stderr=err))
      deadline = time.monotonic() + timeout
      timed_out = False
      for proc in procs:
        try:
          proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
          timed_out = True
          break
    finally:
      for proc in procs:
        if proc.poll() is None:
          proc.kill()
          proc.wait()
    texts = []
    for out, err in logs:
      out.seek(0)
      err.seek(0)
      texts.append((out.read(), err.read()))
      out.close()
      err.close()
  codes = [proc.returncode for proc in procs]
  if timed_out or any(codes):
    raise RuntimeError(
        f'Multi-process run failed{" (timeout after %ss)" % timeout if timed_out else ""}.\n'
        + '\n'.join(f'--- process {i} (exit {rc}) ---\n{out[-2000:]}\n{err[-5000:]}'
                    for i, ((out, err), rc) in enumerate(zip(texts, codes))))
  return [out for out, _ in texts]


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
  cfg = {'coordinator_address': 'h1:99', 'num_processes': 2, 'process_id': 1}
  got = distributed.resolve({'distributed': cfg}, environ=env)   # config wins over env
  assert (got.source, got.coordinator_address, got.num_processes) == ('flags', 'h1:99', 2)
  flat = {'coordinator_address': 'h2:5', 'num_processes': 2, 'process_id': 0}
  assert distributed.resolve(flat, environ={}).coordinator_address == 'h2:5'
  with pytest.raises(ValueError, match='BRAINGAN_PROCESS_ID=4'):
    distributed.resolve(None, environ={**env, distributed.ENV_PROCESS_ID: '4'})
  with pytest.raises(ValueError, match='must be integers'):
    distributed.resolve(None, environ={distributed.ENV_COORDINATOR: 'h0:1'})
  with pytest.raises(ValueError, match='num_processes=2 .* needs a coordinator_address'):
    distributed.resolve({'num_processes': 2}, environ={})
  with pytest.raises(ValueError, match='host:port'):
    distributed.resolve({'coordinator_address': 'h0', 'num_processes': 2, 'process_id': 0})
  with pytest.raises(ValueError, match=r'process_id=2 \(flags/config\)'):
    distributed.resolve({'coordinator_address': 'h0:1', 'num_processes': 2, 'process_id': 2})
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


def test_resolve_reads_absl_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  distributed.define_flags(flag_values)
  distributed.define_flags(flag_values)  # idempotent
  flag_values(['prog'])
  assert distributed.resolve(flag_values, environ={}).source == 'single'
  flag_values(['prog', '--coordinator_address=10.0.0.1:1234', '--num_processes=3',
               '--process_id=2'])
  got = distributed.resolve(flag_values, environ={})
  assert (got.source, got.coordinator_address, got.num_processes, got.process_id) == (
      'flags', '10.0.0.1:1234', 3, 2)


def test_single_process_helpers():
  assert not distributed.initialize(None, environ={}).is_distributed
  assert distributed.is_main_process()
  distributed.sync('noop')  # must not block alone
  assert distributed.describe().startswith('process 0/1, 1 local / 1 global')


# ------------------------------------------------------------------ two real processes
_TWO_PROCESS_SNIPPET = r'''
import json
from braingan.runtime import distributed
settings = distributed.initialize()          # from the BRAINGAN_* variables
import jax
from braingan.runtime import parallel
from braingan.train.checkpoint import Checkpointer
from tests import distributed_workloads as workloads

mesh = parallel.make_mesh()
out = {'source': settings.source, 'processes': jax.process_count(),
       'index': jax.process_index(), 'devices': jax.device_count(),
       'local_devices': jax.local_device_count(), 'main': distributed.is_main_process()}
for name in WORKLOADS:
  state, history = workloads.run(name, mesh, STEPS)
  out[name] = {'history': history, 'state': workloads.host_state(state)}
  if name == 'toy':
    with Checkpointer(CKPT) as ckpt:           # every process calls save
      ckpt.save(STEPS, state, force=True)
      ckpt.wait_until_finished()
print('RESULT', json.dumps(out))
'''


def _assert_trees_close(a, b, atol, what):
  leaves_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b, what
  for (path, x), y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               atol=atol, rtol=0,
                               err_msg=f'{what}{jax.tree_util.keystr(path)}')


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
  """One 2-process job (1 CPU device each) running every workload; and its checkpoint dir."""
  ckpt_dir = str(tmp_path_factory.mktemp('dist') / 'ckpt')
  code = (_TWO_PROCESS_SNIPPET.replace('STEPS', str(STEPS)).replace('CKPT', repr(ckpt_dir))
          .replace('WORKLOADS', repr(list(workloads.WORKLOADS))))
  results = [result_of(out) for out in launch(code, num_processes=2, devices_per_process=1,
                                              timeout=480)]
  return results, ckpt_dir


def test_two_processes_join_and_agree(two_process_run):
  results, _ = two_process_run
  assert [r['index'] for r in results] == [0, 1]
  assert [r['main'] for r in results] == [True, False]
  for r in results:
    assert r['source'] == 'env' and r['processes'] == 2
    assert r['devices'] == 2 and r['local_devices'] == 1
  for name in workloads.WORKLOADS:   # replicated state: the same bits on both processes
    assert results[0][name] == results[1][name], name


@pytest.mark.parametrize('name', list(workloads.WORKLOADS))
def test_two_processes_match_one_process(two_process_run, name):
  """Same global batch, same steps: 2 processes x 1 device == 1 process x 1 device."""
  results, _ = two_process_run
  got = results[0][name]
  state, history = workloads.run(name, parallel.make_mesh(1), STEPS)
  for key in history[0]:
    np.testing.assert_allclose([h[key] for h in got['history']], [h[key] for h in history],
                               atol=1e-5, rtol=0, err_msg=f'{name} {key}')
  reference = workloads.host_state(state)
  _assert_trees_close(got['state'], reference, atol=1e-5, what=name)


def test_two_process_checkpoint_restores_in_one_process(two_process_run):
  from braingan.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  results, ckpt_dir = two_process_run
  _, target = toy_model.make_state()
  with Checkpointer(ckpt_dir) as ckpt:
    assert ckpt.latest_step() == STEPS
    restored = ckpt.restore(target)
  assert int(restored.step) == STEPS
  assert workloads.host_state(restored) == results[0]['toy']['state']


# ------------------------------------------------------- the real script on two processes
_TRAIN_GAN_SCRIPT = r'''
import runpy, sys
sys.argv = ARGV
runpy.run_path('train_gan.py', run_name='__main__')
'''


def test_train_gan_script_on_two_processes(tmp_path):
  """train_gan.py end to end as a 2-host job: training, sample grid, checkpoint, generation.

  Process 0 alone prints, logs metrics and draws the grid; both take part in every jitted
  step, in Orbax's save/restore and in writing the generated images (each its own batches).
  """
  from tests.conftest import make_folder  # pylint: disable=g-import-not-at-top
  data_dir = make_folder(tmp_path / 'data', per_class=5)
  workdir = str(tmp_path / 'run')
  overrides = {'data.data_dir': data_dir, 'data.image_size': 32, 'batch_size': 4,
               'epochs': 1, 'steps_per_epoch': 2, 'generate.per_class': 2,
               'generate.batch_size': 4, 'grid_per_class': 2, 'log_every_seconds': 0.0,
               'model.latent_dim': 16, 'model.g_base_depth': 16,
               'model.g_widths': '(16,8,8,8)', 'model.d_widths': '(8,8,16,16,16)'}
  argv = ['train_gan.py', '--config=configs/cgan.py', f'--workdir={workdir}'] + [
      f'--config.{k}={v}' for k, v in overrides.items()]
  outputs = launch(_TRAIN_GAN_SCRIPT.replace('ARGV', repr(argv)), num_processes=2,
                   devices_per_process=1, timeout=600)
  assert 'Final:' in outputs[0] and 'Wrote 8 images' in outputs[0], outputs[0]
  assert 'Final:' not in outputs[1] and 'epoch 1/1' not in outputs[1], outputs[1]
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  assert [r['epoch'] for r in records] == [1] and records[0]['step'] == 2
  assert os.listdir(os.path.join(workdir, 'samples')) == ['epoch_001.png']
  assert '1' in os.listdir(os.path.join(workdir, 'checkpoints'))
  with open(os.path.join(workdir, 'generated', 'manifest.json'), encoding='utf-8') as f:
    manifest = json.load(f)
  for name in manifest['classes']:   # batch 0 from process 0, batch 1 from process 1
    assert sorted(os.listdir(os.path.join(workdir, 'generated', name))) == [
        f'{name}_00000.png', f'{name}_00001.png']
