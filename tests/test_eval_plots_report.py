"""Every figure is written, non-blank; report.md and metrics.json say what the metrics say."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from braingan.eval import gan_metrics, plots, report, stats

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
  rgb = np.repeat(images[:3], 3, axis=-1)  # 3-channel inputs display too
  _check_png(plots.class_sample_grid({'glioma': rgb}, str(tmp_path / 'rgb.png')), min_bytes=1000)


def test_prediction_grid_marks_mistakes_red(tmp_path):
  images = np.zeros((2, 16, 16, 1), np.float32)
  right = plots.prediction_grid(images, [0, 1], [0, 1], NAMES, str(tmp_path / 'r.png'))
  wrong = plots.prediction_grid(images, [0, 1], [2, 3], NAMES, str(tmp_path / 'w.png'))
  def red_pixels(path):
    rgb = np.asarray(Image.open(path).convert('RGB')).astype(int)
    return int(np.sum((rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)))
  assert red_pixels(right) == 0
  assert red_pixels(wrong) > 100


def _comparison(n=200, seed=1, aug_strength=1.5):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, 4, n)
  def probs(strength):
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += strength
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)
  return stats.compare_models(y, probs(1.5), probs(aug_strength), NAMES, n_boot=200, seed=0)


def _gan_section():
  rng = np.random.default_rng(2)
  real, gen = rng.normal(size=(40, 8)), rng.normal(size=(40, 8)) + 0.2
  labels = np.repeat(np.arange(4), 10)
  mem = gan_metrics.memorisation(gen, rng.normal(size=(80, 8)), real)
  return {'feature_extractor': 'baseline classifier penultimate layer (512-d)',
          'fid': gan_metrics.frechet_distance(real, gen),
          'kid': gan_metrics.kernel_inception_distance(real, gen, n_subsets=5, subset_size=20),
          'n_real': 40, 'n_generated': 40,
          'per_class': gan_metrics.per_class_scores(real, labels, gen, labels, NAMES,
                                                    kid_subsets=3, kid_subset_size=5),
          'generated_accuracy': 0.8125,
          'cas': {'accuracy': 0.61, 'macro_f1': 0.58, 'budget': '2 epochs'},
          'memorisation': mem}  # arrays left in on purpose: the writer must cope


def test_report_no_evidence_verdict(tmp_path):
  metrics = _comparison(aug_strength=1.5)
  assert metrics['mcnemar_p'] >= 0.05  # same strength: the constructed case has no real effect
  table = {'clean': 0.9, 'gaussian_noise': {'1': 0.85, '2': 0.8, '3': 0.6}}
  metrics['baseline']['robustness'] = table
  metrics['augmented']['robustness'] = {'clean': 0.91, 'gaussian_noise': {'1': 0.86, '2': 0.82, '3': 0.7}}
  metrics['gan'] = _gan_section()
  fig_path = plots.confusion_matrices({m: metrics[m]['confusion_matrix'] for m in ('baseline', 'augmented')},
                                      NAMES, str(tmp_path / 'figs' / 'cm.png'))
  path = report.write_report(str(tmp_path), metrics, {'confusion_matrices': fig_path, 'extra_plot': fig_path},
                             {'baseline_run': 'runs/clf_real', 'augmented_run': 'runs/clf_aug',
                              'data_dir': '/data/Training', 'notes': ['reduced budgets: 2 epochs']})
  text = open(path).read()
  assert 'No evidence of a difference' in text
  assert report.format_p(metrics['mcnemar_p']) in text
  for model in ('baseline', 'augmented'):
    m = metrics[model]
    assert f'{100 * m["accuracy"]:.1f}%' in text
    assert f'{m["macro_f1"]:.3f}' in text
    ci = m['bootstrap']['accuracy']
    assert f'[{100 * ci["low"]:.1f}%, {100 * ci["high"]:.1f}%]' in text
    assert f'{m["per_class"]["pituitary"]["specificity"]:.3f}' in text
  d = metrics['difference']['accuracy']
  assert f'[{100 * d["low"]:+.1f} pp, {100 * d["high"]:+.1f} pp]' in text
  assert f'b = {metrics["mcnemar"]["b"]}' in text
  assert '200 images' in text and 'runs/clf_aug' in text and 'reduced budgets' in text
  assert 'std 0.16' in text and '+10.0 pp' in text  # robustness row, severity described
  assert f'{metrics["gan"]["fid"]:.2f}' in text and '81.2%' in text and '2 epochs' in text
  assert 'Memorisation check' in text
  assert '](figs/cm.png)' in text and 'Other figures' in text
  assert 'do not show their class' not in text   # 81% of generated images read as their class


def test_report_says_when_generated_images_do_not_carry_their_class(tmp_path):
  metrics = _comparison(aug_strength=6.0)
  metrics['gan'] = _gan_section()
  metrics['gan']['generated_accuracy'] = 0.259
  text = open(report.write_report(str(tmp_path), metrics, {}, {})).read()
  assert '25.9% of generated images' in text and '(chance: 25.0%)' in text
  assert 'do not show their class' in text


def test_report_significant_verdict_does_not_overclaim(tmp_path):
  metrics = _comparison(aug_strength=6.0)
  assert metrics['mcnemar_p'] < 0.05
  text = open(report.write_report(str(tmp_path), metrics, {}, {})).read()
  assert "augmented classifier's accuracy is higher" in text
  assert 'No evidence' not in text
  assert 'one training run' in text


def test_verdict_lower_and_weak():
  comparison = {'n_images': 100, 'mcnemar_p': 0.04,
                'baseline': {'accuracy': 0.9}, 'augmented': {'accuracy': 0.85},
                'difference': {'accuracy': {'point': -0.05, 'low': -0.1, 'high': 0.0}}}
  text = report.verdict(comparison)
  assert 'lower' in text and 'weak' in text and 'p = 0.040' in text


def test_metrics_json_round_trip(tmp_path):
  metrics = _comparison(n=60)
  metrics['gan'] = _gan_section()
  metrics['baseline']['roc_auc']['macro'] = float('nan')  # strict JSON: NaN must become null
  path = report.write_metrics_json(str(tmp_path / 'metrics.json'), metrics)
  loaded = json.load(open(path))
  assert loaded['baseline']['roc_auc']['macro'] is None
  assert loaded['n_images'] == 60 and loaded['mcnemar_p'] == metrics['mcnemar_p']
  for model in ('baseline', 'augmented'):
    assert loaded[model]['confusion_matrix'] == metrics[model]['confusion_matrix']
    assert loaded[model]['per_class'] == metrics[model]['per_class']
    assert loaded[model]['accuracy'] == metrics[model]['accuracy']
  assert loaded['gan']['memorisation']['gen_nn_distance'] == pytest.approx(
      list(metrics['gan']['memorisation']['gen_nn_distance']))
  del metrics['baseline']['per_class']['glioma']['specificity']
  with pytest.raises(ValueError, match='specificity'):
    report.write_metrics_json(str(tmp_path / 'bad.json'), metrics)


def test_real_reference_grid_draws_each_row_from_its_class(tmp_path, monkeypatch):
  # Image i is constant at value i, so a row's images name the indices drawn.
  labels = np.array([0] * 12 + [1] * 3 + [2] * 9 + [3] * 10)
  images = np.arange(len(labels), dtype=np.float32)[:, None, None, None] * np.ones((1, 16, 16, 1))
  drawn = {}
  real_grid = plots.class_sample_grid
  def capture(rows, path, per_class):
    drawn[path] = {name: np.rint(40 * imgs[:, 0, 0, 0]).astype(int).tolist()
                   for name, imgs in rows.items()}
    return real_grid(rows, path, per_class=per_class)
  monkeypatch.setattr(plots, 'class_sample_grid', capture)
  paths = [str(tmp_path / f'{i}.png') for i in range(3)]
  for path, seed in zip(paths, (0, 0, 1)):
    _check_png(plots.real_reference_grid(images / 40, labels, NAMES, path, seed=seed))
  first = drawn[paths[0]]
  for k, name in enumerate(NAMES):
    assert all(labels[i] == k for i in first[name]), name
    assert len(set(first[name])) == min(8, int(np.sum(labels == k)))
  assert drawn[paths[1]] == first                # seeded: the same draw
  assert drawn[paths[2]] != first                # another seed, another draw
