"""The whole study in one command, each stage resumable:

  cGAN training -> generation -> baseline classifier (real) -> augmented classifier
  (real + synthetic) -> [CAS classifier (synthetic only)] -> evaluation report

  python -m braingan.study --config=configs/study_demo.py --workdir=runs/demo

One workdir holds a sub-folder per stage. A stage whose output is complete is skipped; an
interrupted stage resumes from its own last checkpoint. The data is prepared once, in
<workdir>/data, and every stage on real images reads that copy (one manifest, one split).
Each stage's config is composed from the study's: its `gan` or `classifier` section plus the
study's one `data` section and seed.
"""
from __future__ import annotations

import json
import os
import time

from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from braingan import cli
from braingan import files

STAGES = ('prepare', 'gan', 'generate', 'baseline', 'augmented', 'cas', 'evaluate')


def stage_dirs(workdir: str) -> dict[str, str]:
  names = {'prepare': 'data', 'gan': 'cgan', 'generate': 'synthetic', 'baseline': 'clf_real',
           'augmented': 'clf_aug', 'cas': 'clf_cas', 'evaluate': 'report'}
  return {stage: os.path.join(workdir, name) for stage, name in names.items()}


def compose(section: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
            prepared_dir: str) -> ml_collections.ConfigDict:
  """A stage's full config: the study's `gan` or `classifier` section + its data and seed."""
  stage_config = ml_collections.ConfigDict(section.to_dict())
  stage_config.data = ml_collections.ConfigDict(config.data.to_dict())
  stage_config.data.prepared_dir = os.path.abspath(prepared_dir)
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
  done = files.read_json(path)
  if done['settings'] != _stage_record(stage, settings)['settings']:
    raise ValueError(f'{directory} holds a finished {stage!r} stage run with other settings; '
                     'use a new --workdir, or the config it was run with.')
  return True


def _mark_done(stage: str, directory: str, settings: dict, seconds: float) -> None:
  os.makedirs(directory, exist_ok=True)
  record = {**_stage_record(stage, settings), 'seconds': round(seconds, 1)}
  files.write_json(os.path.join(directory, DONE_FILE), record)


def run_study(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every stage not yet complete; returns the evaluation's metrics."""
  # Imported here so `--help` and config errors do not pay for JAX/TF start-up.
  from braingan import config_check  # pylint: disable=g-import-not-at-top
  from braingan import generate  # pylint: disable=g-import-not-at-top
  from braingan import train  # pylint: disable=g-import-not-at-top
  from braingan.data import pipeline  # pylint: disable=g-import-not-at-top
  from braingan.eval import runner  # pylint: disable=g-import-not-at-top

  dirs = stage_dirs(workdir)
  gan_config = compose(config.gan, config, dirs['prepare'])
  gan_config.generate.per_class = 0  # The study's own stage generates, into its own folder.
  baseline_config = compose(config.classifier, config, dirs['prepare'])
  augmented_config = compose(config.classifier, config, dirs['prepare'])
  augmented_config.data.synthetic_dir = os.path.abspath(dirs['generate'])
  augmented_config.data.synthetic_ratio = config.synthetic_ratio
  cas_config = compose(config.classifier, config, dirs['cas'])   # its own data: the synthetic set
  cas_config.data.data_dir = os.path.abspath(dirs['generate'])
  cas_config.epochs = config.cas_epochs
  for stage_config in (gan_config, baseline_config, augmented_config, cas_config):
    config_check.validate(stage_config)   # every stage's config, before any work

  actions = {
      'prepare': lambda: pipeline.load(config.data, dirs['prepare'], config.seed),
      'gan': lambda: train.train_and_evaluate(gan_config, dirs['gan']),
      'generate': lambda: generate.generate(dirs['gan'], dirs['generate'],
                                            config.synthetic_per_class, seed=config.seed),
      'baseline': lambda: train.train_and_evaluate(baseline_config, dirs['baseline']),
      'augmented': lambda: train.train_and_evaluate(augmented_config, dirs['augmented']),
      'cas': lambda: train.train_and_evaluate(cas_config, dirs['cas']),
      'evaluate': lambda: runner.evaluate(
          config.evaluate, baseline=dirs['baseline'], augmented=dirs['augmented'],
          out=dirs['evaluate'], synthetic_dir=dirs['generate'],
          cas=dirs['cas'] if config.cas_epochs > 0 else '', test_dir=config.test_dir),
  }
  settings = {
      'prepare': config.data.to_dict(),
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
  metrics = files.read_json(os.path.join(dirs['evaluate'], 'metrics.json'))
  if timings:
    with open(os.path.join(workdir, 'study_timings.json'), 'a', encoding='utf-8') as f:
      f.write(json.dumps(timings) + '\n')
  return metrics


_CONFIG = config_flags.DEFINE_config_file('config', 'configs/study.py', 'Study config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder holding every stage.', required=True)


cli.define_flags()


def main(argv):
  del argv
  cli.start(flags.FLAGS)
  from braingan.eval import report  # pylint: disable=g-import-not-at-top
  metrics = cli.run_training(run_study, _CONFIG.value, _WORKDIR.value, show_final=False)
  print(report.verdict(metrics))
  print(f'Report: {stage_dirs(_WORKDIR.value)["evaluate"]}/report.md')


if __name__ == '__main__':
  cli.run(main)
