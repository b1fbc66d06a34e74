"""Runs nothing can corrupt: validation before work, one writer per run, readers that only read,
non-finite values never saved as good, safe resumes."""
import json
import os
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braingan import config_check
from braingan import train
from braingan.run_dir import RunDir, RunLockedError
from braingan.train import checkpoint as checkpoint_lib
from braingan.train import gan, loop
from tests.test_train_classifier import tiny_config as classifier_config
from tests.test_train_gan import tiny_config as gan_config

# ------------------------------------------------------------------------------ validation
INVALID = [
    # (family, field path, bad value, text the message must contain)
    ('classifier', 'batch_size', 0, 'config.batch_size=0'),
    ('classifier', 'epochs', -1, 'config.epochs=-1'),
    ('classifier', 'data.image_size', 8, 'config.data.image_size=8'),
    ('classifier', 'data.channels', 2, 'config.data.channels=2'),
    ('classifier', 'data.resize', 'crop', 'config.data.resize'),
    ('classifier', 'data.val_fraction', 1.5, 'config.data.val_fraction=1.5'),
    ('classifier', 'optimizer.learning_rate', 0.0, 'config.optimizer.learning_rate=0.0'),
    ('classifier', 'model.freeze', 'conv9_x', 'config.model.freeze'),
    ('classifier', 'model.preprocess', 'torch', 'config.model.preprocess'),
    ('classifier', 'dtype', 'float16', 'config.dtype'),
    ('classifier', 'restore_best', 'val_accuracy', 'config.restore_best'),
    ('classifier', 'data.synthetic_ratio', 0.5, 'config.data.synthetic_dir'),
    ('classifier', 'model.name', 'vgg', 'config.model.name'),
    ('classifier', 'epochs', '10', 'config.epochs'),            # a string where an int goes
    ('gan', 'data.image_size', 100, 'config.data.image_size=100'),   # not divisible by 16/32
    ('gan', 'loss', 'wasserstein', 'config.loss'),
    ('gan', 'diffaug.policy', 'translation,hue', 'config.diffaug.policy'),
    ('gan', 'model.d_conditioning', 'projection+magic', 'config.model.d_conditioning'),
    ('gan', 'model.g_conditioning', 'film', 'config.model.g_conditioning'),
    ('gan', 'model.layer_mode', 'eval', 'config.model.layer_mode'),
    ('gan', 'data.augment', True, 'config.data.augment'),      # a classifier-only option
    ('gan', 'ema.decay', 1.0, 'config.ema.decay'),
    ('gan', 'lr_decay_after_epoch', -1, 'config.lr_decay_after_epoch=-1'),
    ('gan', 'diffaug.ada_target', 0.6, 'config.diffaug.policy'),
    ('gan', 'select_generator', 'cond_kid', "config.select_generator='cond_kid'"),
    ('gan', 'select_generator', 'cond_fid', 'config.judge.run_dir'),   # nothing to select by
    ('gan', 'lecam_weight', -0.1, 'config.lecam_weight'),
    ('gan', 'lecam_decay', 1.0, 'config.lecam_decay'),
]


@pytest.mark.parametrize('family,field,value,text', INVALID)
def test_invalid_config_fails_fast_naming_the_field_before_any_file(family, field, value, text,
                                                                     tmp_path):
  config = classifier_config() if family == 'classifier' else gan_config()
  target = config
  *parents, leaf = field.split('.')
  for p in parents:
    target = target[p]
  with target.ignore_type():
    target[leaf] = value
  config.data.data_dir = str(tmp_path / 'no_such_folder')   # never reached
  workdir = tmp_path / 'run'
  start = time.perf_counter()
  with pytest.raises(config_check.ConfigError, match=text.replace('.', r'\.').replace('+', r'\+')):
    train.train_and_evaluate(config, str(workdir))
  assert time.perf_counter() - start < 1.0
  assert not workdir.exists()


def test_unknown_field_is_an_error(tmp_path):
  config = classifier_config()
  config.data.augmnet = True   # misspelt
  with pytest.raises(config_check.ConfigError, match='config.data.augmnet is not a field'):
    config_check.validate(config)


def test_resume_refuses_a_changed_model_but_accepts_a_new_budget(tmp_path):
  run = RunDir(str(tmp_path / 'run'))
  config = classifier_config()
  run.write_config(config)
  longer = classifier_config(epochs=config.epochs + 5)
  run.write_config(longer)   # a budget field: fine, and recorded
  assert run.read_config().epochs == config.epochs + 5
  wider = classifier_config(**{'model.width': 16, 'optimizer.learning_rate': 0.5})
  with pytest.raises(ValueError, match=r'config\.model\.width: run has 8, now 16') as info:
    run.write_config(wider)
  assert 'config.optimizer.learning_rate' in str(info.value)


def test_a_field_added_since_the_run_compares_as_its_old_behaviour(tmp_path):
  """A run recorded before config.restore_best existed resumes when the new field holds the
  value that does what the run did, and is refused when it holds another."""
  run = RunDir(str(tmp_path / 'run'))
  old = classifier_config().to_dict()
  del old['restore_best']
  os.makedirs(run.root)
  with open(run.config_path, 'w') as f:
    json.dump(old, f)
  assert config_check.resume_differences(run.read_config(), classifier_config()) == []
  changed = classifier_config(restore_best='none')
  assert config_check.resume_differences(run.read_config(), changed) == [
      "config.restore_best: run has '<absent>', now 'none'"]
  assert config_check.is_added_default('config.mode_seeking', 0.0)
  assert not config_check.is_added_default('mode_seeking', 1.0)
  assert config_check.is_added_default('lr_decay_after_epoch', 0)
  assert config_check.is_added_default('lecam_weight', 0.0)
  assert not config_check.is_added_default('lecam_weight', 0.3)
  assert not config_check.is_added_default('epochs', 15)


# ------------------------------------------------------------------------------------ lock
def test_second_trainer_is_refused_with_the_holders_name(tmp_path):
  run = RunDir(str(tmp_path / 'run'))
  with run.lock():
    with pytest.raises(RunLockedError, match=f'pid {os.getpid()} on host'):
      run.lock().acquire()
  assert not os.path.exists(tmp_path / 'run' / '.lock')   # released


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path, caplog):
  dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True)
  os.makedirs(tmp_path / 'run')
  with open(tmp_path / 'run' / '.lock', 'w') as f:
    json.dump({'host': socket.gethostname(), 'pid': int(dead.stdout), 'started': 'then'}, f)
  with RunDir(str(tmp_path / 'run')).lock() as lock:
    assert lock.owned
    assert json.load(open(tmp_path / 'run' / '.lock'))['pid'] == os.getpid()
  assert 'stale lock' in caplog.text


def test_lock_of_another_host_is_not_taken_over(tmp_path):
  os.makedirs(tmp_path / 'run')
  with open(tmp_path / 'run' / '.lock', 'w') as f:
    json.dump({'host': 'elsewhere', 'pid': 1, 'started': 'now'}, f)
  with pytest.raises(RunLockedError, match='host elsewhere'):
    RunDir(str(tmp_path / 'run')).lock().acquire()


# ------------------------------------------------------------------------------- readers
def test_reader_leaves_a_save_in_progress_alone(tmp_path):
  directory = tmp_path / 'checkpoints'
  with checkpoint_lib.Checkpointer(directory, async_save=False) as ckpt:
    ckpt.save(1, {'w': jnp.arange(3.0)})
  in_progress = directory / '2.orbax-checkpoint-tmp-1234567'   # a trainer's half-written save
  os.makedirs(in_progress / 'state')
  reader = checkpoint_lib.CheckpointReader(directory)
  assert reader.steps() == [1]
  restored = reader.restore({'w': jax.ShapeDtypeStruct((3,), jnp.float32)})
  np.testing.assert_array_equal(restored['w'], [0.0, 1.0, 2.0])
  assert in_progress.exists()                        # untouched by the reader ...
  writer = checkpoint_lib.Checkpointer(directory)    # ... while a writer cleans it up
  deadline = time.time() + 30                        # (asynchronously)
  while in_progress.exists() and time.time() < deadline:
    time.sleep(0.1)
  writer.close()
  assert not in_progress.exists()


def test_kill_between_best_and_latest_save_resumes(tmp_path):
  """best/2 written, 2 not (killed in between): redoing epoch 2 with a better value must work."""
  with checkpoint_lib.Checkpointer(tmp_path, best_metric='val_loss', async_save=False) as ckpt:
    ckpt.save(1, {'w': jnp.zeros(2)}, metrics={'val_loss': 1.0})
    ckpt._best_manager.save(2, args=checkpoint_lib.ocp.args.Composite(  # pylint: disable=protected-access
        state=checkpoint_lib.ocp.args.StandardSave({'w': jnp.ones(2)}),
        meta=checkpoint_lib.ocp.args.JsonSave({'step': 2})), force=True)
  with checkpoint_lib.Checkpointer(tmp_path, best_metric='val_loss', async_save=False) as ckpt:
    assert ckpt.latest_step() == 1 and ckpt.best_step() == 2
    ckpt.save(2, {'w': jnp.full(2, 2.0)}, metrics={'val_loss': 0.5})   # no StepAlreadyExists
    assert ckpt.latest_step() == 2


# ----------------------------------------------------------------------------- non-finite
class _PoisonedData:
  """Wraps a data source: epoch `epoch`, step `step` gets NaN images."""

  def __init__(self, data, epoch, step):
    self.data, self.epoch, self.step = data, epoch, step

  def __getattr__(self, name):
    return getattr(self.data, name)

  def train_epoch(self, epoch, batch_size, steps, **kwargs):
    for i, batch in enumerate(self.data.train_epoch(epoch, batch_size, steps, **kwargs)):
      if (epoch, i) == (self.epoch, self.step):
        batch = {**batch, 'image': np.full_like(batch['image'], np.nan)}
      yield batch


@pytest.mark.slow
def test_classifier_nan_mid_epoch_stops_and_resume_restores_finite_weights(tmp_path):
  from braingan.data import pipeline  # pylint: disable=import-outside-toplevel
  from braingan.train import classifier  # pylint: disable=import-outside-toplevel
  from tests.conftest import make_folder  # pylint: disable=import-outside-toplevel
  config = classifier_config(epochs=3, steps_per_epoch=3,
                             **{'data.data_dir': make_folder(tmp_path / 'data', per_class=6)})
  run = RunDir(str(tmp_path / 'run'))
  run.write_config(config)
  data = pipeline.load(config.data, run.root, config.seed)
  with pytest.raises(loop.NonFiniteError, match=r'Non-finite .*loss.*epoch 2.*epoch 1\) is kept'):
    loop.fit(classifier.ClassifierRecipe(config, _PoisonedData(data, epoch=1, step=1)), run)
  assert run.reader().steps() == [1]                 # the NaN epoch was never saved
  final = loop.fit(classifier.ClassifierRecipe(config, data), run)   # resume, clean data
  assert final['epochs_run'] == 3 and np.isfinite(final['val_loss'])
  from braingan import inference  # pylint: disable=import-outside-toplevel
  variables = inference.load_classifier(run.root, which='latest').variables
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(variables))


class _NaNAfterLastUpdate(gan.GANRecipe):
  """A GAN whose last update of epoch 1 writes NaN weights while its losses stay finite."""

  def train_step(self, state, batch, hparams):
    last = state.generator.step == self.steps_per_epoch() - 1
    lr = jnp.where(last, jnp.nan, hparams['learning_rate'])
    return super().train_step(state, batch, {**hparams, 'learning_rate': lr})


def test_gan_nan_weights_after_the_last_update_are_never_saved(tmp_path):
  config = gan_config(epochs=2, steps_per_epoch=2)

  class Data:
    def train_epoch(self, epoch, batch_size, steps):
      del epoch
      for i in range(steps):
        yield {'image': np.random.default_rng(i).uniform(-1, 1, (batch_size, 32, 32, 1))
                        .astype(np.float32), 'label': np.arange(batch_size) % 4}

  run = RunDir(str(tmp_path / 'run'))
  with pytest.raises(loop.NonFiniteError,
                     match='parameters, statistics or optimizer state.*epoch 1'):
    loop.fit(_NaNAfterLastUpdate(config, Data()), run)
  assert run.reader().steps() == []


def test_a_field_removed_since_the_run_is_ignored(tmp_path):
  """A run recorded with data.shuffle_buffer (removed: shuffling is now a full permutation)
  resumes, and a study cell whose stored settings nest it stays done."""
  run = RunDir(str(tmp_path / 'run'))
  old = classifier_config().to_dict()
  old['data']['shuffle_buffer'] = 4096
  os.makedirs(run.root)
  with open(run.config_path, 'w') as f:
    json.dump(old, f)
  assert config_check.resume_differences(run.read_config(), classifier_config()) == []
  assert 'params.data.shuffle_buffer' not in config_check.flatten(
      {'params': {'data': {'shuffle_buffer': 4096, 'seed': 0}}})
  assert 'params.data.seed' in config_check.flatten({'params': {'data': {'seed': 0}}})
