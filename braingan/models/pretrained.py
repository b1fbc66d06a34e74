"""Keras legacy-HDF5 weights -> Flax variables for `resnet.ResNetClassifier`.

The file Keras downloads for `ResNet50(weights='imagenet', include_top=False)`
(`resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`) is a legacy Keras HDF5 weights file:
the root has an attribute `layer_names`; each layer is a group named after the layer with an
attribute `weight_names` (e.g. `conv1_conv/kernel:0`, `conv1_bn/moving_variance:0`) and the arrays
stored at `<layer>/<weight_name>`. `tf_keras.Model.save_weights('x.h5')` writes the same layout,
which is what the parity test uses to prove this importer right.

Because the Flax model names its modules after the Keras layers, the mapping is by name; every
array is shape-checked, and anything missing or mismatched is an error that names the layer.
"""
from __future__ import annotations

import os
import urllib.request
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

from braingan import files

NOTOP_FILENAME = 'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'
NOTOP_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/resnet/'
             + NOTOP_FILENAME)
# The checksum Keras itself verifies for this file (keras.applications.resnet WEIGHTS_HASHES,
# 'resnet50' notop entry). Keras publishes an md5 for it, not a sha256.
NOTOP_MD5 = '4d473c1dd8becc155b73f8504c6f6626'
KERAS_CACHE = os.path.join(os.path.expanduser('~'), '.keras', 'models')

# Flax name -> Keras weight name (without the ':0' suffix), per collection.
_CONV = {('params', 'kernel'): 'kernel', ('params', 'bias'): 'bias'}
_BN = {('params', 'scale'): 'gamma', ('params', 'bias'): 'beta',
       ('batch_stats', 'mean'): 'moving_mean', ('batch_stats', 'var'): 'moving_variance'}


class WeightFileError(ValueError):
  """The weights file does not fit the model; the message names the layer."""


def _decode(names: Iterable[Any]) -> list[str]:
  return [n.decode('utf8') if isinstance(n, bytes) else str(n) for n in names]


def read_keras_h5(path: str) -> dict[str, dict[str, np.ndarray]]:
  """{layer_name: {weight_short_name: array}} for every layer with weights in a legacy .h5 file."""
  out: dict[str, dict[str, np.ndarray]] = {}
  try:
    f = h5py.File(path, 'r')
  except OSError as e:   # truncated, not HDF5, unreadable: h5py's message lacks the path
    raise WeightFileError(f'{path}: cannot be read as an HDF5 weights file ({e}); it may be '
                          'truncated (an interrupted download?) or not a Keras .h5 file.') from None
  with f:
    root = f['model_weights'] if 'model_weights' in f else f  # full-model files nest weights.
    if 'layer_names' not in root.attrs:
      raise WeightFileError(f'{path}: not a Keras legacy HDF5 weights file (no layer_names attribute)')
    for layer in _decode(root.attrs['layer_names']):
      if layer not in root:
        raise WeightFileError(f'{path}: layer {layer!r} is listed but has no group in the file')
      group = root[layer]
      weights = {}
      for wname in _decode(group.attrs.get('weight_names', [])):
        short = wname.split('/')[-1].split(':')[0]
        try:
          arr = np.asarray(group[wname])
        except (KeyError, OSError) as e:
          raise WeightFileError(f'{path}: layer {layer!r} lists weight {wname!r} but it cannot '
                                f'be read ({e})') from None
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
          raise WeightFileError(f'{path}: layer {layer!r} weight {wname!r} holds NaN or inf')
        weights[short] = arr
      if weights:
        out[layer] = weights
  return out


def load(variables: Mapping[str, Any], path: str, dont_load: Iterable[str] = ('head_',),
         strict: bool = True) -> dict[str, Any]:
  """Returns a copy of `variables` ({'params', 'batch_stats'}) with the file's arrays filled in.

  dont_load: top-level module-name prefixes (plain string prefixes, e.g. 'head_') left as they are.
  strict: also fail when the file holds a layer with weights that the model does not have.
  Raises WeightFileError naming the layer for a missing layer/weight or a shape mismatch.
  """
  file_layers = read_keras_h5(path)
  dont_load = tuple(dont_load)
  params = dict(variables['params'])
  stats = dict(variables.get('batch_stats', {}))
  new = {'params': params, 'batch_stats': stats}
  used = set()
  for layer in sorted(params):
    if any(layer.startswith(p) for p in dont_load):
      continue
    if layer not in file_layers:
      raise WeightFileError(f'{path}: layer {layer!r} is missing from the weights file')
    table = _BN if layer in stats else _CONV
    file_w = file_layers[layer]
    for collection in ('params', 'batch_stats'):
      if layer not in new[collection]:
        continue
      module = dict(new[collection][layer])
      for leaf, ref in module.items():
        kname = table.get((collection, leaf))
        if kname is None or kname not in file_w:
          raise WeightFileError(
              f'{path}: layer {layer!r} has no weight {kname or leaf!r} (file has {sorted(file_w)})')
        arr = file_w[kname]
        if tuple(arr.shape) != tuple(np.shape(ref)):
          raise WeightFileError(
              f'{path}: layer {layer!r} weight {kname!r} has shape {tuple(arr.shape)}, '
              f'the model expects {tuple(np.shape(ref))}')
        module[leaf] = np.asarray(arr, dtype=np.asarray(ref).dtype)
      new[collection][layer] = module
    used.add(layer)
  extra = sorted(set(file_layers) - used - {l for l in file_layers
                                            if any(l.startswith(p) for p in dont_load)})
  if strict and extra:
    raise WeightFileError(f'{path}: layers {extra[:5]} (of {len(extra)}) are in the file but not '
                          'in the model (wrong architecture?)')
  return {k: v for k, v in new.items() if v or k in variables}


def resolve_imagenet_weights(configured_path: str = '', download: bool = True,
                             cache_dir: str = KERAS_CACHE, timeout_s: float = 30.0) -> str:
  """Finds the Keras ImageNet notop file: configured path, then the Keras cache, then download.

  No silent fallback: when nothing works this raises FileNotFoundError saying where to put the
  file, or how to train from scratch instead.
  """
  tried = []
  candidates = []
  if configured_path:
    candidates.append(configured_path if configured_path.endswith('.h5')
                      else os.path.join(configured_path, NOTOP_FILENAME))
  candidates.append(os.path.join(cache_dir, NOTOP_FILENAME))
  for c in candidates:
    tried.append(c)
    if os.path.isfile(c):
      return c
  reason = 'download disabled'
  if download:
    target = os.path.join(cache_dir, NOTOP_FILENAME)
    tmp = target + '.part'
    try:
      os.makedirs(cache_dir, exist_ok=True)
      with urllib.request.urlopen(NOTOP_URL, timeout=timeout_s) as r, open(tmp, 'wb') as f:
        while chunk := r.read(1 << 20):
          f.write(chunk)
      digest = files.digest(tmp, 'md5')
      if digest != NOTOP_MD5:
        raise OSError(f'checksum mismatch: md5 {digest} != expected {NOTOP_MD5}')
      os.replace(tmp, target)
      return target
    except OSError as e:  # URLError is an OSError.
      reason = f'download from {NOTOP_URL} failed: {e}'
      if os.path.exists(tmp):
        os.remove(tmp)
  raise FileNotFoundError(
      f'ImageNet ResNet50 weights not found (looked at {tried}; {reason}). Put '
      f'{NOTOP_FILENAME} (md5 {NOTOP_MD5}) at {os.path.join(cache_dir, NOTOP_FILENAME)} or pass '
      '--config.model.pretrained_path=/path/to/it, or train from scratch with '
      '--config.model.pretrained=none.')
