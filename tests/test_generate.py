"""Balanced, deterministic PNG generation from a checkpointed run, readable by the pipeline."""
import json
import os

import numpy as np
from PIL import Image

from braingan import generate
from braingan.data import CLASSES
from braingan.data import decode
from braingan.train import gan
from braingan.train.checkpoint import Checkpointer
from tests.test_train_gan import tiny_config


def _fake_run(workdir):
  config = tiny_config()
  generator, discriminator = gan.build_models(config)
  state = gan.initial_state(config, generator, discriminator)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, gan.CONFIG_FILE), 'w') as f:
    f.write(config.to_json())
  with Checkpointer(os.path.join(workdir, gan.CHECKPOINT_DIR), async_save=False) as ckpt:
    ckpt.save(3, state, meta={'epoch': 3, 'train_step': 42})
  return config


def test_generate_balanced_and_deterministic(tmp_path):
  workdir = str(tmp_path / 'run')
  config = _fake_run(workdir)
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
  _fake_run(workdir)
  out = str(tmp_path / 'gen')
  generate.generate(workdir, out, per_class=2)
  images, labels = pipeline.load_folder_arrays(out, 32)
  assert images.shape == (8, 32, 32, 1)
  assert np.bincount(labels, minlength=4).tolist() == [2, 2, 2, 2]


def test_to_pixels_inverts_pipeline_scaling():
  gray = np.arange(256, dtype=np.float32)
  np.testing.assert_array_equal(decode.to_pixels((gray - 127.5) / 127.5), gray.astype(np.uint8))
