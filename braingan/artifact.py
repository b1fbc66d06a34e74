"""Inference artifacts: a trained model as weights + a JSON description, nothing else.

An export folder holds:
  model.json   format version, kind ('classifier' | 'generator'), the model and data config
               (architecture, exact preprocessing: size, channels, resize, [-1, 1] scaling),
               class names in order, storage dtype, provenance (run, checkpoint, data
               manifest digest, metrics) and, per array, its shape, stored dtype and sha256
  weights.npz  the variables (params + BatchNorm statistics) only: no optimizer state
  MODEL_CARD.md   for people (written by braingan/export.py)

Storage dtypes: float32 (exact), bfloat16 (rounded to nearest; half the size), int8
(weight matrices and kernels quantised per output channel, scale = max|w| / 127, dequantised at
load; vectors such as biases and BatchNorm statistics stay float32).

Loading is strict and never executes code from the files: JSON and `np.load(allow_pickle=False)`
only; a missing or truncated file, a newer format version, an array whose shape, dtype or hash
differs from model.json, or one that the model config does not expect, is an ArtifactError
naming the file and the field. This module imports neither TensorFlow nor Orbax, so an app that
serves exports installs only requirements-app.txt.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Any

import jax
import ml_collections
import numpy as np

FORMAT_VERSION = 1
MODEL_JSON = 'model.json'
WEIGHTS = 'weights.npz'
DTYPES = ('float32', 'bfloat16', 'int8')


class ArtifactError(ValueError):
  """An export that cannot be loaded; the message names the file and the field."""


def _flatten(tree: Any, prefix: str = '') -> dict[str, np.ndarray]:
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict) or hasattr(value, 'items'):
      out.update(_flatten(value, name + '/'))
    else:
      out[name] = value if hasattr(value, 'shape') else np.asarray(value)
  return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-output-channel (last axis) symmetric int8: w ~ q * scale, |error| <= scale / 2."""
  w = np.asarray(w, np.float32)
  scale = np.max(np.abs(w.reshape(-1, w.shape[-1])), axis=0) / 127.0
  scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
  q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
  return q, scale


def _encode(name: str, value: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
  value = np.asarray(value, np.float32)
  if dtype == 'int8' and value.ndim >= 2:
    q, scale = quantize_int8(value)
    return {f'{name}::q': q, f'{name}::scale': scale}
  if dtype == 'bfloat16' and value.ndim >= 2:   # round to nearest even, keep the top 16 bits
    bits = value.view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return {f'{name}::bf16': bits.astype(np.uint16)}
  return {name: value}


def _decode(name: str, stored: dict[str, np.ndarray]) -> np.ndarray:
  if f'{name}::q' in stored:
    return stored[f'{name}::q'].astype(np.float32) * stored[f'{name}::scale']
  if f'{name}::bf16' in stored:
    return (stored[f'{name}::bf16'].astype(np.uint32) << 16).view(np.float32)
  return stored[name]


def _sha256(array: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def save(out_dir: str, *, kind: str, config: ml_collections.ConfigDict, variables: dict,
         dtype: str, provenance: dict) -> dict:
  """Writes model.json + weights.npz into out_dir (atomically, file by file); returns the JSON."""
  from braingan import files  # pylint: disable=import-outside-toplevel
  if dtype not in DTYPES:
    raise ValueError(f'--dtype={dtype!r}: expected one of {DTYPES}.')
  from braingan.data import CLASSES  # pylint: disable=import-outside-toplevel
  flat = {k: np.asarray(v) for k, v in _flatten(jax.device_get(variables)).items()}
  stored = {}
  for name, value in flat.items():
    stored.update(_encode(name, value, dtype))
  os.makedirs(out_dir, exist_ok=True)
  files.atomic_write(os.path.join(out_dir, WEIGHTS),
                     lambda tmp: np.savez_compressed(tmp, **stored))
  description = {
      'format_version': FORMAT_VERSION, 'kind': kind, 'dtype': dtype,
      'classes': list(CLASSES),
      'model': config.model.to_dict(),
      'config': json.loads(config.to_json_best_effort()),
      'preprocessing': {'image_size': int(config.data.image_size),
                        'channels': int(config.data.channels), 'resize': config.data.resize,
                        'gray': 'one luminance channel (braingan/data/decode.py)',
                        'scaling': '(pixel - 127.5) / 127.5'},
      'provenance': provenance,
      'arrays': {name: {'shape': list(v.shape), 'dtype': str(v.dtype), 'sha256': _sha256(v)}
                 for name, v in stored.items()},
  }
  files.write_json(os.path.join(out_dir, MODEL_JSON), description)
  return description


def is_export(path: str) -> bool:
  return os.path.isfile(os.path.join(path, MODEL_JSON))


def _read_description(path: str) -> dict:
  json_path = os.path.join(path, MODEL_JSON)
  try:
    with open(json_path, encoding='utf-8') as f:
      description = json.load(f)
  except FileNotFoundError:
    raise ArtifactError(f'{json_path}: missing; is {path} an export (python -m '
                        'braingan.export)?') from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ArtifactError(f'{json_path}: not valid JSON (truncated?): {e}') from None
  for field in ('format_version', 'kind', 'dtype', 'config', 'arrays', 'classes'):
    if field not in description:
      raise ArtifactError(f'{json_path}: field {field!r} is missing.')
  if description['format_version'] > FORMAT_VERSION:
    raise ArtifactError(f'{json_path}: format_version {description["format_version"]} is newer '
                        f'than this code reads ({FORMAT_VERSION}); update braingan.')
  return description


def _read_arrays(path: str, description: dict) -> dict[str, np.ndarray]:
  weights = os.path.join(path, WEIGHTS)
  try:
    with np.load(weights, allow_pickle=False) as npz:
      stored = {name: npz[name] for name in npz.files}
  except FileNotFoundError:
    raise ArtifactError(f'{weights}: missing.') from None
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise ArtifactError(f'{weights}: cannot be read (truncated or corrupt?): {e}') from None
  expected = description['arrays']
  if set(stored) != set(expected):
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    raise ArtifactError(f'{weights}: arrays differ from {MODEL_JSON}: missing {missing[:5]}, '
                        f'unexpected {extra[:5]}.')
  for name, meta in expected.items():
    value = stored[name]
    if list(value.shape) != meta['shape'] or str(value.dtype) != meta['dtype']:
      raise ArtifactError(f'{weights}: array {name!r} is {value.dtype}{list(value.shape)}, '
                          f'{MODEL_JSON} says {meta["dtype"]}{meta["shape"]}.')
    if _sha256(value) != meta['sha256']:
      raise ArtifactError(f'{weights}: array {name!r} does not match its sha256 in {MODEL_JSON}.')
  return stored


def load(path: str, expected_kind: str | None = None) -> tuple[dict, ml_collections.ConfigDict,
                                                               dict]:
  """(description, config, float32 variables) of the export in `path`, checked against the
  model its config builds (every variable present, with the model's shape)."""
  description = _read_description(path)
  if expected_kind and description['kind'] != expected_kind:
    raise ArtifactError(f'{os.path.join(path, MODEL_JSON)}: kind is {description["kind"]!r}, '
                        f'not a {expected_kind}.')
  config = ml_collections.ConfigDict(description['config'])
  stored = _read_arrays(path, description)
  names = {n.split('::')[0] for n in stored}
  flat = {name: _decode(name, stored) for name in names}
  return description, config, _unflatten(flat)


def check_against(variables: dict, shapes: dict, path: str) -> None:
  """Raises ArtifactError naming the field where `variables` differ from the model's shapes."""
  got, want = _flatten(variables), _flatten(shapes)
  for name in sorted(set(got) | set(want)):
    if name not in got:
      raise ArtifactError(f'{os.path.join(path, WEIGHTS)}: the model config needs {name!r}, '
                          'which the export lacks (config and weights do not match).')
    if name not in want:
      raise ArtifactError(f'{os.path.join(path, WEIGHTS)}: {name!r} is not a variable of the '
                          'model its config describes (config and weights do not match).')
    if tuple(got[name].shape) != tuple(want[name].shape):
      raise ArtifactError(f'{os.path.join(path, WEIGHTS)}: {name!r} has shape '
                          f'{tuple(got[name].shape)}; the model config needs '
                          f'{tuple(want[name].shape)}.')
