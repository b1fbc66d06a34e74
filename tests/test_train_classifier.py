"""Classifier training: freezing, learning, Keras-style callbacks, end-to-end run, kill + resume."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan.train import classifier, parallel
from braingan.train.state import TrainState
from configs import classifier as classifier_config
from tests.conftest import REPO_ROOT, make_folder

SIZE = 32


def tiny_config(**overrides):
  config = classifier_config.get_config()
  config.data.image_size = SIZE
  config.model.stage_sizes = (1, 1, 1, 1)
  config.model.width = 8
  config.model.head_units = 16
  config.pretrained = 'none'
  config.batch_size = 8
  config.log_every_steps = 1
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def _state_and_step(config):
  model = classifier.make_model(config)
  variables = classifier.initial_variables(config, model, (1, SIZE, SIZE, 1))
  tx = classifier.make_optimizer(config, variables['params'])
  state = TrainState.create(params=variables['params'], batch_stats=variables['batch_stats'],
                            tx=tx, rng=0)
  mesh = parallel.make_mesh()
  train_step, eval_step = classifier.compile_steps(model, mesh, config, np.ones(4, np.float32))
  return parallel.replicate(mesh, state), train_step, eval_step, mesh


def _batch(seed=0, n=8):
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (n, SIZE, SIZE, 1)).astype(np.float32),
          'label': (np.arange(n) % 4).astype(np.int32)}


def test_keras15_preset_is_the_studys_layer_list():
  assert classifier.freeze_prefixes(tiny_config()) == (
      'conv1_conv', 'conv1_bn', 'conv2_block1_1_conv', 'conv2_block1_1_bn',
      'conv2_block1_2_conv', 'conv2_block1_2_bn', 'conv2_block1_0_conv', 'conv2_block1_3_conv')
  assert classifier.freeze_prefixes(tiny_config(freeze='none')) == ()
  with pytest.raises(ValueError, match='config.freeze'):
    cfg = tiny_config(freeze='conv9_nothing')
    classifier.make_optimizer(cfg, {'conv1_conv': {'kernel': jnp.zeros(1)}})


@pytest.fixture(scope='module')
def keras15_setup():
  """Compiled once for the step tests (compiling dominates their time). No dropout."""
  config = tiny_config(**{'model.dropout': 0.0})
  state, train_step, _, mesh = _state_and_step(config)
  fresh = jax.tree.map(np.array, state)
  return lambda: parallel.replicate(mesh, jax.tree.map(jnp.asarray, fresh)), train_step, mesh


def test_frozen_params_and_bn_stats_unchanged_others_train(keras15_setup):
  new_state, train_step, mesh = keras15_setup
  state = new_state()
  before = jax.tree.map(np.array, {'params': state.params, 'batch_stats': state.batch_stats})
  for i in range(3):
    state, _ = train_step(state, parallel.shard_batch(mesh, _batch(i)), jnp.float32(1e-3))
  after = jax.tree.map(np.array, {'params': state.params, 'batch_stats': state.batch_stats})
  frozen = classifier.KERAS15
  for layer in frozen:
    for name, value in before['params'][layer].items():
      np.testing.assert_array_equal(after['params'][layer][name], value, err_msg=layer)
  for layer in ('conv1_bn', 'conv2_block1_1_bn', 'conv2_block1_2_bn'):
    for name, value in before['batch_stats'][layer].items():
      np.testing.assert_array_equal(after['batch_stats'][layer][name], value, err_msg=layer)
  # Trainable: the two BNs the study left trainable inside block 1, a later conv and the head.
  for layer in ('conv2_block1_0_bn', 'conv2_block1_3_bn', 'conv3_block1_1_conv', 'head_logits'):
    for name, value in before['params'][layer].items():
      assert not np.array_equal(after['params'][layer][name], value), (layer, name)
  assert not np.array_equal(after['batch_stats']['conv2_block1_0_bn']['mean'],
                            before['batch_stats']['conv2_block1_0_bn']['mean'])


def test_loss_goes_down_on_a_fixed_batch(keras15_setup):
  new_state, train_step, mesh = keras15_setup
  state = new_state()
  batch = parallel.shard_batch(mesh, _batch(0))
  losses = []
  for _ in range(15):
    state, metrics = train_step(state, batch, jnp.float32(3e-3))
    losses.append(float(metrics['loss']))
  assert losses[-1] < 0.5 * losses[0], losses


def test_plateau_controller_matches_keras_callbacks():
  config = tiny_config(learning_rate=1e-3, reduce_lr_patience=2, early_stopping_patience=4)
  c = classifier.PlateauController(config)
  lrs = []
  for loss in [1.0, 0.9, 0.95, 0.96, 0.97, 0.98]:
    c.update(loss)
    lrs.append(c.s['lr'])
    if c.s['stop']:
      break
  # Best at 0.9 (epoch 2); two worse epochs -> halve; stop after four worse epochs.
  assert lrs == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]
  assert c.s['stop'] and c.s['best'] == 0.9


@pytest.fixture(scope='module')
def tiny_data_dir(tmp_path_factory):
  return make_folder(tmp_path_factory.mktemp('clf') / 'data', per_class=10, size=(36, 36))


def test_train_and_evaluate_end_to_end(tiny_data_dir, tmp_path):
  config = tiny_config(epochs=2, **{'data.data_dir': tiny_data_dir})
  workdir = str(tmp_path / 'run')
  final = classifier.train_and_evaluate(config, workdir)
  history = json.load(open(os.path.join(workdir, 'history.json')))
  assert [h['epoch'] for h in history] == [1, 2]
  for key in ('loss', 'accuracy', 'val_loss', 'val_accuracy', 'lr'):
    assert all(np.isfinite(h[key]) for h in history), key
  saved = json.load(open(os.path.join(workdir, 'final_metrics.json')))
  assert saved['val_count'] == final['val_count'] > 0
  best = min(history, key=lambda h: h['val_loss'])
  assert saved['best_epoch'] == best['epoch']
  assert abs(saved['val_loss'] - best['val_loss']) < 1e-4  # restore-best really restored it.

  predict_fn, loaded_config = classifier.load_for_inference(workdir)
  images = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
  probs = predict_fn(images)
  assert probs.shape == (3, 4)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  assert predict_fn.features(images).shape == (3, 16)
  assert loaded_config.data.image_size == SIZE


KILL_RUN = """
import sys
from braingan.train import classifier
from tests.test_train_classifier import tiny_config
config = tiny_config(epochs=int(sys.argv[3]), early_stopping_patience=100,
                     **{'data.data_dir': sys.argv[1]})
print('FINAL', classifier.train_and_evaluate(config, sys.argv[2]), flush=True)
"""


@pytest.mark.slow
def test_kill_and_resume(tiny_data_dir, tmp_path):
  """SIGKILL a real run after its first checkpoint, then resume it to the end."""
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  cmd = [sys.executable, '-c', KILL_RUN, tiny_data_dir, workdir, '40']
  proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  deadline = time.time() + 180
  try:
    while time.time() < deadline and proc.poll() is None:
      steps = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
      if steps:
        break
      time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  assert proc.returncode == -signal.SIGKILL
  history_before = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  killed_at = history_before[-1]['epoch']
  assert killed_at < 40

  cmd[-1] = str(killed_at + 1)  # One more epoch after the kill point.
  out = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  assert 'Resumed from epoch' in out.stdout
  history = json.load(open(os.path.join(workdir, 'history.json')))
  resumed_from = int(out.stdout.split('Resumed from epoch ')[1].split()[0])
  assert 1 <= resumed_from <= killed_at
  assert [h['epoch'] for h in history] == list(range(1, killed_at + 2))
  # Epochs before the resume point are the killed run's own records, unchanged.
  for h, b in zip(history[:resumed_from], history_before[:resumed_from]):
    assert h['loss'] == b['loss'] and h['val_loss'] == b['val_loss']


@pytest.mark.slow
def test_multidevice_step_matches_single_device():
  from tests.multidevice import run_with_devices
  code = """
import jax, jax.numpy as jnp, numpy as np
from braingan.train import classifier, parallel
from tests.test_train_classifier import tiny_config, _batch
from braingan.train.state import TrainState
cfg = tiny_config(**{'model.dropout': 0.0})
out = []
for n in (1, 8):
  cfg.num_devices = n
  model = classifier.make_model(cfg)
  v = classifier.initial_variables(cfg, model, (1, 32, 32, 1))
  st = TrainState.create(params=v['params'], batch_stats=v['batch_stats'],
                         tx=classifier.make_optimizer(cfg, v['params']), rng=0)
  mesh = parallel.make_mesh(n)
  step, _ = classifier.compile_steps(model, mesh, cfg, np.ones(4, np.float32))
  st = parallel.replicate(mesh, st)
  st, m = step(st, parallel.shard_batch(mesh, _batch(0)), jnp.float32(1e-3))
  out.append((float(m['loss']), np.asarray(st.params['head_logits']['kernel'])))
print('LOSS', out[0][0], out[1][0])
print('DIFF', float(np.abs(out[0][1] - out[1][1]).max()))
"""
  stdout = run_with_devices(code, 8)
  loss1, loss8 = map(float, stdout.split('LOSS ')[1].split()[:2])
  assert abs(loss1 - loss8) < 1e-5
  assert float(stdout.split('DIFF ')[1].split()[0]) < 1e-5
