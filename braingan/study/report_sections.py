"""The sections of the study report, in the order a reviewer reads them."""
from __future__ import annotations

import os

from braingan import files
from braingan.data import CLASSES
from braingan.eval import report as eval_report
from braingan.study import gan_eval
from braingan.study import plan as plan_lib
from braingan.study import report as rep


def _plain_verdict(rows: list[dict], config) -> list[str]:
  """What the study can and cannot conclude, from the Holm-corrected comparisons."""
  lines = ['## Verdict', '']
  main = [r for r in rows if r['per_real'] == config.synthetic_per_real and 'test' in r]
  if not main:
    return lines + ['No comparison is possible yet: the baseline and an arm need at least '
                    'one seed each at the same fraction.', '']
  for arm in ('augmented', 'shuffled', 'classic', 'balanced', 'cas', 'augmented_ganforge'):
    arm_rows = [r for r in main if r['arm'] == arm]
    if not arm_rows:
      continue
    parts = []
    for r in arm_rows:
      d = r['test']['accuracy']
      verdict = rep._verdict(d, r['test']['mcnemar_p'])   # pylint: disable=protected-access
      parts.append(f'{r["fraction"]:g} of the data: {rep._interval(d)} pp '
                   f'({verdict}; Holm p {rep._p(d.get("p_holm"))})')
    lines.append(f'- **{arm}** vs baseline ({plan_lib.ARMS[arm]}), test accuracy: ' +
                 '; '.join(parts) + '.')
  helped = [r for r in main if r['arm'] == 'augmented' and
            rep._verdict(r['test']['accuracy'], r['test']['mcnemar_p']) == 'higher']
  lines += ['', ('GAN augmentation raised test accuracy beyond seed noise at: ' +
                 ', '.join(f'{r["fraction"]:g}' for r in helped) + '.') if helped else
            'GAN augmentation did not raise test accuracy beyond seed noise at any fraction '
            'once every arm had the same number of optimizer steps.', '',
            'What this can conclude: differences between arms trained with the same steps, '
            'data split and seeds, on held-out test images, corrected for the number of '
            'comparisons. What it cannot: effects smaller than the seed-to-seed spread (see the '
            'intervals), effects of a longer training budget, of other architectures or of '
            'pretrained weights when they were not available, or performance on scanners and '
            'populations unlike this data set (the external column, when present, is one such '
            'check).', '']
  return lines


def _ratio_lines(rows: list[dict], config) -> list[str]:
  sweep = [r for r in rows if r['arm'] == 'augmented' and 'test' in r and
           r['fraction'] == config.ratio_sweep.fraction]
  if len({r['per_real'] for r in sweep}) < 2:
    return []
  table = [[f'{r["per_real"]:g}', f'{plan_lib.synthetic_share(r["per_real"]):.2f}',
            rep._interval(r['test']['accuracy']), rep._p(r['test']['accuracy']['p_value'])]
           for r in sorted(sweep, key=lambda r: r['per_real'])]
  return ['## Synthetic ratio', '', f'Augmented vs baseline at fraction '
          f'{config.ratio_sweep.fraction:g} (p uncorrected for the ratios other than the '
          'main one).', ''] + eval_report.markdown_table(
              ['synthetic per real', 'batch share', 'Δ accuracy pp [95% CI]', 'p (t)'], table)


def _gan_lines(config, workdir: str, cells: list[plan_lib.Cell]) -> list[str]:
  lines = ['## The GANs: do their images carry their class?', '',
           'A judge classifier (its own run and seed, trained on the real training split only) '
           'labels 100s of generated images per class. FID/KID are computed in the judge\'s '
           'feature space (ImageNet Inception weights are not available offline) between sets of '
           'equal size; they compare GANs within this study only.', '']
  kept = []
  for cell in cells:
    path = os.path.join(plan_lib.cell_dir(workdir, cell.name), 'final_metrics.json')
    final = files.read_json(path) if cell.kind == 'gan' and os.path.exists(path) else {}
    if 'best_epoch' in final:
      kept.append(f'{cell.name} epoch {final["best_epoch"]} of {final["epochs_run"]}')
  if kept:
    lines += ['Generators kept at their best judge check (config.select_generator), not the '
              f'last epoch: {", ".join(kept)}. The same judge chose them, so their agreement '
              'below leans in their favour; the synthetic-only (CAS) arm does not.', '']
  table, grids = [], []
  for cell in cells:
    if cell.kind != 'gan_eval':
      continue
    path = os.path.join(plan_lib.cell_dir(workdir, cell.name), 'conditioning.json')
    if not os.path.exists(path):
      table.append([cell.name, 'missing'] + [''] * 6)
      continue
    m = files.read_json(path)
    agree = m['agreement']
    per_class = ', '.join(f'{c[:4]} {100 * agree["per_class"][c]["point"]:.0f}'
                          for c in CLASSES if c in agree['per_class'])
    mem = m['memorisation']['pixels']
    table.append([cell.name.split('/')[1], f'{100 * agree["overall"]["point"]:.1f} '
                  f'[{100 * agree["overall"]["low"]:.1f}, {100 * agree["overall"]["high"]:.1f}]',
                  per_class, f'{100 * m["judge_val_accuracy"]:.1f}',
                  f'{m["agreement_over_judge"]:.2f}', f'{m["fid"]:.1f}' if m['fid'] else 'n/a',
                  ', '.join(f'{c[:4]} {m["per_class"][c]["fid"]:.0f}' for c in CLASSES
                            if m['per_class'][c].get('fid')),
                  f'{100 * mem["fraction_below"]:.1f} % (median {mem["gen_nn_median"]:.3f} vs '
                  f'{mem["real_nn_median"]:.3f})'])
    grids += [f'![{cell.name}](../{m["figures"]["samples"]})', '']
  lines += eval_report.markdown_table(
      ['GAN (fraction)', 'class agreement % [95% CI] (chance 25)', 'per class %',
       'judge val acc %', 'agreement / judge', 'FID', 'intra-class FID',
       'closer to a train image than 5 % of real val (pixels)'], table)
  if grids:   # the real reference only where there are generated grids to hold against it
    lines += (gan_eval.real_reference_lines(config, workdir, plan_lib.cell_dir(workdir, 'report'))
              + ['### Generated images (rows: intended class)', ''] + grids)
  return lines


def _data_lines(workdir: str, config) -> list[str]:
  summary = files.read_json(os.path.join(plan_lib.cell_dir(workdir, 'data'),
                                         'data_summary.json'))
  counts = summary['counts']
  rows = [[c] + [counts[s][c] for s in ('train', 'validation', 'test', 'skipped')]
          for c in CLASSES]
  lines = ['## Data', '', f'{summary["files"]} files in {config.data.data_dir}; split by unit '
           f'(seed {config.data.split_seed}): exact duplicates '
           f'{summary["exact_duplicate_extra_copies"]} extra copies in '
           f'{summary["exact_duplicate_groups"]} groups and near duplicates skipped; '
           f'{summary["related_images"]} related images (flipped / cropped / rotated copies, '
           f'neighbouring slices) kept in {summary["related_units"]} units that never straddle '
           'the split. A few merged units:', '']
  lines += [f'- {", ".join(os.path.basename(p) for p in unit)}'
            for unit in summary['related_examples'][:4]]
  lines += [''] + eval_report.markdown_table(
      ['class', 'train', 'validation', 'test', 'skipped'], rows)
  overlap = os.path.join(plan_lib.cell_dir(workdir, 'external'), 'overlap.json')
  if os.path.exists(overlap):
    o = files.read_json(overlap)
    lines += [f'External test folder {o["test_dir"]}: {o["images"]} images, {o["overlapping"]} '
              f'left out as overlapping the study data ({o["by_kind"]}); {o["kept"]} scored.', '']
  return lines


def document(config, workdir: str, cells, results, rows, missing, figures) -> list[str]:
  steps = sorted({r.get('train_steps') for r in results if r.get('train_steps')})
  lines = ['# Does conditional-GAN augmentation help a brain-MRI classifier?', '',
           f'Seeds {tuple(config.seeds)}; fractions {tuple(config.fractions)}; arms '
           f'{tuple(config.arms)}; {config.synthetic_per_real:g} synthetic image per real one '
           f'(batch share {plan_lib.synthetic_share(config.synthetic_per_real):.2f}). '
           f'Every classifier cell took the same number of optimizer steps: '
           f'{", ".join(str(s) for s in steps) or "n/a"} ({config.classifier.epochs} epochs x '
           'steps per epoch from the full training split), early stopping off, the checkpoint '
           'with the lowest validation loss kept. All scores are on the test split, which '
           'nothing was trained or selected on.', '']
  if missing:
    lines += [f'**Missing cells ({len(missing)})**: ' + ', '.join(missing) +
              '. The tables use the cells that exist.', '']
  lines += _plain_verdict(rows, config)
  lines += ['## Verdict table (test split)', ''] + rep.verdict_table(rows,
                                                                      config.synthetic_per_real)
  if 'curve' in figures:
    lines += ['## Data-fraction curve', '', '![fraction curve](fraction_curve.png)', '',
              '*Test accuracy and macro-F1 vs the share of the training split, mean over seeds '
              'with 95 % t-intervals.*', '']
  lines += _ratio_lines(rows, config)
  lines += _gan_lines(config, workdir, cells)
  if results:
    top = max(r['fraction'] for r in results)
    lines += [f'## Per class (fraction {top:g}, mean over seeds)', ''] + rep.per_class_lines(
        results, top)
  lines += _data_lines(workdir, config)
  lines += ['## Arms', ''] + [f'- **{a}**: {plan_lib.ARMS[a]}' for a in config.arms] + ['']
  return lines + ['---', 'All numbers are also in `metrics.json` next to this file.', '']

