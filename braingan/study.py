"""The whole study in one command, each stage resumable:

  cGAN training -> generation -> baseline classifier (real) -> augmented classifier
  (real + synthetic) -> [CAS classifier (synthetic only)] -> evaluation report

  python -m braingan.study --config=configs/study_demo.py --workdir=runs/demo

One workdir holds a sub-folder per stage. A stage whose output is complete is skipped; an
interrupted stage resumes from its own last checkpoint. Every stage gets the same data section
and seed, so every stage's manifest.csv is the same split (the evaluator checks the digests).
"""
from __future__ import annotations

import json
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TF loads: no C++ INFO lines.

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from braingan import hostmem

STAGES = ('gan', 'generate', 'baseline', 'augmented', 'cas', 'evaluate')


def stage_dirs(workdir: str) -> dict[str, str]:
  names = {'gan': 'cgan', 'generate': 'synthetic', 'baseline': 'clf_real',
           'augmented': 'clf_aug', 'cas': 'clf_cas', 'evaluate': 'report'}
  return {stage: os.path.join(workdir, name) for stage, name in names.items()}


def _with_shared(stage_config: ml_collections.ConfigDict, config) -> ml_collections.ConfigDict:
  """A stage's config with the study's data section and seed (one split for every stage)."""
  stage_config = ml_collections.ConfigDict(stage_config.to_dict())
  stage_config.data = ml_collections.ConfigDict(config.data.to_dict())
  stage_config.seed = config.seed
  return stage_config


DONE_FILE = 'study_stage_done.json'


def _stage_record(stage: str, settings: dict) -> dict:
  return {'stage': stage, 'settings': json.loads(json.dumps(settings, default=str))}


def _is_done(stage: str, directory: str, settings: dict) -> bool:
  """True when the stage finished before with these settings; an error if with others."""
  path = os.path.join(directory, DONE_FILE)
  if not os.path.exists(path):
    return False
  with open(path, encoding='utf-8') as f:
    done = json.load(f)
  if done['settings'] != _stage_record(stage, settings)['settings']:
    raise ValueError(f'{directory} holds a finished {stage!r} stage run with other settings; '
                     'use a new --workdir, or the config it was run with.')
  return True


def _mark_done(stage: str, directory: str, settings: dict, seconds: float) -> None:
  os.makedirs(directory, exist_ok=True)
  record = {**_stage_record(stage, settings), 'seconds': round(seconds, 1)}
  tmp = os.path.join(directory, DONE_FILE + '.tmp')
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=2)
  os.replace(tmp, os.path.join(directory, DONE_FILE))


def run_study(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every stage not yet complete; returns the evaluation's metrics."""
  # Imported here so `--help` and config errors do not pay for JAX/TF start-up.
  from braingan import generate  # pylint: disable=g-import-not-at-top
  from braingan.eval import runner  # pylint: disable=g-import-not-at-top
  from braingan.train import classifier  # pylint: disable=g-import-not-at-top
  from braingan.train import gan  # pylint: disable=g-import-not-at-top

  dirs = stage_dirs(workdir)
  gan_config = _with_shared(config.gan, config)
  baseline_config = _with_shared(config.classifier, config)
  augmented_config = _with_shared(config.classifier, config)
  augmented_config.synthetic_dir = os.path.abspath(dirs['generate'])
  augmented_config.synthetic_ratio = config.synthetic_ratio
  augmented_config.epochs = config.augmented_epochs
  cas_config = _with_shared(config.classifier, config)
  cas_config.data.data_dir = os.path.abspath(dirs['generate'])
  cas_config.epochs = config.cas_epochs

  gan_config.generate_per_class = 0  # The study's own stage generates, into its own folder.
  actions = {
      'gan': lambda: gan.train(gan_config, dirs['gan']),
      'generate': lambda: generate.generate(dirs['gan'], dirs['generate'],
                                            config.synthetic_per_class, seed=config.seed),
      'baseline': lambda: classifier.train_and_evaluate(baseline_config, dirs['baseline']),
      'augmented': lambda: classifier.train_and_evaluate(augmented_config, dirs['augmented']),
      'cas': lambda: classifier.train_and_evaluate(cas_config, dirs['cas']),
      'evaluate': lambda: runner.evaluate(
          config.evaluate, baseline=dirs['baseline'], augmented=dirs['augmented'],
          out=dirs['evaluate'], synthetic_dir=dirs['generate'],
          cas=dirs['cas'] if config.cas_epochs > 0 else '', test_dir=config.test_dir),
  }
  settings = {
      'gan': gan_config.to_dict(),
      'generate': {'per_class': config.synthetic_per_class, 'seed': config.seed},
      'baseline': baseline_config.to_dict(), 'augmented': augmented_config.to_dict(),
      'cas': cas_config.to_dict(),
      'evaluate': {**config.evaluate.to_dict(), 'test_dir': config.test_dir},
  }
  timings = {}
  for stage in STAGES:
    if stage == 'cas' and config.cas_epochs <= 0:
      continue
    if _is_done(stage, dirs[stage], settings[stage]):
      logging.info('Stage %s: complete in %s, skipped.', stage, dirs[stage])
      print(f'[study] {stage}: already complete ({dirs[stage]})', flush=True)
      continue
    print(f'[study] {stage}: running -> {dirs[stage]}', flush=True)
    start = time.time()
    actions[stage]()
    timings[stage] = round(time.time() - start, 1)
    _mark_done(stage, dirs[stage], settings[stage], timings[stage])
    print(f'[study] {stage}: done in {timings[stage]} s', flush=True)
  with open(os.path.join(dirs['evaluate'], 'metrics.json'), encoding='utf-8') as f:
    metrics = json.load(f)
  if timings:
    with open(os.path.join(workdir, 'study_timings.json'), 'a', encoding='utf-8') as f:
      f.write(json.dumps(timings) + '\n')
  return metrics


_CONFIG = config_flags.DEFINE_config_file('config', 'configs/study.py', 'Study config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder holding every stage.', required=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax and TFDS log every file at INFO.
  from braingan.eval import report  # pylint: disable=g-import-not-at-top
  metrics = run_study(_CONFIG.value, _WORKDIR.value)
  print(report.verdict(metrics))
  print(f'Report: {stage_dirs(_WORKDIR.value)["evaluate"]}/report.md')


if __name__ == '__main__':
  hostmem.ensure_hugepage_malloc()  # re-executes once; see braingan/hostmem.py
  app.run(main)
