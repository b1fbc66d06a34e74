"""Classifier metrics from labels and predicted probabilities.

One function, `classification_metrics`, computes everything the report and metrics.json show
for one model on one set of images. It leans on scikit-learn wherever scikit-learn has the
metric (so the numbers mean what readers expect), fills in what it lacks (one-vs-rest
specificity, expected calibration error) and returns plain Python types so the result can go
straight into metrics.json.

Conventions:
- Labels are indices into `class_names` (the canonical CLASSES order); the confusion matrix
  always has every class as a row and a column, even a class that never occurs.
- Undefined ratios (e.g. precision of a class that is never predicted) follow scikit-learn's
  `zero_division=0`; ROC-AUC and specificity, where 0 would be a misleading number, are None
  with a note instead.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sklearn import metrics as skm

ECE_BINS = 15


def recall_per_class(y_true, y_pred, num_classes: int) -> list[float]:
  """Per class k: the share of items of true class k labelled k, nan where k never occurs
  (scikit-learn's recall; the judge's recall on real images, CAS's recall per real class)."""
  y_true, y_pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
  return [float(np.mean(y_pred[y_true == k] == k)) if np.any(y_true == k) else float('nan')
          for k in range(num_classes)]


def _as_inputs(y_true, probs, class_names):
  """Validates shapes and returns (y_true int64 [N], probs float64 [N,K] rows summing to 1)."""
  y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
  probs = np.asarray(probs, dtype=np.float64)
  k = len(class_names)
  if probs.ndim != 2 or probs.shape != (y_true.shape[0], k):
    raise ValueError(f'probs has shape {probs.shape}; expected ({y_true.shape[0]}, {k}) '
                     f'(one row per label, one column per class in {tuple(class_names)})')
  if y_true.size == 0:
    raise ValueError('classification_metrics needs at least one example')
  if y_true.min() < 0 or y_true.max() >= k:
    raise ValueError(f'labels must be in [0, {k}); got range [{y_true.min()}, {y_true.max()}]')
  if not np.all(np.isfinite(probs)) or probs.min() < 0:
    raise ValueError('probs must be finite and non-negative (pass softmax probabilities, not logits)')
  sums = probs.sum(axis=1)
  if not np.allclose(sums, 1.0, atol=1e-3):
    raise ValueError('probs rows must sum to 1 (pass softmax probabilities, not logits); '
                     f'row sums range [{sums.min():.4g}, {sums.max():.4g}]')
  return y_true, probs / sums[:, None]


def expected_calibration_error(y_true, probs, n_bins: int = ECE_BINS) -> float:
  """Top-label ECE with `n_bins` equal-width confidence bins.

  ECE = sum_b |B_b|/N * |accuracy(B_b) - mean confidence(B_b)|, where the confidence is the
  top predicted probability and bin b holds confidences in (b/n, (b+1)/n] (the first bin also
  holds 0). It says how far "90% sure" is from "right 90% of the time".
  """
  y_true = np.asarray(y_true).reshape(-1)
  probs = np.asarray(probs, dtype=np.float64)
  confidence = probs.max(axis=1)
  correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
  # ceil(conf * n) - 1 maps (b/n, (b+1)/n] to b; clip puts conf == 0 in bin 0.
  bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
  sum_conf = np.bincount(bins, weights=confidence, minlength=n_bins)
  sum_correct = np.bincount(bins, weights=correct, minlength=n_bins)
  # |sum_correct - sum_conf| / N == |B|/N * |acc(B) - conf(B)|; empty bins contribute 0.
  return float(np.abs(sum_correct - sum_conf).sum() / y_true.shape[0])


def one_vs_rest_roc_auc(y_true, probs, class_names) -> dict:
  """Per-class one-vs-rest ROC-AUC and their macro mean over the classes where it is defined.

  A class that is absent from y_true (or is the only class present) has no ROC curve; it gets
  None and is named in `note` instead of crashing the whole evaluation.
  """
  y_true = np.asarray(y_true).reshape(-1)
  probs = np.asarray(probs, dtype=np.float64)
  per_class = {}
  undefined = []
  for k, name in enumerate(class_names):
    positives = y_true == k
    if positives.all() or not positives.any():
      per_class[name] = None
      undefined.append(name)
    else:
      per_class[name] = float(skm.roc_auc_score(positives, probs[:, k]))
  defined = [v for v in per_class.values() if v is not None]
  note = None
  if undefined:
    note = ('ROC-AUC undefined (class absent from, or the only class in, y_true) for: '
            + ', '.join(undefined) + '; macro is the mean over the other classes')
  return {'per_class': per_class,
          'macro': float(np.mean(defined)) if defined else None,
          'note': note}


def _specificity(cm: np.ndarray) -> list[Optional[float]]:
  """One-vs-rest specificity TN / (TN + FP) per class from a confusion matrix (None if no negatives)."""
  total = cm.sum()
  tp = np.diag(cm)
  fp = cm.sum(axis=0) - tp
  fn = cm.sum(axis=1) - tp
  tn = total - tp - fp - fn
  out = []
  for k in range(cm.shape[0]):
    negatives = tn[k] + fp[k]
    out.append(float(tn[k] / negatives) if negatives > 0 else None)
  return out


def classification_metrics(y_true, probs, class_names: Sequence[str],
                           n_bins: int = ECE_BINS) -> dict:
  """Every per-model classifier metric of the study, JSON-serialisable.

  Args:
    y_true: int labels [N], indices into class_names.
    probs: predicted class probabilities [N, K] (softmax output; rows sum to 1).
    class_names: the K class names in canonical order.
    n_bins: bins for the expected calibration error.

  Returns:
    dict with n, accuracy, macro_f1, weighted_f1, macro_avg / weighted_avg (precision, recall,
    f1), per_class {name: precision, recall, f1, support, sensitivity, specificity, roc_auc},
    roc_auc {per_class, macro, note}, confusion_matrix (rows true, columns predicted, canonical
    order), ece, log_loss, class_names.
  """
  class_names = list(class_names)
  y_true, probs = _as_inputs(y_true, probs, class_names)
  labels = list(range(len(class_names)))
  y_pred = probs.argmax(axis=1)

  precision, recall, f1, support = skm.precision_recall_fscore_support(
      y_true, y_pred, labels=labels, zero_division=0)
  cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
  specificity = _specificity(cm)
  roc = one_vs_rest_roc_auc(y_true, probs, class_names)

  def average(kind):
    p, r, f, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=kind, zero_division=0)
    return {'precision': float(p), 'recall': float(r), 'f1': float(f)}

  per_class = {}
  for k, name in enumerate(class_names):
    per_class[name] = {
        'precision': float(precision[k]),
        'recall': float(recall[k]),
        'f1': float(f1[k]),
        'support': int(support[k]),
        # Sensitivity is recall under its clinical name; both are kept so readers of either
        # vocabulary find theirs.
        'sensitivity': float(recall[k]),
        'specificity': specificity[k],
        'roc_auc': roc['per_class'][name],
    }
  macro_avg, weighted_avg = average('macro'), average('weighted')
  return {
      'n': int(y_true.shape[0]),
      'class_names': class_names,
      'accuracy': float(skm.accuracy_score(y_true, y_pred)),
      'macro_f1': macro_avg['f1'],
      'weighted_f1': weighted_avg['f1'],
      'macro_avg': macro_avg,
      'weighted_avg': weighted_avg,
      'per_class': per_class,
      'roc_auc': roc,
      'confusion_matrix': cm.astype(int).tolist(),
      'ece': expected_calibration_error(y_true, probs, n_bins),
      'ece_bins': int(n_bins),
      'log_loss': float(skm.log_loss(y_true, probs, labels=labels)),
  }


def classification_accuracy_score(y_true_real, probs_from_synthetic_model,
                                  class_names: Sequence[str]) -> dict:
  """Classification Accuracy Score (Ravuri & Vinyals 2019): metrics of a classifier trained on
  generated images only, evaluated on real images. It is `classification_metrics` under a name
  that says what the model was trained on, so the report cannot mix it up with the baseline.
  """
  result = classification_metrics(y_true_real, probs_from_synthetic_model, class_names)
  result['note'] = 'classifier trained on generated images only, evaluated on real images'
  return result
