"""decode.py: every mode becomes one gray channel at the right size and range."""
import io

import numpy as np
import pytest
from PIL import Image

from braingan import images
from braingan.data import decode
from tests.conftest import write_image


@pytest.mark.parametrize('mode,fmt,ext', [('L', 'PNG', 'png'), ('RGB', 'JPEG', 'jpg'),
                                          ('RGBA', 'PNG', 'png'), ('I;16', 'PNG', 'png'),
                                          ('CMYK', 'JPEG', 'jpg'), ('RGB', 'BMP', 'bmp'),
                                          ('L', 'TIFF', 'tif')])
def test_any_mode_to_gray(tmp_path, mode, fmt, ext):
  path = write_image(str(tmp_path / f'x.{ext}'), size=(50, 30), mode=mode, fmt=fmt)
  gray = decode.load_gray(path, 16)
  assert gray.shape == (16, 16) and gray.dtype == np.uint8
  assert gray.std() > 0  # Not a blank image: the content survived the conversion.


def test_palette_image(tmp_path):
  path = str(tmp_path / 'p.png')
  Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).convert('P').save(path)
  assert decode.load_gray(path, 8).std() > 0


def test_16bit_is_rescaled_not_clipped(tmp_path):
  path = str(tmp_path / 'deep.png')
  ramp = np.linspace(0, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
  Image.fromarray(ramp).save(path)
  gray = decode.load_gray(path)
  assert gray.min() == 0 and gray.max() == 255  # Clipping at 255 would make it all white.


def test_rgba_transparent_is_black(tmp_path):
  path = str(tmp_path / 'a.png')
  arr = np.full((10, 10, 4), 255, np.uint8)
  arr[..., 3] = 0
  Image.fromarray(arr, 'RGBA').save(path)
  assert decode.load_gray(path).max() == 0


def test_scaling_and_channels():
  gray = np.array([[0, 255], [127, 128]], np.uint8)
  x = decode.to_model_input(gray, channels=1)
  assert x.shape == (2, 2, 1) and x.dtype == np.float32
  np.testing.assert_allclose(x[..., 0], (gray.astype(np.float32) - 127.5) / 127.5)
  x3 = decode.to_model_input(gray, channels=3)
  assert x3.shape == (2, 2, 3) and np.array_equal(x3[..., 0], x3[..., 2])
  np.testing.assert_array_equal(images.to_gray_pixels(x3), gray)   # the inverse
  with pytest.raises(ValueError, match='channels'):
    decode.to_model_input(gray, channels=2)


def test_pad_keeps_aspect(tmp_path):
  path = str(tmp_path / 'wide.png')
  Image.fromarray(np.full((20, 80), 200, np.uint8)).save(path)
  padded = decode.load_gray(path, 40, resize='pad')
  squashed = decode.load_gray(path, 40, resize='squash')
  assert padded.shape == squashed.shape == (40, 40)
  assert padded[0].max() == 0 and padded[20].min() == 200  # Black bars top, image in middle.
  assert squashed.min() == 200
  with pytest.raises(ValueError, match='config.data.resize'):
    decode.load_gray(path, 40, resize='crop')


@pytest.mark.parametrize('content,reason', [
    (b'', 'empty file'),
    (b'hello, I am a text file', 'not an image'),
])
def test_bad_bytes_raise_with_reason(tmp_path, content, reason):
  path = tmp_path / 'bad.jpg'
  path.write_bytes(content)
  with pytest.raises(decode.ImageError, match=reason) as info:
    decode.load_gray(str(path))
  assert str(path) in str(info.value)  # The message names the file.


def test_truncated_jpeg_raises(tmp_path):
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
      buf, 'JPEG')
  path = tmp_path / 'cut.jpg'
  path.write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
  with pytest.raises(decode.ImageError, match='truncated'):
    decode.load_gray(str(path), 32)


def test_huge_image_decodes_and_giant_is_refused(tmp_path):
  path = str(tmp_path / 'big.jpg')
  grad = np.tile(np.linspace(0, 255, 6000, dtype=np.uint8), (6000, 1))
  Image.fromarray(grad).save(path, quality=50)
  gray = decode.load_gray(path, 128)
  assert gray.shape == (128, 128) and gray[:, -1].mean() > gray[:, 0].mean() + 200
  # A 20000x20000 header is refused before any pixel buffer is allocated.
  header = tmp_path / 'giant.png'
  Image.new('L', (20000, 20000)).save(header)
  with pytest.raises(decode.ImageError, match='too large'):
    decode.load_gray(str(header), 128)


def test_bytes_and_path_agree(tmp_path):
  path = write_image(str(tmp_path / 'x.jpg'), size=(90, 70), mode='RGB', fmt='JPEG')
  with open(path, 'rb') as f:
    np.testing.assert_array_equal(decode.load_gray(f.read(), 32), decode.load_gray(path, 32))
