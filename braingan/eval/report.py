"""report.md (for people) and metrics.json (for programs) from the evaluation's metrics dict.

The metrics dict is what `stats.compare_models` returns, optionally extended by evaluate.py:
  n_images, class_names, baseline, augmented (classification_metrics + 'bootstrap' CIs +
  optional 'robustness' table), mcnemar, mcnemar_p, difference, optional 'split',
  optional 'external_test' (another compare_models result), optional 'gan'.

The verdict is worded from McNemar's p-value and the paired bootstrap interval of the
accuracy difference, and deliberately never says more than they support: p >= 0.05 is
"no evidence of a difference", not "no difference", and a significant result still says it
comes from one training run per arm.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Optional

import numpy as np

from braingan import files
from braingan.data import CLASSES
from braingan.eval import robustness

MODELS = ('baseline', 'augmented')
REQUIRED_MODEL_KEYS = ('accuracy', 'macro_f1', 'per_class', 'confusion_matrix')
REQUIRED_PER_CLASS_KEYS = ('precision', 'recall', 'f1', 'support', 'sensitivity', 'specificity')
REQUIRED_TOP_KEYS = ('mcnemar_p', 'n_images')
ALPHA = 0.05

FIGURE_CAPTIONS = {
    'training_curves': 'Training curves of both runs (loss and accuracy; train solid, validation dashed)',
    'confusion_matrices': 'Confusion matrices (rows true, columns predicted)',
    'roc_curves': 'One-vs-rest ROC curves per class',
    'reliability': 'Reliability diagram (calibration)',
    'predictions': 'Validation images, predicted vs true label (mistakes in red)',
    'gan_samples': 'Generated samples per class',
    'real_samples': 'Real training images per class, drawn at random: the reference for the '
                    'generated grid',
    'nearest_neighbours': 'Closest generated/training pairs in feature space',
}


# ----------------------------------------------------------------------------- formatting
def _pct(x: Optional[float], digits: int = 1) -> str:
  return 'n/a' if x is None or not math.isfinite(x) else f'{100 * x:.{digits}f}%'


def _num(x: Optional[float], digits: int = 3) -> str:
  return 'n/a' if x is None or not math.isfinite(float(x)) else f'{x:.{digits}f}'


def _pp(x: float) -> str:
  """A difference of two proportions in percentage points, always signed."""
  return f'{100 * x:+.1f} pp'


def format_p(p: float) -> str:
  return 'p < 0.001' if p < 0.001 else f'p = {p:.3f}'


def _ci(ci: Optional[Mapping], fmt=_pct) -> str:
  return '' if not ci else f' [{fmt(ci["low"])}, {fmt(ci["high"])}]'


def markdown_table(header, rows) -> list[str]:
  """A markdown table (then a blank line), cells as str(); every report here writes its tables
  with it."""
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return lines + ['']


# ----------------------------------------------------------------------------- verdict
def verdict(comparison: Mapping) -> str:
  """One paragraph answering "did augmentation change accuracy?" without overclaiming."""
  base = comparison['baseline']['accuracy']
  aug = comparison['augmented']['accuracy']
  p = comparison['mcnemar_p']
  n = comparison['n_images']
  test = comparison.get('mcnemar', {})
  diff = comparison.get('difference', {}).get('accuracy')
  discordant = (f'; the models disagree on {test["b"] + test["c"]} images: baseline alone right on '
                f'{test["b"]}, augmented alone right on {test["c"]}') if 'b' in test else ''
  interval = (f', 95% bootstrap CI [{_pp(diff["low"])}, {_pp(diff["high"])}]' if diff else '')
  numbers = (f'accuracy {_pct(aug)} augmented vs {_pct(base)} baseline on {n} images '
             f'(difference {_pp(aug - base)}{interval}; McNemar {format_p(p)}{discordant})')
  caveat = ('This compares one training run of each model on one set of images; it does not '
            'measure run-to-run variation.')
  if p >= ALPHA:
    text = f'**No evidence of a difference** between the augmented and baseline classifiers: {numbers}.'
    if diff:
      text += (f' The data are compatible with a true difference anywhere from {_pp(diff["low"])} '
               f'to {_pp(diff["high"])}.')
    return f'{text} {caveat}'
  direction = 'higher' if aug > base else 'lower'
  text = (f'**The augmented classifier\'s accuracy is {direction} than the baseline\'s** '
          f'(significant at the {ALPHA:g} level): {numbers}.')
  if diff and diff['low'] <= 0 <= diff['high']:
    text += (' The bootstrap interval of the difference still includes 0, so the evidence is '
             'weak.')
  return f'{text} {caveat}'


# ----------------------------------------------------------------------------- sections
def _setup_lines(context: Mapping) -> list[str]:
  labels = {'baseline_run': 'Baseline classifier (real images only)',
            'augmented_run': 'Augmented classifier (real + cGAN synthetic images)',
            'gan_run': 'Conditional GAN', 'data_dir': 'Image folder',
            'test_dir': 'External test folder', 'budgets': 'Budgets'}
  lines = []
  for key, value in context.items():
    if key in ('title', 'notes'):
      continue
    if isinstance(value, Mapping):
      value = ', '.join(f'{k}: {v}' for k, v in value.items())
    lines.append(f'- **{labels.get(key, key.replace("_", " ").capitalize())}**: {value}')
  lines += [f'- {note}' for note in context.get('notes', [])]
  return lines + ['']


def _model_summary(comparison: Mapping) -> list[str]:
  rows = []
  for model in MODELS:
    m = comparison[model]
    boot = m.get('bootstrap', {})
    rows.append([model, _pct(m['accuracy']) + _ci(boot.get('accuracy')),
                 _num(m['macro_f1']) + _ci(boot.get('macro_f1'), _num),
                 _num(m.get('weighted_f1')), _num(m.get('roc_auc', {}).get('macro')),
                 _num(m.get('ece')), _num(m.get('log_loss'))])
  return markdown_table(['model', 'accuracy [95% CI]', 'macro-F1 [95% CI]', 'weighted F1',
                        'ROC-AUC (macro, OvR)', 'ECE', 'log loss'], rows)


def _difference(comparison: Mapping) -> list[str]:
  rows = []
  for metric, d in comparison.get('difference', {}).items():
    fmt = _pp if metric == 'accuracy' else (lambda x: f'{x:+.3f}')
    rows.append([metric, fmt(d['point']), f'[{fmt(d["low"])}, {fmt(d["high"])}]',
                 _pct(d.get('fraction_above_zero'), 0)])
  lines = markdown_table(['metric', 'augmented - baseline', '95% paired bootstrap CI',
                          'resamples where augmented is higher'], rows) if rows else []
  t = comparison.get('mcnemar')
  if t:
    lines += [f'McNemar\'s test ({t["method"]}): b = {t["b"]} (baseline right, augmented wrong), '
              f'c = {t["c"]} (augmented right, baseline wrong), statistic = {t["statistic"]:.3f}, '
              f'{format_p(t["p_value"])}.', '']
  return lines


def _per_class(m: Mapping, class_names) -> list[str]:
  rows = []
  for name in class_names:
    c = m['per_class'][name]
    rows.append([name, _num(c['precision']), _num(c['recall']), _num(c['specificity']),
                 _num(c['f1']), _num(c.get('roc_auc')), c['support']])
  avg = [(k, m.get(k)) for k in ('macro_avg', 'weighted_avg') if m.get(k)]
  for key, a in avg:
    rows.append([key.replace('_avg', ' avg'), _num(a['precision']), _num(a['recall']), '',
                 _num(a['f1']), '', sum(m['per_class'][n]['support'] for n in class_names)])
  lines = markdown_table(['class', 'precision', 'recall = sensitivity', 'specificity', 'F1',
                          'ROC-AUC', 'support'], rows)
  note = m.get('roc_auc', {}).get('note')
  return lines + ([f'Note: {note}.', ''] if note else [])


def _confusion(m: Mapping, class_names) -> list[str]:
  rows = [[f'**{name}**'] + list(row) for name, row in zip(class_names, m['confusion_matrix'])]
  return markdown_table(['true \\ predicted'] + list(class_names), rows)


def _robustness(comparison: Mapping) -> list[str]:
  tables = {m: comparison[m].get('robustness') for m in MODELS}
  if not all(tables.values()):
    return []
  base, aug = tables['baseline'], tables['augmented']
  rows = [['clean', '', _pct(base['clean']), _pct(aug['clean']), _pp(aug['clean'] - base['clean'])]]
  for name, levels in base.items():
    if name == 'clean':
      continue
    for sev, acc in levels.items():
      desc = robustness.describe(name, int(sev)) if name in robustness.SEVERITY_PARAMS else ''
      other = aug.get(name, {}).get(sev)
      rows.append([f'{name} {sev}', desc, _pct(acc), _pct(other),
                   _pp(other - acc) if other is not None else 'n/a'])
  return ['### Robustness (accuracy under corruption)', ''] + markdown_table(
      ['corruption / severity', 'parameter', 'baseline', 'augmented', 'difference'], rows)


def _evaluation_set(comparison: Mapping, title: str, fig) -> list[str]:
  class_names = comparison.get('class_names') or list(comparison['baseline']['per_class'])
  support = {n: comparison['baseline']['per_class'][n]['support'] for n in class_names}
  lines = [f'## {title}', '',
           f'{comparison["n_images"]} images ({", ".join(f"{n}: {s}" for n, s in support.items())}). '
           'Both models saw exactly the same images.', '',
           '### Verdict', '', verdict(comparison), '', '### Overall', '']
  lines += _model_summary(comparison) + _difference(comparison)
  for model in MODELS:
    lines += [f'### Per class: {model}', ''] + _per_class(comparison[model], class_names)
    lines += [f'Confusion matrix ({model}; rows true, columns predicted):', '']
    lines += _confusion(comparison[model], class_names)
  lines += _robustness(comparison)
  lines += ['### Calibration', '',
            'Expected calibration error (15 equal-width bins of top-label confidence; 0 = '
            'confidence matches accuracy): ' + ', '.join(
                f'{m} {_num(comparison[m].get("ece"))}' for m in MODELS) + '.', '']
  return lines + fig('reliability')


def _gan(gan: Mapping, fig) -> list[str]:
  lines = ['## GAN quality', '']
  if gan.get('feature_extractor'):
    lines += [f'Features: {gan["feature_extractor"]}. FID/KID computed in this feature space '
              'compare GANs within this project; they are not comparable with published '
              'Inception-based numbers.', '']
  rows = []
  if 'fid' in gan:
    kid = gan.get('kid', {})
    rows.append(['all', _num(gan['fid'], 2), f'{_num(kid.get("mean"), 4)} +/- {_num(kid.get("std"), 4)}',
                 gan.get('n_real', ''), gan.get('n_generated', '')])
  for name, c in gan.get('per_class', {}).items():
    rows.append([name, _num(c.get('fid'), 2),
                 f'{_num(c.get("kid_mean"), 4)} +/- {_num(c.get("kid_std"), 4)}',
                 c.get('n_real', ''), c.get('n_generated', '')])
  if rows:
    lines += markdown_table(['class', 'FID', 'KID', 'real', 'generated'], rows)
  if 'generated_accuracy' in gan:
    acc = gan['generated_accuracy']
    chance = 1.0 / len(CLASSES)
    text = (f'The baseline classifier assigns {_pct(acc)} of generated images to the class '
            f'they were generated for (chance: {_pct(chance)}).')
    if acc < chance + 0.1:
      text += (' At this level the generated images do not show their class to the '
               'classifier: an augmented model cannot be learning class information from them.')
    lines += [text, '']
  cas = gan.get('cas')
  if cas:
    lines += [f'Classification Accuracy Score (classifier trained on generated images only, '
              f'tested on real images{"; " + cas["budget"] if cas.get("budget") else ""}): '
              f'accuracy {_pct(cas["accuracy"])}, macro-F1 {_num(cas["macro_f1"])}.', '']
  mem = gan.get('memorisation')
  if mem:
    lines += [f'Memorisation check: {mem["n_below"]} of {mem["n_generated"]} generated images '
              f'({_pct(mem["fraction_below"])}) are closer to a training image than '
              f'{mem["percentile"]:g}% of real held-out images are (distance < '
              f'{_num(mem["threshold"])}); for held-out real images that share is about '
              f'{mem["percentile"]:g}% by construction. Median nearest-train distance: '
              f'generated {_num(mem["gen_nn_median"])}, real held-out {_num(mem["real_nn_median"])}.', '']
  return lines + fig('gan_samples') + fig('real_samples') + fig('nearest_neighbours')


# ----------------------------------------------------------------------------- writers
def write_report(out_dir: str, metrics: Mapping, figures: Mapping[str, str],
                 context: Mapping) -> str:
  """Writes out_dir/report.md and returns its path. Figure links are relative to out_dir."""
  os.makedirs(out_dir, exist_ok=True)
  used = set()

  def fig(key):
    if key not in figures:
      return []
    used.add(key)
    rel = os.path.relpath(figures[key], out_dir)
    caption = FIGURE_CAPTIONS.get(key, key.replace('_', ' '))
    return [f'![{caption}]({rel})', '', f'*{caption}.*', '']

  lines = [f'# {context.get("title", "Does cGAN augmentation help? Baseline vs augmented classifier")}',
           '', '## What was compared', '',
           'A classifier fine-tuned on real images only (baseline) against the same classifier '
           'fine-tuned on real plus class-conditional GAN images (augmented), evaluated on '
           'images neither was trained on.', '']
  lines += _setup_lines(context)
  split = metrics.get('split', 'validation')
  lines += _evaluation_set(metrics, f'Results on the {split} split', fig)
  lines += fig('confusion_matrices') + fig('roc_curves') + fig('predictions')
  if metrics.get('external_test'):
    lines += _evaluation_set(metrics['external_test'], 'Results on the external test folder', fig)
  lines += fig('training_curves')
  if metrics.get('gan'):
    lines += _gan(metrics['gan'], fig)
  rest = [k for k in figures if k not in used]
  if rest:
    lines += ['## Other figures', '']
    for key in rest:
      lines += fig(key)
  lines += ['---', 'All numbers are also in `metrics.json` next to this file.', '']
  return files.write_text(os.path.join(out_dir, 'report.md'), '\n'.join(lines))


def to_jsonable(value):
  """numpy -> Python, tuples -> lists, non-finite floats -> None (strict JSON has no NaN)."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


def check_interface(metrics: Mapping) -> None:
  """Raises ValueError naming the first key of the metrics.json interface that is missing."""
  for key in REQUIRED_TOP_KEYS:
    if key not in metrics:
      raise ValueError(f'metrics is missing top-level key {key!r}')
  for model in MODELS:
    if model not in metrics:
      raise ValueError(f'metrics is missing model {model!r}')
    for key in REQUIRED_MODEL_KEYS:
      if key not in metrics[model]:
        raise ValueError(f'metrics[{model!r}] is missing {key!r}')
    for name, c in metrics[model]['per_class'].items():
      for key in REQUIRED_PER_CLASS_KEYS:
        if key not in c:
          raise ValueError(f'metrics[{model!r}]["per_class"][{name!r}] is missing {key!r}')


def write_metrics_json(path: str, metrics: Mapping) -> str:
  """Writes metrics.json (strict JSON) after checking the interface keys; returns the path."""
  check_interface(metrics)
  return files.write_json(path, to_jsonable(metrics), allow_nan=False)
