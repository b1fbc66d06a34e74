"""The tf.keras twin of the classifier step: the speed reference for `bench classifier`.

The original study's model, as Keras builds it: ResNet50(include_top=False) + GAP -> Dense 512
ReLU -> Dropout 0.5 -> Dense 4 softmax, `layers[:15]` frozen, Adam 1e-3, sparse categorical
cross-entropy, trained with `train_on_batch` (Keras's compiled graph-mode train function).
Random weights: the speed does not depend on them.
"""
from __future__ import annotations

import numpy as np


def build(image_size: int = 128, num_classes: int = 4, frozen_layers: int = 15,
          dropout: float = 0.5, learning_rate: float = 1e-3, policy: str = 'float32'):
  """The compiled Keras model. Head layers are named as ours (head_dense, head_logits).

  policy: a Keras mixed-precision policy ('float32', or 'mixed_bfloat16': bf16 compute,
  float32 variables, which TensorFlow's oneDNN runs on AMX / AVX512-BF16 units).
  """
  from braingan.runtime import tensorflow  # pylint: disable=g-import-not-at-top
  tensorflow.get()
  import tf_keras  # pylint: disable=g-import-not-at-top
  tf_keras.mixed_precision.set_global_policy(policy)
  base = tf_keras.applications.ResNet50(weights=None, include_top=False,
                                        input_shape=(image_size, image_size, 3))
  for layer in base.layers[:frozen_layers]:
    layer.trainable = False
  x = tf_keras.layers.GlobalAveragePooling2D()(base.output)
  x = tf_keras.layers.Dense(512, activation='relu', name='head_dense')(x)
  x = tf_keras.layers.Dropout(dropout)(x)
  out = tf_keras.layers.Dense(num_classes, activation='softmax', name='head_logits',
                              dtype='float32')(x)
  model = tf_keras.Model(base.input, out)
  tf_keras.mixed_precision.set_global_policy('float32')   # later models: the default again
  model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                loss='sparse_categorical_crossentropy', metrics=['accuracy'])
  return model


def frozen_layer_names(model, count: int = 15) -> list[str]:
  return [layer.name for layer in model.layers[:count]]


def make_train_fn(model, batch_size: int = 32, image_size: int = 128, seed: int = 0):
  """A no-argument callable running one blocking Keras training step on a fixed batch."""
  rng = np.random.default_rng(seed)
  images = rng.uniform(-123.0, 151.0, (batch_size, image_size, image_size, 3)).astype(np.float32)
  labels = rng.integers(0, 4, (batch_size,)).astype(np.int32)

  def step():
    return model.train_on_batch(images, labels)

  return step
