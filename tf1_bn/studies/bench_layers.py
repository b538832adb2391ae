"""The model of the bench's `layers` case: a tf.compat.v1.layers CNN.

The bench (`tf1-bn bench --cases layers:BxHxWxC`, see `tf1_bn.studies.bench`)
builds this same CNN twice, once on tf1_bn's `tf.compat.v1.layers`
(`tf1_bn.layers`, what `tf1_bn.patch_layers()` installs) and, when the legacy
layers are active in the process (tf-keras installed and TF_USE_LEGACY_KERAS=1
set before TensorFlow's import; the bench re-runs itself so), once on the
legacy `tf.compat.v1.layers`; it times a training step and an inference step
of each side by side. This module only builds the graphs: the timing
(warm-up, alternation, medians, runs) is the bench's.

The CNN: two conv + BN + ReLU blocks, max pooling, a third block, average
pooling, flatten, dense; fused BN, as most tf.layers models asked for. Both
builds draw their variables from the same graph seed and see the same batch.
The training step is the TF1 idiom: the BN updates from `UPDATE_OPS` as
control dependencies of a gradient-descent `minimize` on a softmax
cross-entropy, so it times forward, backward, the update and the moving
statistics; the inference step fetches the logits with `training=False`.
"""
import numpy as np

OURS = 'tf1_bn.layers'
LEGACY = 'legacy tf.compat.v1.layers'
CLASSES = 10
LEARNING_RATE = 0.01


def cnn(layers, tf, x, training, classes=CLASSES):
  """The benchmarked CNN, written against a tf.compat.v1.layers namespace."""
  h = x
  for filters in (16, 32):
    h = layers.conv2d(h, filters, 3, padding='same', use_bias=False)
    h = tf.nn.relu(layers.batch_normalization(h, training=training, fused=True))
  h = layers.max_pooling2d(h, 2, 2)
  h = layers.conv2d(h, 32, 3, padding='same', use_bias=False)
  h = tf.nn.relu(layers.batch_normalization(h, training=training, fused=True))
  h = layers.average_pooling2d(h, 2, 2)
  return layers.dense(layers.flatten(h), classes)


def implementations(legacy_available):
  """{row name: tf.compat.v1.layers namespace}: tf1_bn's, and the legacy's
  when it is active in this process."""
  import tensorflow as tf
  import tf1_bn
  found = {OURS: tf1_bn.layers}
  if legacy_available:
    found[LEGACY] = tf.compat.v1.layers
  return found


def build_step(layers, shape, mode):
  """In the default graph: the CNN on `layers` for a batch of `shape`
  (BxHxWxC, float32); returns (fetch, feed) of one `mode` step ('train' or
  'inference') and the variables' initializer op."""
  import tensorflow as tf
  v1 = tf.compat.v1
  v1.set_random_seed(0)
  x = v1.placeholder(tf.float32, shape, name='x')
  labels = v1.placeholder(tf.int32, shape[:1], name='labels')
  logits = cnn(layers, tf, x, training=mode == 'train')
  if mode == 'train':
    loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
      fetch = v1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(loss)
  else:
    fetch = logits
  rng = np.random.RandomState(0)
  feed = {x: rng.randn(*shape).astype(np.float32),
          labels: rng.randint(0, CLASSES, shape[:1])}
  return fetch, feed, v1.global_variables_initializer()
