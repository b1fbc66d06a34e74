"""A TFDS dataset builder over the user's image folder, driven by manifest.csv.

The folder is TFDS's manual dir; the manifest says which file belongs to which split. Each image
is decoded and resized once, by `decode.load_gray`, and stored as uint8 [S, S, 1] so later reads
are plain tensor reads. The builder config's name carries the image size, the resize mode and
the manifest's digest: a new split or size makes a new config, never a stale reuse.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from braingan.data import CLASSES
from braingan.data import decode
from braingan.data import manifest as manifest_lib
from braingan.runtime import tensorflow

tensorflow.get()   # Before TFDS builds anything: GPUs hidden from TF, chatter muted.


@dataclasses.dataclass
class BrainMriConfig(tfds.core.BuilderConfig):
  manifest_path: str = ''
  image_size: int = 128
  resize: str = 'squash'


class BrainMri(tfds.core.GeneratorBasedBuilder):
  """Brain MRI slices in four classes, grayscale, resized, split by braingan's manifest."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Manifest-driven split with duplicate groups on one side.',
                   '1.1.0': 'A test split when the manifest has one.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Point config.data.data_dir at a folder with one sub-folder per class (glioma, meningioma, '
      'no_tumor/notumor, pituitary; *_tumor aliases work). braingan writes manifest.csv first.')

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(names=list(CLASSES)),
            'sha256': tfds.features.Text(),
            'path': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        description='braingan brain MRI slices (see manifest.csv for provenance).',
    )

  def _log_download_bytes(self) -> None:
    """TFDS prints a bold "Downloading and preparing dataset Unknown size" line; this is a local
    folder, so say what happens instead."""
    print(f'Preparing {self.builder_config.image_size} px images once into {self.data_dir}',
          flush=True)

  def _log_download_done(self) -> None:
    pass

  def _split_generators(self, dl_manager):
    del dl_manager  # Paths in the manifest are absolute; the manual dir is the same folder.
    rows = manifest_lib.read(self.builder_config.manifest_path)
    return {split: self._generate_examples([r for r in rows if r.split == split])
            for split in ('train', 'validation', 'test')
            if any(r.split == split for r in rows)}

  def _generate_examples(self, rows):
    cfg = self.builder_config
    decode_row = lambda row: decode.load_gray(row.path, cfg.image_size, cfg.resize)
    # Pillow releases the GIL while decoding, so threads use every core; map keeps the order.
    with concurrent.futures.ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
      for row, gray in zip(rows, pool.map(decode_row, rows)):
        yield row.sha256, {'image': gray[..., None], 'label': CLASSES.index(row.label),
                           'sha256': row.sha256, 'path': row.path}


def builder_for(manifest_path: str, image_size: int, resize: str, tfds_dir: str) -> BrainMri:
  name = f'{image_size}px_{resize}_{manifest_lib.digest(manifest_path)}'
  config = BrainMriConfig(name=name, manifest_path=os.path.abspath(manifest_path),
                          image_size=image_size, resize=resize)
  return BrainMri(config=config, data_dir=tfds_dir)


def build(manifest_path: str, image_size: int, resize: str, tfds_dir: str,
          data_dir: str) -> BrainMri:
  """Prepares the dataset once into tfds_dir (a no-op when it is already there).

  TFDS's own progress bars and "Downloading and preparing" lines are hidden unless the entry
  point ran with --verbose (braingan/cli.py): they are meant for downloads, this is a local
  folder, and their cursor codes garble log files.
  """
  if os.environ.get('BRAINGAN_VERBOSE', '0') != '1':
    tfds.disable_progress_bar()
  builder = builder_for(manifest_path, image_size, resize, tfds_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.path.abspath(data_dir)))
  return builder
