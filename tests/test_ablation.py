"""The GAN ablation command on a tiny budget: every variant trained, judged, and in the table."""
import json
import os

import ml_collections
import numpy as np
import pytest
from sklearn import metrics as metrics_lib

from braingan import study
from braingan.study import ablation
from configs import gan_ablation
from tests.conftest import SAMPLE_DIR


def _tiny_ablation(names=('recommended',)):
  config = gan_ablation.get_config()
  config.data.data_dir, config.data.image_size = SAMPLE_DIR, 32
  config.data.test_fraction = 0.2
  clf = config.classifier
  clf.model.width, clf.model.head_units, clf.epochs = 8, 16, 1
  keep = ml_collections.ConfigDict()
  for name in names:
    v = config.variants[name]
    v.epochs, v.steps_per_epoch, v.batch_size = 1, 2, 8
    v.model.latent_dim, v.model.g_base_depth = 16, 16
    v.model.g_widths = (16, 8, 8, 8)
    v.model.d_widths = (8, 8, 8, 8, 8) if name == 'ganforge' else (8, 8, 16, 16)
    keep[name] = v
  config.variants = keep
  config.synthetic_per_class = 6
  config.cas_large_pool_per_class = 10
  config.cas_seeds = (0, 1)
  config.evaluate.n_boot, config.evaluate.gan_per_class, config.evaluate.kid_subsets = 50, 6, 2
  return config


@pytest.mark.slow
def test_tiny_ablation_writes_the_table(tmp_path):
  workdir = str(tmp_path / 'ablation')
  config = _tiny_ablation()
  study.run_cells(config, workdir, ablation.cells)
  names = [c.name for c in ablation.cells(config, workdir)]
  assert {'gan/recommended', 'clf/cas_recommended', 'clf/real'} <= set(names)
  # CAS and its reference keep their last epoch (no selection on real validation images).
  for name in ('clf/cas_recommended', 'clf/real'):
    assert not os.path.exists(os.path.join(workdir, name, 'checkpoints', 'best'))
    assert 'best_epoch' not in json.load(open(os.path.join(workdir, name, 'final_metrics.json')))
  report = open(os.path.join(workdir, 'ablation', 'report.md')).read()
  assert '| recommended |' in report and '../gan_eval/recommended/samples.png' in report
  assert '](real_samples.png)' in report   # the reader's real reference grid
  assert os.path.getsize(os.path.join(workdir, 'ablation', 'real_samples.png')) > 1000
  # No generated grid, no real reference: the report is rewritten without either.
  os.rename(os.path.join(workdir, 'gan_eval', 'recommended', 'samples.png'), str(tmp_path / 'g'))
  ablation.write_report(config, workdir)
  bare = open(os.path.join(workdir, 'ablation', 'report.md')).read()
  assert '| recommended |' in bare and 'samples.png' not in bare
  os.rename(str(tmp_path / 'g'), os.path.join(workdir, 'gan_eval', 'recommended', 'samples.png'))
  metrics = json.load(open(os.path.join(workdir, 'ablation', 'metrics.json')))
  v = metrics['variants']['recommended']
  assert 0.0 <= v['agreement']['point'] <= 1.0 and len(v['cas_per_seed']) == 2
  assert v['cas'] == pytest.approx(sum(v['cas_per_seed']) / 2)
  assert {'clf/real_s1', 'clf/cas_recommended_s1'} <= set(names)
  # CAS recall per real class: the mean over classifier seeds of scikit-learn's recall.
  want = []
  for cell in ('clf/cas_recommended', 'clf/cas_recommended_s1'):
    with np.load(os.path.join(workdir, cell, 'predictions.npz')) as saved:
      want.append(metrics_lib.recall_score(saved['test_labels'], saved['test_probs'].argmax(-1),
                                           labels=[0, 1, 2, 3], average=None, zero_division=np.nan))
  np.testing.assert_allclose(v['cas_recall'], np.mean(want, 0), atol=1e-9)
  # CAS on a larger pool from the same generator, with the same classifier steps.
  pool = os.path.join(workdir, 'generate', 'recommended_large_pool')
  assert sum(len(files) for _, _, files in os.walk(pool) if files) >= 4 * 10
  assert len(v['cas_large_pool_per_seed']) == 2 and 'CAS, 10/class pool' in report
  steps = [json.load(open(os.path.join(workdir, c, 'final_metrics.json')))['train_steps']
           for c in ('clf/cas_recommended', 'clf/cas_recommended_large_pool')]
  assert steps[0] == steps[1] > 0
  assert v['train_steps'] == 2 and v['kept_epoch'] is None   # the last generator
  # The second judge: its own run (another seed), scoring the same images.
  assert {'judge_audit', 'audit/recommended'} <= set(names)
  audit = json.load(open(os.path.join(workdir, 'audit', 'recommended', 'audit.json')))
  assert audit['judge_run'].endswith('judge_audit')
  assert v['agreement_2nd_judge']['overall'] == audit['agreement']['overall']
  assert 0.0 <= v['agreement_2nd_judge']['lowest_class'] <= 1.0
  assert set(audit['judge_val_recall']) <= set(v['per_class'])
  assert all(0.0 <= r <= 1.0 for r in audit['judge_val_recall'].values())
  assert 'Second judge (seed 1001' in report
  # A variant added later (a cluster job not run yet): the report alone reruns and marks it,
  # and the finished cells are not looked at again (GANForge's cells never ran here).
  study.run_cells(_tiny_ablation(('recommended', 'ganforge')), workdir, ablation.cells,
                  ('ablation',))
  report = open(os.path.join(workdir, 'ablation', 'report.md')).read()
  assert '| ganforge | missing |' in report and '| recommended |' in report


@pytest.mark.slow
def test_select_generator_keeps_the_best_judged_checkpoint(tmp_path, monkeypatch):
  """config.select_generator: the run's result (final metrics, what generation loads) is the
  epoch whose in-training judge metric was best, not the last."""
  from braingan import inference  # pylint: disable=import-outside-toplevel
  from braingan import config_check  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / 'ablation')
  config = _tiny_ablation(('recommended_select',))
  v = config.variants.recommended_select
  v.epochs, v.judge.every_epochs = 4, 1
  assert v.select_generator == 'cond_agreement_min_class'
  # At this size every agreement is 0 and FID falls every epoch: keeping the HIGHEST FID makes
  # the kept epoch differ from the last one (epoch 3 of 4 here), so loading 'the latest' fails.
  v.select_generator = 'cond_fid'
  monkeypatch.setitem(config_check.SELECTION_MODES, 'cond_fid', 'max')
  study.run_cells(config, workdir, ablation.cells, ('data', 'judge', 'gan/recommended_select'))
  run = os.path.join(workdir, 'gan', 'recommended_select')
  history = json.load(open(os.path.join(run, 'history.json')))
  scores = [r['cond_fid'] for r in history]
  assert len(scores) == 4 and set(config_check.SELECTION_MODES) <= set(history[0])
  best_epoch = 1 + scores.index(max(scores))
  final = json.load(open(os.path.join(run, 'final_metrics.json')))
  assert final['best_epoch'] == best_epoch and final['train_steps'] == 4 * v.steps_per_epoch
  assert final['cond_fid'] == max(scores)
  assert final['best_step'] == best_epoch * v.steps_per_epoch
  generator = inference.load_generator(run)
  assert generator.step == best_epoch * v.steps_per_epoch
  assert inference.load_generator(run, step=4).step == 4 * v.steps_per_epoch


def test_select_variant_is_the_preset_as_the_study_runs_it():
  """recommended_select = the ablation's preset + cgan_conditioned.judge_selected (what the
  study uses), so the ablation measures the study's recipe."""
  from configs import cgan_conditioned  # pylint: disable=import-outside-toplevel
  variants = gan_ablation.get_config().variants
  expected = cgan_conditioned.judge_selected(
      ml_collections.ConfigDict(variants.recommended.to_dict()))
  assert variants.recommended_select.to_dict() == expected.to_dict()
  assert variants.recommended_select.select_generator != 'last'


def test_the_current_preset_is_a_recorded_variant_and_the_old_one_stays_pinned():
  """The study's GAN (configs/study.py: cgan_conditioned as judge_selected) at the ablation's
  budget is the variant recommended_select_ms03_wide, and 'recommended', which the recorded
  variants build on, is the preset as it was (PREVIOUS_PRESET) whatever the preset becomes."""
  from configs import study  # pylint: disable=import-outside-toplevel
  variants = gan_ablation.get_config().variants
  current = study.get_config().gan
  current.steps_per_epoch, current.epochs = 100, 50
  assert current.to_dict() == variants.recommended_select_ms03_wide.to_dict()
  old = variants.recommended
  assert (old.model.g_base_depth, tuple(old.model.g_widths), old.mode_seeking) == (
      128, (64, 32, 16, 8), 0.0)


def test_report_says_how_the_recorded_classifiers_kept_batchnorm_statistics(tmp_path):
  """From the scored cells' records, not the current config: mixed recipes are flagged, and a
  study's classifier cells in the same workdir (its 'cas' arm: clf/cas_f1_s0) are not read."""
  config = ml_collections.ConfigDict({'variants': {'v': {}}, 'cas_seeds': (0, 1),
                                      'cas_large_pool_per_class': 0})

  def record(name, count, root=tmp_path):
    folder = root / 'clf' / name
    folder.mkdir(parents=True)
    settings = {} if count is None else {'bn_recalibration_batches': count}
    (folder / 'cell_done.json').write_text(json.dumps({'settings': {'config': settings}}))

  workdir = str(tmp_path)
  assert 'moving averages' in ablation._bn_text(config, workdir)   # nothing recorded yet
  record('real', None)                                              # recorded before the field
  record('cas_v', 0)
  record('cas_f1_s0', 16)                                           # a study arm: not scored
  assert 'moving averages' in ablation._bn_text(config, workdir)
  record('cas_v_s1', 16)
  text = ablation._bn_text(config, workdir)
  assert 'MIXED' in text and '0 / 16' in text
  record('real', 16, tmp_path / 'new')
  record('cas_v', 16, tmp_path / 'new')
  assert ('recomputed after every epoch from 16 batches'
          in ablation._bn_text(config, str(tmp_path / 'new')))
