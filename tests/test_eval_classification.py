"""classification_metrics against scikit-learn and hand-computed cases."""
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from braingan.eval import classification

NAMES = ['glioma', 'meningioma', 'no_tumor', 'pituitary']


def _random_case(n=200, k=4, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, k, size=n)
  logits = rng.normal(size=(n, k))
  logits[np.arange(n), y] += 1.5  # better than chance, not perfect
  probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  return y, probs


def test_matches_sklearn():
  y, probs = _random_case()
  pred = probs.argmax(1)
  m = classification.classification_metrics(y, probs, NAMES)
  assert m['accuracy'] == pytest.approx(skm.accuracy_score(y, pred))
  assert m['macro_f1'] == pytest.approx(skm.f1_score(y, pred, average='macro'))
  assert m['weighted_f1'] == pytest.approx(skm.f1_score(y, pred, average='weighted'))
  assert m['macro_avg']['precision'] == pytest.approx(skm.precision_score(y, pred, average='macro'))
  report = skm.classification_report(y, pred, target_names=NAMES, output_dict=True)
  for name in NAMES:
    for key in ('precision', 'recall', 'f1'):
      sk_key = 'f1-score' if key == 'f1' else key
      assert m['per_class'][name][key] == pytest.approx(report[name][sk_key])
    assert m['per_class'][name]['support'] == report[name]['support']
    assert m['per_class'][name]['sensitivity'] == m['per_class'][name]['recall']
  np.testing.assert_array_equal(m['confusion_matrix'], skm.confusion_matrix(y, pred))
  assert m['roc_auc']['macro'] == pytest.approx(
      skm.roc_auc_score(y, probs, multi_class='ovr', average='macro'))
  for k, name in enumerate(NAMES):
    assert m['roc_auc']['per_class'][name] == pytest.approx(skm.roc_auc_score(y == k, probs[:, k]))
  assert m['log_loss'] == pytest.approx(skm.log_loss(y, probs))
  json.dumps(m)  # plain Python types only


def test_specificity_hand_computed():
  # 3 classes; confusion (rows true, cols pred): [[2,1,0],[0,1,1],[0,0,3]]
  y = [0, 0, 0, 1, 1, 2, 2, 2]
  pred = [0, 0, 1, 1, 2, 2, 2, 2]
  probs = np.eye(3)[pred] * 0.8 + 0.2 / 3
  m = classification.classification_metrics(y, probs, ['a', 'b', 'c'])
  assert m['confusion_matrix'] == [[2, 1, 0], [0, 1, 1], [0, 0, 3]]
  # class a: TN = 5 non-a examples, none predicted a -> 5/5; class b: negatives 6, FP 1 -> 5/6;
  # class c: negatives 5, FP 1 -> 4/5.
  assert m['per_class']['a']['specificity'] == pytest.approx(1.0)
  assert m['per_class']['b']['specificity'] == pytest.approx(5 / 6)
  assert m['per_class']['c']['specificity'] == pytest.approx(4 / 5)
  assert m['per_class']['a']['sensitivity'] == pytest.approx(2 / 3)
  assert m['accuracy'] == pytest.approx(6 / 8)


def test_absent_class_is_reported_not_crashing():
  y, probs = _random_case(n=60, seed=1)
  keep = y != 2
  y, probs = y[keep], probs[keep]
  m = classification.classification_metrics(y, probs, NAMES)
  cm = np.array(m['confusion_matrix'])
  assert cm.shape == (4, 4)
  assert cm[2].sum() == 0
  assert m['per_class']['no_tumor']['support'] == 0
  assert m['per_class']['no_tumor']['roc_auc'] is None
  assert 'no_tumor' in m['roc_auc']['note']
  defined = [m['roc_auc']['per_class'][n] for n in NAMES if n != 'no_tumor']
  assert m['roc_auc']['macro'] == pytest.approx(np.mean(defined))
  assert m['per_class']['no_tumor']['specificity'] is not None
  json.dumps(m)


def test_ece_hand_computed():
  # Two examples in bin (0.9, 0.9333] with confidence 0.92, one right -> |0.5 - 0.92| * 2/4;
  # two in bin (0.6, 0.6667] with confidence 0.65, both right -> |1 - 0.65| * 2/4.
  probs = np.array([[0.92, 0.08], [0.92, 0.08], [0.65, 0.35], [0.35, 0.65]])
  y = np.array([0, 1, 0, 1])
  expected = 0.5 * abs(0.5 - 0.92) + 0.5 * abs(1.0 - 0.65)
  assert classification.expected_calibration_error(y, probs) == pytest.approx(expected)
  # A perfectly confident, always right model is perfectly calibrated.
  assert classification.expected_calibration_error([0, 1], np.eye(2)) == pytest.approx(0.0)


def test_ece_bin_edges():
  # 0.5 and 0.52 share the bin (7/15, 8/15], so their errors average before the absolute
  # value (per-example |correct - confidence| would give a different, larger number).
  probs = np.array([[0.5, 0.5], [0.52, 0.48]])
  y = np.array([0, 1])  # first right (argmax 0), second wrong
  expected = abs(0.5 - (0.5 + 0.52) / 2)
  assert classification.expected_calibration_error(y, probs) == pytest.approx(expected)


def test_rejects_logits_and_bad_shapes():
  with pytest.raises(ValueError, match='softmax'):
    classification.classification_metrics([0, 1], np.array([[2.0, -1.0], [0.5, 3.0]]), ['a', 'b'])
  with pytest.raises(ValueError, match='shape'):
    classification.classification_metrics([0, 1], np.ones((2, 3)) / 3, ['a', 'b'])
  with pytest.raises(ValueError, match='labels'):
    classification.classification_metrics([0, 5], np.ones((2, 2)) / 2, ['a', 'b'])


def test_classification_accuracy_score_is_labelled():
  y, probs = _random_case(n=40, seed=3)
  cas = classification.classification_accuracy_score(y, probs, NAMES)
  assert cas['accuracy'] == pytest.approx(skm.accuracy_score(y, probs.argmax(1)))
  assert 'generated' in cas['note']


def test_recall_per_class_matches_sklearn_and_marks_absent_classes():
  rng = np.random.default_rng(3)
  y_true, y_pred = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
  np.testing.assert_allclose(classification.recall_per_class(y_true, y_pred, 4),
                             skm.recall_score(y_true, y_pred, labels=range(4), average=None))
  recall = classification.recall_per_class([0, 0, 2, 2], [0, 1, 2, 2], 4)
  assert recall[0] == 0.5 and recall[2] == 1.0 and np.isnan(recall[1]) and np.isnan(recall[3])
