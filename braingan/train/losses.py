"""Adversarial losses by name (config.loss): a discriminator loss and a generator loss each.

Both take raw logits (float32). Adding a loss: two functions and one line in LOSSES.
- 'bce': GANForge's non-saturating GAN. D minimises (BCE(D(x), 1) + BCE(D(G(z)), 0)) / 2 (Keras
  averages the two terms), G minimises BCE(D(G(z)), 1) = -log sigmoid(D(G(z))).
- 'hinge' (Lim & Ye 2017; Miyato et al. 2018): D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))],
  G minimises -E[D(G(z))].
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class AdversarialLoss(NamedTuple):
  discriminator: Callable[[jax.Array, jax.Array], jax.Array]   # (real logits, fake logits)
  generator: Callable[[jax.Array], jax.Array]                  # (fake logits)


def _bce(logits: jax.Array, target: float) -> jax.Array:
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)))


def bce_discriminator(real: jax.Array, fake: jax.Array) -> jax.Array:
  return 0.5 * (_bce(real, 1.0) + _bce(fake, 0.0))


def bce_generator(fake: jax.Array) -> jax.Array:
  return _bce(fake, 1.0)


def hinge_discriminator(real: jax.Array, fake: jax.Array) -> jax.Array:
  return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


def hinge_generator(fake: jax.Array) -> jax.Array:
  return -jnp.mean(fake)


LOSSES = {
    'bce': AdversarialLoss(bce_discriminator, bce_generator),
    'hinge': AdversarialLoss(hinge_discriminator, hinge_generator),
}


def get(name: str) -> AdversarialLoss:
  if name not in LOSSES:
    raise ValueError(f'config.loss={name!r}: expected one of {sorted(LOSSES)}.')
  return LOSSES[name]


def class_cross_entropy(class_logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of an auxiliary classifier head (AC-GAN)."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits, labels))


def split_class_logits(class_logits: jax.Array, twin: bool) -> tuple[jax.Array, Any]:
  """D's class logits -> (auxiliary head's, twin head's or None): with a twin head D returns
  both side by side (models/conditioning.py discriminator_outputs)."""
  if not twin:
    return class_logits, None
  aux, twin_logits = jnp.split(class_logits, 2, axis=-1)
  return aux, twin_logits


def discriminator_class_loss(real_cls: jax.Array, fake_cls: jax.Array, labels: jax.Array,
                             fake_labels: jax.Array, twin: bool) -> jax.Array:
  """D's class terms: the auxiliary head's cross-entropy on real images plus, with a twin
  head, the twin's on G's images (TAC-GAN)."""
  real_aux, _ = split_class_logits(real_cls, twin)
  loss = class_cross_entropy(real_aux, labels)
  if twin:
    loss = loss + class_cross_entropy(split_class_logits(fake_cls, True)[1], fake_labels)
  return loss


def generator_class_loss(fake_cls: jax.Array, fake_labels: jax.Array, twin: bool) -> jax.Array:
  """G's class terms: the auxiliary head's cross-entropy on its images, minus the twin head's
  (TAC-GAN, Gong et al. 2019: G minimises CE_aux - CE_twin, which with both heads optimal is
  the KL between the real and the generated p(y|x) instead of the generated conditional
  entropy, so G is no longer paid for images that are merely easy to classify)."""
  aux, twin_logits = split_class_logits(fake_cls, twin)
  loss = class_cross_entropy(aux, fake_labels)
  if twin:
    loss = loss - class_cross_entropy(twin_logits, fake_labels)
  return loss


def mode_seeking(images_a: jax.Array, images_b: jax.Array, z_a: jax.Array, z_b: jax.Array,
                 eps: float = 1e-5) -> jax.Array:
  """MSGAN's term (Mao et al. 2019): 1 / (mean|G(z_a) - G(z_b)| / mean|z_a - z_b| + eps), for
  image pairs drawn with the same label. Minimising it spreads a class's images apart: the
  auxiliary head alone rewards one easily classified image per class (mode collapse)."""
  ratio = (jnp.mean(jnp.abs(images_a.astype(jnp.float32) - images_b.astype(jnp.float32)))
           / jnp.mean(jnp.abs(z_a - z_b)))
  return 1.0 / (ratio + eps)


def lecam(real_logits: jax.Array, fake_logits: jax.Array, real_anchor: jax.Array,
          fake_anchor: jax.Array) -> jax.Array:
  """LeCam regulariser (Tseng et al. 2021, "Regularizing GANs under limited data"):
  mean(relu(D(x) - a_fake)^2) + mean(relu(a_real - D(G(z)))^2), the anchors a being moving
  averages of D's mean logit on each side (GANRecipe keeps them). It pulls D's scores of reals
  towards its past scores of fakes and back, so D cannot push the two apart without bound, the
  way it overfits a small training set."""
  real_logits, fake_logits = real_logits.astype(jnp.float32), fake_logits.astype(jnp.float32)
  return (jnp.mean(jax.nn.relu(real_logits - fake_anchor) ** 2)
          + jnp.mean(jax.nn.relu(real_anchor - fake_logits) ** 2))
