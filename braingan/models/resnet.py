"""ResNet50 (Keras `keras.applications.ResNet50` layout) + the original study's head, in Flax Linen.

Why the Keras layout and not torchvision's: the study fine-tuned Keras's ResNet50 from its ImageNet
weights, so the model has to be able to load that exact file (see `pretrained.py`). The Keras layout
differs from torchvision's in ways that change the numbers: the stride sits on the first 1x1 conv of a
block (v1, not v1.5), every conv has a bias, BatchNorm epsilon is 1.001e-5, the stem is an explicit
ZeroPadding(3) + VALID 7x7/2 conv and ZeroPadding(1) + VALID 3x3/2 max pool, and inputs use 'caffe'
preprocessing (pixels 0..255, RGB->BGR, minus the ImageNet mean, no scaling).

Every parameter lives at the top level of the variable tree under the Keras layer name
(`conv1_conv`, `conv2_block1_1_conv`, `conv2_block1_0_bn`, ...) so the importer's mapping is the
identity on names and freezing prefixes read like the study's layer list. The head is `head_dense`
(Dense 512 ReLU) and `head_logits`.

Speed (see braingan/bench/classifier.py): a strided 1x1 conv is computed as "subsample, then 1x1 conv"
and a 1x1 conv as a matmul. Both are exact reformulations (a 1x1 kernel with stride s only ever reads
the pixels at multiples of s), and XLA:CPU's gradients for them are much cheaper than for a strided
convolution.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from braingan.models import fast_conv

# 'caffe' preprocessing constants, in BGR order (as keras.applications.imagenet_utils).
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
BN_EPSILON = 1.001e-5
BN_MOMENTUM = 0.99  # Keras BatchNormalization default.
RESNET50_STAGES = (3, 4, 6, 3)
_GLOROT = nn.initializers.glorot_uniform()  # Keras's default for Conv2D and Dense.


# The original study's `for layer in base_model.layers[:15]: layer.trainable = False`, as
# parameter paths (layers without weights - input, pads, relus, pool - need no entry).
KERAS15 = ('conv1_conv', 'conv1_bn', 'conv2_block1_1_conv', 'conv2_block1_1_bn',
           'conv2_block1_2_conv', 'conv2_block1_2_bn', 'conv2_block1_0_conv',
           'conv2_block1_3_conv')


def backbone_layer_names(stage_sizes: Sequence[int]) -> tuple[str, ...]:
  """Every layer with weights in the backbone (Keras names), in order."""
  names = ['conv1_conv', 'conv1_bn']
  for stage, blocks in enumerate(stage_sizes):
    for b in range(blocks):
      parts = ('0', '1', '2', '3') if b == 0 else ('1', '2', '3')
      for part in parts:
        names += [f'conv{stage + 2}_block{b + 1}_{part}_conv',
                  f'conv{stage + 2}_block{b + 1}_{part}_bn']
  return tuple(names)


def freeze_prefixes(freeze: Any, stage_sizes: Sequence[int]) -> tuple[str, ...]:
  """config.model.freeze -> parameter-path prefixes to keep fixed.

  'none' (or '') trains everything; 'keras15' freezes the study's first 15 Keras layers;
  'head' freezes the whole backbone (only the head trains: the strongest transfer level);
  anything else is a comma list (or sequence) of prefixes.
  """
  if freeze in ('', 'none', None):
    return ()
  if freeze == 'keras15':
    return KERAS15
  if freeze == 'head':
    return backbone_layer_names(stage_sizes)
  if isinstance(freeze, str):
    return tuple(p.strip() for p in freeze.split(',') if p.strip())
  return tuple(freeze)


def path_is_frozen(path: str, prefixes: Sequence[str]) -> bool:
  """True when '/'-joined `path` equals one of `prefixes` or lies under it (whole components)."""
  return any(path == p or path.startswith(p.rstrip('/') + '/') for p in prefixes)


def caffe_preprocess(x: jax.Array) -> jax.Array:
  """[-1, 1] images (1 or 3 channels, RGB) -> Keras 'caffe' input: BGR pixels minus ImageNet mean.

  Grayscale is repeated to 3 channels first, as the original study did.
  """
  pixels = (x + 1.0) * 127.5  # Inverse of the pipeline's (p - 127.5) / 127.5.
  if pixels.shape[-1] == 1:
    pixels = jnp.repeat(pixels, 3, axis=-1)
  bgr = pixels[..., ::-1]
  return bgr - jnp.asarray(IMAGENET_MEAN_BGR, dtype=x.dtype)


class KerasConv(nn.Module):
  """Conv2D with Keras's parameter shapes (kernel [kh, kw, in, out], bias [out]).

  padding: 'valid' or 'same' (Keras semantics; 'same' is only used with stride 1 here).
  1x1 kernels run as (subsample +) matmul; larger ones as a lax convolution, except stride-1
  ones when `patch_matmul` is set: one patch matmul (`fast_conv.conv_valid_im2col`), whose
  kernel gradient is one matmul too. Why: XLA:CPU's kernel gradient of a 3x3 convolution is
  slow where maps are large and channels few. Measured on the 2-core AMD EPYC (batch 32,
  forward + both gradients, min of 4 interleaved runs, shared load) for ResNet50's 3x3 convs at
  128 px input: 32x32x64 761 -> 291 ms, 16x16x128 155 -> 158 ms, 8x8x256 158 -> 124 ms,
  4x4x512 144 -> 111 ms. Same sums of products (results agree to float rounding); it costs
  the patch matrix (9x the layer's input) in memory, so accelerators may turn it off.
  """
  features: int
  kernel_size: int
  strides: int = 1
  padding: str = 'valid'
  dtype: Any = jnp.float32  # Compute dtype (mixed precision); parameters stay float32.
  patch_matmul: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', _GLOROT,
                        (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if k == 1:
      if self.strides > 1:
        x = x[:, ::self.strides, ::self.strides, :]
      y = jnp.dot(x, kernel[0, 0])
    else:
      if self.padding == 'same' and self.strides != 1:
        raise ValueError('KerasConv: padding="same" is only implemented for stride 1')
      pad = [((k - 1) // 2, k // 2)] * 2 if self.padding == 'same' else 'VALID'
      if self.patch_matmul and self.strides == 1:
        if self.padding == 'same':
          x = jnp.pad(x, ((0, 0), *pad, (0, 0)))
        return fast_conv.conv_valid_im2col(x, kernel) + bias.astype(self.dtype)
      y = jax.lax.conv_general_dilated(
          x, kernel, (self.strides, self.strides), pad,
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias.astype(self.dtype)


def _bn_train_fwd(x, scale, bias, epsilon):
  axes = tuple(range(x.ndim - 1))
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axes)
  var = jnp.mean(jnp.square(x32 - mean), axes)
  inv = jax.lax.rsqrt(var + epsilon)
  y = (x32 - mean) * (inv * scale) + bias
  return (y, mean, var), (x, mean, inv, scale)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def bn_train(x, scale, bias, epsilon):
  """(y, batch mean, batch variance): training-mode BatchNorm over all axes but the last.

  Two-pass statistics as Keras, with the textbook backward pass (dx from sum(dy) and
  sum(dy * xhat)) as a custom VJP: autodiff of the two-pass variance adds passes over the
  activations, and the ResNet50 step took 2.55 s with it against 2.36 s with this (2-core CPU,
  interleaved in one process), the same as Flax's one-pass E[x^2] - E[x]^2.
  """
  return _bn_train_fwd(x, scale, bias, epsilon)[0]


def _bn_train_bwd(epsilon, residuals, cotangents):
  del epsilon
  x, mean, inv, scale = residuals
  dy = cotangents[0].astype(jnp.float32)   # mean/var feed only the moving statistics.
  axes = tuple(range(x.ndim - 1))
  xhat = (x.astype(jnp.float32) - mean) * inv
  dbias = jnp.sum(dy, axes)
  dscale = jnp.sum(dy * xhat, axes)
  n = x.size // x.shape[-1]
  dx = (scale * inv) * (dy - dbias / n - xhat * (dscale / n))
  return dx.astype(x.dtype), dscale, dbias


bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


class KerasBatchNorm(nn.Module):
  """BatchNormalization as tf_keras computes it on NHWC maps (its fused kernel), in Flax.

  The variables have Flax's `nn.BatchNorm` names (params scale/bias, batch_stats mean/var), so
  checkpoints and the importer see no difference, and y = (x - mean) * (scale * rsqrt(var +
  eps)) + bias as there. Two things differ from `nn.BatchNorm`, both to match Keras
  (tests/test_keras_resnet_step.py): the batch variance is two-pass, E[(x - E[x])^2], not
  E[x^2] - E[x]^2, which loses digits when the mean is large next to the spread; and the moving
  variance is updated with the *unbiased* batch variance (times n / (n - 1), n = batch * height
  * width). At 128 px, batch 32, conv5 maps have n = 512; at 32 px n = 32, and with Flax's
  update the moving variances drift 3 % of each update apart from Keras's.
  """
  use_running_average: bool
  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON
  dtype: Any = jnp.float32  # Output dtype; statistics and parameters stay float32.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = (x.shape[-1],)
    scale = self.param('scale', nn.initializers.ones, features, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, features, jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    if self.use_running_average:
      x32 = x.astype(jnp.float32)
      mean, var = ra_mean.value, ra_var.value
      y = (x32 - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
      return y.astype(self.dtype)
    y, mean, var = bn_train(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      # Keras's fused kernel (4-D inputs only) corrects: rest_size / max(rest_size - 1, 1).
      n = x.size // x.shape[-1]
      bessel = n / (n - 1) if x.ndim == 4 and n > 1 else 1.0
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * (var * bessel)
    return y.astype(self.dtype)


class ResNetClassifier(nn.Module):
  """Keras-layout ResNet (ResNet50 by default) backbone + GAP -> Dense 512 ReLU -> Dropout -> logits.

  Attributes:
    num_classes: logits produced by the head.
    stage_sizes: residual blocks per stage; (3, 4, 6, 3) is ResNet50. Tests use (1, 1, 1, 1).
    width: filters of the first stage's bottleneck (64 in ResNet50); doubles every stage.
    head_units: width of the penultimate Dense layer (its output is `features`).
    dropout: dropout rate before the logits layer.
    preprocess: 'caffe' (Keras ResNet50's) or 'none' (feed [-1, 1] straight in).
    frozen: parameter-path prefixes whose BatchNorm layers always run in inference mode (as a Keras
      layer with trainable=False does). The optimiser separately keeps their parameters fixed.
  """
  num_classes: int = 4
  stage_sizes: Sequence[int] = RESNET50_STAGES
  width: int = 64
  head_units: int = 512
  dropout: float = 0.5
  preprocess: str = 'caffe'
  frozen: Sequence[str] = ()
  # Compute dtype (config.dtype via braingan.runtime.precision). Parameters stay float32;
  # KerasBatchNorm keeps its statistics float32 too; logits and features are returned as float32.
  dtype: Any = jnp.float32
  patch_matmul: bool = True   # 3x3 convs as patch matmuls (KerasConv: faster on XLA:CPU)
  # Keras's moving-average momentum; 0 makes a training-mode pass store each layer's statistics
  # of that one batch (braingan/train/classifier.py recomputes the statistics that way).
  bn_momentum: float = BN_MOMENTUM

  def _bn(self, name: str, train: bool) -> KerasBatchNorm:
    return KerasBatchNorm(use_running_average=not train or path_is_frozen(name, self.frozen),
                          momentum=self.bn_momentum, dtype=self.dtype, name=name)

  def _block(self, x, filters: int, stride: int, conv_shortcut: bool, name: str, train: bool):
    """Keras `block1`: the stride sits on the first 1x1 conv (and the projection shortcut)."""
    if conv_shortcut:
      shortcut = KerasConv(4 * filters, 1, stride, name=f'{name}_0_conv', dtype=self.dtype)(x)
      shortcut = self._bn(f'{name}_0_bn', train)(shortcut)
    else:
      shortcut = x
    y = KerasConv(filters, 1, stride, name=f'{name}_1_conv', dtype=self.dtype)(x)
    y = nn.relu(self._bn(f'{name}_1_bn', train)(y))
    y = KerasConv(filters, 3, 1, 'same', name=f'{name}_2_conv', dtype=self.dtype,
                  patch_matmul=self.patch_matmul)(y)
    y = nn.relu(self._bn(f'{name}_2_bn', train)(y))
    y = KerasConv(4 * filters, 1, name=f'{name}_3_conv', dtype=self.dtype)(y)
    y = self._bn(f'{name}_3_bn', train)(y)
    return nn.relu(shortcut + y)

  def backbone(self, x: jax.Array, train: bool) -> jax.Array:
    """Keras ResNet50(include_top=False) on already-preprocessed input -> [B, h, w, 32*width]."""
    x = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))  # conv1_pad
    x = KerasConv(self.width, 7, 2, name='conv1_conv', dtype=self.dtype)(x)
    x = nn.relu(self._bn('conv1_bn', train)(x))
    # pool1_pad + pool1_pool. Zero padding (not -inf) as Keras; after ReLU inputs are >= 0 so
    # the two agree, but zeros are what Keras literally does.
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    x = nn.max_pool(x, (3, 3), (2, 2), 'VALID')
    for stage, blocks in enumerate(self.stage_sizes):
      filters = self.width * 2 ** stage
      for b in range(blocks):
        stride = 2 if (stage > 0 and b == 0) else 1
        x = self._block(x, filters, stride, b == 0, f'conv{stage + 2}_block{b + 1}', train)
    return x

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, output: str = 'logits') -> jax.Array:
    """x: float [B, H, W, 1 or 3] in [-1, 1].

    output: 'logits' [B, num_classes], 'features' (the 512-d penultimate activations, after ReLU,
    for FID-style statistics) or 'backbone' (the Keras include_top=False output map).
    """
    if self.preprocess == 'caffe':
      x = caffe_preprocess(x)
    elif self.preprocess == 'none':
      if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    else:
      raise ValueError(f"preprocess={self.preprocess!r}: expected 'caffe' or 'none'")
    x = self.backbone(x.astype(self.dtype), train)   # Preprocessing stays float32.
    if output == 'backbone':
      return x.astype(jnp.float32)
    x = jnp.mean(x, axis=(1, 2))  # GlobalAveragePooling2D
    x = nn.relu(nn.Dense(self.head_units, kernel_init=_GLOROT, dtype=self.dtype,
                         name='head_dense')(x))
    if output == 'features':
      return x.astype(jnp.float32)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, kernel_init=_GLOROT, dtype=self.dtype,
                      name='head_logits')(x)
    return logits.astype(jnp.float32)   # Losses and probabilities in float32.


def init_variables(model: ResNetClassifier, input_shape: Sequence[int], seed: int = 0) -> dict:
  """Keras-default initial variables, drawn with NumPy from the shapes of `model.init`.

  Why not `jax.jit(model.init)`: XLA:CPU takes ~15 s to compile the ~100 threefry draws of even
  a tiny ResNet, more than the rest of a test. Values follow Keras defaults: glorot-uniform
  kernels, zero biases, BN gamma 1 / beta 0 / moving mean 0 / moving variance 1.
  """
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(input_shape, jnp.float32))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = int(np.prod(leaf.shape[:-1]))
      receptive = int(np.prod(leaf.shape[:-2])) if len(leaf.shape) > 2 else 1
      fan_out = leaf.shape[-1] * receptive
      limit = np.sqrt(6.0 / (fan_in + fan_out))
      return jnp.asarray(rng.uniform(-limit, limit, leaf.shape).astype(leaf.dtype))
    value = 1.0 if name in ('scale', 'var') else 0.0
    return jnp.full(leaf.shape, value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, dict(shapes))


def build(model_cfg, num_classes: int, dtype: Any = jnp.float32) -> ResNetClassifier:
  """The classifier from the config's `model` section (configs/classifier.py)."""
  if model_cfg.preprocess not in ('caffe', 'none'):
    raise ValueError(f"config.model.preprocess={model_cfg.preprocess!r}: expected 'caffe' or "
                     "'none'.")
  return ResNetClassifier(
      num_classes=num_classes, stage_sizes=tuple(model_cfg.stage_sizes), width=model_cfg.width,
      head_units=model_cfg.head_units, dropout=model_cfg.dropout,
      preprocess=model_cfg.preprocess,
      frozen=freeze_prefixes(model_cfg.freeze, model_cfg.stage_sizes), dtype=dtype,
      patch_matmul=jax.default_backend() == 'cpu')   # only measured to help on XLA:CPU
