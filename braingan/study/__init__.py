"""The study: does conditional-GAN augmentation help a classifier when labelled data is scarce?

  python -m braingan.study --config=configs/study_reduced.py --workdir=runs/study \
      [--cells='clf/augmented_*'] [--list]

The study is a list of cells (braingan/study/plan.py): the data prepared once, a judge
classifier, per data fraction a conditioned GAN with its generated pool and conditioning
metrics, one classifier per (arm, fraction, seed, ...), and the report. Each cell is
idempotent: a finished cell (its `cell_done.json` matches its settings) is skipped, an
interrupted one resumes from its checkpoint, one with other settings is refused. `--cells`
selects cells by name pattern, so a cluster job array can run them in parallel (each cell
checks that the cells it needs are finished). The report aggregates the classifier cells that
exist and names those that are missing.
"""
from __future__ import annotations

import fnmatch
import json
import os
import time
from typing import Any

import numpy as np

from braingan import files
from braingan.study import plan as plan_lib

DONE = 'cell_done.json'


def _settings(cell: plan_lib.Cell) -> dict:
  config = cell.config.to_dict() if cell.config is not None else {}
  return json.loads(json.dumps({'config': config, 'params': cell.params}, default=str))


def _differences(stored: dict, now: dict) -> list[str]:
  """Dotted names of the fields that differ between two settings dicts."""
  from braingan import config_check  # pylint: disable=import-outside-toplevel
  a, b = config_check.flatten(stored), config_check.flatten(now)
  a.update({k: v for k, v in b.items()
            if k not in a and config_check.is_added_default(k.removeprefix('config.'), v)})
  return [k if (k in a) == (k in b) else f'{k} ({"new" if k not in a else "removed"})'
          for k in sorted(set(a) | set(b)) if (k in a) != (k in b) or a[k] != b[k]]


def is_done(workdir: str, cell: plan_lib.Cell) -> bool:
  """True when the cell finished with these settings; an error naming the fields when with
  others."""
  path = os.path.join(plan_lib.cell_dir(workdir, cell.name), DONE)
  if not os.path.exists(path):
    return False
  differences = _differences(files.read_json(path)['settings'], _settings(cell))
  if differences:
    shown = ', '.join(differences[:6]) + (' ...' if len(differences) > 6 else '')
    raise ValueError(f'{os.path.dirname(path)} holds a finished cell {cell.name!r} with other '
                     f'settings ({shown}); use a new --workdir, or the config it was run with.')
  return True


def _weights_available(config) -> bool:
  from braingan.models import pretrained  # pylint: disable=import-outside-toplevel
  if not any(plan_lib.TRANSFER[t][0] != 'none' for t in config.transfer):
    return False
  try:
    pretrained.resolve_imagenet_weights(config.classifier.model.pretrained_path, download=False)
  except FileNotFoundError:
    return False
  return True


def _steps_per_epoch(config, workdir: str) -> int:
  summary = files.read_json(os.path.join(plan_lib.cell_dir(workdir, 'data'),
                                         'data_summary.json'))
  train = sum(summary['counts']['train'].values())
  return max(1, train // config.classifier.batch_size)


def cells(config, workdir: str) -> list[plan_lib.Cell]:
  """The plan (the data must be prepared: the step count comes from its training split)."""
  return plan_lib.plan(config, workdir, _steps_per_epoch(config, workdir),
                       _weights_available(config))


def evaluate_classifier(run_dir: str, workdir: str, test_dir: str) -> dict:
  """The kept checkpoint's predictions on the test split (and the external folder)."""
  from braingan import inference  # pylint: disable=import-outside-toplevel
  from braingan.eval import inputs  # pylint: disable=import-outside-toplevel
  from braingan.study import external  # pylint: disable=import-outside-toplevel
  model = inference.load_classifier(run_dir)
  test = inputs.from_manifest(os.path.join(plan_lib.cell_dir(workdir, 'data'), 'manifest.csv'),
                              'test', model.config.data)
  out = {'test_probs': inputs.batched(model.probs, test.images, 64),
         'test_labels': test.labels}
  if test_dir:
    images, labels = external.images(workdir, test_dir, model.config.data)
    out.update(external_probs=inputs.batched(model.probs, images, 64), external_labels=labels)
  np.savez_compressed(os.path.join(run_dir, 'predictions.npz'), **out)
  final = files.read_json(os.path.join(run_dir, 'final_metrics.json'))
  # best_* when the run restored its best epoch, else `epoch` (the last, restore_best='none').
  return {k: final[k] for k in ('train_steps', 'best_step', 'best_epoch', 'epoch',
                                'val_accuracy', 'val_loss') if k in final}


def _run(cell: plan_lib.Cell, config, workdir: str) -> Any:
  # Imported here so `--help`, `--list` and config errors do not pay for JAX/TF start-up.
  from braingan import generate  # pylint: disable=import-outside-toplevel
  from braingan import train  # pylint: disable=import-outside-toplevel
  from braingan.data import pipeline  # pylint: disable=import-outside-toplevel
  from braingan.study import gan_eval, report  # pylint: disable=import-outside-toplevel
  out = plan_lib.cell_dir(workdir, cell.name)
  if cell.kind == 'prepare':
    return pipeline.load(config.data, out, config.seed).summary['counts']
  if cell.kind in ('judge', 'classifier', 'gan'):
    final = train.train_and_evaluate(cell.config, out)
    if cell.kind == 'classifier':
      return evaluate_classifier(out, workdir, config.test_dir)
    return {k: v for k, v in final.items() if isinstance(v, (int, float))}
  if cell.kind == 'generate':
    gan_dir = plan_lib.cell_dir(workdir, cell.needs[0])
    return generate.generate(gan_dir, out, cell.params['per_class'], seed=cell.params['seed'])
  if cell.kind == 'gan_eval':
    return gan_eval.run(config, workdir, cell)
  if cell.kind == 'audit':
    return gan_eval.audit(config, workdir, cell)
  if cell.kind == 'report':
    return report.write(config, workdir, cells(config, workdir))
  if cell.kind == 'ablation_report':
    from braingan.study import ablation  # pylint: disable=import-outside-toplevel
    return ablation.write_report(config, workdir)
  raise ValueError(f'unknown cell kind {cell.kind!r}')


def run_study(config, workdir: str, patterns: tuple[str, ...] = ()) -> dict:
  """Runs the selected cells (all by default) that are not finished; returns their timings."""
  return run_cells(config, workdir, cells, patterns)


def run_cells(config, workdir: str, plan_fn, patterns: tuple[str, ...] = ()) -> dict:
  """Runs the cells of plan_fn(config, workdir) selected by `patterns` (fnmatch; all by
  default) that are not finished, after preparing the data; returns their timings."""
  from braingan import config_check  # pylint: disable=import-outside-toplevel
  prepare = plan_lib.data_cell(config)
  if not is_done(workdir, prepare):
    _execute(prepare, config, workdir)
  plan = plan_fn(config, workdir)
  for cell in plan:
    if cell.config is not None:
      config_check.validate(cell.config)   # every job's config, before any work
  todo = [c for c in plan if not patterns or any(fnmatch.fnmatch(c.name, p) for p in patterns)]
  by_name = {c.name: c for c in plan}
  # Only the selected cells and what they need are looked at: once before any work (a cell
  # finished with other settings raises here), then again as each is reached (another process
  # may have finished it meanwhile: a job array over --cells).
  finished = lambda name: name == 'data' or is_done(workdir, by_name[name])  # noqa: E731
  wanted = {n for cell in todo for n in (cell.name, *cell.needs)}
  for cell in plan:
    if cell.name in wanted:
      finished(cell.name)
  timings = {}
  for cell in todo:
    if not cell.kind.endswith('report') and finished(cell.name):
      print(f'[study] {cell.name}: already complete', flush=True)
      continue
    missing = [n for n in cell.needs if not finished(n)]
    if missing:
      raise ValueError(f'cell {cell.name!r} needs {missing} finished first (run them, or '
                       'run without --cells).')
    timings[cell.name] = _execute(cell, config, workdir)
  return timings


def _execute(cell: plan_lib.Cell, config, workdir: str) -> float:
  print(f'[study] {cell.name}: running', flush=True)
  start = time.time()
  result = _run(cell, config, workdir)
  seconds = round(time.time() - start, 1)
  files.write_json(os.path.join(plan_lib.cell_dir(workdir, cell.name), DONE),
                   {'cell': cell.name, 'settings': _settings(cell), 'seconds': seconds,
                    'result': result}, default=str)
  print(f'[study] {cell.name}: done in {seconds} s', flush=True)
  return seconds
