"""Ways a label enters a GAN: a label plane, class-conditional BatchNorm, projection, AC head.

Each piece takes `scale` (0..1), the strength of the label's influence, so transitional
conditioning (Shahbazi et al. 2022, "Collapse by conditioning") can start a GAN unconditional and
blend the label in; scale = 1 is the ordinary conditional model.

- `LabelPlane` (GANForge, both nets): label -> Embedding -> Dense(H*W) -> one extra channel.
- `ConditionalBatchNorm` (generator): BatchNorm without its own affine, then a per-class gain
  and bias (Dumoulin et al. 2017; de Vries et al. 2017), gain = 1 + scale * delta_y.
- `projection` (discriminator, Miyato & Koyama 2018): logit += scale * <embed(y), phi(x)>.
- `AuxiliaryHead` (discriminator, AC-GAN, Odena et al. 2017): class logits from phi(x); the step
  adds their cross-entropy to both losses.
- 'twin' (with 'auxiliary'; TAC-GAN, Gong et al. 2019): a second class head that D trains on
  G's images and G plays against. AC-GAN's G minimises the conditional entropy of its labels,
  so it favours images far from the class boundaries (easy to classify, little variety within a
  class); the twin's term cancels that bias.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

GLOROT = nn.initializers.glorot_uniform()          # Keras default for Dense/Conv
_KERAS_EMBED = nn.initializers.uniform(scale=0.1)  # Keras Embedding: U(-0.05, 0.05) ...

GENERATOR_MODES = ('concat', 'cbn')
DISCRIMINATOR_PARTS = ('concat', 'projection', 'auxiliary', 'twin')


def keras_embed_init(key, shape, dtype=jnp.float32):
  return _KERAS_EMBED(key, shape, dtype) - 0.05      # ... shifted to be centred on 0


def discriminator_parts(spec: str, field: str = 'config.model.d_conditioning') -> frozenset:
  """'projection' or 'projection+auxiliary' -> the set of parts; an error names the field."""
  parts = frozenset(p.strip() for p in spec.split('+') if p.strip())
  unknown = sorted(parts - set(DISCRIMINATOR_PARTS))
  if not parts or unknown:
    raise ValueError(f'{field}={spec!r}: expected one or more of {DISCRIMINATOR_PARTS} '
                     "joined by '+'.")
  if 'twin' in parts and 'auxiliary' not in parts:
    raise ValueError(f"{field}={spec!r}: 'twin' plays against the auxiliary head; add "
                     "'auxiliary'.")
  return parts


class LabelPlane(nn.Module):
  """Label -> Embedding -> Dense(H*W) -> one extra [H, W, 1] image channel."""
  num_classes: int
  embed_dim: int
  height: int
  width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, labels: jax.Array, scale: Any = 1.0) -> jax.Array:
    e = nn.Embed(self.num_classes, self.embed_dim, embedding_init=keras_embed_init,
                 dtype=self.dtype)(labels)
    plane = nn.Dense(self.height * self.width, kernel_init=GLOROT, dtype=self.dtype)(e)
    return plane.reshape(labels.shape[0], self.height, self.width, 1) * scale


class ConditionalBatchNorm(nn.Module):
  """BatchNorm followed by a per-class gain and bias: x * (1 + scale * g_y) + scale * b_y.

  With shared_affine the BatchNorm keeps its own (class-independent) scale and bias and the
  class terms are offsets on top; without, the class terms are the only affine. The tables
  start at 0, so at initialisation this is plain BatchNorm.
  """
  num_classes: int
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-3
  dtype: Any = jnp.float32
  shared_affine: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, labels: jax.Array, scale: Any = 1.0) -> jax.Array:
    x = nn.BatchNorm(use_running_average=self.use_running_average, momentum=self.momentum,
                     epsilon=self.epsilon, use_scale=self.shared_affine,
                     use_bias=self.shared_affine, dtype=self.dtype, param_dtype=jnp.float32,
                     name='bn')(x)
    features = x.shape[-1]
    gain = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.zeros,
                    name='gain')(labels)
    bias = nn.Embed(self.num_classes, features, embedding_init=nn.initializers.zeros,
                    name='bias')(labels)
    gain = (1.0 + scale * gain)[:, None, None, :].astype(x.dtype)
    bias = (scale * bias)[:, None, None, :].astype(x.dtype)
    return x * gain + bias


def projection(features: jax.Array, labels: jax.Array, num_classes: int, scale: Any = 1.0,
               name: str = 'projection') -> jax.Array:
  """<embed(y), phi(x)> per example; call inside a compact module (it creates the Embed)."""
  embed = nn.Embed(num_classes, features.shape[-1], embedding_init=GLOROT, name=name)(labels)
  return scale * jnp.sum(embed.astype(features.dtype) * features, axis=-1)


def discriminator_outputs(features: jax.Array, labels: jax.Array, parts: Any, num_classes: int,
                          cond_scale: Any, sn: Any, dtype: Any):
  """D's heads on its features: (real/fake logit [B] + projection if asked, class logits or
  None). With a twin head the class logits are [B, 2 * num_classes]: the auxiliary head's,
  then the twin's (losses.split_class_logits). Call inside a compact module; submodule names
  (Dense_0, projection, auxiliary, twin) are the ones checkpoints hold."""
  logits = sn(nn.Dense(1, kernel_init=GLOROT, dtype=dtype, name='Dense_0'))(features)
  logits = logits[:, 0].astype(jnp.float32)   # The loss is computed in float32.
  if 'projection' in parts:
    logits = logits + projection(features, labels, num_classes, cond_scale).astype(jnp.float32)
  class_logits = None
  if 'auxiliary' in parts:
    class_logits = AuxiliaryHead(num_classes, dtype, name='auxiliary')(features)
  if 'twin' in parts:
    twin = AuxiliaryHead(num_classes, dtype, name='twin')(features)
    class_logits = jnp.concatenate([class_logits, twin], axis=-1)
  return logits, class_logits


class AuxiliaryHead(nn.Module):
  """phi(x) -> class logits [B, num_classes] (float32, for the cross-entropy)."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array) -> jax.Array:
    return nn.Dense(self.num_classes, kernel_init=GLOROT, dtype=self.dtype)(features).astype(
        jnp.float32)
