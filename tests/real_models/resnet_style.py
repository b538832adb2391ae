"""A ResNet written with tf.compat.v1.layers the way TF1's official r1 ResNet is.

Test input, not tf1_bn code, written for these tests from the ResNet papers
(He et al. 2015, v1: post-activation; 2016, v2: pre-activation) in the style
of tensorflow/models' `official/r1/resnet/resnet_model.py`, which the tests
also run unmodified when TF1_BN_REAL_MODELS points at it (see
tests/real_models_harness.py). The layer calls are the ones that model makes,
so the same tf.compat.v1.layers surface is exercised on every machine:

* `batch_normalization(axis=..., momentum=0.997, epsilon=1e-5, center=True,
  scale=True, training=<bool placeholder>, fused=True)`;
* `conv2d(use_bias=False, kernel_initializer=variance_scaling_initializer(),
  padding='SAME' or 'VALID', data_format=...)`, with explicit `tf.pad`
  padding in front of strided convolutions;
* projection shortcuts, building and bottleneck blocks, `max_pooling2d`,
  a global mean and a final `dense`, all under one `variable_scope` built by
  a Model object that is called once.
"""
import tensorflow as tf

v1 = tf.compat.v1
layers = v1.layers
MOMENTUM = 0.997
EPSILON = 1e-5


def _channel_axis(data_format):
  return 1 if data_format == 'channels_first' else 3


def _bn(x, training, data_format):
  return layers.batch_normalization(x, axis=_channel_axis(data_format), momentum=MOMENTUM,
                                    epsilon=EPSILON, center=True, scale=True,
                                    training=training, fused=True)


def _pad_for(x, kernel_size, data_format):
  """Pads so that a strided 'VALID' convolution does not depend on the input size."""
  before = (kernel_size - 1) // 2
  after = kernel_size - 1 - before
  spatial = [[before, after], [before, after]]
  if data_format == 'channels_first':
    return tf.pad(x, [[0, 0], [0, 0]] + spatial)
  return tf.pad(x, [[0, 0]] + spatial + [[0, 0]])


def _conv(x, filters, kernel_size, strides, data_format):
  if strides > 1:
    x = _pad_for(x, kernel_size, data_format)
  return layers.conv2d(x, filters=filters, kernel_size=kernel_size, strides=strides,
                       padding='SAME' if strides == 1 else 'VALID', use_bias=False,
                       kernel_initializer=v1.variance_scaling_initializer(),
                       data_format=data_format)


def _block(x, filters, training, shortcut_fn, strides, data_format, version, bottleneck):
  """One residual block: v1 normalizes after each convolution and adds
  before the last ReLU; v2 normalizes and activates before each one."""
  convs = ([(1, filters, 1), (3, filters, strides), (1, 4 * filters, 1)] if bottleneck
           else [(3, filters, strides), (3, filters, 1)])
  if version == 1:
    shortcut = x
    if shortcut_fn is not None:
      shortcut = _bn(shortcut_fn(x), training, data_format)
    h = x
    for i, (size, width, stride) in enumerate(convs):
      h = _bn(_conv(h, width, size, stride, data_format), training, data_format)
      if i < len(convs) - 1:
        h = tf.nn.relu(h)
    return tf.nn.relu(h + shortcut)
  pre = tf.nn.relu(_bn(x, training, data_format))
  shortcut = shortcut_fn(pre) if shortcut_fn is not None else x
  h = pre
  for i, (size, width, stride) in enumerate(convs):
    if i > 0:
      h = tf.nn.relu(_bn(h, training, data_format))
    h = _conv(h, width, size, stride, data_format)
  return h + shortcut


class ResNet:
  """ResNet v1 or v2 for small images; `model(images, training)` builds it."""

  def __init__(self, version, bottleneck, num_classes, num_filters, block_sizes,
               block_strides, data_format='channels_last'):
    self.version, self.bottleneck = version, bottleneck
    self.num_classes, self.num_filters = num_classes, num_filters
    self.block_sizes, self.block_strides = block_sizes, block_strides
    self.data_format = data_format

  def __call__(self, images, training):
    fmt = self.data_format
    with v1.variable_scope('resnet_model'):
      h = images
      if fmt == 'channels_first':
        h = tf.transpose(h, [0, 3, 1, 2])
      h = _conv(h, self.num_filters, 3, 1, fmt)
      if self.version == 1:
        h = tf.nn.relu(_bn(h, training, fmt))
      h = layers.max_pooling2d(h, pool_size=2, strides=2, padding='SAME', data_format=fmt)
      for i, (count, stride) in enumerate(zip(self.block_sizes, self.block_strides)):
        filters = self.num_filters * 2 ** i
        out = 4 * filters if self.bottleneck else filters

        def project(x, out=out, stride=stride):
          return _conv(x, out, 1, stride, fmt)
        for j in range(count):
          h = _block(h, filters, training, project if j == 0 else None,
                     stride if j == 0 else 1, fmt, self.version, self.bottleneck)
      if self.version == 2:
        h = tf.nn.relu(_bn(h, training, fmt))
      spatial = [2, 3] if fmt == 'channels_first' else [1, 2]
      h = tf.reduce_mean(h, spatial, keepdims=True)
      h = tf.squeeze(h, spatial)
      return layers.dense(h, self.num_classes)
