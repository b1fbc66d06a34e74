"""The GAN recipe's step (learning, determinism, multi-device parity) and a real SIGKILL + resume."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from braingan.train import gan, loop
from configs import cgan
from tests.conftest import REPO_ROOT, make_folder
from tests.multidevice import run_with_devices

TINY = dict(latent_dim=16, g_base_depth=16, g_widths=(16, 8, 8, 8), d_widths=(8, 8, 16, 16, 16))


def tiny_config(image_size=32, **overrides):
  config = cgan.get_config()
  config.data.image_size = image_size
  config.model.update(TINY)
  config.batch_size = 8
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def _batch(config, n, seed=0):
  rng = np.random.default_rng(seed)
  s = config.data.image_size
  return {'image': rng.uniform(-1, 1, (n, s, s, 1)).astype(np.float32),
          'label': (np.arange(n) % 4).astype(np.int32)}


def trainer_for(config) -> loop.Trainer:
  """The loop's jitted step for a GAN config, without data (tests feed batches)."""
  return loop.Trainer(gan.GANRecipe(config))


@pytest.mark.parametrize('layer_mode', ['inference', 'training'])
def test_step_updates_both_nets_and_is_deterministic(layer_mode):
  config = tiny_config(**{'model.layer_mode': layer_mode})
  trainer = trainer_for(config)
  batch = _batch(config, 8)
  initial = jax.tree.map(np.asarray, trainer.recipe.init_state())  # host copy: steps donate
  runs = []
  for _ in range(2):
    state = trainer.initial_state()
    losses = []
    for _ in range(8):
      state, metrics = trainer.step(state, batch)
      losses.append({k: float(v) for k, v in metrics.items()})
    runs.append(losses)
  assert runs[0] == runs[1]  # explicit RNG: same seed, same numbers
  assert int(state.generator.step) == int(state.discriminator.step) == 8
  assert all(np.isfinite([m[k] for m in runs[0] for k in m]))
  assert 0.0 < runs[0][-1]['d_real'] < 1.0 and 0.0 < runs[0][-1]['d_fake'] < 1.0
  for net in ('generator', 'discriminator'):   # weights, Adam moments (and BN averages) moved
    for part in ('params', 'batch_stats', 'opt_state'):
      before = jax.tree.leaves(getattr(getattr(initial, net), part))
      after = jax.tree.leaves(getattr(getattr(state, net), part))
      changed = [not np.array_equal(a, np.asarray(b)) for a, b in zip(before, after)
                 if np.asarray(a).size > 1]
      if part == 'batch_stats' and layer_mode == 'inference':  # GANForge: never updated
        assert changed and not any(changed), (net, part)
      else:
        assert changed and np.mean(changed) > 0.9, (net, part)


def test_unknown_layer_mode_names_the_field():
  with pytest.raises(ValueError, match='config.model.layer_mode'):
    gan.GANRecipe(tiny_config(**{'model.layer_mode': 'eval'}))


_PARITY = '''
import json
from tests.test_train_gan import tiny_config, _batch, trainer_for
out = {}
for mode in ('inference', 'training'):
  trainer = trainer_for(tiny_config(**{'model.layer_mode': mode}))
  state = trainer.initial_state()
  out[mode] = []
  for i in range(3):
    state, m = trainer.step(state, _batch(tiny_config(), 16, seed=i))
    out[mode].append({k: float(v) for k, v in m.items()})
print(json.dumps({'devices': int(trainer.mesh.devices.size), 'metrics': out}))
'''


@pytest.mark.slow
def test_eight_devices_match_one_device():
  result = json.loads(run_with_devices(_PARITY, 8).strip().splitlines()[-1])
  assert result['devices'] == 8
  for mode, wanted in result['metrics'].items():
    trainer = trainer_for(tiny_config(**{'model.layer_mode': mode, 'num_devices': 1}))
    state = trainer.initial_state()
    for i, want in enumerate(wanted):
      state, m = trainer.step(state, _batch(tiny_config(), 16, seed=i))
      for k, v in m.items():   # BatchNorm statistics are over the global batch in both runs
        assert float(v) == pytest.approx(want[k], rel=1e-4, abs=1e-5), (mode, i, k)


def _train_cmd(workdir, data_dir, epochs):
  flags = {'data.data_dir': data_dir, 'data.image_size': 32, 'batch_size': 4,
           'epochs': epochs, 'generate.per_class': 2, 'grid_per_class': 2,
           'log_every_seconds': 0.0, 'model.latent_dim': 16, 'model.g_base_depth': 16,
           'model.g_widths': '(16,8,8,8)', 'model.d_widths': '(8,8,16,16,16)'}
  return [sys.executable, os.path.join(REPO_ROOT, 'train_gan.py'),
          f'--config={os.path.join(REPO_ROOT, "configs", "cgan.py")}', f'--workdir={workdir}'] + [
              f'--config.{k}={v}' for k, v in flags.items()]


@pytest.mark.slow
def test_sigkill_then_resume_finishes(tmp_path):
  data_dir = make_folder(tmp_path / 'data', per_class=5)
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  cmd = _train_cmd(workdir, data_dir, epochs=40)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  try:
    while time.time() < deadline:
      done = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
      if done:
        break
      assert proc.poll() is None, proc.stdout.read()
      time.sleep(0.2)
    else:
      pytest.fail('no checkpoint appeared')
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert proc.returncode == -signal.SIGKILL
  finished_before = {int(d) for d in os.listdir(ckpt_dir) if d.isdigit()}
  assert finished_before and max(finished_before) < 40   # killed mid-training

  # The killed trainer's lock names a dead pid on this host: taken over, not an error.
  resumed = subprocess.run(_train_cmd(workdir, data_dir, epochs=max(finished_before) + 2),
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  log = resumed.stdout + resumed.stderr    # written to a pipe, as to a log file:
  assert '\r' not in log and '\x1b' not in log, log[:2000]   # no bars or escape codes
  assert 'Downloading and preparing' not in log               # TFDS chatter hidden
  records = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  last = max(finished_before)
  steps_per_epoch = records[0]['step']
  match = [l for l in resumed.stdout.splitlines() if l.startswith('Resumed at epoch')]
  assert match, resumed.stdout
  resumed_epoch = int(match[0].split()[3].rstrip(','))
  assert resumed_epoch == last
  assert match[0].endswith(f'train step {resumed_epoch * steps_per_epoch}.')
  final = {int(d) for d in os.listdir(ckpt_dir) if d.isdigit()}
  assert max(final) == last + 2
  epochs_logged = [r['epoch'] for r in records]
  assert epochs_logged[-1] == last + 2 and records[-1]['step'] == (last + 2) * steps_per_epoch
  assert os.path.exists(os.path.join(workdir, 'samples', f'epoch_{last + 2:03d}.png'))
  manifest = json.load(open(os.path.join(workdir, 'generated', 'manifest.json')))
  assert manifest['checkpoint_epoch'] == last + 2
  assert all(len(os.listdir(os.path.join(workdir, 'generated', c))) == 2
             for c in manifest['classes'])
  assert not os.path.exists(os.path.join(workdir, '.lock'))   # released at the end
