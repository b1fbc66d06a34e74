"""Shared fixtures: repo paths, the shipped sample, the shared real set, tiny image folders."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Tests compile hundreds of small programs and run each a few times: XLA's backend optimisation
# costs more than it saves there (measured on 2 cores: a tiny GAN's init 9.3 -> 0.8 s to
# compile, its train step 16 -> 8 s). Subprocesses the tests start inherit it. Numerics are
# the same programs' (parity tests still hold at their tolerances).
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_backend_optimization_level=0').strip()

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
from PIL import Image  # pylint: disable=g-import-not-at-top

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every test process (xdist workers, and the entry points tests start as subprocesses) shares one
# persistent compilation cache: the same tiny models compile once per test session, not once per
# test file (braingan/runtime/compile_cache.py). It lives under .pytest_cache (not committed).
os.environ.setdefault('BRAINGAN_COMPILE_CACHE',
                      os.path.join(REPO_ROOT, '.pytest_cache', 'jax-compile-cache'))
from braingan.runtime import compile_cache  # pylint: disable=g-import-not-at-top,wrong-import-position
compile_cache.enable()
SAMPLE_DIR = os.path.join(REPO_ROOT, 'data', 'sample')
SHARED_TRAINING = os.path.abspath(
    os.path.join(REPO_ROOT, '..', 'shared', 'data', 'brain_tumor_mri', 'Training'))


@pytest.fixture
def sample_dir():
  return SAMPLE_DIR


@pytest.fixture
def shared_training():
  if not os.path.isdir(SHARED_TRAINING):
    pytest.skip(f'real data not present at {SHARED_TRAINING}')
  return SHARED_TRAINING


def write_image(path, size=(40, 40), mode='L', seed=0, fmt=None):
  """Writes a random image; returns its path."""
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  w, h = size
  if mode == 'I;16':
    arr = rng.integers(0, 65535, (h, w), dtype=np.uint16)
    Image.fromarray(arr).save(path, format=fmt)
    return path
  channels = {'L': 1, 'RGB': 3, 'RGBA': 4, 'CMYK': 4}[mode]
  arr = rng.integers(0, 255, (h, w, channels), dtype=np.uint8)
  image = Image.fromarray(arr[..., 0] if channels == 1 else arr,
                          mode=mode if mode != 'CMYK' else None)
  if mode == 'CMYK':
    image = Image.fromarray(arr[..., :3]).convert('CMYK')
  image.save(path, format=fmt)
  return path


def make_folder(root, per_class=6, classes=('glioma_tumor', 'meningioma_tumor', 'no_tumor',
                                            'pituitary_tumor'), size=(40, 40), seed=0):
  """A tiny class-folder dataset of distinct random images (another seed: other images)."""
  seed *= 100_000
  for name in classes:
    for i in range(per_class):
      seed += 1
      write_image(os.path.join(root, name, f'img{i}.png'), size=size, seed=seed)
  return str(root)


@pytest.fixture
def tiny_folder(tmp_path):
  return make_folder(tmp_path / 'data')
