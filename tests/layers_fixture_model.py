"""A small tf.compat.v1.layers model, written the TF1 way, for the checkpoint fixtures.

Built by scripts/make_layers_fixtures.py on TensorFlow 2.12 (its own legacy
layers) and by tests/test_tf_layers_fixtures.py on the current TensorFlow
after `tf1_bn.patch_layers()`; the code is the same.
"""
import numpy as np

INPUT_SHAPE = (2, 8, 8, 3)


def build(tf, training):
  """Logits of the model for a [None, 8, 8, 3] placeholder `x` (returned too)."""
  layers = tf.compat.v1.layers
  x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 3], name='x')
  with tf.compat.v1.variable_scope('net'):
    h = layers.conv2d(x, 4, 3, padding='same', activation=tf.nn.relu)
    h = layers.batch_normalization(h, training=training)
    h = layers.max_pooling2d(h, 2, 2)
    h = layers.separable_conv2d(h, 4, 3, padding='SAME', depth_multiplier=2)
    h = layers.conv2d_transpose(h, 3, 2, strides=2, name='up')
    h = layers.average_pooling2d(h, 2, 2)
    bn = layers.BatchNormalization(momentum=0.9)
    h = bn(h, training=training)
    h = layers.conv2d(h, 4, [2, 1], strides=(1, 2), use_bias=False)
    h = layers.flatten(h)
    h = layers.dropout(h, 0.5, training=False)
    h = layers.dense(h, 6, activation=tf.nn.tanh)
    logits = layers.dense(h, 5, name='logits')
  return x, logits


def batches(count):
  rng = np.random.RandomState(0)
  return [rng.randn(*INPUT_SHAPE).astype(np.float32) * (1 + 0.2 * i) + 0.3 * i
          for i in range(count)]
