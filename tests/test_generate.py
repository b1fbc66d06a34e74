"""Balanced, deterministic PNG generation from a checkpointed run, readable by the pipeline."""
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from braingan import generate
from braingan import images as images_lib
from braingan import inference
from braingan.data import CLASSES
from braingan.run_dir import RunDir
from braingan.train import gan
from braingan.train.checkpoint import Checkpointer
from tests.test_train_gan import tiny_config


def write_untrained_run(workdir, config=None):
  """A GAN run directory as training writes it (config.json + checkpoint), initial weights.

  Training even one GAN step costs a compile of tens of seconds on a busy 2-core CPU; what is
  tested here (restoring, sampling, writing) is the same with untrained weights.
  """
  config = config or tiny_config()
  run = RunDir(workdir)
  run.write_config(config)
  state = gan.GANRecipe(config).init_state()
  state = state.replace(generator=state.generator.replace(step=np.int32(42)))
  with Checkpointer(run.checkpoints, async_save=False) as ckpt:
    ckpt.save(3, state, meta={'epoch': 3, 'step': 42})
  return config


def test_generate_balanced_and_deterministic(tmp_path):
  workdir = str(tmp_path / 'run')
  config = write_untrained_run(workdir)
  out_a, out_b = str(tmp_path / 'a'), str(tmp_path / 'b')
  manifest = generate.generate(workdir, out_a, per_class=3, seed=5, batch_size=5)
  generate.generate(workdir, out_b, per_class=3, seed=5, batch_size=8)
  assert manifest['checkpoint_epoch'] == 3 and manifest['checkpoint_step'] == 42
  assert manifest['seed'] == 5 and manifest['per_class'] == 3
  assert manifest['image_size'] == config.data.image_size
  assert manifest['counts'] == {c: 3 for c in CLASSES}
  assert json.load(open(os.path.join(out_a, 'manifest.json'))) == manifest
  for name in CLASSES:
    files = sorted(os.listdir(os.path.join(out_a, name)))
    assert files == [f'{name}_{i:05d}.png' for i in range(3)]
    for f in files:
      a = np.asarray(Image.open(os.path.join(out_a, name, f)))
      b = np.asarray(Image.open(os.path.join(out_b, name, f)))
      assert a.shape == (32, 32) and a.dtype == np.uint8
      np.testing.assert_array_equal(a, b)   # independent of the batch size
  # Different classes get different images (the label conditions the generator).
  g0 = np.asarray(Image.open(os.path.join(out_a, CLASSES[0], f'{CLASSES[0]}_00000.png')))
  g1 = np.asarray(Image.open(os.path.join(out_a, CLASSES[1], f'{CLASSES[1]}_00000.png')))
  assert not np.array_equal(g0, g1)


def test_generated_folder_reads_back_as_synthetic_source(tmp_path):
  from braingan.data import pipeline  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / 'run')
  write_untrained_run(workdir)
  out = str(tmp_path / 'gen')
  generate.generate(workdir, out, per_class=2)
  images, labels = pipeline.load_folder_arrays(out, 32)
  assert images.shape == (8, 32, 32, 1)
  assert np.bincount(labels, minlength=4).tolist() == [2, 2, 2, 2]


def test_to_pixels_inverts_pipeline_scaling():
  gray = np.arange(256, dtype=np.float32)
  np.testing.assert_array_equal(images_lib.to_pixels((gray - 127.5) / 127.5),
                                gray.astype(np.uint8))


def test_rerun_with_fewer_images_leaves_exactly_those(tmp_path):
  """A smaller rerun must not leave the first run's extra images for the classifier to eat."""
  workdir = str(tmp_path / 'run')
  write_untrained_run(workdir)
  out = str(tmp_path / 'gen')
  generate.generate(workdir, out, per_class=100, batch_size=100)
  manifest = generate.generate(workdir, out, per_class=50, batch_size=100)
  for name in CLASSES:
    assert len(os.listdir(os.path.join(out, name))) == 50
  assert json.load(open(os.path.join(out, 'manifest.json'))) == manifest
  assert sorted(os.listdir(tmp_path)) == ['gen', 'run']   # no partial or old folder left


@pytest.mark.parametrize('layer_mode', ['inference', 'training'])
def test_generation_uses_ema_weights_when_kept(tmp_path, layer_mode):
  config = tiny_config(**{'ema.decay': 0.999, 'model.layer_mode': layer_mode})
  workdir = str(tmp_path / 'run')
  recipe = gan.GANRecipe(config)
  state = recipe.init_state()
  # EMA weights differ from the generator's: all zeros (so every image is tanh(0) = mid gray).
  state = state.replace(ema_params=jax.tree.map(np.zeros_like, state.ema_params))
  RunDir(workdir).write_config(config)
  with Checkpointer(RunDir(workdir).checkpoints, async_save=False) as ckpt:
    ckpt.save(1, state, meta={'epoch': 1, 'step': 0})
  ema = generate.generate(workdir, str(tmp_path / 'ema'), per_class=1)
  plain = generate.generate(workdir, str(tmp_path / 'plain'), per_class=1, use_ema=False)
  assert ema['weights'] == 'ema' and plain['weights'] == 'generator'
  gray = np.asarray(Image.open(tmp_path / 'ema' / 'glioma' / 'glioma_00000.png'))
  assert np.all(gray == 128)
  other = np.asarray(Image.open(tmp_path / 'plain' / 'glioma' / 'glioma_00000.png'))
  assert not np.all(other == 128)
  # BatchNorm statistics: recomputed for the EMA weights (all-zero activations: variance 0)
  # when BatchNorm trained on batch statistics, else the checkpoint's (initial variance 1).
  stats = inference.load_generator(workdir).variables['batch_stats']
  variances = [v for path, v in jax.tree_util.tree_leaves_with_path(stats)
               if 'var' in jax.tree_util.keystr(path)]
  assert variances and all(np.all(v == (0.0 if layer_mode == 'training' else 1.0))
                           for v in variances)
