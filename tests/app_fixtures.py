"""A tiny trained classifier run for the app tests, trained once per pytest session.

Both app test files use it; with pytest-xdist they may run in different worker processes, so
the run is built under the session's shared base temp folder behind a file lock (the pattern
pytest-xdist documents) and the second worker reuses it instead of training again.
"""
import fcntl
import glob
import os

import pytest

from tests.conftest import SAMPLE_DIR

APP_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'braingan', 'app.py')


def tiny_classifier_config():
  """configs/classifier_demo.py shrunk further: 32 px, width 8, one epoch of 2 steps."""
  from configs import classifier_demo  # pylint: disable=g-import-not-at-top
  config = classifier_demo.get_config()
  config.data.data_dir = SAMPLE_DIR
  config.data.image_size = 32
  config.model.width = 8
  config.model.head_units = 16
  config.epochs = 1
  config.steps_per_epoch = 2
  config.batch_size = 16
  return config


def train_tiny_classifier(workdir: str) -> str:
  from braingan import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(tiny_classifier_config(), workdir)
  return workdir


@pytest.fixture(scope='session')
def tiny_classifier_run(tmp_path_factory):
  """Path of a finished tiny classifier run (config.json + best checkpoint)."""
  # Under xdist each worker has its own basetemp below one per-session folder; share that.
  base = tmp_path_factory.getbasetemp()
  shared = base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base
  workdir = str(shared / 'app_tiny_classifier')
  with open(str(shared / 'app_tiny_classifier.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if not os.path.exists(os.path.join(workdir, 'final_metrics.json')):
        train_tiny_classifier(workdir)
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return workdir


def sample_image(class_folder: str = 'glioma_tumor') -> str:
  """A real MRI slice from the shipped sample."""
  return sorted(glob.glob(os.path.join(SAMPLE_DIR, class_folder, '*.jpg')))[0]


def tiny_gan_config():
  """configs/cgan.py shrunk to a few thousand parameters at 32 px."""
  from configs import cgan  # pylint: disable=g-import-not-at-top
  config = cgan.get_config()
  config.data.data_dir = SAMPLE_DIR
  config.data.image_size = 32
  config.model.latent_dim = 8
  config.model.embed_dim = 4
  config.model.g_base_depth = 8
  config.model.g_widths = (8, 8)
  config.model.d_widths = (8, 8)
  config.batch_size = 8
  return config


def write_untrained_gan_run(workdir: str) -> str:
  """A GAN run directory holding its initial weights (see tests/test_generate.py)."""
  from tests.test_generate import write_untrained_run  # pylint: disable=g-import-not-at-top
  write_untrained_run(workdir, tiny_gan_config())
  return workdir


@pytest.fixture(scope='module')
def untrained_gan_run(tmp_path_factory):
  return write_untrained_gan_run(str(tmp_path_factory.mktemp('app_gan') / 'gan'))
