"""The braingan web app: classify an uploaded MRI slice, show why, and show what the GAN makes.

  streamlit run braingan/app.py -- --classifier=exports/clf [--gan=exports/gan]

--classifier / --gan take an export (python -m braingan.export; what a deployment ships) or,
for convenience, a training run directory.

Layout only; the work (loading, preprocessing, prediction, Grad-CAM, sampling) is in
`braingan/serve.py` so it is tested without a browser. Checkpoints are loaded once per process
(st.cache_resource), including a failed load, whose message is shown instead of retried.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

# `streamlit run braingan/app.py` puts braingan/ itself first on sys.path, which would make its
# sub-packages importable as top-level `data`, `eval`, ...; import from the repository root.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != _HERE]
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import pandas as pd  # pylint: disable=g-import-not-at-top,wrong-import-position
import streamlit as st  # pylint: disable=g-import-not-at-top,wrong-import-position

from braingan import serve  # pylint: disable=g-import-not-at-top,wrong-import-position
from braingan.data import CLASSES  # pylint: disable=g-import-not-at-top,wrong-import-position
from braingan import images as images_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from braingan.data import decode  # pylint: disable=g-import-not-at-top,wrong-import-position

DISCLAIMER = ('**Research tool - not a diagnostic device.** The predictions, saliency maps and '
              'synthetic images shown here come from models trained on a small public dataset. '
              'They are not validated for clinical use and must not inform any decision about a '
              'patient.')


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='streamlit run braingan/app.py --')
  parser.add_argument('--classifier', default='',
                      help='an export (python -m braingan.export) or a finished classifier run')
  parser.add_argument('--gan', default='',
                      help='a generator export or a finished cGAN run (optional)')
  args, _ = parser.parse_known_args(argv)
  return args


@st.cache_resource(show_spinner='Loading the classifier checkpoint (once)...')
def load_classifier(workdir: str):
  """(service, None) or (None, message naming the path). Cached either way."""
  try:
    return serve.load_classifier(workdir), None
  except serve.CheckpointError as e:
    return None, str(e)


@st.cache_resource(show_spinner='Loading the generator checkpoint (once)...')
def load_generator(workdir: str):
  try:
    return serve.load_generator(workdir), None
  except serve.CheckpointError as e:
    return None, str(e)


def _run_summary(service) -> str:
  final = service.model.meta.get('metrics', {})   # an export's provenance metrics
  path = os.path.join(service.workdir, 'final_metrics.json')
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      final = json.load(f)
  acc = final.get('val_accuracy')
  return (f'validation accuracy {acc:.1%} on {final.get("val_count", "?")} images'
          if isinstance(acc, (int, float)) else '')


def sidebar(args, service) -> None:
  with st.sidebar:
    st.header('Models')
    st.markdown(f'Classifier run: `{args.classifier or "(none)"}`')
    if service is not None:
      cfg = service.data_cfg
      size_mb = serve.model_size_bytes(service.workdir) / 1e6
      st.caption(f'{cfg.image_size}x{cfg.image_size} px, {cfg.channels} channel(s), '
                 f'resize "{cfg.resize}"; weights on disk {size_mb:.1f} MB')
      summary = _run_summary(service)
      if summary:
        st.caption(summary)
    st.markdown(f'GAN run: `{args.gan or "(none)"}`')
    dicom = 'available' if serve.dicom_available() else 'off (pydicom not installed)'
    st.caption(f'DICOM upload: {dicom}')


def classify_tab(service, error: str | None) -> None:
  if error:
    st.error(f'Classifier not available. {error}')
    return
  upload = st.file_uploader('Upload a brain MRI slice', type=serve.upload_types(),
                            key='upload', help='One axial/coronal/sagittal slice; the model '
                            'sees it as training did (grayscale, resized, scaled to [-1, 1]).')
  if upload is None:
    st.info('Upload a JPEG or PNG slice to classify it.')
    return
  try:
    pred = service.predict(upload.getvalue(), upload.name)
  except decode.ImageError as e:
    st.error(f'Cannot use "{upload.name}": {e.reason}. Please upload a brain MRI slice as '
             'JPEG, PNG, BMP or TIFF.')
    return
  except serve.BusyError as e:
    st.warning(str(e))
    return
  except Exception as e:  # pylint: disable=broad-except  (keep the page usable; say what failed)
    st.error(f'Could not classify "{upload.name}" ({type(e).__name__}). The app is still '
             'running; try another file.')
    return
  size = service.data_cfg.image_size
  left, middle, right = st.columns([1, 1, 1.2])
  with left:
    st.image(images_lib.upscale(images_lib.to_gray_pixels(pred.image)),
             caption=f'What the model sees ({size}x{size}, grayscale)', width='stretch')
  with middle:
    st.image(images_lib.upscale(serve.overlay(pred.image, pred.cam)),
             caption=f'Grad-CAM for "{pred.class_name}"', width='stretch')
  with right:
    st.metric('Predicted class', pred.class_name)
    st.caption(f'probability {pred.probs[pred.label]:.1%}')
    probs = pd.DataFrame({'class': list(CLASSES), 'probability': pred.probs.astype(float)})
    st.bar_chart(probs, x='class', y='probability', horizontal=True, sort=False, height=220)
    st.dataframe(probs, hide_index=True, width='stretch', column_config={
        'probability': st.column_config.NumberColumn(format='%.4f')})
  h, w = pred.cam_grid
  note = ''
  if not pred.cam.max() > 0:
    note = (' Here the map is zero everywhere: no conv5 position raised this class\'s score, '
            'so the overlay shows nothing.')
  elif h * w == 1:
    note = ' At this input size conv5 is a single position, so the map has no spatial detail.'
  st.caption(f'Grad-CAM on the last convolutional stage (conv5, a {h}x{w} map upsampled to '
             f'{size}x{size}): warm colours mark regions that raised the score of '
             f'"{pred.class_name}". It shows where the model looked, not where a tumour is.'
             f'{note} Upload to prediction for "{upload.name}": {pred.seconds * 1000:.0f} ms.')


def generate_tab(args) -> None:
  if not args.gan:
    st.info('No GAN run given. Start the app with `-- --gan=runs/cgan` to sample synthetic '
            'slices here.')
    return
  generator, error = load_generator(args.gan)
  if error:
    st.error(f'Generator not available. {error}')
    return
  with st.form('generate'):
    c1, c2, c3 = st.columns(3)
    class_name = c1.selectbox('Class', CLASSES, key='gen_class')
    seed = c2.number_input('Seed', min_value=0, max_value=2**31 - 1, value=0, step=1,
                           key='gen_seed')
    count = c3.select_slider('Images', options=(4, 8, 16), value=8, key='gen_count')
    submitted = st.form_submit_button('Generate')
  if submitted:
    # Kept in the session so the grid survives reruns (e.g. an upload in the other tab).
    st.session_state['generated'] = (class_name, int(seed), int(count),
                                     generator.sample(class_name, int(seed), int(count)))
  if 'generated' in st.session_state:
    class_name, seed, count, images = st.session_state['generated']
    st.image(images_lib.upscale(images_lib.grid(images, 4), 512), width='stretch',
             caption=f'{count} synthetic "{class_name}" slices, seed {seed} (the same class and '
                     'seed always give the same images). Synthetic: not a scan of any patient.')


def main() -> None:
  st.set_page_config(page_title='braingan', layout='wide')
  args = parse_args(sys.argv[1:])
  st.title('braingan: brain MRI classifier and conditional GAN')
  st.warning(DISCLAIMER, icon='⚠️')
  service, error = load_classifier(args.classifier)
  sidebar(args, service)
  classify, generate = st.tabs(['Classify an MRI', 'Generate synthetic slices'])
  with classify:
    classify_tab(service, error)
  with generate:
    generate_tab(args)


main()
