"""Training: `train_and_evaluate(config, workdir)` trains any registered model.

Order of work, so nothing is lost to a bad config or a second trainer: validate the config
(before any file is written), lock the run directory, write config.json (checking it against
the run's on resume), prepare the data, then fit (braingan/train/loop.py) the recipe of the
model's family (braingan/models REGISTRY -> RECIPES below).
"""
from __future__ import annotations

import contextlib
from typing import Any

import ml_collections

RECIPES = {
    'gan': 'braingan.train.gan:GANRecipe',
    'classifier': 'braingan.train.classifier:ClassifierRecipe',
}


def recipe_class(config: ml_collections.ConfigDict):
  import importlib  # pylint: disable=import-outside-toplevel
  from braingan import models  # pylint: disable=import-outside-toplevel
  module, name = RECIPES[models.family(config)].split(':')
  return getattr(importlib.import_module(module), name)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) in `workdir`; returns the final record (loop.fit)."""
  from braingan import config_check  # pylint: disable=import-outside-toplevel
  config_check.validate(config)   # before importing TensorFlow (~7 s cold): a bad field fails fast
  from braingan.data import pipeline  # pylint: disable=import-outside-toplevel  (imports TF)
  from braingan.run_dir import RunDir  # pylint: disable=import-outside-toplevel
  from braingan.runtime import distributed  # pylint: disable=import-outside-toplevel
  from braingan.train import loop  # pylint: disable=import-outside-toplevel
  run = RunDir(workdir)
  main = distributed.is_main_process()
  with run.lock() if main else contextlib.nullcontext():
    if main:
      run.write_config(config)
    distributed.sync('braingan_config_written')
    data = pipeline.load(config.data, run.prepared_dir(config.data), config.seed)
    return loop.fit(recipe_class(config)(config, data), run)
