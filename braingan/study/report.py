"""The study's report: the verdict table first, then the curve, the controls, the GANs, the data.

Scores are on the TEST split (never used for training or selection: validation chose each
cell's checkpoint) and, when given, on the external folder. For every (fraction, arm) the arm
is compared with the baseline seed by seed (same initialisation seed and data order): mean
difference with a t-interval over seeds, a paired t-test over seeds, and McNemar's test per
seed on the test images; the p-values of all (fraction, arm) comparisons on the test split are
Holm-corrected together. An effect is reported as one only when its corrected p < 0.05 and
McNemar's p < 0.05 for most seeds (the seeds agree AND each seed's test images show it).
"""
from __future__ import annotations

import collections
import os

import numpy as np
from matplotlib.figure import Figure

from braingan import files
from braingan.data import CLASSES, NUM_CLASSES
from braingan.eval import classification
from braingan.eval import report as eval_report
from braingan.eval import seeds as seeds_lib
from braingan.eval import stats
from braingan.study import plan as plan_lib

ALPHA = 0.05
SETS = ('test', 'external')


def _scores(probs: np.ndarray, labels: np.ndarray) -> dict:
  pred = probs.argmax(-1)
  return {'accuracy': stats.metric_value(labels, pred, 'accuracy', NUM_CLASSES),
          'macro_f1': stats.metric_value(labels, pred, 'macro_f1', NUM_CLASSES),
          'pred': pred, 'labels': labels, 'probs': probs}


def collect(workdir: str, cells: list[plan_lib.Cell]) -> tuple[list[dict], list[str]]:
  """(finished classifier cells with their scores, names of the missing ones)."""
  results, missing = [], []
  for cell in cells:
    if cell.kind != 'classifier':
      continue
    folder = plan_lib.cell_dir(workdir, cell.name)
    path = os.path.join(folder, 'predictions.npz')
    if not os.path.exists(os.path.join(folder, 'cell_done.json')) or not os.path.exists(path):
      missing.append(cell.name)
      continue
    with np.load(path) as saved:
      entry = {'name': cell.name, **cell.params,
               **files.read_json(os.path.join(folder, 'cell_done.json'))['result']}
      for s in SETS:
        if f'{s}_probs' in saved:
          entry[s] = _scores(saved[f'{s}_probs'], saved[f'{s}_labels'])
    results.append(entry)
  return results, missing


def _key(r: dict) -> tuple:
  return (r['fraction'], r['per_real'], r['transfer'])


def compare(results: list[dict], main_per_real: float) -> list[dict]:
  """Every arm vs the baseline of its fraction / transfer level, paired by seed."""
  by = collections.defaultdict(dict)
  for r in results:
    by[(r['arm'], _key(r))][r['seed']] = r
  rows = []
  for (arm, key), cells in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    if arm == 'baseline':
      continue
    fraction, per_real, transfer = key
    base = by.get(('baseline', (fraction, main_per_real, transfer)), {})
    seeds = sorted(set(cells) & set(base))
    if not seeds:
      continue
    row = {'arm': arm, 'fraction': fraction, 'per_real': per_real, 'transfer': transfer,
           'seeds': seeds}
    for s in SETS:
      if s not in cells[seeds[0]]:
        continue
      row[s] = {metric: seeds_lib.paired_difference([base[k][s][metric] for k in seeds],
                                                    [cells[k][s][metric] for k in seeds])
                for metric in ('accuracy', 'macro_f1')}
      row[s]['arm_accuracy'] = float(np.mean([cells[k][s]['accuracy'] for k in seeds]))
      row[s]['baseline_accuracy'] = float(np.mean([base[k][s]['accuracy'] for k in seeds]))
      row[s]['mcnemar_p'] = [stats.mcnemar(cells[k][s]['labels'], base[k][s]['pred'],
                                           cells[k][s]['pred'])['p_value'] for k in seeds]
    rows.append(row)
  for s in SETS:
    adjusted = seeds_lib.holm({i: r[s]['accuracy']['p_value'] for i, r in enumerate(rows)
                               if s in r})
    for i, p in adjusted.items():
      rows[i][s]['accuracy']['p_holm'] = p
  return rows


def _verdict(d: dict, mcnemar_p: list[float] | None = None) -> str:
  """'higher' / 'lower' only when the Holm-corrected test over seeds is below ALPHA AND McNemar's
  test on the test images is below ALPHA for a majority of the seeds; else 'no evidence'."""
  p = d.get('p_holm')
  if p is None:
    return 'one seed: no test'
  images_agree = mcnemar_p is None or sum(x < ALPHA for x in mcnemar_p) > len(mcnemar_p) / 2
  if p < ALPHA and images_agree:
    return 'higher' if d['mean'] > 0 else 'lower'
  return 'no evidence'


def _pp(x) -> str:
  return 'n/a' if x is None else f'{100 * x:+.1f}'


def _interval(d: dict) -> str:
  return f'{_pp(d["mean"])} [{_pp(d["low"])}, {_pp(d["high"])}]'


def _p(x) -> str:
  return 'n/a' if x is None else ('<0.001' if x < 0.001 else f'{x:.3f}')


def verdict_table(rows: list[dict], main_per_real: float) -> list[str]:
  header = ['fraction', 'arm', 'seeds', 'test acc (arm / baseline)',
            'Δ accuracy pp [95% CI]', 'p (t, seeds)', 'p Holm', 'verdict',
            'Δ macro-F1 pp [95% CI]', 'McNemar p per seed', 'external Δ acc pp [CI], p Holm']
  out = []
  for r in rows:
    if r['per_real'] != main_per_real or 'test' not in r:
      continue
    t = r['test']
    ext = r.get('external')
    ext_text = (f'{_interval(ext["accuracy"])}, {_p(ext["accuracy"].get("p_holm"))}'
                if ext else 'not given')
    out.append([f'{r["fraction"]:g}', r['arm'] + ('' if r['transfer'] in ('scratch',)
                                                  else f' ({r["transfer"]})'),
                len(r['seeds']), f'{100 * t["arm_accuracy"]:.1f} / '
                f'{100 * t["baseline_accuracy"]:.1f}', _interval(t['accuracy']),
                _p(t['accuracy']['p_value']), _p(t['accuracy'].get('p_holm')),
                _verdict(t['accuracy'], t['mcnemar_p']), _interval(t['macro_f1']),
                ', '.join(_p(p) for p in t['mcnemar_p']), ext_text])
  return eval_report.markdown_table(header, out)


def curve_figure(results: list[dict], path: str) -> str:
  """Test accuracy and macro-F1 vs data fraction, one line per arm, mean and t-interval."""
  fig = Figure(figsize=(11, 4))
  axes = fig.subplots(1, 2)
  arms = sorted({r['arm'] for r in results})
  for ax, metric in zip(axes, ('accuracy', 'macro_f1')):
    for arm in arms:
      points = collections.defaultdict(list)
      for r in results:
        if r['arm'] == arm and 'test' in r:
          points[r['fraction']].append(r['test'][metric])
      xs = sorted(points)
      intervals = [seeds_lib.mean_interval(points[x]) for x in xs]
      half = [(e['high'] - e['mean']) if e['high'] is not None else 0.0 for e in intervals]
      ax.errorbar(xs, [e['mean'] for e in intervals], yerr=half, marker='o', capsize=3,
                  label=arm)
    ax.set_xscale('log')
    ax.set_xlabel('fraction of the training split')
    ax.set_ylabel(f'test {metric.replace("_", "-")}')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  return files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, bbox_inches='tight',
                                                          facecolor='white'))


def per_class_lines(results: list[dict], fraction: float) -> list[str]:
  """Sensitivity / specificity per class and ECE, averaged over seeds, at one fraction."""
  header = ['arm'] + [f'{c} sens / spec' for c in CLASSES] + ['ECE']
  rows = []
  for arm in sorted({r['arm'] for r in results}):
    runs = [r for r in results if r['arm'] == arm and r['fraction'] == fraction and 'test' in r]
    if not runs:
      continue
    m = [classification.classification_metrics(r['test']['labels'], r['test']['probs'], CLASSES)
         for r in runs]
    cells = []
    for c in CLASSES:
      sens = np.mean([x['per_class'][c]['sensitivity'] for x in m])
      spec = np.mean([x['per_class'][c]['specificity'] or 0.0 for x in m])
      cells.append(f'{sens:.2f} / {spec:.2f}')
    rows.append([arm] + cells + [f'{np.mean([x["ece"] for x in m]):.3f}'])
  return eval_report.markdown_table(header, rows)


def write(config, workdir: str, cells: list[plan_lib.Cell]) -> dict:
  """Writes <workdir>/report/report.md, metrics.json and figures; returns the summary."""
  from braingan.study import report_sections  # pylint: disable=import-outside-toplevel
  out = plan_lib.cell_dir(workdir, 'report')
  results, missing = collect(workdir, cells)
  rows = compare(results, config.synthetic_per_real)
  figures = {}
  if results:
    figures['curve'] = curve_figure(results, os.path.join(out, 'fraction_curve.png'))
  lines = report_sections.document(config, workdir, cells, results, rows, missing, figures)
  files.write_text(os.path.join(out, 'report.md'), '\n'.join(lines))
  summary = {'cells_done': len(results), 'cells_missing': missing,
             'comparisons': [{k: v for k, v in r.items()} for r in rows]}
  files.write_json(os.path.join(out, 'metrics.json'), summary, default=float)
  return {'cells_done': len(results), 'cells_missing': len(missing)}
