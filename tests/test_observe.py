"""Metric files, progress line/bar, labelled image grid, atomic files and tolerant readers."""
import glob
import io
import math
import os

import numpy as np
import pytest
from PIL import Image

from braingan import files
from braingan import images as images_lib
from braingan.train import observe


def test_metric_writer_jsonl_and_tensorboard(tmp_path):
  writer = observe.MetricWriter(str(tmp_path / 'metrics.jsonl'), str(tmp_path / 'tensorboard'))
  writer.write_scalars(10, {'loss': np.float32(0.5), 'acc': 0.75}, epoch=1)
  writer.write_scalars(20, {'val_loss': 0.25}, epoch=2)
  writer.write_image(20, 'samples', np.zeros((8, 8), np.uint8))
  writer.close()
  records = files.read_jsonl(os.path.join(tmp_path, 'metrics.jsonl'))
  assert records == [{'step': 10, 'epoch': 1, 'loss': 0.5, 'acc': 0.75},
                     {'step': 20, 'epoch': 2, 'val_loss': 0.25}]
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
  assert scalars == {('loss', 10): 0.5, ('acc', 10): 0.75, ('val_loss', 20): 0.25}
  assert images == ['samples']


def test_metric_writer_disabled_is_a_noop(tmp_path):
  writer = observe.MetricWriter(str(tmp_path / 'other' / 'm.jsonl'), str(tmp_path / 'other'),
                                enabled=False)
  writer.write_scalars(1, {'loss': 1.0})
  writer.close()
  assert not os.path.exists(tmp_path / 'other')


def test_read_jsonl_skips_torn_last_line_and_keeps_last_record_per_key(tmp_path):
  path = tmp_path / 'm.jsonl'
  path.write_text('{"step": 1, "loss": NaN}\n{"step": 2, "lo')   # a crash mid-write
  records = files.read_jsonl(str(path))
  assert len(records) == 1 and records[0]['step'] == 1 and math.isnan(records[0]['loss'])
  # A resumed run writes epochs 2-3 again: readers see each epoch once, the newest record.
  path.write_text(''.join(f'{{"epoch": {e}, "v": {v}}}\n'
                          for e, v in [(1, 1), (2, 2), (3, 3), (2, 20), (3, 30), (4, 40)]))
  records = files.read_jsonl(str(path), key=lambda r: r['epoch'])
  assert [(r['epoch'], r['v']) for r in records] == [(1, 1), (2, 20), (3, 30), (4, 40)]
  path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
  with pytest.raises(ValueError, match='line 2'):
    files.read_jsonl(str(path))


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
  path = str(tmp_path / 'sub' / 'config.json')
  files.write_json(path, {'a': 1})

  def failing(tmp):
    with open(tmp, 'w') as f:
      f.write('{"half": ')
    raise OSError('disk full')

  with pytest.raises(OSError, match='disk full'):
    files.atomic_write(path, failing)
  assert files.read_json(path) == {'a': 1}
  assert os.listdir(tmp_path / 'sub') == ['config.json']   # no temporary file left


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
  assert len(stream.getvalue().splitlines()) == 1   # the close only


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_bar_on_a_terminal_plain_lines_in_files():
  terminal = _Terminal()
  progress = observe.Progress(4, desc='epoch 1', stream=terminal, enabled=True)
  for _ in range(4):
    progress.update(1, loss=0.5)
  progress.close()
  assert '\r' in terminal.getvalue() and '4/4' in terminal.getvalue()   # a tqdm bar
  log = io.StringIO()
  progress = observe.Progress(4, desc='epoch 1', min_interval=0.0, stream=log, enabled=True)
  for _ in range(4):
    progress.update(1, loss=0.5)
  progress.close()
  text = log.getvalue()
  assert '\r' not in text and '\x1b' not in text and text.count('\n') == 5


def test_grid_with_labels(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, size=(8, 16, 12, 1)).astype(np.float32)
  images[0] = -1.0
  images[1] = 1.0
  path = images_lib.save_png(str(tmp_path / 'g' / 'grid.png'), images_lib.grid(
      images, 4, row_labels=['glioma', 'pituitary'], label_width=80))
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


def test_grid_rgb_no_labels_and_errors(tmp_path):
  images = np.zeros((5, 8, 8, 3), np.float32)
  path = images_lib.save_png(str(tmp_path / 'rgb.png'), images_lib.grid(images, 3))
  picture = Image.open(path)
  assert picture.mode == 'RGB' and picture.size == (3 * 10 + 2, 2 * 10 + 2)
  with pytest.raises(ValueError, match='row_labels'):
    images_lib.grid(images, 3, row_labels=['a'])
  with pytest.raises(ValueError, match='images must be'):
    images_lib.grid(images[0], 3)
