"""Fast, exactly equivalent building blocks for the GAN on XLA:CPU.

Why this module exists: `flax.linen.ConvTranspose` lowers to a convolution with a dilated
(zero-stuffed) input. XLA:CPU computes that layer's kernel gradient very slowly (seconds per
layer at batch 32, 128 px), which made a plain Flax transcription of the GAN ~20x slower than
the Keras original. A strided transposed convolution is the same linear map as `s*s` small
stride-1 convolutions ("phases"), one per output sub-pixel position, interleaved by
depth-to-space. We run those phases as ONE stride-1 convolution with `s*s*features` output
channels, then slice each phase into place. The arithmetic is exactly the same sums of products
(no zeros are multiplied), so results match `lax.conv_transpose` to float rounding, forward and
backward.

Parameters keep the layout of `flax.linen.ConvTranspose(transpose_kernel=False)`:
`kernel` [kh, kw, in, out] and `bias` [out], so checkpoints are interchangeable with the plain
layer. `keras_kernel_from_flax` / `flax_kernel_from_keras` convert to and from Keras
`Conv2DTranspose` (padding='same'), whose output alignment is the same but whose kernel is
spatially flipped and stores [kh, kw, out, in].
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from braingan.models import fast_conv

Array = jax.Array


def _same_pad_before(kernel: int, stride: int) -> int:
  """Leading padding `lax.conv_transpose(padding='SAME')` puts on the dilated input."""
  pad_len = kernel + stride - 2
  if stride > kernel - 1:
    return kernel - 1
  return int(np.ceil(pad_len / 2))


def _phase_plan(kernel: int, stride: int) -> tuple[list[list[int]], list[int], int, int]:
  """For one spatial axis: kernel taps and input offset of every output phase.

  With transposed-conv padding `p`, output `o` gets `x[i] * w[k]` for every `o = s*i - k + p`.
  Writing `o = s*m + r`, phase `r` uses taps `k` with `(r + k - p) % s == 0` at input offsets
  `i - m = (r + k - p) / s`, which are consecutive. Returns (taps per phase in increasing
  offset order, first offset per phase, padding before, padding after) for a stride-1
  convolution over the padded input with window `kernel // stride`.
  """
  if kernel % stride:
    raise ValueError(f'sub-pixel transposed conv needs kernel % stride == 0, got {kernel}, {stride}')
  pad = _same_pad_before(kernel, stride)
  window = kernel // stride
  taps, first = [], []
  for r in range(stride):
    ks = [k for k in range(kernel) if (r + k - pad) % stride == 0]
    taps.append(ks)  # increasing k <=> increasing input offset
    first.append((r + ks[0] - pad) // stride)
  lo = max(0, -min(first))
  hi = max(0, max(first) + window - 1)
  return taps, first, lo, hi


def _conv_valid(x: Array, w: Array, precision: Any) -> Array:
  return jax.lax.conv_general_dilated(
      x, w, window_strides=(1, 1), padding='VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=precision)


def conv_transpose_subpixel(x: Array, kernel: Array, strides: Sequence[int],
                            precision: Any = None, patch_matmul: bool = True) -> Array:
  """Same result as `lax.conv_transpose(x, kernel, strides, 'SAME')` for NHWC / HWIO.

  Args:
    x: [N, H, W, Cin].
    kernel: [kh, kw, Cin, Cout] in `flax.linen.ConvTranspose` layout (not transposed).
    strides: (sh, sw); each kernel size must be a multiple of its stride.
    precision: passed to the convolution (only when `patch_matmul` is False).
    patch_matmul: run the phases as one patch matmul (`fast_conv.conv_valid_im2col`,
      faster on XLA:CPU) instead of XLA's convolution.
  Returns:
    [N, H*sh, W*sw, Cout].
  """
  kh, kw, cin, cout = kernel.shape
  sh, sw = strides
  n, h, w, _ = x.shape
  taps_h, first_h, lo_h, hi_h = _phase_plan(kh, sh)
  taps_w, first_w, lo_w, hi_w = _phase_plan(kw, sw)
  # One stride-1 kernel whose output channels are (phase_h, phase_w, Cout).
  phase_kernels = []
  for ry in range(sh):
    for rx in range(sw):
      sub = kernel[np.array(taps_h[ry])][:, np.array(taps_w[rx])]
      phase_kernels.append(sub)
  stacked = jnp.concatenate(phase_kernels, axis=-1)  # [kh/sh, kw/sw, Cin, sh*sw*Cout]
  xp = jnp.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
  if patch_matmul and precision is None:
    # One patch matmul: its kernel gradient is one matmul too, and forward and input
    # gradient beat XLA:CPU's convolution (up to 1.8x on the 64->128 px layer, fast_conv).
    y = fast_conv.conv_valid_im2col(xp, stacked)
  else:
    y = _conv_valid(xp, stacked, precision)
  y = y.reshape(y.shape[:3] + (sh, sw, cout))
  rows = []
  for ry in range(sh):
    oy = first_h[ry] + lo_h
    cols = []
    for rx in range(sw):
      ox = first_w[rx] + lo_w
      cols.append(y[:, oy:oy + h, ox:ox + w, ry, rx, :])
    rows.append(jnp.stack(cols, axis=3))  # [N, H, W, sw, C]
  y = jnp.stack(rows, axis=2)  # [N, H, sh, W, sw, C]
  return y.reshape(n, h * sh, w * sw, cout)


def _input_and_kernel(layer: nn.Module, x: Array) -> tuple[Array, Array]:
  """The layer's kernel param ([kh, kw, in, out], flax layout) and both cast to layer.dtype."""
  kernel = layer.param('kernel', layer.kernel_init,
                       tuple(layer.kernel_size) + (x.shape[-1], layer.features),
                       layer.param_dtype)
  if layer.dtype is not None:
    x, kernel = x.astype(layer.dtype), kernel.astype(layer.dtype)
  return x, kernel


def _add_bias(layer: nn.Module, y: Array) -> Array:
  if not layer.use_bias:
    return y
  bias = layer.param('bias', layer.bias_init, (layer.features,), layer.param_dtype)
  return y + (bias if layer.dtype is None else bias.astype(layer.dtype))


class SubPixelConvTranspose(nn.Module):
  """Drop-in for `nn.ConvTranspose(features, kernel_size, strides, padding='SAME')`.

  Same parameter names, shapes and initialisers; only the lowering differs (see module doc).
  """
  features: int
  kernel_size: Sequence[int] = (4, 4)
  strides: Sequence[int] = (2, 2)
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  precision: Any = None
  patch_matmul: bool = True
  # Mixed precision (braingan.runtime.precision): compute in `dtype` (None: as the input),
  # store parameters in `param_dtype`.
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x, kernel = _input_and_kernel(self, x)
    y = conv_transpose_subpixel(x, kernel, tuple(self.strides), self.precision,
                                self.patch_matmul)
    return _add_bias(self, y)


def keras_kernel_from_flax(kernel: np.ndarray) -> np.ndarray:
  """[kh, kw, in, out] (flax ConvTranspose) -> [kh, kw, out, in] (Keras Conv2DTranspose)."""
  return np.ascontiguousarray(np.flip(np.asarray(kernel), (0, 1)).transpose(0, 1, 3, 2))


def flax_kernel_from_keras(kernel: np.ndarray) -> np.ndarray:
  """Inverse of `keras_kernel_from_flax`."""
  return np.ascontiguousarray(np.flip(np.asarray(kernel).transpose(0, 1, 3, 2), (0, 1)))


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
  """(output size, pad before, pad after) of TF/XLA 'SAME' padding along one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return out, total // 2, total - total // 2


def conv2d_im2col(x: Array, kernel: Array, strides: Sequence[int]) -> Array:
  """'SAME' NHWC/HWIO convolution as one matmul over explicitly gathered patches.

  Used where XLA:CPU's convolution is pathological: on tiny feature maps (the discriminator's
  last 8x8 -> 4x4 layer) the stride-2 input gradient takes >2 s at batch 32 as a convolution
  and 0.1 s as the transposed matmul. The patch matrix is k*k times the input, so use it
  only on small maps.
  """
  kh, kw, cin, cout = kernel.shape
  sh, sw = strides
  n, h, w, _ = x.shape
  ho, top, bottom = _same_padding(h, kh, sh)
  wo, left, right = _same_padding(w, kw, sw)
  xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  cols = [jax.lax.slice(xp, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, cin),
                        (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(cols, axis=-1).reshape(n * ho * wo, kh * kw * cin)
  return (patches @ kernel.reshape(kh * kw * cin, cout)).reshape(n, ho, wo, cout)


def conv2d_shift_add(x: Array, kernel: Array) -> Array:
  """Stride-1 'SAME' NHWC/HWIO convolution as one matmul to all taps, then shifted sums.

  `z = x @ W` gives every tap's contribution at every pixel ([N, H, W, kh, kw, Cout]); the
  output sums the shifted taps. Cheap when kh*kw*Cout is small (the generator's final 5x5
  conv to 1-3 channels at full resolution, where the patch matrix of im2col would be 1600
  columns wide), and its gradients are matmuls plus shifts.
  """
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  _, top, bottom = _same_padding(h, kh, 1)
  _, left, right = _same_padding(w, kw, 1)
  z = (x.reshape(-1, cin) @ kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout))
  z = z.reshape(n, h, w, kh, kw, cout)
  # Output p gets tap i from input p + i - top, i.e. from z padded by `top` at p + i.
  z = jnp.pad(z, ((0, 0), (top, bottom), (left, right), (0, 0), (0, 0), (0, 0)))
  out = None
  for i in range(kh):
    for j in range(kw):
      shifted = z[:, i:i + h, j:j + w, i, j, :]
      out = shifted if out is None else out + shifted
  return out


def conv2d_space_to_depth(x: Array, kernel: Array, strides: Sequence[int]) -> Array:
  """'SAME' stride-s NHWC/HWIO convolution as a stride-1 VALID convolution over s x s blocks.

  The input, padded as 'SAME' would pad it (plus zeros up to whole blocks), is rearranged
  space-to-depth into [N, H/s + K-1, W/s + K-1, s*s*C]; the kernel, zero-padded to K*s taps
  per axis (K = ceil(k/s)), is rearranged the same way. The extra taps multiply zeros, so the
  result equals the strided convolution; (K*s/k)^2 more multiply-adds (1.44x for 5x5/2).
  Why it exists: its *input gradient* is a plain stride-1 convolution, which XLA:CPU runs
  through its fast convolution path, while the input gradient of the strided convolution
  itself is a zero-dilated convolution that XLA:CPU runs on a slow generic loop (the largest
  single cost of the discriminator's backward pass: 111 vs 30 ms at 64 px, 32->64 channels,
  batch 32). See `conv2d_fast_input_grad`.
  """
  kh, kw, cin, cout = kernel.shape
  sh, sw = strides
  n, h, w, _ = x.shape
  if h % sh or w % sw:
    raise ValueError(f'space-to-depth convolution needs sizes divisible by the strides, got '
                     f'{x.shape} and {strides}.')
  bh, bw = -(-kh // sh), -(-kw // sw)          # kernel size in blocks
  _, top, _ = _same_padding(h, kh, sh)
  _, left, _ = _same_padding(w, kw, sw)
  xp = jnp.pad(x, ((0, 0), (top, sh * (bh - 1) - top), (left, sw * (bw - 1) - left), (0, 0)))
  hb, wb = xp.shape[1] // sh, xp.shape[2] // sw
  xs = xp.reshape(n, hb, sh, wb, sw, cin).transpose(0, 1, 3, 2, 4, 5).reshape(
      n, hb, wb, sh * sw * cin)
  ke = jnp.pad(kernel, ((0, bh * sh - kh), (0, bw * sw - kw), (0, 0), (0, 0)))
  ks = ke.reshape(bh, sh, bw, sw, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(
      bh, bw, sh * sw * cin, cout)
  return jax.lax.conv_general_dilated(xs, ks, (1, 1), 'VALID',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _conv_same(x: Array, kernel: Array, strides: Sequence[int]) -> Array:
  return jax.lax.conv_general_dilated(x, kernel, tuple(strides), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d_fast_input_grad(x: Array, kernel: Array, strides: tuple[int, int]) -> Array:
  """A strided 'SAME' convolution whose input gradient runs as a stride-1 convolution.

  Forward and kernel gradient are XLA's own (its fast path for them); the input gradient is
  that of `conv2d_space_to_depth`, which computes the same function. Results agree with
  `lax.conv_general_dilated` to float rounding, forward and backward (tests/test_layers.py).
  """
  return _conv_same(x, kernel, strides)


def _fast_input_grad_fwd(x, kernel, strides):
  return _conv_same(x, kernel, strides), (x, kernel)


def _fast_input_grad_bwd(strides, residuals, dy):
  x, kernel = residuals
  _, kernel_vjp = jax.vjp(lambda k: _conv_same(x, k, strides), kernel)
  _, input_vjp = jax.vjp(lambda v: conv2d_space_to_depth(v, kernel, strides), x)
  return input_vjp(dy)[0], kernel_vjp(dy)[0]


conv2d_fast_input_grad.defvjp(_fast_input_grad_fwd, _fast_input_grad_bwd)


class Conv2D(nn.Module):
  """`nn.Conv(features, kernel_size, strides, padding='SAME')` with a selectable lowering.

  Same parameter names and shapes as `nn.Conv`. `impl`: 'xla' (lax convolution),
  'fast_input_grad' (XLA's, with a stride-1 input gradient; for strided layers on large maps),
  'im2col' (patch matmul, for tiny feature maps) or 'shift_add' (stride 1, few outputs).
  All compute the same sums; see the functions above for when each is fastest.
  """
  features: int
  kernel_size: Sequence[int] = (5, 5)
  strides: Sequence[int] = (1, 1)
  impl: str = 'xla'
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  # Mixed precision (braingan.runtime.precision): compute in `dtype` (None: as the input),
  # store parameters in `param_dtype`.
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x, kernel = _input_and_kernel(self, x)
    strides = tuple(self.strides)
    if self.impl == 'xla':
      y = _conv_same(x, kernel, strides)
    elif self.impl == 'fast_input_grad':
      y = conv2d_fast_input_grad(x, kernel, strides)
    elif self.impl == 'im2col':
      y = conv2d_im2col(x, kernel, strides)
    elif self.impl == 'shift_add':
      if strides != (1, 1):
        raise ValueError(f"impl='shift_add' needs strides (1, 1), got {strides}.")
      y = conv2d_shift_add(x, kernel)
    else:
      raise ValueError(f"Conv2D impl={self.impl!r}: expected 'xla', 'fast_input_grad', "
                       "'im2col' or 'shift_add'.")
    return _add_bias(self, y)
