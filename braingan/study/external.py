"""An external test folder for the study: never trained on or selected with; its overlap with
the study's data measured perceptually (eval/inputs.overlap), its images decoded once for every
classifier cell, and what was left out written to <study>/external/overlap.json for the report.
"""
from __future__ import annotations

import os

import numpy as np

from braingan import files
from braingan.data import manifest as manifest_lib
from braingan.eval import inputs
from braingan.study import plan as plan_lib


def images(workdir: str, test_dir: str, data_cfg) -> tuple[np.ndarray, np.ndarray]:
  """(float images, labels) of the external folder minus its overlap; computed once."""
  folder = plan_lib.cell_dir(workdir, 'external')
  cache = os.path.join(folder, f'images_{data_cfg.image_size}px_{data_cfg.channels}ch.npz')
  if os.path.exists(cache):
    with np.load(cache) as saved:
      return saved['images'], saved['labels']
  rows = [r for r in manifest_lib.read(os.path.join(plan_lib.cell_dir(workdir, 'data'),
                                                    'manifest.csv')) if r.split != 'skipped']
  external = inputs.from_folder(test_dir, data_cfg, exclude_like=rows)
  kinds = {}
  for _, kind in external.overlapping:
    key = 'related copy' if kind.startswith('related') else kind
    kinds[key] = kinds.get(key, 0) + 1
  files.write_json(os.path.join(folder, 'overlap.json'), {
      'test_dir': os.path.abspath(test_dir),
      'images': len(external) + len(external.overlapping),
      'kept': len(external), 'overlapping': len(external.overlapping), 'by_kind': kinds,
      'examples': external.overlapping[:8]})
  files.atomic_write(cache, lambda tmp: np.savez_compressed(tmp, images=external.images,
                                                            labels=external.labels))
  return external.images, external.labels
