"""The GAN ablation: which ingredient makes the generated images carry their class?

  python -m braingan.ablation --config=configs/gan_ablation.py --workdir=runs/ablation

Cells (the study's machinery, braingan/study/__init__.py): the data and a judge as in the
study, then per variant (config.variants: a name -> a GAN config) `gan/<v>`, `generate/<v>`,
`gan_eval/<v>` (judge metrics) and `clf/cas_<v>` (a classifier trained on that GAN's images
only, CAS), `audit/<v>` (agreement under a second judge, `judge_audit`, another seed, when
config.audit_judge_seed >= 0: it never chose a generator), plus `clf/real` (the same classifier
and budget on the real training split; both keep their last epoch and treat their BatchNorm
statistics alike, config.classifier.bn_recalibration_batches) and the `ablation` cell's report
(<workdir>/ablation/report.md; not `report`, so a study and the ablation can share one
workdir, its data, judge and real-trained classifier): class agreement overall and per class
with intervals, CAS, its ratio to the real-trained classifier and its recall per real class,
FID / KID overall and per class, memorisation, wall time, images/s and one sample grid per
variant. With config.cas_large_pool_per_class = N > 0 also `generate/<v>_large_pool` (N images
per class from the same generator) and `clf/cas_<v>_large_pool*`: CAS with the same classifier
steps on more images (is CAS short of images, or of variety?). Each cell is resumable and
runnable on its own (--cells).
"""
from __future__ import annotations

import os

import ml_collections
import numpy as np

from braingan import files
from braingan.data import CLASSES
from braingan.eval import classification
from braingan.eval import report as eval_report
from braingan.study import gan_eval
from braingan.study import plan as plan_lib


def cells(config, workdir: str) -> list[plan_lib.Cell]:
  from braingan import study  # pylint: disable=import-outside-toplevel
  steps = study._steps_per_epoch(config, workdir)  # pylint: disable=protected-access
  judge = plan_lib.judge_config(config, workdir, 'scratch')
  out = [plan_lib.data_cell(config), plan_lib.Cell('judge', 'judge', ('data',), judge)]
  audit = config.get('audit_judge_seed', -1) >= 0
  if audit:   # a second judge, never used while training: agreement free of selection bias
    second = ml_collections.ConfigDict(judge.to_dict())
    second.seed = config.audit_judge_seed
    out.append(plan_lib.Cell('judge_audit', 'judge', ('data',), second))
  reals = {}
  for seed in config.cas_seeds:
    reals[seed], _ = plan_lib.classifier_config(config, workdir, arm='baseline', fraction=1.0,
                                                seed=seed, transfer='scratch',
                                                steps_per_epoch=steps, per_real=1.0)
    # CAS trains on generated images only: choosing its epoch by loss on real validation
    # images would let real images in, and picks the wrong epoch (an over-confident
    # synthetic-trained classifier has its lowest real validation loss after epoch 1-2,
    # while its accuracy still rises). Its real-trained reference follows the same rule.
    reals[seed].restore_best = 'none'
    out.append(plan_lib.Cell(_seeded('clf/real', seed), 'classifier', ('data',), reals[seed],
                             {'arm': 'baseline', 'fraction': 1.0, 'seed': seed,
                              'per_real': 1.0, 'transfer': 'scratch'}))
  for name, variant in config.variants.items():
    gan = plan_lib._compose(variant, config, workdir)  # pylint: disable=protected-access
    gan.generate.per_class = 0
    gan.judge.run_dir = os.path.abspath(plan_lib.cell_dir(workdir, 'judge'))
    out += [plan_lib.Cell(f'gan/{name}', 'gan', ('data', 'judge'), gan),
            plan_lib.Cell(f'generate/{name}', 'generate', (f'gan/{name}',),
                          params={'per_class': config.synthetic_per_class, 'seed': config.seed}),
            plan_lib.Cell(f'gan_eval/{name}', 'gan_eval', (f'generate/{name}', 'judge'),
                          params={'per_class': config.evaluate.gan_per_class})]
    if audit:
      out.append(plan_lib.Cell(f'audit/{name}', 'audit', (f'generate/{name}', 'judge_audit'),
                               params={'per_class': config.evaluate.gan_per_class}))
    out += _cas_cells(config, workdir, reals, name)
    pool = config.get('cas_large_pool_per_class', 0)
    if pool:   # the same generator, a larger pool, the same classifier steps
      out.append(plan_lib.Cell(f'generate/{name}{POOL}', 'generate', (f'gan/{name}',),
                               params={'per_class': pool, 'seed': config.seed}))
      out += _cas_cells(config, workdir, reals, name + POOL)
  out.append(plan_lib.Cell('ablation', 'ablation_report', ('data',)))
  return out


POOL = '_large_pool'   # suffix of the generate / CAS cells of config.cas_large_pool_per_class


def _cas_cells(config, workdir: str, reals: dict, pool_name: str) -> list:
  """CAS classifiers (one per config.cas_seeds) on the images of cell generate/<pool_name>:
  each the real-trained reference's config with the generated images as its only data."""
  out = []
  for seed in config.cas_seeds:
    cas = ml_collections.ConfigDict(reals[seed].to_dict())
    cas.data.synthetic_dir = os.path.abspath(plan_lib.cell_dir(workdir, f'generate/{pool_name}'))
    cas.data.synthetic_ratio = 1.0
    out.append(plan_lib.Cell(_seeded(f'clf/cas_{pool_name}', seed), 'classifier',
                             (f'generate/{pool_name}',), cas,
                             {'arm': 'cas', 'fraction': 1.0, 'seed': seed, 'per_real': 1.0,
                              'transfer': 'scratch'}))
  return out


def _seeded(name: str, seed: int) -> str:
  """Cell name of a CAS / real-trained classifier seed (seed 0 keeps the plain name)."""
  return name if seed == 0 else f'{name}_s{seed}'


def _test_scores(config, workdir: str, name: str):
  """Over the finished seeds of a classifier: (mean test accuracy, the per-seed accuracies,
  the mean recall per real class or None). CAS moves by 20 points between classifier seeds, so
  one seed says little; recall says which real classes a synthetic-trained classifier misses
  (their generated images cover too little of the class), where accuracy says how many."""
  found = [_test_predictions(workdir, _seeded(name, s)) for s in config.cas_seeds]
  found = [f for f in found if f is not None]
  if not found:
    return None, [], None
  accuracies = [float(np.mean(p == t)) for p, t in found]
  recall = np.mean([classification.recall_per_class(t, p, len(CLASSES)) for p, t in found], 0)
  recall = [float(r) for r in recall]
  return float(np.mean(accuracies)), accuracies, recall


def _test_predictions(workdir: str, name: str) -> tuple[np.ndarray, np.ndarray] | None:
  """(predicted, true) test labels of a finished classifier cell, else None."""
  path = os.path.join(plan_lib.cell_dir(workdir, name), 'predictions.npz')
  if not os.path.exists(path):
    return None
  with np.load(path) as saved:
    return saved['test_probs'].argmax(-1), saved['test_labels']


def _cell_record(workdir: str, name: str) -> dict | None:
  """A finished cell's cell_done.json (settings, seconds, result), else None."""
  path = os.path.join(plan_lib.cell_dir(workdir, name), 'cell_done.json')
  return files.read_json(path) if os.path.exists(path) else None


def _cell_seconds(workdir: str, name: str) -> float | None:
  record = _cell_record(workdir, name)
  return None if record is None else record['seconds']


def _scored_classifiers(config) -> list[str]:
  """The classifier cells the report scores: the real-trained reference and every variant's
  CAS (and large-pool CAS), at each classifier seed."""
  pools = [''] + ([POOL] if config.get('cas_large_pool_per_class', 0) else [])
  names = ['clf/real'] + [f'clf/cas_{v}{pool}' for v in config.variants for pool in pools]
  return [_seeded(name, seed) for name in names for seed in config.cas_seeds]


def _bn_text(config, workdir: str) -> str:
  """How the finished classifier cells the report scores treated BatchNorm statistics, as
  their cell_done.json records it (not the current config: a report regenerated on older cells
  must describe those)."""
  records = [_cell_record(workdir, name) for name in _scored_classifiers(config)]
  counts = {r['settings']['config'].get('bn_recalibration_batches', 0) for r in records if r}
  if len(counts) > 1:
    return ('BatchNorm statistics MIXED between classifier cells (bn_recalibration_batches '
            + ' / '.join(str(c) for c in sorted(counts)) + '): their ratios are not comparable')
  count = counts.pop() if counts else 0
  if not count:
    return "BatchNorm statistics: Keras's moving averages"
  return (f'BatchNorm statistics recomputed after every epoch from {count} batches of each '
          "classifier's own training images")


def _cas_text(cas: float | None, seeds: list[float], real: float | None) -> str:
  if cas is None:
    return 'n/a'
  ratio = f'x{cas / real:.2f}; ' if real else ''
  return f'{100 * cas:.1f} ({ratio}seeds ' + ' / '.join(f'{100 * v:.1f}' for v in seeds) + ')'


def _percentages(values: list[float] | None) -> str:
  return 'n/a' if values is None else ' / '.join(f'{100 * v:.0f}' for v in values)


def _kept(final: dict) -> str:
  """', kept epoch N' when the run's result is a selected checkpoint, not the last."""
  return f', kept epoch {final["best_epoch"]}' if 'best_epoch' in final else ''


def _audit(workdir: str, name: str) -> tuple[dict | None, str]:
  """The second judge's agreement on a variant's images (audit cell), and its table text."""
  path = os.path.join(plan_lib.cell_dir(workdir, f'audit/{name}'), 'audit.json')
  if not os.path.exists(path):
    return None, 'n/a'
  audit = files.read_json(path)
  agree, recall = audit['agreement'], audit['judge_val_recall']
  overall, lowest = agree['overall'], min(v['point'] for v in agree['per_class'].values())
  # Per class against the judge's own recall on real images of that class (a weak judge
  # recognises few real meningiomas too).
  ratios = [v['point'] / recall[c] for c, v in agree['per_class'].items() if recall.get(c)]
  ratio = f'; every class >= x{min(ratios):.2f} its recall on real' if ratios else ''
  return ({'overall': overall, 'lowest_class': lowest,
           'min_class_over_recall': min(ratios) if ratios else None},
          f'{100 * overall["point"]:.1f} [{100 * overall["low"]:.0f}, '
          f'{100 * overall["high"]:.0f}], lowest class {100 * lowest:.0f}{ratio}')


HEADER = ['variant', 'class agreement % [95% CI]', 'per class % (gli/men/no/pit)',
          'agreement / judge', 'agreement, 2nd judge %', 'CAS test acc % (x real)',
          'CAS recall on real % (gli/men/no/pit)', 'FID',
          'KID', 'intra-class FID (gli/men/no/pit)', 'GAN training', 'images/s']
# With config.cas_large_pool_per_class its CAS column follows the CAS recall column.
_POOL_COLUMN = HEADER.index('CAS recall on real % (gli/men/no/pit)') + 1


def write_report(config, workdir: str) -> dict:
  out = plan_lib.cell_dir(workdir, 'ablation')
  pool = config.get('cas_large_pool_per_class', 0)
  header = (HEADER[:_POOL_COLUMN] + [f'CAS, {pool}/class pool % (x real)'] + HEADER[_POOL_COLUMN:]
            if pool else HEADER)
  real, real_seeds, real_recall = _test_scores(config, workdir, 'clf/real')
  rows, summary = [], {'real_trained_test_accuracy': real, 'real_per_seed': real_seeds,
                       'real_recall': real_recall, 'variants': {}}
  for name in config.variants:
    path = os.path.join(plan_lib.cell_dir(workdir, f'gan_eval/{name}'), 'conditioning.json')
    if not os.path.exists(path):
      rows.append([name, 'missing'] + [''] * (len(header) - 2))
      continue
    m = files.read_json(path)
    agree = m['agreement']
    cas, cas_seeds, recall = _test_scores(config, workdir, f'clf/cas_{name}')
    final = files.read_json(os.path.join(plan_lib.cell_dir(workdir, f'gan/{name}'),
                                         'final_metrics.json'))
    batch = config.variants[name].batch_size
    per_class = {c: v['point'] for c, v in agree['per_class'].items()}
    audit, audit_text = _audit(workdir, name)
    summary['variants'][name] = {'agreement': agree['overall'], 'per_class': per_class,
                                 'agreement_over_judge': m['agreement_over_judge'], 'cas': cas,
                                 'cas_per_seed': cas_seeds, 'cas_recall': recall,
                                 'agreement_2nd_judge': audit,
                                 'fid': m['fid'], 'kid': m['kid']['mean'],
                                 'train_steps': final.get('train_steps'),
                                 'kept_epoch': final.get('best_epoch'),
                                 'gan_seconds': _cell_seconds(workdir, f'gan/{name}')}
    if pool:
      large, large_seeds, _ = _test_scores(config, workdir, f'clf/cas_{name}{POOL}')
      summary['variants'][name]['cas_large_pool'] = large
      summary['variants'][name]['cas_large_pool_per_seed'] = large_seeds
    row = [
        name, f'{100 * agree["overall"]["point"]:.1f} [{100 * agree["overall"]["low"]:.0f}, '
        f'{100 * agree["overall"]["high"]:.0f}]',
        ' / '.join(f'{100 * v:.0f}' for v in per_class.values()),
        f'{m["agreement_over_judge"]:.2f}', audit_text,
        _cas_text(cas, cas_seeds, real), _percentages(recall),
        f'{m["fid"]:.1f}', f'{m["kid"]["mean"]:.4f}',
        ' / '.join(f'{v["fid"]:.0f}' for v in m['per_class'].values() if v.get('fid')),
        f'{final.get("train_steps")} steps{_kept(final)}, '
        f'{summary["variants"][name]["gan_seconds"]:.0f} s',
        f'{final.get("steps_per_s", 0) * batch:.1f}']
    if pool:
      row.insert(_POOL_COLUMN, _cas_text(large, large_seeds, real))
    rows.append(row)
  judge = os.path.join(plan_lib.cell_dir(workdir, 'judge'), 'final_metrics.json')
  second = os.path.join(plan_lib.cell_dir(workdir, 'judge_audit'), 'final_metrics.json')
  second_text = (f' Second judge (seed {config.audit_judge_seed}, same architecture and data, '
                 f'validation accuracy {100 * files.read_json(second)["val_accuracy"]:.1f} %): '
                 'never used while training, so its agreement is free of the bias of a '
                 'generator kept for its score under the first (select_generator).'
                 if os.path.exists(second) else '')
  lines = ['# GAN ablation: which ingredient makes the images carry their class?', '',
           f'Judge: its own classifier run (seed {config.judge_seed}), validation accuracy '
           f'{100 * files.read_json(judge)["val_accuracy"]:.1f} %. Real-trained classifier '
           f'(the CAS reference, same architecture and steps): test accuracy '
           f'{"n/a" if real is None else f"{100 * real:.1f} %"} (mean of seeds '
           + ' / '.join(f'{100 * v:.1f}' for v in real_seeds) + '; recall per class '
           + _percentages(real_recall) + '; CAS is the mean over the '
           'same classifier seeds; both keep their last epoch, no selection on real '
           f'validation images; {_bn_text(config, workdir)}). Chance agreement is 25 %. '
           'FID/KID are in the judge\'s feature space on equal-size sets.' + second_text, '']
  lines += eval_report.markdown_table(header, rows)
  grids = [name for name in config.variants if os.path.exists(
      os.path.join(plan_lib.cell_dir(workdir, f'gan_eval/{name}'), 'samples.png'))]
  if grids:   # the real reference only where there are generated grids to hold against it
    lines += gan_eval.real_reference_lines(config, workdir, out)
  for name in grids:
    lines += [f'### {name}', '', f'![{name}](../gan_eval/{name}/samples.png)', '']
  files.write_text(os.path.join(out, 'report.md'), '\n'.join(lines))
  files.write_json(os.path.join(out, 'metrics.json'), summary, default=float)
  return {'variants': len(summary['variants'])}
