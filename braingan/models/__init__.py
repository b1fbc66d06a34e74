"""Models by name: `config.model.name` -> the Flax module(s) a recipe trains.

A registry entry is (family, builder, default config). The family says which recipe trains it
('gan': braingan/train/gan.py, 'classifier': braingan/train/classifier.py); the builder takes
the whole config and returns the module(s); the default config ('module:function' in configs/)
is the schema braingan/config_check.py validates a config of this model against. Adding a
backbone: a module in this package, one line here, a config file whose `model` section the
builder reads.
"""
from __future__ import annotations

from typing import Any, Callable

import ml_collections

from braingan.data import NUM_CLASSES
from braingan.models import cdcgan
from braingan.models import compact_gan
from braingan.models import resnet
from braingan.runtime import precision


def _cdcgan(config: ml_collections.ConfigDict) -> Any:
  return cdcgan.build(config.model, config.data.image_size, config.data.channels, NUM_CLASSES,
                      dtype=precision.compute_dtype(config))


def _compact_gan(config: ml_collections.ConfigDict) -> Any:
  return compact_gan.build(config.model, config.data.image_size, config.data.channels,
                           NUM_CLASSES, dtype=precision.compute_dtype(config))


def _resnet(config: ml_collections.ConfigDict) -> Any:
  return resnet.build(config.model, NUM_CLASSES, dtype=precision.compute_dtype(config))


REGISTRY: dict[str, tuple[str, Callable[[ml_collections.ConfigDict], Any], str]] = {
    # GANForge's conditional DCGAN (+ conditioning options)
    'cdcgan': ('gan', _cdcgan, 'configs.cgan:get_config'),
    # A compact conditional GAN that carries its class on small data and compute
    'compact_cgan': ('gan', _compact_gan, 'configs.cgan_conditioned:get_config'),
    # Keras-layout ResNet50 (or narrower) + the study's head
    'resnet': ('classifier', _resnet, 'configs.classifier:get_config'),
}


def family(config: ml_collections.ConfigDict) -> str:
  name = config.model.name
  if name not in REGISTRY:
    raise ValueError(f'config.model.name={name!r}: expected one of {sorted(REGISTRY)}.')
  return REGISTRY[name][0]


def default_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The default config of config.model.name's model: the schema of its config."""
  import importlib  # pylint: disable=import-outside-toplevel
  family(config)
  module, function = REGISTRY[config.model.name][2].split(':')
  return getattr(importlib.import_module(module), function)()


def build(config: ml_collections.ConfigDict) -> Any:
  """The module(s) for `config`: (generator, discriminator) for a GAN, one module otherwise."""
  family(config)
  return REGISTRY[config.model.name][1](config)
