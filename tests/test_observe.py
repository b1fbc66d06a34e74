"""Metric files, progress line, labelled image grid."""
import glob
import io
import math
import os

import numpy as np
import pytest
from PIL import Image

from braingan.train import observe


def test_metric_writer_jsonl_and_tensorboard(tmp_path):
  with observe.MetricWriter(str(tmp_path)) as writer:
    writer.write_scalars(10, {'loss': np.float32(0.5), 'acc': 0.75}, epoch=1, split='train')
    writer.write_scalars(20, {'loss': 0.25}, epoch=2, split='validation')
    writer.write_image(20, 'samples', np.zeros((8, 8, 1), np.float32))
  records = observe.read_jsonl(os.path.join(tmp_path, 'metrics.jsonl'))
  assert records == [{'step': 10, 'epoch': 1, 'split': 'train', 'loss': 0.5, 'acc': 0.75},
                     {'step': 20, 'epoch': 2, 'split': 'validation', 'loss': 0.25}]
  events = glob.glob(os.path.join(tmp_path, 'tensorboard', 'events.out.tfevents.*'))
  assert len(events) == 1
  import tensorflow as tf  # already imported (CPU only) by MetricWriter
  scalars, images = {}, []
  for event in tf.compat.v1.train.summary_iterator(events[0]):
    for value in event.summary.value:
      if value.metadata.plugin_data.plugin_name == 'images':
        images.append(value.tag)
      else:
        scalars[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
  assert scalars == {('train/loss', 10): 0.5, ('train/acc', 10): 0.75,
                     ('validation/loss', 20): 0.25}
  assert images == ['samples']


def test_metric_writer_disabled_is_a_noop(tmp_path):
  writer = observe.MetricWriter(str(tmp_path / 'other'), enabled=False)
  writer.write_scalars(1, {'loss': 1.0})
  writer.close()
  assert not os.path.exists(tmp_path / 'other')


def test_read_jsonl_skips_truncated_last_line(tmp_path):
  path = tmp_path / 'm.jsonl'
  path.write_text('{"step": 1, "loss": NaN}\n{"step": 2, "lo')
  records = observe.read_jsonl(str(path))
  assert len(records) == 1 and records[0]['step'] == 1 and math.isnan(records[0]['loss'])
  path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
  with pytest.raises(ValueError):
    observe.read_jsonl(str(path))


def test_progress_rate_eta_and_output():
  stream = io.StringIO()
  progress = observe.Progress(10, desc='epoch 3', min_interval=0.0, stream=stream,
                              enabled=True)
  progress._start -= 2.0      # pretend 2 s have passed: 5 steps -> 2.5 step/s
  progress.update(5, loss=0.123456)
  assert 2.0 < progress.rate() < 2.6
  assert 1.9 < progress.eta() < 2.1
  progress.update(5)
  progress.close()
  lines = stream.getvalue().splitlines()
  assert len(lines) == 3   # two updates (min_interval=0) + close
  assert lines[0].startswith('epoch 3 |  5/10  50.0% | 2.')
  assert 'ETA 0:00:02' in lines[0] and 'loss=0.1235' in lines[0]
  assert '10/10 100.0%' in lines[-1] and 'ETA 0:00:00' in lines[-1]


def test_progress_throttles():
  stream = io.StringIO()
  progress = observe.Progress(1000, min_interval=3600, stream=stream, enabled=True)
  for _ in range(1000):
    progress.update()
  progress.close()
  assert len(stream.getvalue().splitlines()) == 2   # the first update and the close


def test_save_image_grid_with_labels(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, size=(8, 16, 12, 1)).astype(np.float32)
  images[0] = -1.0
  images[1] = 1.0
  path = observe.save_image_grid(str(tmp_path / 'g' / 'grid.png'), images, nrow=4,
                                 row_labels=['glioma', 'pituitary'], label_width=80)
  picture = np.asarray(Image.open(path))
  assert picture.shape == (2 * (16 + 2) + 2, 80 + 4 * (12 + 2) + 2)
  strip = picture[:, :80]
  assert (strip > 128).sum() > 20                                   # text is drawn
  top, bottom = strip[:18], strip[18:]
  assert (top > 128).sum() > 5 and (bottom > 128).sum() > 5            # one label per row
  np.testing.assert_array_equal(picture[2:18, 82:94], 0)               # image 0: -1 -> 0
  np.testing.assert_array_equal(picture[2:18, 96:108], 255)            # image 1: +1 -> 255
  expected = np.round((images[5, ..., 0] + 1) * 127.5)                 # row 1, column 1
  np.testing.assert_allclose(picture[20:36, 96:108], expected, atol=1)


def test_save_image_grid_rgb_no_labels_and_errors(tmp_path):
  images = np.zeros((5, 8, 8, 3), np.float32)
  path = observe.save_image_grid(str(tmp_path / 'rgb.png'), images, nrow=3)
  picture = Image.open(path)
  assert picture.mode == 'RGB' and picture.size == (3 * 10 + 2, 2 * 10 + 2)
  with pytest.raises(ValueError, match='row_labels'):
    observe.save_image_grid(str(tmp_path / 'x.png'), images, nrow=3, row_labels=['a'])
  with pytest.raises(ValueError, match='images must be'):
    observe.save_image_grid(str(tmp_path / 'x.png'), images[0], nrow=3)
