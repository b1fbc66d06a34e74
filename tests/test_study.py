"""The cell-based study on a tiny budget, its report, and evaluate.py on two of its runs.

One module-scoped study (32 px, tiny networks, 2 fractions x 2 seeds x 3 arms) feeds every
test here, so the expensive part (compiling and training its models) is paid once.
"""
import json
import os
import shutil

import numpy as np
import pytest
from sklearn import metrics as skm

from braingan import inference
from braingan import study
from braingan.eval import inputs
from braingan.eval import runner
from braingan.run_dir import RunDir
from configs import evaluate as evaluate_config
from configs import study_demo
from tests.conftest import SAMPLE_DIR, make_folder


def _tiny_study():
  config = study_demo.get_config()
  config.data.data_dir = SAMPLE_DIR
  config.data.image_size = 32
  gan = config.gan
  gan.model.latent_dim, gan.model.g_base_depth = 16, 16
  gan.model.g_widths, gan.model.d_widths = (16, 8, 8, 8), (8, 8, 8, 8)
  gan.epochs, gan.steps_per_epoch = 1, 2
  clf = config.classifier
  clf.model.width, clf.model.head_units = 8, 16
  clf.epochs = 2
  config.arms = ('baseline', 'augmented', 'cas')   # the other arms are the same code path
  config.synthetic_per_class = 6
  config.evaluate.n_boot, config.evaluate.gan_per_class = 100, 6
  config.evaluate.kid_subsets = 3
  return config


@pytest.fixture(scope='module')
def done_study(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('study'))
  config = _tiny_study()
  config.test_dir = make_folder(tmp_path_factory.mktemp('external') / 'data', per_class=3,
                                size=(48, 48))
  # One file of the external folder is a mirrored copy of a study image: it must be left out.
  shutil.copy(os.path.join(SAMPLE_DIR, 'glioma_tumor', sorted(os.listdir(
      os.path.join(SAMPLE_DIR, 'glioma_tumor')))[0]), os.path.join(config.test_dir,
                                                                   'glioma_tumor', 'copy.jpg'))
  study.run_study(config, workdir)
  return workdir, config


def test_every_cell_ran_with_equal_steps(done_study):
  workdir, config = done_study
  cells = study.cells(config, workdir)
  assert all(study.is_done(workdir, c) for c in cells)
  classifiers = [c for c in cells if c.kind == 'classifier']
  assert len(classifiers) == 3 * 2 * 2                        # arms x fractions x seeds
  steps = set()
  for cell in classifiers:
    result = json.load(open(os.path.join(workdir, cell.name, 'cell_done.json')))['result']
    steps.add(result['train_steps'])
  assert len(steps) == 1                                       # equal compute, every arm
  for name in ('glioma', 'meningioma', 'no_tumor', 'pituitary'):
    assert len(os.listdir(os.path.join(workdir, 'generate', 'conditioned_f1', name))) == 6
  summary = json.load(open(os.path.join(workdir, 'data', 'data_summary.json')))
  assert sum(summary['counts']['test'].values()) > 0


def test_report_has_the_verdict_table_curve_and_gan_section(done_study):
  workdir, _ = done_study
  report = open(os.path.join(workdir, 'report', 'report.md')).read()
  assert report.index('## Verdict') < report.index('## Verdict table') < report.index(
      '## Data-fraction curve') < report.index('## The GANs')
  for arm in ('augmented', 'cas'):
    assert f'| {arm} |' in report
  assert 'external Δ acc' in report and 'left out as overlapping' in report
  # The study's GAN is kept at its best judge check (cgan_conditioned.judge_selected).
  assert 'Generators kept at their best judge check' in report and 'epoch 1 of 1' in report
  assert os.path.getsize(os.path.join(workdir, 'report', 'fraction_curve.png')) > 5000
  assert '](real_samples.png)' in report   # the reader's real reference for the GAN grids
  assert os.path.getsize(os.path.join(workdir, 'report', 'real_samples.png')) > 1000
  overlap = json.load(open(os.path.join(workdir, 'external', 'overlap.json')))
  assert overlap['overlapping'] >= 1 and overlap['kept'] == 12


def test_other_settings_are_refused(done_study):
  workdir, _ = done_study
  changed = _tiny_study()
  changed.test_dir = done_study[1].test_dir
  changed.synthetic_per_class = 7
  with pytest.raises(ValueError, match=r'other settings \(params\.per_class\)'):
    study.run_study(changed, workdir)


@pytest.fixture(scope='module')
def evaluation(done_study, tmp_path_factory):
  workdir, config = done_study
  out = str(tmp_path_factory.mktemp('report'))
  ev = evaluate_config.get_config()
  ev.n_boot, ev.gan_per_class, ev.kid_subsets, ev.kid_subset_size = 100, 6, 3, 6
  ev.robustness_max_images = 8
  metrics = runner.evaluate(ev, baseline=os.path.join(workdir, 'clf', 'baseline_f1_s0'),
                            augmented=os.path.join(workdir, 'clf', 'augmented_f1_s0'), out=out,
                            synthetic_dir=os.path.join(workdir, 'generate', 'conditioned_f1'),
                            test_dir=config.test_dir)
  return workdir, out, metrics


def test_evaluate_scores_the_test_split_like_sklearn(evaluation):
  workdir, out, metrics = evaluation
  saved = json.load(open(os.path.join(out, 'metrics.json')))
  assert saved['split'] == 'test' and 0.0 <= saved['mcnemar_p'] <= 1.0
  model = inference.load_classifier(os.path.join(workdir, 'clf', 'baseline_f1_s0'))
  test = inputs.from_manifest(RunDir(os.path.join(workdir, 'clf', 'baseline_f1_s0')).manifest(),
                              'test', model.config.data)
  pred = inputs.batched(model.probs, test.images, 64).argmax(-1)
  base = saved['baseline']
  assert saved['n_images'] == len(test) > 0
  assert base['accuracy'] == pytest.approx(skm.accuracy_score(test.labels, pred))
  np.testing.assert_array_equal(base['confusion_matrix'],
                                skm.confusion_matrix(test.labels, pred, labels=range(4)))
  assert set(base['robustness']) >= {'clean', 'gaussian_noise', 'jpeg', 'rotation'}
  assert 'copy images of the study data' in saved['external_test']['note']
  # The GAN section shows real training images beside the generated grid.
  report = open(os.path.join(out, 'report.md')).read()
  assert '(gan_samples.png)' in report and '(real_samples.png)' in report


def test_evaluate_refuses_runs_on_different_splits(evaluation, tmp_path):
  workdir, _, _ = evaluation
  baseline = os.path.join(workdir, 'clf', 'baseline_f1_s0')
  text = open(RunDir(baseline).manifest()).read()
  (tmp_path / 'manifest.csv').write_text(text.replace(',train,', ',validation,', 1))
  config = RunDir(baseline).read_config()
  config.data.prepared_dir = str(tmp_path)
  RunDir(str(tmp_path)).write_config(config)
  with pytest.raises(ValueError, match='different splits'):
    runner.check_same_split(baseline, str(tmp_path))


def test_partial_grid_names_missing_cells_and_selection(done_study):
  """Last in this file: it removes cells of the shared study."""
  workdir, config = done_study
  partial = workdir
  shutil.rmtree(os.path.join(partial, 'clf', 'cas_f0.5_s1'))
  shutil.rmtree(os.path.join(partial, 'report'))
  study.run_study(config, partial, patterns=('report',))
  report = open(os.path.join(partial, 'report', 'report.md')).read()
  assert 'Missing cells (1)' in report and 'clf/cas_f0.5_s1' in report
  # A selected cell whose inputs are missing is refused, naming them.
  shutil.rmtree(os.path.join(partial, 'generate', 'conditioned_f0.5'))
  with pytest.raises(ValueError, match=r"needs \['generate/conditioned_f0.5'\]"):
    study.run_study(config, partial, patterns=('clf/cas_f0.5_s1',))


def test_every_arm_differs_from_baseline_only_where_it_says():
  """The arms the tiny study does not train, checked on their job configs."""
  from braingan.study import plan as plan_lib  # pylint: disable=import-outside-toplevel
  config = _tiny_study()
  kw = dict(fraction=1.0, seed=0, transfer='scratch', steps_per_epoch=5, per_real=1.0)
  jobs = {arm: plan_lib.classifier_config(config, '/w', arm=arm, **kw)
          for arm in ('baseline', 'augmented', 'shuffled', 'classic', 'balanced', 'cas')}
  base = jobs['baseline'][0].data
  assert jobs['baseline'][1] is None and not base.synthetic_dir
  shuffled, augmented = jobs['shuffled'][0].data, jobs['augmented'][0].data
  assert shuffled.synthetic_dir == augmented.synthetic_dir and shuffled.synthetic_dir
  assert shuffled.synthetic_labels == 'shuffled' and augmented.synthetic_labels == 'intended'
  assert shuffled.synthetic_ratio == augmented.synthetic_ratio > 0
  assert jobs['classic'][0].data.augment and not base.augment
  assert jobs['balanced'][0].data.balance == augmented.synthetic_ratio and not base.balance
  assert jobs['cas'][0].data.synthetic_ratio == 1.0
  assert len({job.steps_per_epoch for job, _ in jobs.values()}) == 1   # equal steps


def test_a_field_added_since_a_cell_finished_differs_only_off_its_old_behaviour():
  stored = {'config': {'epochs': 3, 'model': {'width': 8}}, 'params': {'seed': 0}}
  now = {'config': {'epochs': 3, 'model': {'width': 8}, 'restore_best': 'val_loss'},
         'params': {'seed': 0}}
  assert study._differences(stored, now) == []   # pylint: disable=protected-access
  now['config']['restore_best'] = 'none'
  now['config']['model']['width'] = 16
  assert study._differences(stored, now) == [    # pylint: disable=protected-access
      'config.model.width', 'config.restore_best (new)']
