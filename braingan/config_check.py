"""Config validation before any work: fields, types, ranges, names, and resume compatibility.

`validate(config)` runs first in every trainer, before a file is written or an image decoded.
The schema is the default config of the model (braingan/models REGISTRY: configs/cgan.py for
GANForge's GAN, configs/cgan_conditioned.py for the compact one, configs/classifier.py): a field that is not in it (a typo, or an option of
another model) is an error, as is a field of the wrong type, an out-of-range value, an unknown
name (model, loss, augmentation, conditioning, freeze preset...), or a classifier-only data
option set on a GAN. Every message names the field.

`resume_differences(old, new)` lists the fields that must not change when a run resumes: anything
that changes the model, the data or the optimisation. Budget fields (BUDGET) may change.
"""
from __future__ import annotations

from typing import Any, Callable

import ml_collections

# Fields a resumed run may change: how long, how often, where extra outputs go.
BUDGET = ('epochs', 'keep_checkpoints', 'checkpoint_every', 'log_every_seconds', 'num_devices',
          'early_stopping_patience', 'judge.', 'generate.', 'grid_per_class')


# Fields added after runs were recorded, with the value that does what runs without the field
# did: a stored config lacking one compares as holding that value (resume, study cells), so
# adding an option does not orphan every finished run. Any other value is a difference.
ADDED_FIELDS = {'mode_seeking': 0.0, 'restore_best': 'val_loss', 'lr_decay_after_epoch': 0,
                'select_generator': 'last', 'bn_recalibration_batches': 0,
                'lecam_weight': 0.0, 'lecam_decay': 0.99}


# The metrics of braingan/eval/conditioning.py's `during_training` a GAN run may keep its best
# generator by (config.select_generator), with the direction that is better.
SELECTION_MODES = {'cond_agreement': 'max', 'cond_agreement_min_class': 'max', 'cond_fid': 'min'}


def selection_mode(select_generator: str) -> str | None:
  """'max' / 'min' for a metric of SELECTION_MODES, None for 'last'; ValueError otherwise."""
  if select_generator == 'last':
    return None
  if select_generator not in SELECTION_MODES:
    raise ValueError(f'config.select_generator={select_generator!r} must be one of '
                     f'{("last", *SELECTION_MODES)}.')
  return SELECTION_MODES[select_generator]


def is_added_default(key: str, value: Any) -> bool:
  """True when `key` (dotted, an optional leading 'config.') is an added field at its old
  behaviour's value."""
  key = key.removeprefix('config.')
  return key in ADDED_FIELDS and value == ADDED_FIELDS[key]


class ConfigError(ValueError):
  """One or more invalid fields; the message lists each, by its full name."""


# Fields removed since runs were recorded: a stored config holding one flattens (so compares
# and validates) as if it did not. data.shuffle_buffer: training data is now shuffled by a full
# permutation of indices (braingan/data/pipeline.py), the same order up to the old buffer size.
REMOVED_FIELDS = ('data.shuffle_buffer',)


def flatten(config: Any, prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(flatten(value, name + '.'))
    elif not any(name == f or name.endswith('.' + f) for f in REMOVED_FIELDS):
      out[name] = value   # (a study cell's settings nest them: 'params.data.shuffle_buffer')
  return out


def _type_problem(name: str, value: Any, default: Any) -> str | None:
  if isinstance(default, bool):
    ok = isinstance(value, bool)
  elif isinstance(default, int):
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif isinstance(default, float):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  elif isinstance(default, str):
    ok = isinstance(value, str)
  elif isinstance(default, (tuple, list)):
    ok = isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value)
  else:
    ok = True
  if ok:
    return None
  return (f'config.{name}={value!r} has type {type(value).__name__}; expected '
          f'{type(default).__name__} (like the default {default!r}).')


def _positive(x) -> bool:
  return x > 0


def _non_negative(x) -> bool:
  return x >= 0


def _fraction(x) -> bool:
  return 0.0 < x < 1.0


# (field, check, what the check means) for both families.
_RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    ('batch_size', _positive, 'must be >= 1'),
    ('epochs', _positive, 'must be >= 1'),
    ('steps_per_epoch', _non_negative, 'must be >= 0 (0 = from the data)'),
    ('num_devices', _non_negative, 'must be >= 0 (0 = all)'),
    ('checkpoint_every', _positive, 'must be >= 1'),
    ('keep_checkpoints', _positive, 'must be >= 1'),
    ('log_every_seconds', _non_negative, 'must be >= 0'),
    ('optimizer.learning_rate', _positive, 'must be > 0'),
    ('optimizer.epsilon', _positive, 'must be > 0'),
    ('optimizer.beta1', lambda x: 0.0 <= x < 1.0, 'must be in [0, 1)'),
    ('optimizer.beta2', lambda x: 0.0 <= x < 1.0, 'must be in [0, 1)'),
    ('data.image_size', lambda x: x >= 16, 'must be >= 16'),
    ('data.channels', lambda x: x in (1, 3), 'must be 1 or 3'),
    ('data.resize', lambda x: x in ('squash', 'pad'), "must be 'squash' or 'pad'"),
    ('data.val_fraction', _fraction, 'must be in (0, 1)'),
    ('data.near_dup_max_distance', lambda x: x >= -1, 'must be >= -1 (-1 = off)'),
    ('data.synthetic_ratio', lambda x: 0.0 <= x <= 1.0, 'must be in [0, 1] (1: synthetic only)'),
    ('data.test_fraction', lambda x: 0.0 <= x < 1.0, 'must be in [0, 1)'),
    ('data.related_min_ncc', lambda x: x == -1 or 0.0 < x <= 1.0, 'must be in (0, 1] or -1 (off)'),
    ('data.fraction', lambda x: 0.0 < x <= 1.0, 'must be in (0, 1]'),
    ('data.synthetic_labels', lambda x: x in ('intended', 'shuffled'),
     "must be 'intended' or 'shuffled'"),
    ('data.balance', lambda x: 0.0 <= x <= 1.0, 'must be in [0, 1]'),
    ('dtype', lambda x: x in ('float32', 'bfloat16'), "must be 'float32' or 'bfloat16'"),
    ('optimizer.name', lambda x: x == 'adam', "must be 'adam'"),
    # GAN
    ('model.latent_dim', _positive, 'must be >= 1'),
    ('model.layer_mode', lambda x: x in ('inference', 'training'),
     "must be 'inference' or 'training'"),
    ('model.dropout', lambda x: 0.0 <= x < 1.0, 'must be in [0, 1)'),
    ('optimizer.d_learning_rate', _non_negative, 'must be >= 0 (0 = optimizer.learning_rate)'),
    ('aux_weight', _non_negative, 'must be >= 0'),
    ('mode_seeking', _non_negative, 'must be >= 0'),
    ('lecam_weight', _non_negative, 'must be >= 0 (0 = off)'),
    ('lecam_decay', lambda x: 0.0 <= x < 1.0, 'must be in [0, 1)'),
    ('lr_decay_after_epoch', _non_negative, 'must be >= 0 (0 = constant learning rates)'),
    ('diffaug.probability', lambda x: 0.0 <= x <= 1.0, 'must be in [0, 1]'),
    ('diffaug.ada_target', lambda x: 0.0 <= x < 1.0, 'must be in [0, 1) (0 = off)'),
    ('diffaug.ada_kimg', _positive, 'must be > 0'),
    ('ema.decay', lambda x: 0.0 <= x < 1.0, 'must be in [0, 1) (0 = off)'),
    ('ema.start_step', _non_negative, 'must be >= 0'),
    ('transition_steps', _non_negative, 'must be >= 0'),
    ('grid_per_class', _positive, 'must be >= 1'),
    ('judge.every_epochs', _positive, 'must be >= 1'),
    ('judge.per_class', lambda x: x >= 2, 'must be >= 2'),
    ('generate.per_class', _non_negative, 'must be >= 0'),
    ('generate.batch_size', _positive, 'must be >= 1'),
    # Classifier
    ('model.width', _positive, 'must be >= 1'),
    ('model.head_units', _positive, 'must be >= 1'),
    ('early_stopping_patience', _positive, 'must be >= 1'),
    ('reduce_lr_patience', _positive, 'must be >= 1'),
    ('reduce_lr_factor', _fraction, 'must be in (0, 1)'),
    ('min_learning_rate', _non_negative, 'must be >= 0'),
    ('restore_best', lambda x: x in ('val_loss', 'none'), "must be 'val_loss' or 'none'"),
    ('bn_recalibration_batches', _non_negative, 'must be >= 0 (0 = Keras moving averages)'),
]

# Data options only the classifier reads; on a GAN they would silently do nothing.
_CLASSIFIER_ONLY_DATA = ('data.augment', 'data.synthetic_dir', 'data.synthetic_ratio',
                         'data.synthetic_labels', 'data.balance')


def _name_problems(config, family: str) -> list[str]:
  """Registry names, parsed by the code that uses them (one source of truth)."""
  problems = []

  def check(fn):
    try:
      fn()
    except ValueError as e:
      problems.append(str(e))

  if family == 'gan':
    from braingan import models  # pylint: disable=import-outside-toplevel
    from braingan.train import augment, losses  # pylint: disable=import-outside-toplevel
    check(lambda: losses.get(config.loss))
    check(lambda: selection_mode(config.select_generator))
    if config.select_generator != 'last' and not config.judge.run_dir:
      problems.append(f'config.select_generator={config.select_generator!r} needs a judge '
                      '(config.judge.run_dir) to score the generator while it trains.')
    check(lambda: augment.parse_policy(config.diffaug.policy))
    check(lambda: models.build(config))
    if config.diffaug.ada_target > 0 and not config.diffaug.policy:
      problems.append('config.diffaug.ada_target > 0 needs a config.diffaug.policy to adapt.')
  else:
    from braingan.models import resnet  # pylint: disable=import-outside-toplevel
    if len(config.model.stage_sizes) != 4 or min(config.model.stage_sizes) < 1:
      problems.append(f'config.model.stage_sizes={tuple(config.model.stage_sizes)} must be 4 '
                      'positive block counts.')
    check(lambda: resnet.build(config.model, 4))
    if not problems:
      known = resnet.backbone_layer_names(config.model.stage_sizes) + ('head_dense',
                                                                       'head_logits')
      prefixes = resnet.freeze_prefixes(config.model.freeze, config.model.stage_sizes)
      unknown = [p for p in prefixes if not any(resnet.path_is_frozen(k, (p,)) for k in known)]
      if unknown:
        problems.append(f'config.model.freeze={config.model.freeze!r}: no layers under '
                        f'{unknown}; use keras15, head, none or layer names such as conv1_conv.')
    if config.data.synthetic_ratio > 0 and not config.data.synthetic_dir:
      problems.append('config.data.synthetic_ratio > 0 needs config.data.synthetic_dir.')
  return problems


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError listing every invalid field; returns None when the config is usable."""
  from braingan import models  # pylint: disable=import-outside-toplevel
  if 'model' not in config or 'name' not in config.model:
    raise ConfigError('config.model.name is missing: every config names its model.')
  try:
    family = models.family(config)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  schema = flatten(models.default_config(config))
  flat = flatten(config)
  problems = [f'config.{k} is not a field of a {family} config (misspelt, or an option of '
              'another model?).' for k in flat if k not in schema]
  problems += [f'config.{k} is missing.' for k in schema if k not in flat]
  problems += [p for k, v in flat.items() if k in schema
               for p in [_type_problem(k, v, schema[k])] if p]
  if problems:   # Ranges and names assume the right fields and types.
    raise ConfigError('Invalid config:\n  ' + '\n  '.join(problems))
  for field, ok, meaning in _RANGES:
    if field in flat and not ok(flat[field]):
      problems.append(f'config.{field}={flat[field]!r} {meaning}.')
  if family == 'gan':
    problems += [f'config.{k}={flat[k]!r} is a classifier option; a GAN does not use it.'
                 for k in _CLASSIFIER_ONLY_DATA if flat[k] != schema[k]]
  if flat['data.val_fraction'] + flat['data.test_fraction'] >= 1.0:
    problems.append('config.data.val_fraction + config.data.test_fraction must be < 1.')
  if config.batch_size > 0 and config.steps_per_epoch >= 0 and not problems:
    problems += _name_problems(config, family)
  if problems:
    raise ConfigError('Invalid config:\n  ' + '\n  '.join(problems))


def resume_differences(old: ml_collections.ConfigDict,
                       new: ml_collections.ConfigDict) -> list[str]:
  """'config.x: run has A, now B' for every non-budget field that differs."""
  a, b = flatten(old), flatten(new)
  out = []
  for key in sorted(set(a) | set(b)):
    if key in BUDGET or any(key.startswith(p) for p in BUDGET if p.endswith('.')):
      continue
    if key not in a and is_added_default(key, b[key]):
      continue
    va, vb = a.get(key, '<absent>'), b.get(key, '<absent>')
    if isinstance(va, (list, tuple)) and isinstance(vb, (list, tuple)):
      va, vb = list(va), list(vb)
    if va != vb:
      out.append(f'config.{key}: run has {va!r}, now {vb!r}')
  return out
