"""Every figure is written, non-blank; report.md and metrics.json say what the metrics say."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from braingan.eval import plots

NAMES = ['glioma', 'meningioma', 'no_tumor', 'pituitary']


def _check_png(path, min_bytes=3000):
  assert os.path.isfile(path), path
  assert os.path.getsize(path) > min_bytes
  pixels = np.asarray(Image.open(path).convert('L'), dtype=np.float32)
  assert pixels.shape[0] > 100 and pixels.shape[1] > 100
  assert pixels.var() > 0


def _case(n=48, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 4, n)
  def probs(strength):
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += strength
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)
  images = np.clip(rng.normal(size=(n, 16, 16, 1)) * 0.5, -1, 1).astype(np.float32)
  return y, probs(1.5), probs(2.0), images


def test_training_curves(tmp_path):
  hist = {'baseline': {'train_loss': [1.2, 0.8, 0.5], 'val_loss': [1.3, 0.9, 0.7],
                       'train_accuracy': [0.5, 0.7, 0.8], 'val_accuracy': [0.45, 0.65, 0.7]},
          'augmented': {'loss': [1.1, 0.7, 0.4], 'val_loss': [1.2, 0.8, 0.6],
                        'accuracy': [0.55, 0.75, 0.85], 'val_accuracy': [0.5, 0.7, 0.75]}}
  _check_png(plots.training_curves(hist, str(tmp_path / 'curves.png')))
  with pytest.raises(ValueError, match='no loss'):
    plots.training_curves({'x': {'foo': [1]}}, str(tmp_path / 'bad.png'))


def test_confusion_roc_reliability(tmp_path):
  y, pa, pb, _ = _case()
  cms = {'baseline': [[5, 1, 0, 0], [0, 4, 2, 0], [0, 0, 7, 1], [1, 0, 0, 6]],
         'augmented': [[6, 0, 0, 0], [0, 5, 1, 0], [0, 1, 7, 0], [0, 0, 0, 7]]}
  _check_png(plots.confusion_matrices(cms, NAMES, str(tmp_path / 'cm.png')))
  _check_png(plots.roc_curves(y, {'baseline': pa, 'augmented': pb}, NAMES, str(tmp_path / 'roc.png')))
  _check_png(plots.reliability_diagram(y, {'baseline': pa}, str(tmp_path / 'rel.png')))


def test_image_grids(tmp_path):
  y, pa, _, images = _case(n=10)
  pred = pa.argmax(1)
  pred[0] = (y[0] + 1) % 4  # at least one mistake
  _check_png(plots.prediction_grid(images, y, pred, NAMES, str(tmp_path / 'grid.png'), probs=pa))
  _check_png(plots.nearest_neighbour_pairs(images[:4], images[4:8], [0.1, 2.0, 3.0, 4.0],
                                           str(tmp_path / 'nn.png'), threshold=1.0))
  by_class = {name: images[i * 2:(i + 1) * 2] for i, name in enumerate(NAMES)}
  _check_png(plots.class_sample_grid(by_class, str(tmp_path / 'sub' / 'samples.png')))


def test_prediction_grid_marks_mistakes_red(tmp_path):
  images = np.zeros((2, 16, 16, 1), np.float32)
  right = plots.prediction_grid(images, [0, 1], [0, 1], NAMES, str(tmp_path / 'r.png'))
  wrong = plots.prediction_grid(images, [0, 1], [2, 3], NAMES, str(tmp_path / 'w.png'))
  def red_pixels(path):
    rgb = np.asarray(Image.open(path).convert('RGB')).astype(int)
    return int(np.sum((rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)))
  assert red_pixels(right) == 0
  assert red_pixels(wrong) > 100
