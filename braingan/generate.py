"""Writes a balanced synthetic set from a trained GAN: OUT/<class>/*.png + OUT/manifest.json.

python -m braingan.generate --workdir=runs/cgan --per_class=2500 [--out=runs/cgan/generated]

The original study drew random labels; we write exactly `per_class` images of every class so
that a real+synthetic training set stays balanced. The generator's EMA weights are used when the
run kept them. Generation is batched with one jitted sampler (fixed batch shape, the last batch
padded) and deterministic given --seed: the noise of image i depends only on (seed, i).

Nothing stale survives a rerun: images go into OUT.partial (emptied first), and only when every
image and the manifest are written is OUT replaced by it, so OUT holds exactly what its
manifest lists, and a reader never sees a half-written set.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from absl import flags
import jax
import numpy as np
from PIL import Image

from braingan import cli
from braingan import files
from braingan import images as images_lib
from braingan.data import CLASSES, NUM_CLASSES
from braingan.runtime import distributed

MANIFEST = 'manifest.json'


def _replace_dir(partial: str, out_dir: str) -> None:
  """Moves `partial` to `out_dir`, replacing what was there."""
  old = None
  if os.path.exists(out_dir):
    old = f'{out_dir}.old-{int(time.time() * 1000)}'
    os.rename(out_dir, old)
  os.rename(partial, out_dir)
  if old:
    shutil.rmtree(old)


def generate(workdir: str, out_dir: str, per_class: int, *, seed: int = 0, batch_size: int = 64,
             step: int | None = None, use_ema: bool = True) -> dict[str, Any]:
  """Restores the generator of `workdir` (the run's result unless `step`: the checkpoint that
  config.select_generator kept, else the latest) and writes PNGs.

  `out_dir` '' means <workdir>/generated. With several processes every process calls this and
  writes its share of the batches (the files are the same as with one process); process 0
  writes the manifest and moves the set into place once all are done.
  """
  from braingan import inference  # pylint: disable=import-outside-toplevel
  from braingan.run_dir import RunDir  # pylint: disable=import-outside-toplevel
  if per_class < 1:
    raise ValueError(f'per_class={per_class} must be >= 1.')
  if batch_size < 1:
    raise ValueError(f'batch_size={batch_size} must be >= 1.')
  out_dir = os.path.abspath(out_dir or RunDir(workdir).generated)
  generator = inference.load_generator(workdir, step, use_ema=use_ema)
  partial = out_dir + '.partial'
  if distributed.is_main_process():
    shutil.rmtree(partial, ignore_errors=True)
    for name in CLASSES:
      os.makedirs(os.path.join(partial, name))
  distributed.sync('braingan_generate_start')
  labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), per_class)
  index_in_class = np.tile(np.arange(per_class), NUM_CLASSES)
  total = len(labels)
  for begin in range(0, total, batch_size):
    if (begin // batch_size) % jax.process_count() != jax.process_index():
      continue  # Another process writes this batch.
    end = min(begin + batch_size, total)
    batch_labels = np.zeros((batch_size,), np.int32)
    batch_labels[:end - begin] = labels[begin:end]
    z = generator.latents(seed, np.arange(begin, begin + batch_size))
    pixels = images_lib.to_pixels(generator.sample(z, batch_labels))
    for offset in range(end - begin):
      i = begin + offset
      name = CLASSES[labels[i]]
      picture = pixels[offset]
      Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(
          os.path.join(partial, name, f'{name}_{index_in_class[i]:05d}.png'))
  manifest = {
      'workdir': os.path.abspath(workdir),
      'checkpoint_epoch': int(generator.meta['epoch']),
      'checkpoint_step': generator.step,
      'weights': 'ema' if use_ema and generator.config.ema.decay > 0 else 'generator',
      'seed': seed,
      'per_class': per_class,
      'image_size': int(generator.config.data.image_size),
      'channels': int(generator.config.data.channels),
      'classes': list(CLASSES),
      'counts': {name: per_class for name in CLASSES},
  }
  distributed.sync('braingan_generate_done')
  if distributed.is_main_process():
    files.write_json(os.path.join(partial, MANIFEST), manifest)
    _replace_dir(partial, out_dir)
    print(f'Wrote {total} images to {out_dir}', flush=True)
  distributed.sync('braingan_generate_moved')
  return manifest


def main(argv):
  del argv
  f = flags.FLAGS
  cli.start(f)
  manifest = generate(f.workdir, f.out, f.per_class, seed=f.seed, batch_size=f.batch_size,
                      step=f.step, use_ema=not f.no_ema)
  print(json.dumps(manifest, indent=2))


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'Training workdir (config.json + checkpoints/).',
                      required=True)
  flags.DEFINE_integer('per_class', 2500, 'Images written per class.')
  flags.DEFINE_string('out', '', "Output folder; '' -> <workdir>/generated.")
  flags.DEFINE_integer('seed', 0, 'Noise seed.')
  flags.DEFINE_integer('batch_size', 64, 'Images per jitted sampler call.')
  flags.DEFINE_integer('step', None, 'Checkpoint (epoch) to use; default: the run\'s result '
                       '(the checkpoint config.select_generator kept, else the latest).')
  flags.DEFINE_bool('no_ema', False, "Use the generator's own weights even if it kept an EMA.")
  cli.define_flags()
  cli.run(main)
