"""eval/inputs.py: manifest order, external-folder leakage guard, padded batching."""
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from braingan.data import decode
from braingan.data import manifest as manifest_lib
from braingan.data import prepare
from braingan.eval import inputs
from configs import common
from tests.conftest import make_folder


@pytest.fixture
def prepared(tmp_path):
  root = make_folder(tmp_path / 'data', per_class=5)
  cfg = common.data_config()
  cfg.data_dir, cfg.image_size = root, 16
  prepare.write_manifest(cfg, str(tmp_path / 'w'))
  return cfg, str(tmp_path / 'w' / 'manifest.csv'), root


def test_from_manifest_uses_the_one_preprocessing(prepared):
  cfg, manifest_path, _ = prepared
  val = inputs.from_manifest(manifest_path, 'validation', cfg)
  rows = [r for r in manifest_lib.read(manifest_path) if r.split == 'validation']
  assert len(val) == len(rows) == 4 and val.images.shape == (4, 16, 16, 1)
  assert val.paths == [r.path for r in rows]
  np.testing.assert_array_equal(val.images[0], decode.preprocess_file(rows[0].path, cfg))


def test_external_folder_drops_training_copies(prepared, tmp_path):
  cfg, manifest_path, root = prepared
  test_dir = make_folder(tmp_path / 'test', per_class=2, classes=('glioma', 'notumor'),
                         seed=1)
  rows = [r for r in manifest_lib.read(manifest_path) if r.split != 'skipped']
  shutil.copy(rows[0].path, tmp_path / 'test' / 'glioma' / 'leak.png')            # same bytes
  with Image.open(rows[1].path) as im:                                             # mirrored
    im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / 'test' / 'notumor' / 'm.png')
  ext = inputs.from_folder(test_dir, cfg, exclude_like=rows)
  assert len(ext) == 4 and '2 of 6 file(s)' in ext.note, ext.note
  assert sorted(set(ext.labels.tolist())) == [0, 2]
  kinds = dict((os.path.basename(p), k) for p, k in ext.overlapping)
  assert kinds['leak.png'] == 'same bytes' and 'mirrored' in kinds['m.png']


def test_batched_pads_the_last_batch():
  calls = []

  def fn(x):
    calls.append(x.shape[0])
    return x.reshape(len(x), -1).sum(-1, keepdims=True)

  x = np.arange(10, dtype=np.float32).reshape(10, 1)
  out = inputs.batched(fn, x, 4)
  assert calls == [4, 4, 4] and out.shape == (10, 1)
  np.testing.assert_array_equal(out[:, 0], np.arange(10))
