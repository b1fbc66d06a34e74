"""The reference: GANForge's ConditionalDCGAN in TensorFlow/Keras, as the original study ran it.

Same layers, shapes and hyper-parameters as `braingan.models.cdcgan` (sigmoid output and BCE on
probabilities, as GANForge has them), and GANForge's `train_step`: a `tf.function` with two
`tf.GradientTape`s (discriminator on real and fake, then generator). It exists only so the
benchmark can time our JAX step against the original on the same machine in the same run.
Uses tf_keras (Keras 2), the API GANForge was written for.
"""
from __future__ import annotations

import time
from typing import Any


def _tf():
  from braingan.runtime import tensorflow  # pylint: disable=import-outside-toplevel
  return tensorflow.get()


def build(image_size: int = 128, channels: int = 1, latent_dim: int = 256, num_classes: int = 4,
          embed_dim: int = 50, g_widths=(256, 128, 64, 64), d_widths=(32, 64, 128, 256, 256),
          g_base_depth: int = 256, dropout: float = 0.4, policy: str = 'float32'):
  """(generator, discriminator) tf_keras Models, GANForge's default preset.

  policy: a Keras mixed-precision policy ('mixed_bfloat16': bf16 compute, float32 variables).
  """
  _tf()
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  keras.mixed_precision.set_global_policy(policy)
  try:
    return _build(keras, image_size, channels, latent_dim, num_classes, embed_dim, g_widths,
                  d_widths, g_base_depth, dropout)
  finally:
    keras.mixed_precision.set_global_policy('float32')


def _build(keras, image_size, channels, latent_dim, num_classes, embed_dim, g_widths, d_widths,
           g_base_depth, dropout):
  from tf_keras import layers as L  # pylint: disable=import-outside-toplevel

  label_in = keras.Input(shape=(1,))
  x = L.Embedding(num_classes, embed_dim)(label_in)
  x = L.Dense(image_size * image_size)(x)
  label_plane = L.Reshape((image_size, image_size, 1))(x)
  image_in = keras.Input(shape=(image_size, image_size, channels))
  x = L.Concatenate()([image_in, label_plane])
  for width in d_widths:
    x = L.Conv2D(width, kernel_size=5, strides=2, padding='same')(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(0.2)(x)
  x = L.Flatten()(x)
  x = L.Dropout(dropout)(x)
  out = L.Dense(1, activation='sigmoid', dtype='float32')(x)
  discriminator = keras.Model([image_in, label_in], out)

  base = image_size // 2 ** len(g_widths)
  label_in = keras.Input(shape=(1,))
  x = L.Embedding(num_classes, embed_dim)(label_in)
  x = L.Dense(base * base)(x)
  label_plane = L.Reshape((base, base, 1))(x)
  z_in = keras.Input(shape=(latent_dim,))
  x = L.Dense(base * base * g_base_depth)(z_in)
  x = L.Reshape((base, base, g_base_depth))(x)
  x = L.Concatenate()([x, label_plane])
  for width in g_widths:
    x = L.Conv2DTranspose(width, kernel_size=4, strides=2, padding='same')(x)
    x = L.BatchNormalization()(x)
    x = L.LeakyReLU(0.2)(x)
  out = L.Conv2D(channels, kernel_size=5, padding='same', activation='tanh', dtype='float32')(x)
  generator = keras.Model([z_in, label_in], out)
  return generator, discriminator


def make_train_step(generator, discriminator, latent_dim: int = 256, learning_rate: float = 2e-4,
                    beta1: float = 0.5, layer_mode: str = 'inference'):
  """GANForge's ConditionalDCGAN.train_step as a tf.function.

  layer_mode 'inference' calls the networks exactly as GANForge does, without a `training`
  argument, which Keras resolves to inference mode (BatchNorm on its moving statistics, no
  dropout); 'training' passes training=True (batch statistics, dropout).
  """
  from braingan.train import gan  # pylint: disable=import-outside-toplevel
  gan.check_layer_mode(layer_mode)   # the same two modes as our step
  kw = {'training': True} if layer_mode == 'training' else {}
  tf = _tf()
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  loss_fn = keras.losses.BinaryCrossentropy()
  d_opt = keras.optimizers.Adam(learning_rate, beta_1=beta1)
  g_opt = keras.optimizers.Adam(learning_rate, beta_1=beta1)

  @tf.function
  def train_step(real, label, z=None):
    """One step; `z` (default: drawn here, as GANForge does) lets tests fix the latents."""
    batch_size = tf.shape(real)[0]
    if z is None:
      z = tf.random.normal((batch_size, latent_dim))
    fake = generator([z, label], **kw)
    ones = tf.ones((batch_size, 1))
    with tf.GradientTape() as d_tape:
      loss_real = loss_fn(ones, discriminator([real, label], **kw))
      loss_fake = loss_fn(tf.zeros((batch_size, 1)), discriminator([fake, label], **kw))
      d_loss = (loss_real + loss_fake) / 2
    grads = d_tape.gradient(d_loss, discriminator.trainable_weights)
    d_opt.apply_gradients(zip(grads, discriminator.trainable_weights))
    with tf.GradientTape() as g_tape:
      fake = generator([z, label], **kw)
      g_loss = loss_fn(ones, discriminator([fake, label], **kw))
    grads = g_tape.gradient(g_loss, generator.trainable_weights)
    g_opt.apply_gradients(zip(grads, generator.trainable_weights))
    return d_loss, g_loss

  return train_step


def benchmark(batch_size: int = 32, image_size: int = 128, channels: int = 1,
              latent_dim: int = 256, steps: int = 3, warmup: int = 1, seed: int = 0) -> dict[str, Any]:
  """Times the Keras step: first call (tracing + graph build + first run) and steady steps."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  tf = _tf()
  tf.random.set_seed(seed)
  generator, discriminator = build(image_size, channels, latent_dim)
  step = make_train_step(generator, discriminator, latent_dim)
  rng = np.random.default_rng(seed)
  real = tf.constant(rng.uniform(-1, 1, (batch_size, image_size, image_size, channels)), tf.float32)
  label = tf.constant(rng.integers(0, 4, (batch_size, 1)), tf.float32)
  start = time.perf_counter()
  losses = step(real, label)
  _ = [float(v) for v in losses]
  first_s = time.perf_counter() - start
  for _ in range(max(warmup - 1, 0)):
    _ = [float(v) for v in step(real, label)]
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    _ = [float(v) for v in step(real, label)]
    times.append(time.perf_counter() - start)
  median_s = float(np.median(times))
  return {'step_times_s': times, 'step_s': median_s, 'first_step_s': first_s,
          'images_per_s': batch_size / median_s, 'keras': 'tf_keras ' + tf.__version__}
