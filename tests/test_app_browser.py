"""End to end in a real browser: `streamlit run braingan/app.py`, headless Chromium, one upload.

The app serves the int8 export of a freshly trained tiny classifier (what a deployment runs).

Streamlit runs as a subprocess on a free localhost port; Playwright drives Debian's Chromium
(/usr/bin/chromium, installed by .ci/run). Every wait is bounded and both processes are always
stopped. The screenshot is saved under the test's tmp_path.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from braingan.data import CLASSES, decode
from braingan import export
from braingan import inference
from tests.app_fixtures import APP_SCRIPT, sample_image, tiny_classifier_run  # noqa: F401 pylint: disable=unused-import
from tests.conftest import REPO_ROOT

CHROMIUM = '/usr/bin/chromium'
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-background-networking', '--disable-component-update',
                  '--disable-sync', '--no-first-run']
SERVER_START_S = 90     # Import JAX/TF + load and compile the checkpoint, on a busy CPU.
PREDICTION_S = 60


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _wait_healthy(proc, url, log_path, timeout_s):
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      pytest.fail(f'streamlit exited with {proc.returncode}:\n{_tail(log_path)}')
    try:
      with urllib.request.urlopen(f'{url}/_stcore/health', timeout=2) as r:
        if r.status == 200:
          return
    except OSError:
      pass
    time.sleep(0.5)
  pytest.fail(f'streamlit not healthy after {timeout_s} s:\n{_tail(log_path)}')


def _tail(path, n=3000):
  with open(path, encoding='utf-8', errors='replace') as f:
    return f.read()[-n:]


def _stop(proc):
  if proc.poll() is None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait(timeout=10)


@pytest.fixture
def int8_export(tiny_classifier_run, tmp_path):
  out = str(tmp_path / 'export_int8')
  export.export(tiny_classifier_run, out, 'int8')
  return out


@pytest.fixture
def streamlit_server(int8_export, tmp_path):
  port = _free_port()
  url = f'http://127.0.0.1:{port}'
  log_path = str(tmp_path / 'streamlit.log')
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'),
             TF_CPP_MIN_LOG_LEVEL='2')
  cmd = [sys.executable, '-m', 'streamlit', 'run', APP_SCRIPT,
         '--server.headless', 'true', '--server.address', '127.0.0.1',
         '--server.port', str(port), '--browser.gatherUsageStats', 'false',
         '--server.fileWatcherType', 'none', '--', f'--classifier={int8_export}']
  with open(log_path, 'w', encoding='utf-8') as log:
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
  try:
    _wait_healthy(proc, url, log_path, SERVER_START_S)
    yield url, log_path
  finally:
    _stop(proc)


def test_upload_in_headless_chromium_shows_the_prediction(streamlit_server, int8_export, tmp_path):
  if not os.path.exists(CHROMIUM):
    pytest.skip(f'{CHROMIUM} is missing (Debian package "chromium"; .ci/run installs it)')
  sync_api = pytest.importorskip('playwright.sync_api')
  url, log_path = streamlit_server
  path = sample_image('pituitary_tumor')
  model = inference.load_classifier(int8_export)
  predict_fn, config = model.probs, model.config
  expected = CLASSES[int(np.argmax(predict_fn(decode.preprocess_file(path, config.data)[None])))]
  screenshot = str(tmp_path / 'app_prediction.png')

  with sync_api.sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                                 timeout=60_000)
    try:
      page = browser.new_page(viewport={'width': 1400, 'height': 1300})
      page.set_default_timeout(PREDICTION_S * 1000)
      page.goto(url, wait_until='domcontentloaded')
      page.get_by_text('not a diagnostic device').wait_for()
      page.locator('input[type="file"]').set_input_files(path)
      # This caption is written after the prediction of *this* file (not a stale rerun).
      page.get_by_text(f'Upload to prediction for "{os.path.basename(path)}"').wait_for()
      predicted = page.get_by_test_id('stMetricValue').inner_text().strip()
      page.wait_for_timeout(500)  # Let the images finish painting for the screenshot.
      page.screenshot(path=screenshot, full_page=True)
    finally:
      browser.close()

  print(f'screenshot: {screenshot}')
  assert predicted == expected, (predicted, expected, _tail(log_path))
  assert os.path.getsize(screenshot) > 10_000
