"""evaluate.py's work: score baseline vs augmented on the same images, judge the GAN, write
report.md, metrics.json and the figures.

Both classifiers must have been validated on the same manifest (same files, same split); the
runner checks that instead of assuming it, since a comparison on different images means nothing.
"""
from __future__ import annotations

import logging
import os


from braingan.data import CLASSES
from braingan.data import manifest as manifest_lib
from braingan.eval import classification
from braingan.eval import gan_eval
from braingan.eval import inputs
from braingan.eval import plots
from braingan.eval import report
from braingan.eval import robustness
from braingan.eval import stats
from braingan import files
from braingan import inference
from braingan.run_dir import RunDir


def check_same_split(*run_dirs: str) -> str:
  """Returns the shared manifest path, or raises naming the runs whose splits differ."""
  paths = {d: RunDir(d).manifest() for d in run_dirs}
  digests = {d: manifest_lib.digest(p) for d, p in paths.items()}
  if len(set(digests.values())) != 1:
    raise ValueError(f'These runs were trained on different splits (manifest digests '
                     f'{digests}); compare runs prepared from the same data and seed.')
  return paths[run_dirs[0]]


def _history(run_dir: str) -> dict:
  path = RunDir(run_dir).history
  if not os.path.exists(path):
    return {}
  history = files.read_json(path)
  if isinstance(history, list):  # A list of per-epoch dicts -> dict of series.
    keys = sorted({k for row in history for k in row})
    history = {k: [row.get(k) for row in history] for k in keys}
  return history


def training_steps(run_dir: str) -> tuple[int, int] | None:
  """(optimizer steps, epochs) of a finished classifier run, from its metrics.jsonl."""
  path = RunDir(run_dir).metrics
  if not os.path.exists(path):
    return None
  records = files.read_jsonl(path, key=lambda r: r.get('epoch'))
  last = records[-1] if records else None   # a resumed run's re-run epochs appear once
  return None if last is None else (int(last['step']), int(last['epoch']))


def _budget_note(steps: dict, models: dict) -> str | None:
  """Says how long each model trained: the augmented run usually takes more steps per epoch."""
  if any(v is None for v in steps.values()):
    return None
  ratio = float(models['augmented'].config.data.synthetic_ratio)
  text = (f"Training length: baseline {steps['baseline'][0]} optimizer steps "
          f"({steps['baseline'][1]} epochs), augmented {steps['augmented'][0]} steps "
          f"({steps['augmented'][1]} epochs, synthetic_ratio {ratio:g}).")
  if steps['augmented'][0] > steps['baseline'][0]:
    text += (' The augmented model also trained longer, so part or all of a difference can '
             'come from the extra steps rather than from the synthetic images.')
  return text


def _compare(y_true, probs: dict, config) -> dict:
  return stats.compare_models(y_true, probs['baseline'], probs['augmented'], CLASSES,
                              n_boot=config.n_boot, seed=config.seed)


def evaluate(config, *, baseline: str, augmented: str, out: str, gan: str = '',
             synthetic_dir: str = '', cas: str = '', test_dir: str = '') -> dict:
  """Runs the whole evaluation; returns the metrics dict written to out/metrics.json."""
  os.makedirs(out, exist_ok=True)
  manifest_path = check_same_split(baseline, augmented)
  models = {name: inference.load_classifier(run_dir)
            for name, run_dir in (('baseline', baseline), ('augmented', augmented))}
  data_cfg = models['baseline'].config.data
  if (models['augmented'].image_size != data_cfg.image_size or
      models['augmented'].channels != data_cfg.channels):
    raise ValueError('baseline and augmented runs use different image sizes or channels')

  rows = manifest_lib.read(manifest_path)
  # The verdict belongs to the test split when there is one; validation chose the checkpoints.
  split = 'test' if any(r.split == 'test' for r in rows) else 'validation'
  val = inputs.from_manifest(manifest_path, split, data_cfg)
  logging.info('Evaluating on %d %s images from %s', len(val), split, manifest_path)
  probs = {name: inputs.batched(model.probs, val.images, config.batch_size)
           for name, model in models.items()}
  metrics = _compare(val.labels, probs, config)
  metrics['split'] = split

  for name, model in models.items():
    images = val.images[:config.robustness_max_images]
    labels = val.labels[:config.robustness_max_images]
    metrics[name]['robustness'] = robustness.robustness_table(
        model.probs, images, labels, batch_size=config.batch_size, seed=config.seed)

  figures = {
      'training_curves': plots.training_curves(
          {name: _history(d) for name, d in (('baseline', baseline), ('augmented', augmented))},
          os.path.join(out, 'training_curves.png')),
      'confusion_matrices': plots.confusion_matrices(
          {m: metrics[m]['confusion_matrix'] for m in ('baseline', 'augmented')}, CLASSES,
          os.path.join(out, 'confusion_matrices.png')),
      'roc_curves': plots.roc_curves(val.labels, probs, CLASSES,
                                     os.path.join(out, 'roc_curves.png')),
      'reliability': plots.reliability_diagram(val.labels, probs,
                                               os.path.join(out, 'reliability.png')),
      'predictions': plots.prediction_grid(
          val.images, val.labels, probs['augmented'].argmax(-1), CLASSES,
          os.path.join(out, 'predictions.png'), probs=probs['augmented']),
  }

  notes = [f'{split.capitalize()} split: {len(val)} real images listed in {manifest_path}; '
           'no synthetic image is ever used for validation, model selection or scoring.']
  steps = {'baseline': training_steps(baseline), 'augmented': training_steps(augmented)}
  metrics['training_steps'] = {k: None if v is None else {'steps': v[0], 'epochs': v[1]}
                               for k, v in steps.items()}
  budget = _budget_note(steps, models)
  if budget:
    notes.append(budget)
  if test_dir:
    test = inputs.from_folder(test_dir, data_cfg,
                              exclude_like=[r for r in rows if r.split != 'skipped'])
    test_probs = {name: inputs.batched(model.probs, test.images, config.batch_size)
                  for name, model in models.items()}
    metrics['external_test'] = _compare(test.labels, test_probs, config)
    metrics['external_test']['note'] = test.note
    notes.append(f'External test folder: {len(test)} images from {test_dir}. {test.note}')

  if gan or synthetic_dir:
    metrics['gan'], gan_figures = gan_eval.evaluate_gan(
        config, baseline=models['baseline'], data_cfg=data_cfg,
        manifest_path=manifest_path, val=val, out=out, gan_dir=gan,
        synthetic_dir=synthetic_dir)
    figures.update(gan_figures)
  if cas:
    cas_model = inference.load_classifier(cas)
    cas_config = cas_model.config
    cas_probs = inputs.batched(cas_model.probs, val.images, config.batch_size)
    metrics.setdefault('gan', {})['cas'] = {
        **classification.classification_accuracy_score(val.labels, cas_probs, CLASSES),
        'budget': f'{cas_config.epochs} epochs max, {cas_config.data.image_size} px, '
                  f'run {cas}'}

  context = {
      'baseline_run': baseline, 'augmented_run': augmented,
      'gan_run': gan or (f'generated images in {synthetic_dir}' if synthetic_dir else 'not given'),
      'data_dir': data_cfg.data_dir, 'test_dir': test_dir or 'not given', 'notes': notes}
  report.write_report(out, metrics, figures, context)
  report.write_metrics_json(os.path.join(out, 'metrics.json'), metrics)
  return metrics
