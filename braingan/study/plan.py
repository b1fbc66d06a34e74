"""The study's cells: what runs, in which order, with which config.

A cell is one independent, idempotent unit of work with its own folder under the study
directory: preparing the data, training the judge, one GAN per data fraction, its generated
pool and its conditioning metrics, one classifier per (arm, fraction, seed [, ratio, transfer]),
and the report. Every classifier cell takes the same number of optimizer steps: an epoch is
`steps_per_epoch` steps, fixed for the whole study from the FULL training split (so a 10 %
cell takes as many steps as a 100 % one and every arm as many as the baseline), early stopping
is off, and the checkpoint with the lowest validation loss is kept.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections

ARMS = {
    'baseline': 'real images only',
    'augmented': 'real + synthetic images of the conditioned GAN',
    'classic': 'real images with classic augmentation (flip, rotation/zoom, intensity)',
    'shuffled': 'real + the same synthetic images with their labels shuffled',
    'balanced': "real images only, sampled with the augmented stream's class mix",
    'cas': 'synthetic images only (Classification Accuracy Score)',
    'augmented_ganforge': 'real + synthetic images of the GANForge reference GAN',
}
# Transfer levels: (pretrained weights, frozen layers).
TRANSFER = {'scratch': ('none', 'none'), 'none': ('imagenet', 'none'),
            'keras15': ('imagenet', 'keras15'), 'head': ('imagenet', 'head')}
GANS = {'conditioned': 'gan', 'ganforge': 'reference_gan'}   # preset -> config section


@dataclasses.dataclass(frozen=True)
class Cell:
  name: str                       # e.g. 'clf/augmented_f0.25_s1'; also its folder
  kind: str                       # prepare | judge | gan | generate | gan_eval | classifier | report
  needs: tuple[str, ...]
  config: Any = None              # the job config (classifier, GAN) or None
  params: dict = dataclasses.field(default_factory=dict)


def data_cell(config) -> Cell:
  return Cell('data', 'prepare', (), params={'data': config.data.to_dict()})


def synthetic_share(per_real: float) -> float:
  """Synthetic images per real image -> the synthetic share of a training batch."""
  return per_real / (1.0 + per_real)


def cell_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, *name.split('/'))


def _compose(section, config, workdir: str) -> ml_collections.ConfigDict:
  job = ml_collections.ConfigDict(section.to_dict())
  job.data = ml_collections.ConfigDict(config.data.to_dict())
  job.data.prepared_dir = os.path.abspath(cell_dir(workdir, 'data'))
  job.data.subset_seed = config.data.split_seed   # one subset per fraction, for every seed
  job.seed = section.seed if 'seed' in section else config.seed   # a variant may pin its own
  return job


def _fraction_tag(fraction: float) -> str:
  return f'f{fraction:g}'


def transfer_levels(config, weights_available: bool) -> tuple[str, ...]:
  """The configured levels, or only 'scratch' when pretrained weights are not available."""
  levels = tuple(config.transfer)
  unknown = [t for t in levels if t not in TRANSFER]
  if unknown:
    raise ValueError(f'config.transfer: unknown levels {unknown}; expected {sorted(TRANSFER)}.')
  if not weights_available and any(TRANSFER[t][0] != 'none' for t in levels):
    return ('scratch',)
  return levels


def classifier_config(config, workdir: str, *, arm: str, fraction: float, seed: int,
                      transfer: str, steps_per_epoch: int, per_real: float):
  job = _compose(config.classifier, config, workdir)
  job.seed = seed
  job.data.fraction = fraction
  job.steps_per_epoch = steps_per_epoch
  job.early_stopping_patience = job.epochs + 1     # equal steps: never stop early
  job.model.pretrained, job.model.freeze = TRANSFER[transfer]
  share = synthetic_share(per_real)
  gan = 'ganforge' if arm == 'augmented_ganforge' else 'conditioned'
  pool = os.path.abspath(cell_dir(workdir, f'generate/{gan}_{_fraction_tag(fraction)}'))
  if arm in ('augmented', 'shuffled', 'augmented_ganforge'):
    job.data.synthetic_dir, job.data.synthetic_ratio = pool, share
  if arm == 'shuffled':
    job.data.synthetic_labels = 'shuffled'
  if arm == 'cas':
    job.data.synthetic_dir, job.data.synthetic_ratio = pool, 1.0
  if arm == 'classic':
    job.data.augment = True
  if arm == 'balanced':
    job.data.balance = share
  return job, (f'generate/{gan}_{_fraction_tag(fraction)}' if job.data.synthetic_dir else None)


def judge_config(config, workdir: str, transfer: str) -> ml_collections.ConfigDict:
  """The judge: the classifier section with the judge's own seed, epochs and BatchNorm
  statistics, at transfer level `transfer`."""
  judge = _compose(config.classifier, config, workdir)
  judge.seed = config.judge_seed
  judge.epochs = config.judge_epochs
  judge.bn_recalibration_batches = config.judge_bn_recalibration_batches
  judge.model.pretrained, judge.model.freeze = TRANSFER[transfer]
  return judge


def plan(config, workdir: str, steps_per_epoch: int, weights_available: bool) -> list[Cell]:
  """Every cell of the study, dependencies first."""
  unknown = [a for a in config.arms if a not in ARMS]
  if unknown or 'baseline' not in config.arms:
    raise ValueError(f'config.arms={tuple(config.arms)}: needs baseline; unknown {unknown}; '
                     f'known: {sorted(ARMS)}.')
  cells = [data_cell(config)]
  judge = judge_config(config, workdir, transfer_levels(config, weights_available)[0])
  cells.append(Cell('judge', 'judge', ('data',), judge))
  presets = ['conditioned'] + (['ganforge'] if 'augmented_ganforge' in config.arms else [])
  needs_gan = {'augmented', 'shuffled', 'cas', 'augmented_ganforge'} & set(config.arms)
  fractions = sorted(set(config.fractions) | ({config.ratio_sweep.fraction}
                                              if config.ratio_sweep.per_real else set()))
  for preset in presets if needs_gan or config.ratio_sweep.per_real else []:
    for fraction in fractions:
      tag = f'{preset}_{_fraction_tag(fraction)}'
      gan = _compose(config[GANS[preset]], config, workdir)
      gan.data.fraction = fraction
      gan.generate.per_class = 0
      # Conditioning metrics while it trains (TensorBoard, the epoch lines), by the judge.
      gan.judge.run_dir = os.path.abspath(cell_dir(workdir, 'judge'))
      cells += [Cell(f'gan/{tag}', 'gan', ('data', 'judge'), gan),
                Cell(f'generate/{tag}', 'generate', (f'gan/{tag}',),
                     params={'per_class': config.synthetic_per_class, 'seed': config.seed}),
                Cell(f'gan_eval/{tag}', 'gan_eval', (f'generate/{tag}', 'judge'),
                     params={'per_class': config.evaluate.gan_per_class})]
  runs = [(arm, f, s, config.synthetic_per_real, t)
          for t in transfer_levels(config, weights_available)
          for f in sorted(config.fractions) for arm in config.arms for s in config.seeds]
  runs += [('augmented', config.ratio_sweep.fraction, s, r, transfer_levels(
      config, weights_available)[0]) for r in config.ratio_sweep.per_real for s in config.seeds]
  multiple_transfers = len(transfer_levels(config, weights_available)) > 1
  for arm, fraction, seed, per_real, transfer in runs:
    name = f'clf/{arm}_{_fraction_tag(fraction)}'
    if per_real != config.synthetic_per_real:
      name += f'_r{per_real:g}'
    if multiple_transfers:
      name += f'_t{transfer}'
    name += f'_s{seed}'
    job, pool = classifier_config(config, workdir, arm=arm, fraction=fraction, seed=seed,
                                  transfer=transfer, steps_per_epoch=steps_per_epoch,
                                  per_real=per_real)
    params = {'arm': arm, 'fraction': fraction, 'seed': seed, 'per_real': per_real,
              'transfer': transfer}
    cells.append(Cell(name, 'classifier', ('data',) + ((pool,) if pool else ()), job, params))
  cells.append(Cell('report', 'report', ('data',)))
  return cells
