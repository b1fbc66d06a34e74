"""Convolutions as explicit patch matmuls, for the layers where XLA:CPU's convolution is slow.

Why: XLA:CPU runs a plain matmul several times faster (in FLOP/s) than its convolutions, and
the generator's sub-pixel transposed convolutions (braingan.models.layers) are stride-1,
2x2-window convolutions over large maps with few input channels, exactly where gathering the
patches once and doing one matmul wins. Measured on the 2-core CPU at batch 32 (forward +
input and kernel gradients, min of 4 interleaved runs under shared load), per generator layer
8->16 / 16->32 / 32->64 / 64->128 px: 0.30/0.53/0.70/2.53 s with XLA's convolution (plus
per-tap kernel-gradient matmuls) vs 0.29/0.52/0.64/1.37 s as one patch matmul.

The arithmetic is the same sums of products as the convolution (only the summation order
differs), so results agree to float rounding, forward and backward; autodiff of the slices
and the matmul gives the gradients: the kernel gradient is `patches^T @ dy` (one matmul) and
the input gradient is `dy @ W^T` scattered back by the transposes of the slices (pads + adds).

Measured and NOT used: the discriminator's stride-2 5x5 convolutions (64->32, 32->16, 16->8
px) as im2col or as space-to-depth (a stride-1 3x3 conv over 2x2 blocks with a zero-padded
6x6 kernel) were 1.2-2.5x slower than XLA's own convolution there, forward and backward.
"""
import jax
import jax.numpy as jnp

Array = jax.Array


def patches_valid(x: Array, kernel_hw: tuple[int, int]) -> Array:
  """[N, H, W, C] -> [N, Ho, Wo, kh*kw*C] windows of a stride-1 VALID convolution.

  The last axis is ordered (kh, kw, C), matching a HWIO kernel reshaped to [kh*kw*C, O].
  """
  kh, kw = kernel_hw
  ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  if ho < 1 or wo < 1:
    raise ValueError(f'input {x.shape} is smaller than the {kh}x{kw} window.')
  return jnp.concatenate([x[:, i:i + ho, j:j + wo, :] for i in range(kh) for j in range(kw)],
                         axis=-1)


def conv_valid_im2col(x: Array, kernel: Array) -> Array:
  """Same as a stride-1 VALID NHWC/HWIO `lax.conv_general_dilated`, as one matmul.

  The patch matrix is kh*kw times the input, so use it for small windows (the sub-pixel
  layers' 2x2) or small maps.
  """
  kh, kw, cin, cout = kernel.shape
  if x.shape[-1] != cin:
    raise ValueError(f'input channels {x.shape[-1]} != kernel input channels {cin}.')
  p = patches_valid(x, (kh, kw))
  n, ho, wo, k = p.shape
  y = p.reshape(n * ho * wo, k) @ kernel.reshape(k, cout)
  return y.reshape(n, ho, wo, cout)
