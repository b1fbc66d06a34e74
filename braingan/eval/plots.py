"""The study's figures as PNG files.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot), so nothing here touches
the global backend or leaks open figures when evaluate.py or the Streamlit app imports it;
saving goes through the Agg canvas. Every function writes one PNG and returns its path.
Images are model inputs: float [N, H, W, C] in [-1, 1] with C = 1 or 3.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn import metrics as skm

from braingan import files
from braingan import images as images_lib

_RIGHT, _WRONG = '#1a7f37', '#d1242f'


def _save(fig: Figure, path: str, dpi: int = 100) -> str:
  return files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches='tight',
                                                          facecolor='white'))


def _show(ax, image: np.ndarray) -> None:
  img = np.clip((np.asarray(image, np.float32) + 1.0) / 2.0, 0.0, 1.0)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  ax.imshow(img, cmap='gray' if img.ndim == 2 else None, vmin=0, vmax=1, interpolation='nearest')
  ax.set_xticks([])
  ax.set_yticks([])


def _series(history: Mapping[str, Sequence[float]], metric: str, split: str):
  """Finds e.g. the train loss under 'train_loss' or Keras' 'loss', val under 'val_loss'."""
  names = ([f'train_{metric}', metric] if split == 'train'
           else [f'val_{metric}', f'validation_{metric}', f'eval_{metric}'])
  for name in names:
    if name in history and len(history[name]):
      return np.asarray(history[name], dtype=np.float64)
  return None


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], path: str) -> str:
  """Loss and accuracy per epoch, train (solid) and validation (dashed), one colour per run.

  histories: {run_name: {'train_loss'|'loss': [...], 'val_loss': [...], 'train_accuracy'|
  'accuracy': [...], 'val_accuracy': [...], optional 'epoch': [...]}}.
  """
  fig = Figure(figsize=(11, 4))
  axes = fig.subplots(1, 2)
  colours = ['#0969da', '#cf222e', '#8250df', '#1a7f37']
  plotted = 0
  for ax, metric in zip(axes, ('loss', 'accuracy')):
    for colour, (run, history) in zip(colours, histories.items()):
      for split, style in (('train', '-'), ('val', '--')):
        y = _series(history, metric, split)
        if y is None:
          continue
        x = np.asarray(history.get('epoch', np.arange(1, len(y) + 1)))[:len(y)]
        ax.plot(x, y, style, color=colour, marker='o', markersize=3, label=f'{run} {split}')
        plotted += 1
    ax.set_xlabel('epoch')
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  if plotted == 0:
    raise ValueError('no loss/accuracy series found in histories; expected keys like '
                     "'train_loss', 'val_loss', 'train_accuracy', 'val_accuracy'")
  return _save(fig, path)


def confusion_matrices(cms: Mapping[str, Sequence[Sequence[int]]], class_names: Sequence[str],
                       path: str) -> str:
  """Confusion matrices side by side: colour = row-normalised recall, text = count and %."""
  fig = Figure(figsize=(5.4 * len(cms), 4.8), layout='constrained')
  axes = np.atleast_1d(fig.subplots(1, len(cms)))
  for ax, (name, cm) in zip(axes, cms.items()):
    cm = np.asarray(cm, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    ax.imshow(frac, cmap='Blues', vmin=0, vmax=1)
    for i in range(cm.shape[0]):
      for j in range(cm.shape[1]):
        ax.text(j, i, f'{cm[i, j]}\n{frac[i, j]:.0%}', ha='center', va='center', fontsize=9,
                color='white' if frac[i, j] > 0.5 else 'black')
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=class_names, rotation=30, ha='right')
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(f'{name} (accuracy {np.trace(cm) / max(cm.sum(), 1):.3f})')
  return _save(fig, path)


def roc_curves(y_true, probs_by_model: Mapping[str, np.ndarray], class_names: Sequence[str],
               path: str) -> str:
  """One-vs-rest ROC curve per class (one panel each), every model overlaid, AUC in the legend."""
  y_true = np.asarray(y_true).reshape(-1)
  k = len(class_names)
  fig = Figure(figsize=(4 * k, 4.2), layout='constrained')
  axes = np.atleast_1d(fig.subplots(1, k))
  for c, (ax, name) in enumerate(zip(axes, class_names)):
    positives = y_true == c
    ax.plot([0, 1], [0, 1], ':', color='grey')
    if positives.all() or not positives.any():
      ax.text(0.5, 0.5, 'undefined\n(class absent)', ha='center', va='center')
    else:
      for model, probs in probs_by_model.items():
        fpr, tpr, _ = skm.roc_curve(positives, np.asarray(probs)[:, c])
        ax.plot(fpr, tpr, label=f'{model} AUC {skm.auc(fpr, tpr):.3f}')
      ax.legend(fontsize=8, loc='lower right')
    ax.set_title(name)
    ax.set_xlabel('false positive rate')
    ax.set_ylabel('true positive rate')
    ax.set_aspect('equal')
  return _save(fig, path)


def reliability_diagram(y_true, probs_by_model: Mapping[str, np.ndarray], path: str,
                        n_bins: int = 15) -> str:
  """Accuracy vs top-label confidence per bin (the picture behind ECE); diagonal = calibrated."""
  y_true = np.asarray(y_true).reshape(-1)
  fig = Figure(figsize=(5, 5))
  ax = fig.subplots()
  ax.plot([0, 1], [0, 1], ':', color='grey', label='perfect calibration')
  edges = np.linspace(0, 1, n_bins + 1)
  for model, probs in probs_by_model.items():
    probs = np.asarray(probs)
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    used = [b for b in range(n_bins) if np.any(bins == b)]
    ax.plot([conf[bins == b].mean() for b in used], [correct[bins == b].mean() for b in used],
            'o-', label=model)
  ax.set_xticks(edges[::3])
  ax.set_xlabel('confidence (top predicted probability)')
  ax.set_ylabel('accuracy')
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return _save(fig, path)


def _grid(n: int, ncols: int):
  ncols = max(1, min(ncols, n))
  return int(np.ceil(n / ncols)), ncols


def prediction_grid(images, y_true, y_pred, class_names: Sequence[str], path: str,
                    probs: Optional[np.ndarray] = None, max_images: int = 24,
                    ncols: int = 6) -> str:
  """Images titled 'pred / true'; mistakes get a red title and a red frame."""
  n = min(len(images), max_images)
  if n == 0:
    raise ValueError('prediction_grid needs at least one image')
  nrows, ncols = _grid(n, ncols)
  fig = Figure(figsize=(2.1 * ncols, 2.4 * nrows))
  axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
  for i, ax in enumerate(axes):
    if i >= n:
      ax.axis('off')
      continue
    _show(ax, images[i])
    right = int(y_pred[i]) == int(y_true[i])
    colour = _RIGHT if right else _WRONG
    title = f'pred {class_names[int(y_pred[i])]}'
    if probs is not None:
      title += f' {float(np.max(probs[i])):.2f}'
    ax.set_title(f'{title}\ntrue {class_names[int(y_true[i])]}', fontsize=8, color=colour)
    for spine in ax.spines.values():
      spine.set_edgecolor(colour)
      spine.set_linewidth(1 if right else 4)
  return _save(fig, path)


def nearest_neighbour_pairs(generated, train, distances: Sequence[float], path: str,
                            threshold: Optional[float] = None) -> str:
  """Generated image (top) above its nearest training image (bottom), with the feature distance.

  Pairs closer than `threshold` (the memorisation cut-off) are titled in red.
  """
  n = len(generated)
  if n == 0 or len(train) != n or len(distances) != n:
    raise ValueError(f'need equal, non-zero numbers of generated ({n}), train ({len(train)}) '
                     f'and distances ({len(distances)})')
  fig = Figure(figsize=(2.1 * n, 4.6))
  axes = np.asarray(fig.subplots(2, n)).reshape(2, n)
  for i in range(n):
    _show(axes[0, i], generated[i])
    _show(axes[1, i], train[i])
    close = threshold is not None and distances[i] < threshold
    axes[0, i].set_title(f'generated\nd={distances[i]:.3g}', fontsize=8,
                         color=_WRONG if close else 'black')
    axes[1, i].set_title('nearest train', fontsize=8)
  return _save(fig, path)


def class_sample_grid(images_by_class: Mapping[str, np.ndarray], path: str,
                      per_class: int = 8) -> str:
  """One row per class of (generated) samples, class name on the left (images.grid)."""
  rows = [(name, np.asarray(imgs)[:per_class]) for name, imgs in images_by_class.items()]
  if not rows or max(len(r) for _, r in rows) == 0:
    raise ValueError('class_sample_grid needs at least one image')
  ncols = max(len(r) for _, r in rows)
  shape = next(r for _, r in rows if len(r)).shape[1:]
  blank = np.full(shape, -1.0, np.float32)   # black tiles where a class has fewer images
  tiles = np.stack([r[c] if c < len(r) else blank for _, r in rows for c in range(ncols)])
  factor = max(1, -(-128 // shape[0]))       # small images enlarged (nearest neighbour)
  tiles = np.repeat(np.repeat(tiles, factor, axis=1), factor, axis=2)
  pixels = images_lib.grid(tiles, ncols, row_labels=[name for name, _ in rows])
  return images_lib.save_png(path, pixels)


def real_reference_grid(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                        path: str, *, seed: int, per_class: int = 8) -> str:
  """The same layout as class_sample_grid, of real images drawn at random (seeded) per class.

  A generated grid is judged by eye against real slices of its class (tumour location, no
  mass in no-tumour rows, orientation mix); this puts that reference beside it in the report.
  """
  rng = np.random.default_rng(seed)
  labels = np.asarray(labels)
  rows = {}
  for k, name in enumerate(class_names):
    idx = np.nonzero(labels == k)[0]
    rows[name] = images[np.sort(rng.choice(idx, min(per_class, len(idx)), replace=False))]
  return class_sample_grid(rows, path, per_class=per_class)
