"""The one-command study on a tiny budget, and evaluate.py's outputs on its runs.

One module-scoped study (tiny GAN, tiny classifiers, 32 px) feeds every test here, so the
expensive part (compiling and training five small models) is paid once.
"""
import json
import os

import numpy as np
import pytest
from sklearn import metrics as skm

from braingan import inference
from braingan import study
from braingan.eval import inputs
from braingan.eval import runner
from braingan.run_dir import RunDir
from configs import study_demo
from tests.conftest import SAMPLE_DIR


def _tiny_study():
  config = study_demo.get_config()
  config.data.data_dir = SAMPLE_DIR
  config.data.image_size = 32
  gan = config.gan
  gan.model.latent_dim, gan.model.g_base_depth = 16, 16
  gan.model.g_widths, gan.model.d_widths = (16, 8, 8, 8), (8, 8, 8, 8, 8)
  gan.epochs, gan.steps_per_epoch = 1, 2
  clf = config.classifier
  clf.model.width, clf.model.head_units = 8, 16
  clf.epochs, clf.steps_per_epoch = 1, 2
  config.cas_epochs = 1
  config.synthetic_per_class = 6
  config.evaluate.n_boot, config.evaluate.gan_per_class = 100, 6
  config.evaluate.kid_subsets, config.evaluate.kid_subset_size = 3, 6
  config.evaluate.robustness_max_images = 8
  return config


@pytest.fixture(scope='module')
def done_study(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('study'))
  metrics = study.run_study(_tiny_study(), workdir)
  return workdir, study.stage_dirs(workdir), metrics


def test_every_stage_ran(done_study):
  _, dirs, metrics = done_study
  assert metrics['n_images'] == 32 and 'gan' in metrics and 'cas' in metrics['gan']
  for stage in study.STAGES:
    assert os.path.exists(os.path.join(dirs[stage], study.DONE_FILE)), stage
  for name in ('glioma', 'meningioma', 'no_tumor', 'pituitary'):
    assert len(os.listdir(os.path.join(dirs['generate'], name))) == 6


def test_interrupted_study_resumes_at_the_missing_stage(done_study, capsys):
  workdir, dirs, _ = done_study
  os.remove(os.path.join(dirs['evaluate'], study.DONE_FILE))
  capsys.readouterr()
  study.run_study(_tiny_study(), workdir)
  out = capsys.readouterr().out
  for stage in ('prepare', 'gan', 'generate', 'baseline', 'augmented', 'cas'):
    assert f'[study] {stage}: already complete' in out
  assert '[study] evaluate: running' in out


def test_other_settings_are_refused(done_study):
  workdir, _, _ = done_study
  changed = _tiny_study()
  changed.synthetic_per_class = 7
  with pytest.raises(ValueError, match='other settings'):
    study.run_study(changed, workdir)


def test_metrics_json_matches_sklearn(done_study):
  _, dirs, _ = done_study
  with open(os.path.join(dirs['evaluate'], 'metrics.json')) as f:
    saved = json.load(f)
  assert saved['n_images'] == 32 and 0.0 <= saved['mcnemar_p'] <= 1.0
  model = inference.load_classifier(dirs['baseline'])
  val = inputs.from_manifest(RunDir(dirs['baseline']).manifest(), 'validation',
                             model.config.data)
  pred = inputs.batched(model.probs, val.images, 64).argmax(-1)
  base = saved['baseline']
  assert base['accuracy'] == pytest.approx(skm.accuracy_score(val.labels, pred))
  np.testing.assert_array_equal(base['confusion_matrix'],
                                skm.confusion_matrix(val.labels, pred, labels=range(4)))
  for name in ('glioma', 'meningioma', 'no_tumor', 'pituitary'):
    assert set(base['per_class'][name]) >= {'precision', 'recall', 'f1', 'support',
                                            'sensitivity', 'specificity'}
  assert set(base['robustness']) >= {'clean', 'gaussian_noise', 'jpeg', 'rotation'}
  assert np.isfinite(saved['gan']['fid']) and saved['gan']['n_generated'] == 24


def test_report_and_figures(done_study):
  _, dirs, metrics = done_study
  out = dirs['evaluate']
  report = open(os.path.join(out, 'report.md')).read()
  assert 'Verdict' in report and f'{metrics["n_images"]} images' in report
  # How long each model trained, read back from the runs' own logs.
  saved = json.load(open(os.path.join(out, 'metrics.json')))
  for name in ('baseline', 'augmented'):
    records = [json.loads(l) for l in open(os.path.join(dirs[name], 'metrics.jsonl'))]
    want = max(r['step'] for r in records if 'epoch' in r)
    assert saved['training_steps'][name]['steps'] == want
  assert f"baseline {saved['training_steps']['baseline']['steps']} optimizer steps" in report
  for png in ('training_curves', 'confusion_matrices', 'roc_curves', 'predictions',
              'gan_samples', 'nearest_neighbours'):
    assert os.path.getsize(os.path.join(out, f'{png}.png')) > 5000, png
    assert f'{png}.png' in report


def test_runs_on_different_splits_are_refused(done_study, tmp_path):
  _, dirs, _ = done_study
  text = open(RunDir(dirs['baseline']).manifest()).read()
  (tmp_path / 'manifest.csv').write_text(text.replace(',train,', ',validation,', 1))
  config = RunDir(dirs['baseline']).read_config()
  config.data.prepared_dir = str(tmp_path)
  RunDir(str(tmp_path)).write_config(config)
  with pytest.raises(ValueError, match='different splits'):
    runner.check_same_split(dirs['baseline'], str(tmp_path))
