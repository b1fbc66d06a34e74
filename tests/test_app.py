"""The Streamlit app's logic through streamlit.testing's AppTest (no browser), and braingan.serve.

The prediction check compares the page with what `evaluate.py` computes for the same file and
checkpoint: `inference.load_classifier` + `decode.preprocess_file`.
"""
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from braingan import images
from braingan import inference
from braingan import serve
from braingan.data import CLASSES, decode
from braingan.models import resnet
from tests.app_fixtures import APP_SCRIPT, sample_image  # pylint: disable=unused-import
from tests.app_fixtures import tiny_classifier_run, untrained_gan_run  # noqa: F401 pylint: disable=unused-import
from tests.conftest import REPO_ROOT

# Orbax's failed restore of a mismatched checkpoint (test_missing_or_incompatible_...) leaves
# un-awaited TensorStore reads that Python reports later, during whichever test is running.
pytestmark = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


def run_app(*args, at=None):
  """Runs (or re-runs) the app script with `args` as its command line (after `--`)."""
  at = at or AppTest.from_file(APP_SCRIPT, default_timeout=120)
  saved = sys.argv
  sys.argv = [APP_SCRIPT, *args]
  try:
    at.run()
  finally:
    sys.argv = saved
  assert not at.exception, [e.value for e in at.exception]
  return at


def upload(at, name, data, mime, *args):
  at.file_uploader(key='upload').set_value((name, data, mime))
  return run_app(*args, at=at)


def _read(path):
  with open(path, 'rb') as f:
    return f.read()


def giant_png(width=20000, height=20000, bit_depth=8) -> bytes:
  """A valid all-black grayscale PNG of width x height (400 MP by default), ~0.4 MB compressed."""
  def chunk(tag, data):
    return (struct.pack('>I', len(data)) + tag + data +
            struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff))
  row = 1 + width * bit_depth // 8
  comp, block, parts = zlib.compressobj(9), b'\0' * (row * 500), []
  for _ in range(height // 500):
    parts.append(comp.compress(block))
  parts.append(comp.flush())
  header = struct.pack('>IIBBBBB', width, height, bit_depth, 0, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', b''.join(parts)) +
          chunk(b'IEND', b''))


def test_banner_and_prediction_equal_evaluate_path(tiny_classifier_run):
  model = inference.load_classifier(tiny_classifier_run)
  predict_fn, config = model.probs, model.config
  at = run_app(f'--classifier={tiny_classifier_run}')
  assert any('not a diagnostic device' in w.value for w in at.warning)
  assert not at.error
  for folder in ('glioma_tumor', 'meningioma_tumor', 'no_tumor', 'pituitary_tumor'):
    path = sample_image(folder)
    expected = predict_fn(decode.preprocess_file(path, config.data)[None])[0]
    at = upload(at, os.path.basename(path), _read(path), 'image/jpeg',
                f'--classifier={tiny_classifier_run}')
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].label == 'Predicted class'
    assert at.metric[0].value == CLASSES[int(np.argmax(expected))]
    table = at.dataframe[0].value
    assert list(table['class']) == list(CLASSES)
    np.testing.assert_allclose(table['probability'].to_numpy(), expected, atol=1e-6)
    assert len(at.image) == 2  # The model's view and the Grad-CAM overlay.


def _gif() -> bytes:
  buffer = io.BytesIO()
  Image.new('L', (32, 32), 100).save(buffer, format='GIF')
  return buffer.getvalue()


_BOMB_REQUEST = r'''
import re, resource, sys, time
import ml_collections
from PIL import ImageFile
from braingan import serve
from braingan.data import decode
from tests.test_app import giant_png

def peak_mb():   # this process's resident-set high-water mark
  return int(re.search(r'VmHWM:\s+(\d+)', open('/proc/self/status').read()).group(1)) / 1024

data = giant_png(8000, 8000, 16)
decoded = []
original = ImageFile.ImageFile.load
ImageFile.ImageFile.load = lambda self: decoded.append(1) or original(self)
cfg = ml_collections.ConfigDict({'image_size': 64, 'resize': 'squash', 'channels': 1})
# A forked child starts with its parent's pages counted; reset the high-water mark so it
# measures this request only (getrusage's ru_maxrss cannot be reset; it is printed too).
open('/proc/self/clear_refs', 'w').write('5')
start = time.perf_counter()
try:
  serve.preprocess_upload(data, 'bomb16.png', cfg)
  print('ACCEPTED')
except decode.ImageError as e:
  print('REFUSED', e.reason)
print('BYTES', len(data), 'DECODED', len(decoded), 'SECONDS', time.perf_counter() - start,
      'PEAK_MB', peak_mb(), 'MAXRSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
'''


def test_a_16bit_png_bomb_is_refused_from_its_header():
  """A small file on the wire, 8000x8000 16-bit once decoded (366 MB with the gray conversion;
  before the header check it cost 1.6 GB and 4 s): refused before decoding, memory stays small."""
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  out = subprocess.run([sys.executable, '-c', _BOMB_REQUEST], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=120, check=True).stdout
  assert 'REFUSED image too large (8000x8000 I;16' in out, out
  fields = out.split('BYTES ')[1].split()
  values = dict(zip(fields[1::2], fields[2::2]))
  assert int(fields[0]) < 1_000_000                          # a small file ...
  assert int(values['DECODED']) == 0                         # ... never decoded
  assert float(values['PEAK_MB']) < 300, out                 # the whole process, this request
  assert float(values['SECONDS']) < 1.0


def test_bad_uploads_give_messages_and_the_app_recovers(tiny_classifier_run):
  args = (f'--classifier={tiny_classifier_run}',)
  at = run_app(*args)
  good = sample_image('no_tumor')
  good_bytes = _read(good)
  truncated = good_bytes[:len(good_bytes) // 2]
  bad = [('empty.png', b'', 'image/png', 'empty file'),
         ('notes.png', b'This is a text file, not a scan.\n' * 20, 'image/png',
          'not an image'),
         ('cut.jpg', truncated, 'image/jpeg', 'corrupt or truncated'),
         ('giant.png', giant_png(), 'image/png', 'image too large'),   # Pillow's bomb check
         ('bomb16.png', giant_png(8000, 8000, 16), 'image/png', 'too large (8000x8000 I;16'),
         ('renamed_gif.png', _gif(), 'image/png', 'accepted: PNG, JPEG, BMP, TIFF')]
  for name, data, mime, reason in bad:
    at = upload(at, name, data, mime, *args)
    assert len(at.error) == 1, (name, [e.value for e in at.error])
    assert reason in at.error[0].value and name in at.error[0].value, at.error[0].value
    assert not at.metric
    # The next upload works again.
    at = upload(at, os.path.basename(good), good_bytes, 'image/jpeg', *args)
    assert not at.error and at.metric[0].value in CLASSES


def test_missing_or_incompatible_checkpoint_names_the_path(tiny_classifier_run, tmp_path):
  missing = str(tmp_path / 'no_such_run')
  at = run_app(f'--classifier={missing}')
  assert missing in at.error[0].value and 'no such directory' in at.error[0].value
  assert not at.file_uploader  # Nothing to upload to; the banner is still there.
  assert any('not a diagnostic device' in w.value for w in at.warning)

  at = run_app()
  assert '--classifier=' in at.error[0].value

  # A run whose config describes another network than its checkpoint holds.
  wrong = tmp_path / 'wrong_run'
  wrong.mkdir()
  os.symlink(os.path.join(tiny_classifier_run, 'checkpoints'), wrong / 'checkpoints')
  with open(os.path.join(tiny_classifier_run, 'config.json'), encoding='utf-8') as f:
    config = json.load(f)
  config['model']['width'] = 16
  (wrong / 'config.json').write_text(json.dumps(config))
  at = run_app(f'--classifier={wrong}')
  assert str(wrong) in at.error[0].value and 'could not be loaded' in at.error[0].value


def test_generator_tab_draws_the_requested_grid(tiny_classifier_run, untrained_gan_run, tmp_path):
  args = (f'--classifier={tiny_classifier_run}', f'--gan={untrained_gan_run}')
  at = run_app(*args)
  assert not at.error and not at.image
  at.selectbox(key='gen_class').set_value('pituitary')
  at.number_input(key='gen_seed').set_value(7)
  at.select_slider(key='gen_count').set_value(4)
  at.button[0].click()
  at = run_app(*args, at=at)
  assert not at.error and len(at.image) == 1
  caption = at.image[0].captions[0]
  assert '4 synthetic "pituitary"' in caption and 'seed 7' in caption, caption
  # An upload in the other tab keeps the grid.
  path = sample_image('no_tumor')
  at = upload(at, os.path.basename(path), _read(path), 'image/jpeg', *args)
  assert len(at.image) == 3

  missing = str(tmp_path / 'no_gan_here')
  at = run_app(f'--classifier={tiny_classifier_run}', f'--gan={missing}')
  assert len(at.error) == 1 and missing in at.error[0].value
  assert at.file_uploader  # The classifier tab still works.


def test_generator_service_is_deterministic_per_class_and_seed(untrained_gan_run, tmp_path):
  gen = serve.load_generator(untrained_gan_run)
  assert gen.meta['epoch'] == 3   # the fixture's checkpoint (tests/test_generate.py)
  images = gen.sample('glioma', 7, 4)
  assert images.shape == (4, 32, 32, 1) and np.abs(images).max() <= 1.0
  np.testing.assert_array_equal(images, gen.sample('glioma', 7, 4))
  np.testing.assert_allclose(images[:2], gen.sample('glioma', 7, 2), atol=1e-6)
  assert np.abs(images - gen.sample('glioma', 8, 4)).max() > 1e-3
  assert np.abs(images - gen.sample('pituitary', 7, 4)).max() > 1e-4
  with pytest.raises(ValueError, match='count=17'):
    gen.sample('glioma', 7, serve.MAX_SAMPLES + 1)
  with pytest.raises(serve.CheckpointError, match='no such directory'):
    serve.load_generator(str(tmp_path / 'nothing'))
  (tmp_path / 'empty_run').mkdir()
  with pytest.raises(serve.CheckpointError, match='empty_run: the generator could not be loaded'):
    serve.load_generator(str(tmp_path / 'empty_run'))


def test_gradcam_matches_the_analytic_gradient_of_the_head():
  """conv5 Grad-CAM weights = (1/hw) W1 (1[h>0] * W2[:, c]) for GAP -> Dense -> ReLU -> Dense."""
  model = resnet.ResNetClassifier(stage_sizes=(1, 1, 1, 1), width=8, head_units=16)
  variables = resnet.init_variables(model, (1, 64, 64, 1), seed=3)
  x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 1)).astype(np.float32)
  fmap = np.asarray(jax.jit(lambda v, x: model.apply(v, x, output='backbone'))(variables, x))[0]
  p = jax.tree.map(np.asarray, variables['params'])
  hidden = fmap.mean((0, 1)) @ p['head_dense']['kernel'] + p['head_dense']['bias']
  gradcam = serve.make_gradcam(model, variables)
  for c in range(len(CLASSES)):
    alpha = p['head_dense']['kernel'] @ ((hidden > 0) * p['head_logits']['kernel'][:, c])
    alpha /= fmap.shape[0] * fmap.shape[1]
    cam = np.maximum((fmap * alpha).sum(-1), 0)
    ref = np.asarray(jax.image.resize(jnp.asarray(cam), (64, 64), 'bilinear'))
    ref = np.maximum(ref, 0) / max(ref.max(), 1e-12)
    got = np.asarray(gradcam(jnp.asarray(x), c))
    assert got.shape == (64, 64) and 0.0 <= got.min() and got.max() <= 1.0
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_overlay_and_grid_shapes():
  image = np.zeros((32, 32, 1), np.float32)
  cam = np.zeros((32, 32), np.float32)
  cam[:16] = 1.0
  rgb = serve.overlay(image, cam)
  assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
  assert rgb[:16, :, 0].mean() > rgb[16:, :, 0].mean() + 50  # Hot half is red ...
  assert rgb[16:, :, 2].mean() > rgb[:16, :, 2].mean() + 50  # ... the cold half blue.
  grid = images.upscale(images.grid(np.zeros((6, 16, 16, 1), np.float32), 4), 512)
  assert grid.shape[0] > 0 and grid.ndim == 2 and grid.dtype == np.uint8


def test_dicom_without_pydicom_and_the_pixel_conversion():
  cfg = ml_collections.ConfigDict({'image_size': 8, 'resize': 'squash', 'channels': 1})
  if not serve.dicom_available():
    with pytest.raises(decode.ImageError, match='pydicom'):
      serve.preprocess_upload(b'DICM', 'scan.dcm', cfg)
    assert 'dcm' not in serve.upload_types()
  pixels = np.arange(64, dtype=np.int16).reshape(8, 8) * 40 - 1000  # Signed, CT-like values.
  gray = decode.load_gray(serve.dicom_pixels_to_png(pixels))
  assert gray[0, 0] == 0 and gray[-1, -1] == 255 and np.all(np.diff(gray.ravel()) >= 0)
  inverted = decode.load_gray(serve.dicom_pixels_to_png(pixels, invert=True))
  np.testing.assert_array_equal(inverted, 255 - gray)
  with Image.open(io.BytesIO(serve.dicom_pixels_to_png(pixels))) as im:
    assert im.size == (8, 8)
