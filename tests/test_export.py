"""Exports: exact float32 round trip, int8 error bound, strict loading, no TensorFlow to serve."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from braingan import artifact
from braingan import export
from braingan import inference
from braingan import serve
from braingan.data import CLASSES
from tests.app_fixtures import sample_image, tiny_classifier_run, untrained_gan_run  # noqa: F401 pylint: disable=unused-import
from tests.conftest import REPO_ROOT


@pytest.fixture(scope='module')
def exports(tiny_classifier_run, tmp_path_factory):  # pylint: disable=redefined-outer-name
  out = tmp_path_factory.mktemp('exports')
  for dtype in artifact.DTYPES:
    export.export(tiny_classifier_run, str(out / dtype), dtype)
  return out


def _images(n=6, size=32, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 1)).astype(np.float32)


def test_float32_round_trip_gives_identical_logits(tiny_classifier_run, exports):  # pylint: disable=redefined-outer-name
  run = inference.load_classifier(tiny_classifier_run)
  exp = inference.load_classifier(str(exports / 'float32'))
  np.testing.assert_array_equal(run.probs(_images()), exp.probs(_images()))
  description = json.load(open(exports / 'float32' / 'model.json'))
  assert description['classes'] == list(CLASSES) and description['kind'] == 'classifier'
  assert description['preprocessing']['scaling'] == '(pixel - 127.5) / 127.5'
  assert description['provenance']['manifest_digest']
  assert 'not a medical device' in (exports / 'float32' / 'MODEL_CARD.md').read_text()
  assert not any('opt_state' in name for name in description['arrays'])   # weights only


def test_int8_error_within_half_a_step_per_channel():
  w = np.random.default_rng(0).normal(size=(3, 3, 8, 16)).astype(np.float32)
  w[..., 3] *= 100.0                       # channels with very different ranges
  q, scale = artifact.quantize_int8(w)
  assert q.dtype == np.int8 and scale.shape == (16,)
  error = np.abs(q.astype(np.float32) * scale - w).reshape(-1, 16).max(axis=0)
  assert np.all(error <= scale / 2 + 1e-7)
  np.testing.assert_allclose(scale, np.abs(w.reshape(-1, 16)).max(0) / 127, rtol=1e-6)


def test_smaller_dtypes_are_smaller_and_agree(tiny_classifier_run, exports):  # pylint: disable=redefined-outer-name
  sizes = {d: os.path.getsize(exports / d / artifact.WEIGHTS) for d in artifact.DTYPES}
  assert sizes['int8'] < sizes['bfloat16'] < sizes['float32']
  reference = inference.load_classifier(tiny_classifier_run).probs(_images(32))
  for dtype in ('bfloat16', 'int8'):
    probs = inference.load_classifier(str(exports / dtype)).probs(_images(32))
    assert np.abs(probs - reference).max() < 0.05, dtype


def test_bad_exports_give_errors_naming_file_and_field(exports, tmp_path):  # pylint: disable=redefined-outer-name
  def copy(name):
    target = tmp_path / name
    shutil.copytree(exports / 'int8', target)
    return target

  truncated = copy('truncated')
  data = (truncated / artifact.WEIGHTS).read_bytes()
  (truncated / artifact.WEIGHTS).write_bytes(data[:len(data) // 2])
  with pytest.raises(artifact.ArtifactError, match=r'weights\.npz: cannot be read'):
    inference.load_classifier(str(truncated))
  newer = copy('newer')
  description = json.load(open(newer / 'model.json'))
  description['format_version'] = artifact.FORMAT_VERSION + 1
  (newer / 'model.json').write_text(json.dumps(description))
  with pytest.raises(artifact.ArtifactError, match=r'model\.json: format_version 2 is newer'):
    inference.load_classifier(str(newer))
  mismatch = copy('mismatch')
  description = json.load(open(mismatch / 'model.json'))
  description['config']['model']['head_units'] = 32        # the weights have 16
  (mismatch / 'model.json').write_text(json.dumps(description))
  with pytest.raises(artifact.ArtifactError, match=r"head_dense/bias.*config needs \(32,\)"):
    inference.load_classifier(str(mismatch))
  with pytest.raises(serve.CheckpointError, match=r"head_dense"):
    serve.load_classifier(str(mismatch))
  broken_json = copy('broken_json')
  (broken_json / 'model.json').write_text('{"format_version": 1, "kind": ')
  with pytest.raises(artifact.ArtifactError, match=r'model\.json: not valid JSON'):
    inference.load_classifier(str(broken_json))


def test_generator_export_serves_the_generator_tab(untrained_gan_run, tmp_path):  # pylint: disable=redefined-outer-name
  out = str(tmp_path / 'gan')
  description = export.export(untrained_gan_run, out, 'bfloat16')
  assert description['kind'] == 'generator'
  from_run = serve.load_generator(untrained_gan_run).sample('glioma', 3, 4)
  from_export = serve.load_generator(out).sample('glioma', 3, 4)
  assert from_export.shape == from_run.shape
  assert np.abs(from_export - from_run).max() < 0.05      # bf16 weights, same images


_NO_TF = r'''
import sys
from streamlit.testing.v1 import AppTest
from braingan import artifact, serve
service = serve.load_classifier(sys.argv[1])
pred = service.predict(open(sys.argv[2], 'rb').read(), 'slice.jpg')
at = AppTest.from_file(sys.argv[3], default_timeout=120)
sys.argv = [sys.argv[3], '--classifier=' + sys.argv[1]]
at.run()
assert not at.exception and not at.error, [e.value for e in at.exception]
print('CLASS', pred.class_name, 'TF', 'tensorflow' in sys.modules,
      'ORBAX', 'orbax.checkpoint' in sys.modules)
'''


def test_the_app_serves_an_int8_export_without_tensorflow(exports):  # pylint: disable=redefined-outer-name
  from tests.app_fixtures import APP_SCRIPT  # pylint: disable=import-outside-toplevel
  env = dict(os.environ, PYTHONPATH=REPO_ROOT)
  out = subprocess.run([sys.executable, '-c', _NO_TF, str(exports / 'int8'),
                        sample_image('pituitary_tumor'), APP_SCRIPT], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'TF False ORBAX False' in out.stdout, out.stdout
  assert out.stdout.split('CLASS ')[1].split()[0] in CLASSES
