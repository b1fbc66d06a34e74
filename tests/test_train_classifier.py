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

from braingan import inference
from braingan import train
from braingan.models import resnet
from braingan.train import classifier, hooks, loop
from configs import classifier as classifier_config
from tests.conftest import REPO_ROOT, make_folder

SIZE = 32


def tiny_config(**overrides):
  config = classifier_config.get_config()
  config.data.image_size = SIZE
  config.model.stage_sizes = (1, 1, 1, 1)
  config.model.width = 8
  config.model.head_units = 16
  config.model.pretrained = 'none'
  config.batch_size = 8
  config.log_every_seconds = 0.0
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def trainer_for(config) -> loop.Trainer:
  """The loop's jitted classifier step, without data (tests feed batches)."""
  return loop.Trainer(classifier.ClassifierRecipe(config, None))


def _batch(seed=0, n=8):
  rng = np.random.default_rng(seed)
  return {'image': rng.uniform(-1, 1, (n, SIZE, SIZE, 1)).astype(np.float32),
          'label': (np.arange(n) % 4).astype(np.int32)}


def test_freeze_presets():
  assert classifier.frozen_prefixes(tiny_config()) == (
      'conv1_conv', 'conv1_bn', 'conv2_block1_1_conv', 'conv2_block1_1_bn',
      'conv2_block1_2_conv', 'conv2_block1_2_bn', 'conv2_block1_0_conv', 'conv2_block1_3_conv')
  assert classifier.frozen_prefixes(tiny_config(**{'model.freeze': 'none'})) == ()
  head = classifier.frozen_prefixes(tiny_config(**{'model.freeze': 'head'}))
  variables = resnet.init_variables(classifier.ClassifierRecipe(tiny_config(), None).model,
                                    (1, SIZE, SIZE, 1))
  assert set(head) == {k for k in variables['params'] if not k.startswith('head_')}
  with pytest.raises(ValueError, match='config.model.freeze'):
    cfg = tiny_config(**{'model.freeze': 'conv9_nothing'})
    classifier.make_optimizer(cfg, {'conv1_conv': {'kernel': jnp.zeros(1)}})


@pytest.fixture(scope='module')
def keras15_setup():
  """Compiled once for the step tests (compiling dominates their time). No dropout."""
  trainer = trainer_for(tiny_config(**{'model.dropout': 0.0}))
  return trainer


def test_frozen_params_and_bn_stats_unchanged_others_train(keras15_setup):
  trainer = keras15_setup
  state = trainer.initial_state()
  before = jax.tree.map(np.array, {'params': state.params, 'batch_stats': state.batch_stats})
  for i in range(3):
    state, _ = trainer.step(state, _batch(i))
  after = jax.tree.map(np.array, {'params': state.params, 'batch_stats': state.batch_stats})
  frozen = resnet.KERAS15
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
  trainer = keras15_setup
  state = trainer.initial_state()
  losses = []
  for _ in range(15):
    state, metrics = trainer.step(state, _batch(0), {'learning_rate': 3e-3})
    losses.append(float(metrics['loss']))
  assert losses[-1] < 0.5 * losses[0], losses


def test_hooks_match_keras_callbacks():
  config = tiny_config(reduce_lr_patience=2, early_stopping_patience=4)
  recipe = classifier.ClassifierRecipe(config, None)
  hparams, controllers = recipe.hparams(), recipe.hooks()
  lrs, stopped = [], False
  for loss in [1.0, 0.9, 0.95, 0.96, 0.97, 0.98]:
    stopped = any([h.update({'val_loss': loss}, hparams) for h in controllers])
    lrs.append(hparams['learning_rate'])
    if stopped:
      break
  # Best at 0.9 (epoch 2); two worse epochs -> halve; stop after four worse epochs.
  assert lrs == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]
  assert stopped and controllers[0].state['best'] == 0.9
  assert isinstance(controllers[0], hooks.EarlyStopping)
  with pytest.raises(ValueError, match='val_loss'):
    controllers[0].update({'val_loss': float('nan')}, hparams)


@pytest.fixture(scope='module')
def tiny_data_dir(tmp_path_factory):
  return make_folder(tmp_path_factory.mktemp('clf') / 'data', per_class=10, size=(36, 36))


def test_train_and_evaluate_end_to_end(tiny_data_dir, tmp_path):
  config = tiny_config(epochs=2, **{'data.data_dir': tiny_data_dir})
  workdir = str(tmp_path / 'run')
  final = train.train_and_evaluate(config, workdir)
  history = json.load(open(os.path.join(workdir, 'history.json')))
  assert [h['epoch'] for h in history] == [1, 2]
  for key in ('loss', 'accuracy', 'val_loss', 'val_accuracy', 'learning_rate'):
    assert all(np.isfinite(h[key]) for h in history), key
  saved = json.load(open(os.path.join(workdir, 'final_metrics.json')))
  assert saved['val_count'] == final['val_count'] > 0
  best = min(history, key=lambda h: h['val_loss'])
  assert saved['best_epoch'] == best['epoch']
  assert abs(saved['val_loss'] - best['val_loss']) < 1e-4  # restore-best really restored it.

  model = inference.load_classifier(workdir)
  images = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
  probs = model.probs(images)
  assert probs.shape == (3, 4)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  assert model.features(images).shape == (3, 16)
  assert model.config.data.image_size == SIZE
  assert saved['train_steps'] == 2 * saved['steps_per_epoch']


def test_restore_best_none_keeps_the_last_epoch(tiny_data_dir, tmp_path):
  config = tiny_config(epochs=2, restore_best='none', **{'data.data_dir': tiny_data_dir})
  workdir = str(tmp_path / 'run')
  final = train.train_and_evaluate(config, workdir)
  history = json.load(open(os.path.join(workdir, 'history.json')))
  assert 'best_epoch' not in final
  assert final['val_loss'] == history[-1]['val_loss'] and final['epoch'] == 2
  assert not os.path.exists(os.path.join(workdir, 'checkpoints', 'best'))
  images = np.random.default_rng(0).uniform(-1, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
  np.testing.assert_array_equal(inference.load_classifier(workdir).probs(images),
                                inference.load_classifier(workdir, 'latest').probs(images))


KILL_RUN = """
import sys
from braingan import train
from tests.test_train_classifier import tiny_config
config = tiny_config(epochs=int(sys.argv[3]), early_stopping_patience=100,
                     **{'data.data_dir': sys.argv[1]})
print('FINAL', train.train_and_evaluate(config, sys.argv[2]), flush=True)
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
  assert 'Resumed at epoch' in out.stdout
  history = json.load(open(os.path.join(workdir, 'history.json')))
  resumed_from = int(out.stdout.split('Resumed at epoch ')[1].split(',')[0])
  assert 1 <= resumed_from <= killed_at
  assert [h['epoch'] for h in history] == list(range(1, killed_at + 2))
  # Epochs before the resume point are the killed run's own records, unchanged.
  for h, b in zip(history[:resumed_from], history_before[:resumed_from]):
    assert h['loss'] == b['loss'] and h['val_loss'] == b['val_loss']


@pytest.mark.slow
def test_multidevice_step_and_bn_recalibration_match_single_device():
  from tests.multidevice import run_with_devices
  code = """
import numpy as np
from braingan.train import classifier, loop
from tests.test_train_classifier import tiny_config, _batch, _FixedBatches
out = []
for n in (1, 8):
  config = tiny_config(num_devices=n, bn_recalibration_batches=2, **{'model.dropout': 0.0})
  recipe = classifier.ClassifierRecipe(config, _FixedBatches(2))
  trainer = loop.Trainer(recipe)
  st, m = trainer.step(trainer.initial_state(), _batch(0))
  st = recipe.finalize_epoch(st, 0)   # sharded statistics; the next (donating) step takes them
  st, _ = trainer.step(st, _batch(1))
  out.append((float(m['loss']), np.asarray(st.params['head_logits']['kernel']),
              np.asarray(st.batch_stats['conv5_block1_3_bn']['var'])))
print('LOSS', out[0][0], out[1][0])
print('DIFF', float(np.abs(out[0][1] - out[1][1]).max()))
print('STATS', float(np.abs(out[0][2] / out[1][2] - 1).max()))
"""
  stdout = run_with_devices(code, 8)
  loss1, loss8 = map(float, stdout.split('LOSS ')[1].split()[:2])
  assert abs(loss1 - loss8) < 1e-5
  assert float(stdout.split('DIFF ')[1].split()[0]) < 1e-5
  assert float(stdout.split('STATS ')[1].split()[0]) < 1e-4


class _FixedBatches:
  """A data stand-in: epoch e's stream is the same fixed batches every time."""

  def __init__(self, count):
    self.batches = [_batch(seed) for seed in range(count)]

  def class_counts(self, split):
    del split
    return {c: 2 for c in range(4)}

  def train_epoch(self, epoch, global_batch, steps, **unused):
    del epoch, global_batch, unused
    return iter(self.batches[:steps])


def test_bn_recalibration_is_the_mean_of_each_batch_statistics():
  """finalize_epoch: every trainable BatchNorm's statistics become the mean over the batches of
  that layer's batch mean and unbiased batch variance (numpy on the layer's input, captured);
  frozen layers and all parameters stay bit-identical; 0 batches leaves the state alone."""
  config = tiny_config(bn_recalibration_batches=3, **{'model.dropout': 0.0})
  recipe = classifier.ClassifierRecipe(config, _FixedBatches(5))
  trainer = loop.Trainer(recipe)
  state = trainer.initial_state()
  for i in range(2):   # weights away from their initial values, moving averages lagging
    state, _ = trainer.step(state, _batch(10 + i))
  new = recipe.finalize_epoch(state, 0)

  def layer_input(images, name):
    _, captured = recipe.model.apply(state.variables, images, train=True,
                                     capture_intermediates=lambda m, _: m.name == name,
                                     mutable=['intermediates', 'batch_stats'])
    return np.asarray(captured['intermediates'][name]['__call__'][0], np.float64)

  for bn, conv in (('conv2_block1_0_bn', 'conv2_block1_0_conv'),
                   ('conv5_block1_3_bn', 'conv5_block1_3_conv')):
    inputs = [layer_input(_batch(seed)['image'], conv) for seed in range(3)]
    n = inputs[0].size // inputs[0].shape[-1]
    mean = np.mean([x.mean(axis=(0, 1, 2)) for x in inputs], axis=0)
    var = np.mean([x.var(axis=(0, 1, 2)) * n / (n - 1) for x in inputs], axis=0)
    np.testing.assert_allclose(new.batch_stats[bn]['mean'], mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new.batch_stats[bn]['var'], var, rtol=1e-4, atol=1e-6)
    assert not np.allclose(state.batch_stats[bn]['var'], var, rtol=1e-2)   # it did change
  for layer in ('conv1_bn', 'conv2_block1_1_bn', 'conv2_block1_2_bn'):   # frozen (keras15)
    for name in ('mean', 'var'):
      np.testing.assert_array_equal(new.batch_stats[layer][name],
                                    state.batch_stats[layer][name], err_msg=layer)
  jax.tree.map(np.testing.assert_array_equal, new.params, state.params)
  off = classifier.ClassifierRecipe(tiny_config(), _FixedBatches(5))
  assert off.finalize_epoch(state, 0) is state


def test_bn_recalibration_keeps_the_weights_trajectory(tiny_data_dir, tmp_path):
  """Training steps normalise with batch statistics, so recomputing the stored ones after each
  epoch changes what evaluation sees and nothing the weights do."""
  runs = {}
  for batches in (0, 2):
    config = tiny_config(epochs=2, restore_best='none', bn_recalibration_batches=batches,
                         **{'data.data_dir': tiny_data_dir, 'model.freeze': 'none'})
    workdir = str(tmp_path / f'run{batches}')
    runs[batches] = (train.train_and_evaluate(config, workdir),
                     inference.load_classifier(workdir).variables)
  (final_off, off), (final_on, on) = runs[0], runs[2]
  jax.tree.map(np.testing.assert_array_equal, on['params'], off['params'])
  assert not np.allclose(on['batch_stats']['conv5_block1_3_bn']['var'],
                         off['batch_stats']['conv5_block1_3_bn']['var'])
  assert final_on['train_steps'] == final_off['train_steps']
  assert final_on['val_loss'] != final_off['val_loss']


def test_bn_recalibration_batches_is_validated():
  from braingan import config_check
  with pytest.raises(config_check.ConfigError, match='bn_recalibration_batches'):
    config_check.validate(tiny_config(bn_recalibration_batches=-1))
