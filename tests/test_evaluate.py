"""evaluate.py's runner end to end on two tiny classifier runs of the shipped sample."""
import json
import os

import numpy as np
import pytest
from sklearn import metrics as skm

from braingan.eval import inputs
from braingan.eval import runner
from braingan.train import classifier
from configs import classifier_demo
from configs import evaluate as evaluate_config


def _tiny(sample_dir, **overrides):
  config = classifier_demo.get_config()
  config.data.data_dir = sample_dir
  config.data.image_size = 32
  config.model.width = 8
  config.model.head_units = 16
  config.epochs = 1
  config.max_steps_per_epoch = 2
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  from tests.conftest import SAMPLE_DIR  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('runs')
  classifier.train_and_evaluate(_tiny(SAMPLE_DIR), str(root / 'real'))
  # The "generated" folder here is the real sample itself: the memorisation check must flag it.
  classifier.train_and_evaluate(_tiny(SAMPLE_DIR, synthetic_dir=SAMPLE_DIR, synthetic_ratio=0.3),
                                str(root / 'aug'))
  config = evaluate_config.get_config()
  config.n_boot, config.gan_per_class, config.kid_subsets, config.kid_subset_size = 200, 10, 5, 20
  config.robustness_max_images = 16
  out = str(root / 'report')
  metrics = runner.evaluate(config, baseline=str(root / 'real'), augmented=str(root / 'aug'),
                            out=out, synthetic_dir=SAMPLE_DIR)
  return root, out, metrics


def test_metrics_json_interface_and_sklearn_agreement(runs):
  root, out, metrics = runs
  with open(os.path.join(out, 'metrics.json')) as f:
    saved = json.load(f)
  assert saved['n_images'] == 32 and 0.0 <= saved['mcnemar_p'] <= 1.0
  predict_fn, config = classifier.load_for_inference(str(root / 'real'))
  val = inputs.from_manifest(str(root / 'real' / 'manifest.csv'), 'validation', config.data)
  pred = inputs.batched(predict_fn, val.images, 64).argmax(-1)
  base = saved['baseline']
  assert base['accuracy'] == pytest.approx(skm.accuracy_score(val.labels, pred))
  np.testing.assert_array_equal(base['confusion_matrix'],
                                skm.confusion_matrix(val.labels, pred, labels=range(4)))
  for name in ('glioma', 'meningioma', 'no_tumor', 'pituitary'):
    assert set(base['per_class'][name]) >= {'precision', 'recall', 'f1', 'support',
                                            'sensitivity', 'specificity'}
  assert set(saved['baseline']['robustness']) >= {'clean', 'gaussian_noise', 'jpeg'}


def test_report_and_figures(runs):
  _, out, metrics = runs
  report = open(os.path.join(out, 'report.md')).read()
  assert 'Verdict' in report and f'{metrics["n_images"]} images' in report
  for png in ('training_curves', 'confusion_matrices', 'roc_curves', 'predictions',
              'gan_samples', 'nearest_neighbours'):
    path = os.path.join(out, f'{png}.png')
    assert os.path.getsize(path) > 5000, png
    assert f'{png}.png' in report


def test_gan_metrics_flag_copies_of_training_images(runs):
  _, _, metrics = runs
  gan = metrics['gan']
  # The "generated" folder holds the training images themselves: most sit at distance ~0.
  assert gan['memorisation']['fraction_below'] > 0.5
  assert gan['memorisation']['gen_nn_median'] < gan['memorisation']['real_nn_median']
  assert np.isfinite(gan['fid']) and gan['n_generated'] == 40


def test_runs_on_different_splits_are_refused(runs, tmp_path):
  root, _, _ = runs
  other = tmp_path / 'other'
  other.mkdir()
  text = (root / 'real' / 'manifest.csv').read_text().replace(',train,', ',validation,', 1)
  (other / 'manifest.csv').write_text(text)
  with pytest.raises(ValueError, match='different splits'):
    runner.check_same_split(str(root / 'real'), str(other))
