"""pipeline.py: epochs are complete, deterministic, sharded per process; eval covers all."""
import os

import numpy as np
import pytest
from PIL import Image

from braingan.data import pipeline
from configs import common
from tests.conftest import make_folder, write_image


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  root = make_folder(tmp_path_factory.mktemp('data'), per_class=10)
  cfg = common.data_config()
  cfg.data_dir, cfg.image_size = root, 16
  return pipeline.load(cfg, str(tmp_path_factory.mktemp('work')), seed=0)


def test_counts_and_batches(source):
  assert source.num_examples('train') == 32 and source.num_examples('validation') == 8
  assert source.class_counts('train') == {'glioma': 8, 'meningioma': 8, 'no_tumor': 8,
                                          'pituitary': 8}
  batches = list(source.train_epoch(0, 8, 4))
  assert len(batches) == 4
  b = batches[0]
  assert b['image'].shape == (8, 16, 16, 1) and b['image'].dtype == np.float32
  assert b['label'].dtype == np.int32
  assert -1.0 <= b['image'].min() and b['image'].max() <= 1.0
  # One epoch sees every training image exactly once.
  seen = np.concatenate([x['image'].reshape(8, -1) for x in batches])
  assert len(np.unique(seen, axis=0)) == 32


def test_deterministic_per_epoch(source):
  a = [b['label'] for b in source.train_epoch(2, 8, 4)]
  b = [b['label'] for b in source.train_epoch(2, 8, 4)]
  c = [b['label'] for b in source.train_epoch(3, 8, 4)]
  np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
  assert not np.array_equal(np.concatenate(a), np.concatenate(c))


def test_eval_covers_split_once_with_mask(source):
  batches = list(source.eval_batches(3))
  assert [b['mask'].sum() for b in batches] == [3, 3, 2]
  labels = np.concatenate([b['label'][b['mask']] for b in batches])
  np.testing.assert_array_equal(labels, source.labels['validation'])


def test_epochs_of_any_length_reshuffle(source):
  batches = list(source.train_epoch(0, 8, 10))   # more steps than the split holds
  assert len(batches) == 10
  seen = np.concatenate([x['image'].reshape(8, -1) for x in batches])
  assert len(np.unique(seen, axis=0)) == 32


def test_class_sorted_sets_of_any_size_are_shuffled_whole(source):
  """Images stored class by class (a generated pool) reach the first batches in the class mix
  of the whole set, however large; a 4,096-image shuffle buffer fed 10,000 sorted images'
  first batches from the first classes only. Up to that size the order is the one a
  shuffle buffer over the images themselves gives (runs recorded before replay)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  n = 10_000
  labels = np.repeat(np.arange(4, dtype=np.int32), n // 4)
  images = np.zeros((n, 2, 2, 1), np.uint8)
  sorted_set = pipeline.DataSource(images={'train': images}, labels={'train': labels},
                                   channels=1, seed=0, summary={})
  first = np.concatenate([b['label'] for b in sorted_set.train_dataset(0, 32, 20)
                          .as_numpy_iterator()])
  shares = np.bincount(first, minlength=4) / len(first)
  assert np.all(np.abs(shares - 0.25) < 0.06), shares
  small = source.labels['train']
  ours = np.concatenate([b['label'] for b in source.train_dataset(0, 8, 8).as_numpy_iterator()])
  seed = (source.seed * 1_000_003 + 0 * 9_176 + 1) % (2**31 - 1)   # epoch 0, real images
  before = tf.data.Dataset.from_tensor_slices(small).shuffle(len(small), seed=seed,
                                                             reshuffle_each_iteration=True)
  np.testing.assert_array_equal(ours, list(before.repeat().take(64).as_numpy_iterator()))


def test_synthetic_mixing_ratio(source, tmp_path):
  for name in ('glioma', 'meningioma', 'no_tumor', 'pituitary'):
    os.makedirs(tmp_path / name)
    for i in range(20):  # Constant white images: easy to tell from the random real ones.
      Image.new('L', (16, 16), 255).save(tmp_path / name / f'{i}.png')
  batches = list(source.train_epoch(0, 8, 8, synthetic_dir=str(tmp_path),
                                     synthetic_ratio=0.5))
  images = np.concatenate([b['image'] for b in batches])
  synthetic = (images.reshape(len(images), -1).min(-1) == 1.0).mean()
  assert len(batches) == 8 and 0.3 < synthetic < 0.7
  only = np.concatenate([b['image'] for b in source.train_epoch(
      0, 8, 4, synthetic_dir=str(tmp_path), synthetic_ratio=1.0)])
  assert np.all(only == 1.0)                                   # CAS: synthetic images only
  with pytest.raises(ValueError, match='synthetic_ratio'):
    next(source.train_epoch(0, 8, 8, synthetic_dir=str(tmp_path), synthetic_ratio=1.5))


def test_unreadable_synthetic_files_are_reported(tmp_path, capsys):
  for name in ('glioma', 'meningioma'):
    os.makedirs(tmp_path / name)
    Image.new('L', (16, 16), 255).save(tmp_path / name / 'ok.png')
  (tmp_path / 'glioma' / 'broken.png').write_bytes(b'not a png')
  images, labels = pipeline.load_folder_arrays(str(tmp_path), 16)
  assert len(labels) == 2
  assert 'skipped 1 unreadable file(s)' in capsys.readouterr().out


def test_per_process_slices_are_contiguous_parts_of_the_global_batch(source, monkeypatch):
  full = [b['image'] for b in source.train_epoch(1, 8, 4)]
  parts = []
  for index in range(2):
    monkeypatch.setattr(pipeline.jax, 'process_count', lambda: 2)
    monkeypatch.setattr(pipeline.jax, 'process_index', lambda i=index: i)
    parts.append([b['image'] for b in source.train_epoch(1, 8, 4)])
  assert len(parts[0]) == len(parts[1]) == len(full)
  for k, batch in enumerate(full):  # Process p holds rows [4p, 4p + 4) of every global batch.
    np.testing.assert_array_equal(parts[0][k], batch[:4])
    np.testing.assert_array_equal(parts[1][k], batch[4:])


def test_three_channels(tmp_path):
  root = make_folder(tmp_path / 'data', per_class=3)
  cfg = common.data_config()
  cfg.data_dir, cfg.image_size, cfg.channels = root, 8, 3
  source = pipeline.load(cfg, str(tmp_path / 'w'), seed=0)
  b = next(source.train_epoch(0, 4, 3))
  assert b['image'].shape == (4, 8, 8, 3)
  np.testing.assert_array_equal(b['image'][..., 0], b['image'][..., 2])
  e = next(source.eval_batches(4))
  assert e['image'].shape == (4, 8, 8, 3)


def test_balanced_sampling_and_shuffled_synthetic_labels(tmp_path):
  root = make_folder(tmp_path / 'data', per_class=10)
  for i in range(30):   # glioma is now 3 x as common as any other class
    write_image(os.path.join(root, 'glioma_tumor', f'extra{i}.png'), seed=500 + i)
  cfg = common.data_config()
  cfg.data_dir, cfg.image_size = root, 16
  source = pipeline.load(cfg, str(tmp_path / 'w'), seed=0)
  natural = np.concatenate([b['label'] for b in source.train_epoch(0, 8, 60)])
  balanced = np.concatenate([b['label'] for b in source.train_epoch(0, 8, 60, balance=1.0)])
  share = lambda labels: np.bincount(labels, minlength=4) / len(labels)  # noqa: E731
  assert share(natural)[0] > 0.4 and abs(share(balanced)[0] - 0.25) < 0.07
  # Shuffled synthetic labels: the synthetic images' labels are permuted, real ones untouched.
  synth = tmp_path / 'synth'
  for k, name in enumerate(('glioma', 'meningioma', 'no_tumor', 'pituitary')):
    os.makedirs(synth / name)
    for i in range(10):
      Image.new('L', (16, 16), 50 * k + i).save(synth / name / f'{i}.png')
  intended = source.synthetic(str(synth))
  shuffled = source.synthetic(str(synth), 'shuffled')
  np.testing.assert_array_equal(intended[0], shuffled[0])                     # same images
  assert sorted(intended[1]) == sorted(shuffled[1])                           # same labels ...
  assert np.mean(intended[1] == shuffled[1]) < 0.6                            # ... permuted
  batches = list(source.train_epoch(0, 8, 20, synthetic_dir=str(synth), synthetic_ratio=0.5,
                                    synthetic_labels='shuffled'))
  real_images = {source.images['train'][i].tobytes(): int(source.labels['train'][i])
                 for i in range(source.num_examples('train'))}
  for b in batches:
    for image, label in zip(b['image'], b['label']):
      key = np.round(image[..., 0] * 127.5 + 127.5).astype(np.uint8)[..., None].tobytes()
      if key in real_images:
        assert real_images[key] == label                                      # real: intact
