"""scan/split/prepare on bad input: skipped + listed with a reason, or a clear error."""
import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from braingan.data import manifest as manifest_lib
from braingan.data import prepare
from braingan.data import scan as scan_lib
from configs import common
from tests.conftest import make_folder, write_image


def _cfg(data_dir, **overrides):
  cfg = common.data_config()
  cfg.data_dir = str(data_dir)
  cfg.image_size = 16
  for k, v in overrides.items():
    setattr(cfg, k, v)
  return cfg


def _rows(workdir):
  """Manifest rows keyed by 'folder/file' and, where unique, by file name."""
  rows = manifest_lib.read(os.path.join(workdir, 'manifest.csv'))
  keyed = {os.path.join(r.folder, os.path.basename(r.path)): r for r in rows}
  for r in rows:
    keyed.setdefault(os.path.basename(r.path), r)
  return keyed


def test_aliases_map_to_canonical_classes():
  assert scan_lib.canonical_class('glioma_tumor') == 'glioma'
  assert scan_lib.canonical_class('Meningioma') == 'meningioma'
  assert scan_lib.canonical_class('notumor') == 'no_tumor'
  assert scan_lib.canonical_class('normal') == 'no_tumor'
  assert scan_lib.canonical_class('pituitary-tumor') == 'pituitary'
  assert scan_lib.canonical_class('misc') is None


def test_bad_files_are_skipped_and_listed(tmp_path):
  root = tmp_path / 'data'
  make_folder(root, per_class=5)
  g = root / 'glioma_tumor'
  (g / 'empty.jpg').write_bytes(b'')
  (g / 'notes.jpg').write_text('this is text, not a JPEG')
  (g / 'readme.txt').write_text('a non-image file')
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), np.uint8)).save(buf, 'JPEG')
  (g / 'cut.jpg').write_bytes(buf.getvalue()[:300])
  write_image(str(g / 'alpha.png'), mode='RGBA', seed=77)
  write_image(str(g / 'deep.png'), mode='I;16', seed=78)
  os.symlink(str(g), str(g / 'loop'))               # A folder link back to itself.
  os.symlink(str(g / 'self.jpg'), str(g / 'self.jpg'))  # A file link to itself.
  workdir = str(tmp_path / 'work')
  summary = prepare.write_manifest(_cfg(root), workdir)
  rows = _rows(workdir)
  expect = {'empty.jpg': 'empty file', 'notes.jpg': 'not an image', 'readme.txt': 'not an image file',
            'cut.jpg': 'truncated', 'loop': 'symlink loop', 'self.jpg': 'cannot read'}
  for name, reason in expect.items():
    assert rows[name].split == 'skipped', name
    assert reason in rows[name].reason, (name, rows[name].reason)
  assert rows['alpha.png'].split in ('train', 'validation')
  assert rows['deep.png'].split in ('train', 'validation')
  assert len(summary['unreadable']) == len(expect)


def test_strict_turns_bad_files_into_an_error(tmp_path):
  root = tmp_path / 'data'
  make_folder(root, per_class=3)
  (root / 'no_tumor' / 'empty.png').write_bytes(b'')
  with pytest.raises(scan_lib.DataError, match='empty.png'):
    prepare.write_manifest(_cfg(root, strict=True), str(tmp_path / 'w'))


def test_missing_path_names_it(tmp_path):
  missing = tmp_path / 'nope'
  with pytest.raises(scan_lib.DataError, match=str(missing)):
    prepare.write_manifest(_cfg(missing), str(tmp_path / 'w'))


def test_file_instead_of_folder(tmp_path):
  f = tmp_path / 'file.jpg'
  f.write_bytes(b'x')
  with pytest.raises(scan_lib.DataError, match='not a folder'):
    prepare.write_manifest(_cfg(f), str(tmp_path / 'w'))


def test_folder_without_class_folders(tmp_path):
  (tmp_path / 'data' / 'cats').mkdir(parents=True)
  with pytest.raises(scan_lib.DataError, match='no class folders.*cats'):
    prepare.write_manifest(_cfg(tmp_path / 'data'), str(tmp_path / 'w'))


def test_only_one_class_is_an_error(tmp_path):
  root = make_folder(tmp_path / 'data', per_class=4, classes=('glioma',))
  with pytest.raises(scan_lib.DataError, match=r'at least 2 are needed'):
    prepare.write_manifest(_cfg(root), str(tmp_path / 'w'))


def test_empty_class_folder_is_a_warning(tmp_path, caplog):
  root = make_folder(tmp_path / 'data', per_class=4, classes=('glioma', 'meningioma'))
  (tmp_path / 'data' / 'pituitary').mkdir()
  summary = prepare.write_manifest(_cfg(root), str(tmp_path / 'w'))
  assert summary['counts']['train']['pituitary'] == 0
  assert "'pituitary' has no usable images" in caplog.text


def test_duplicates_kept_once_and_conflicts_dropped(tmp_path):
  root = tmp_path / 'data'
  make_folder(root, per_class=6)
  shutil.copy(root / 'glioma_tumor' / 'img0.png', root / 'glioma_tumor' / 'copy_a.png')
  shutil.copy(root / 'glioma_tumor' / 'img0.png', root / 'glioma_tumor' / 'copy_b.png')
  shutil.copy(root / 'no_tumor' / 'img1.png', root / 'pituitary_tumor' / 'clash.png')
  # A near duplicate: the same picture re-encoded as JPEG.
  Image.open(root / 'meningioma_tumor' / 'img2.png').save(root / 'meningioma_tumor' / 're.jpg',
                                                          quality=95)
  workdir = str(tmp_path / 'w')
  summary = prepare.write_manifest(_cfg(root), workdir)
  rows = _rows(workdir)
  assert summary['exact_duplicate_groups'] == 2 and summary['exact_duplicate_extra_copies'] == 3
  # The keeper of a group is its first path in sort order: copy_a.png.
  assert rows['copy_a.png'].split in ('train', 'validation')
  assert rows['glioma_tumor/img0.png'].reason == f'exact duplicate of {rows["copy_a.png"].path}'
  assert rows['copy_b.png'].split == 'skipped'
  assert rows['clash.png'].split == 'skipped' and 'label conflict' in rows['clash.png'].reason
  assert rows['re.jpg'].split == 'skipped' and rows['re.jpg'].reason.startswith('near duplicate')
  all_rows = manifest_lib.read(os.path.join(workdir, 'manifest.csv'))
  used = [r for r in all_rows if r.split != 'skipped']
  assert len({r.sha256 for r in used}) == len(used)


def test_same_seed_same_bytes_other_seed_other_split(tmp_path):
  root = make_folder(tmp_path / 'data', per_class=10)
  paths = []
  for name, seed in (('a', 0), ('b', 0), ('c', 1)):
    prepare.write_manifest(_cfg(root, split_seed=seed), str(tmp_path / name))
    paths.append(tmp_path / name / 'manifest.csv')
  assert paths[0].read_bytes() == paths[1].read_bytes()
  assert paths[0].read_bytes() != paths[2].read_bytes()


def test_stratified_80_20(tmp_path):
  root = make_folder(tmp_path / 'data', per_class=10)
  summary = prepare.write_manifest(_cfg(root, split_seed=3), str(tmp_path / 'w'))
  for c in ('glioma', 'meningioma', 'no_tumor', 'pituitary'):
    assert summary['counts']['validation'][c] == 2 and summary['counts']['train'][c] == 8


def test_workdir_reuse_checks_settings(tmp_path):
  root = make_folder(tmp_path / 'data', per_class=4)
  workdir = str(tmp_path / 'w')
  prepare.load_or_write_manifest(_cfg(root), workdir)
  before = (tmp_path / 'w' / 'manifest.csv').read_bytes()
  write_image(str(tmp_path / 'data' / 'glioma_tumor' / 'new.png'), seed=999)
  prepare.load_or_write_manifest(_cfg(root), workdir)  # Reused, not rescanned.
  assert (tmp_path / 'w' / 'manifest.csv').read_bytes() == before
  with pytest.raises(ValueError, match='seed'):
    prepare.load_or_write_manifest(_cfg(root, split_seed=1), workdir)


def _real_folder(root, per_class=6):
  """Real slices from the shipped sample (data/sample), so related-image checks see MRI."""
  from tests.conftest import SAMPLE_DIR  # pylint: disable=import-outside-toplevel
  for folder in sorted(os.listdir(SAMPLE_DIR)):
    if not os.path.isdir(os.path.join(SAMPLE_DIR, folder)):
      continue
    os.makedirs(root / folder)
    for name in sorted(os.listdir(os.path.join(SAMPLE_DIR, folder)))[:per_class]:
      shutil.copy(os.path.join(SAMPLE_DIR, folder, name), root / folder / name)
  return root


def test_flipped_cropped_and_rotated_copies_land_in_the_originals_unit(tmp_path):
  root = _real_folder(tmp_path / 'data')
  folder = root / 'glioma_tumor'
  original = sorted(os.listdir(folder))[0]
  with Image.open(folder / original) as im:
    gray = im.convert('L')
    w, h = gray.size
    gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / 'copy_flipped.png')
    gray.crop((int(w * .025), int(h * .025), w - int(w * .025), h - int(h * .025))).save(
        folder / 'copy_cropped.png')
    gray.rotate(5, resample=Image.Resampling.BILINEAR).save(folder / 'copy_rotated.png')
  workdir = str(tmp_path / 'w')
  summary = prepare.write_manifest(_cfg(root, test_fraction=0.25), workdir)
  rows = _rows(workdir)
  unit = rows[original].group
  for copy in ('copy_flipped.png', 'copy_cropped.png', 'copy_rotated.png'):
    assert rows[copy].group == unit, copy
    assert rows[copy].split == rows[original].split != 'skipped'   # kept, same side
  assert summary['related_units'] >= 1 and summary['related_images'] >= 4
  # Three-way split, disjoint at the unit level, every class on every side.
  used = [r for r in manifest_lib.read(os.path.join(workdir, 'manifest.csv'))
          if r.split != 'skipped']
  sides = {}
  for r in used:
    sides.setdefault(r.group, set()).add(r.split)
  assert all(len(s) == 1 for s in sides.values())
  assert {r.split for r in used} == {'train', 'validation', 'test'}
  for c in ('glioma', 'meningioma', 'no_tumor', 'pituitary'):
    assert all(summary['counts'][s][c] >= 1 for s in ('train', 'validation', 'test')), c


def test_nested_stratified_fraction_subsets():
  from braingan.data import pipeline  # pylint: disable=import-outside-toplevel
  labels = np.repeat(np.arange(4), [40, 40, 20, 40])
  units = np.arange(len(labels)) // 2          # related pairs: never split apart
  small = pipeline.nested_subset(labels, units, 0.25, seed=7)
  large = pipeline.nested_subset(labels, units, 0.5, seed=7)
  assert set(small) <= set(large)              # nested
  np.testing.assert_array_equal(small, pipeline.nested_subset(labels, units, 0.25, seed=7))
  assert not np.array_equal(small, pipeline.nested_subset(labels, units, 0.25, seed=8))
  assert np.bincount(labels[small]).tolist() == [10, 10, 6, 10]   # stratified (whole units)
  kept_units = units[large]
  assert all(np.sum(kept_units == u) == 2 for u in np.unique(kept_units))
