"""Writes a balanced synthetic set from a trained GAN: OUT/<class>/*.png + OUT/manifest.json.

python -m braingan.generate --workdir=runs/cgan --per_class=2500 --out=runs/cgan/generated

The original study drew random labels; we write exactly `per_class` images of every class so
that a real+synthetic training set stays balanced. Generation is batched with one jit-compiled
sampler (fixed batch shape, the last batch padded) and deterministic given --seed.
"""
from __future__ import annotations

import json
import os
from typing import Any

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from braingan import hostmem
from braingan.data import CLASSES, NUM_CLASSES
from braingan.data import decode

MANIFEST = 'manifest.json'


def generate(workdir: str, out_dir: str, per_class: int, *, seed: int = 0, batch_size: int = 64,
             step: int | None = None) -> dict[str, Any]:
  """Restores the generator of `workdir` (latest checkpoint unless `step`) and writes PNGs.

  With several processes every process must call this (restoring is collective): each writes
  its share of the batches (the noise of image i depends only on (seed, i), so the files are
  the same as with one process) and process 0 writes the manifest once all are done.
  """
  from braingan.train import gan  # pylint: disable=import-outside-toplevel
  from braingan.train import gan_step  # pylint: disable=import-outside-toplevel
  if per_class < 1:
    raise ValueError(f'per_class={per_class} must be >= 1.')
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size} must be >= 1.')
  config, generator, variables, meta = gan.restore_generator(workdir, step)
  sampler = gan_step.make_sampler(generator)
  latent = config.model.latent_dim
  labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), per_class)
  index_in_class = np.tile(np.arange(per_class), NUM_CLASSES)
  key = jax.random.key(seed)
  for name in CLASSES:
    os.makedirs(os.path.join(out_dir, name), exist_ok=True)
  total = len(labels)
  for begin in range(0, total, batch_size):
    if (begin // batch_size) % jax.process_count() != jax.process_index():
      continue  # Another process writes this batch.
    end = min(begin + batch_size, total)
    batch_labels = np.zeros((batch_size,), np.int32)
    batch_labels[:end - begin] = labels[begin:end]
    # Noise of image i depends only on (seed, i): the same files whatever the batch size.
    z = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (latent,)))(
        jnp.arange(begin, begin + batch_size))
    images = decode.to_pixels(jax.device_get(sampler(variables, z, jnp.asarray(batch_labels))))
    for offset in range(end - begin):
      i = begin + offset
      name = CLASSES[labels[i]]
      pixels = images[offset]
      picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
      picture.save(os.path.join(out_dir, name, f'{name}_{index_in_class[i]:05d}.png'))
  manifest = {
      'workdir': os.path.abspath(workdir),
      'checkpoint_epoch': int(meta['epoch']),
      'checkpoint_step': int(meta.get('train_step', meta['step'])),
      'seed': seed,
      'per_class': per_class,
      'image_size': int(config.data.image_size),
      'channels': int(config.data.channels),
      'classes': list(CLASSES),
      'counts': {name: per_class for name in CLASSES},
  }
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices('braingan_generate_done')
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, MANIFEST), 'w', encoding='utf-8') as f:
      json.dump(manifest, f, indent=2)
  return manifest


FLAGS = flags.FLAGS


def main(argv):
  del argv
  manifest = generate(FLAGS.workdir, FLAGS.out or os.path.join(FLAGS.workdir, 'generated'),
                      FLAGS.per_class, seed=FLAGS.seed, batch_size=FLAGS.batch_size,
                      step=FLAGS.step)
  print(json.dumps(manifest, indent=2))


if __name__ == '__main__':
  hostmem.ensure_hugepage_malloc()  # re-executes once; see braingan/hostmem.py
  flags.DEFINE_string('workdir', None, 'Training workdir (config.json + checkpoints/).',
                      required=True)
  flags.DEFINE_integer('per_class', 2500, 'Images written per class.')
  flags.DEFINE_string('out', '', "Output folder; '' -> <workdir>/generated.")
  flags.DEFINE_integer('seed', 0, 'Noise seed.')
  flags.DEFINE_integer('batch_size', 64, 'Images per jitted sampler call.')
  flags.DEFINE_integer('step', None, 'Checkpoint (epoch) to use; default: the latest.')
  app.run(main)
