"""A GAN cell's conditioning metrics, from its generated pool and the study's judge.

Writes <cell>/conditioning.json (eval/conditioning.score: class agreement with intervals, FID /
KID overall and per class on equal-size sets, memorisation in feature and pixel space) and two
figures: a grid with one row per class, and the generated images closest to a training image.
"""
from __future__ import annotations

import os

import numpy as np

from braingan import files
from braingan.data import CLASSES
from braingan.eval import conditioning
from braingan.eval import gan_metrics
from braingan.eval import inputs
from braingan.eval import plots
from braingan.study import plan as plan_lib


def _judge_and_images(workdir: str, cell: plan_lib.Cell, judge_cell: str):
  """The judge of `judge_cell` and the first params['per_class'] images per class of the
  generated pool the cell needs (needs[0]), with their intended labels."""
  judge = conditioning.load_judge(os.path.abspath(plan_lib.cell_dir(workdir, judge_cell)))
  pool = inputs.from_folder(plan_lib.cell_dir(workdir, cell.needs[0]),
                            judge.model.config.data)
  per_class = cell.params['per_class']
  keep = np.concatenate([np.nonzero(pool.labels == k)[0][:per_class]
                         for k in range(len(CLASSES))])
  return judge, pool.images[keep], pool.labels[keep]


def audit(config, workdir: str, cell: plan_lib.Cell) -> dict:
  """Class agreement of the same images under a second judge (cell 'judge_audit': same
  architecture and data, another seed) that no GAN ever saw: a generator kept for its score
  under the first judge (config.select_generator) is scored without that selection's bias."""
  judge, generated, labels = _judge_and_images(workdir, cell, 'judge_audit')
  # Its recall per class on real validation images: the ceiling of that class's agreement.
  result = {'judge_run': judge.run_dir, 'judge_val_accuracy': judge.accuracy,
            'judge_val_recall': judge.val_recall(),
            'agreement': conditioning.agreement(judge.labels_of(generated), labels,
                                                n_boot=config.evaluate.n_boot, seed=config.seed)}
  files.write_json(os.path.join(plan_lib.cell_dir(workdir, cell.name), 'audit.json'), result,
                   default=float)
  return {'agreement': result['agreement']['overall']['point'],
          'judge_val_accuracy': judge.accuracy}


def run(config, workdir: str, cell: plan_lib.Cell) -> dict:
  out = plan_lib.cell_dir(workdir, cell.name)
  judge, generated, labels = _judge_and_images(workdir, cell, 'judge')
  result = conditioning.score(judge, generated, labels, n_boot=config.evaluate.n_boot,
                              seed=config.seed, kid_subsets=config.evaluate.kid_subsets)
  figures = {'samples': os.path.join(out, 'samples.png'),
             'nearest': os.path.join(out, 'nearest_train.png')}
  plots.class_sample_grid({c: generated[labels == k] for k, c in enumerate(CLASSES)},
                          figures['samples'])
  pairs = result['memorisation']['pixels']['closest_pairs']
  plots.nearest_neighbour_pairs(
      generated[[p['generated_index'] for p in pairs]],
      judge.train.images[[p['train_index'] for p in pairs]],
      [p['distance'] for p in pairs], figures['nearest'],
      threshold=result['memorisation']['pixels']['threshold'])
  for space in ('features', 'pixels'):
    result['memorisation'][space] = gan_metrics.memorisation_summary(
        result['memorisation'][space])
  result['figures'] = {k: os.path.relpath(v, workdir) for k, v in figures.items()}
  files.write_json(os.path.join(out, 'conditioning.json'), result, default=float)
  overall = result['agreement']['overall']
  return {'agreement': overall['point'], 'fid': result['fid'],
          'judge_val_accuracy': result['judge_val_accuracy']}


def real_reference_lines(config, workdir: str, out: str) -> list[str]:
  """Writes <out>/real_samples.png, real training images in the sample grids' layout (a seeded
  draw per class), and returns the report lines showing it: the reader's reference for
  whether a generated row looks like its class (tumour location, no mass in no-tumour rows)."""
  train = inputs.from_manifest(os.path.join(plan_lib.cell_dir(workdir, 'data'), 'manifest.csv'),
                               'train', config.data)
  plots.real_reference_grid(train.images, train.labels, CLASSES,
                            os.path.join(out, 'real_samples.png'), seed=config.seed)
  return ['### Real training images (the reference for the generated grids)', '',
          f'Drawn at random per class (seed {config.seed}) from the training split.', '',
          '![real training images](real_samples.png)', '']
