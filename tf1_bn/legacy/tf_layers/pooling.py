"""Max and average pooling over 1, 2 or 3 spatial dimensions, as `tf.compat.v1.layers` had them.

No variables. `pool_size` and `strides` are an int or one int per spatial
dimension; unlike the Keras layers, **`strides` is required** in the TF1
functions and classes (the legacy signature), so `max_pooling2d(x, 2, 2)`.
`padding` 'valid' (default) or 'same', any case. Average pooling with
'same' divides each window by the number of *real* (unpadded) values, as
`tf.nn.avg_pool` does.

1-D pooling runs as 2-D pooling over a dummy dimension, and channels_first
3-D pooling transposes to channels_last, as the legacy layers did (TensorFlow
has no NCDHW pooling on CPU): same numbers either way.
"""
import tensorflow as tf

from tf1_bn.legacy.tf_layers import args
from tf1_bn.legacy.tf_layers import base
from tf1_bn.legacy.tf_layers import convolutional


class _Pooling(base.Layer):
  """Shared arguments and checks of the pooling layers."""

  rank = None
  mode = None  # 'max' or 'avg'

  def __init__(self, pool_size, strides, padding='valid', data_format='channels_last',
               name=None, **kwargs):
    self.pool_size = args.normalize_tuple(pool_size, self.rank, 'pool_size')
    self.strides = args.normalize_tuple(strides, self.rank, 'strides')
    self.padding = args.normalize_padding(padding)
    self.data_format = args.normalize_data_format(data_format)
    super().__init__(name=name, **kwargs)
    self.input_spec = base.InputSpec(ndim=self.rank + 2)

  def _check_before_build(self, inputs):
    self.compute_output_shape(inputs.shape)

  def compute_output_shape(self, input_shape):
    dims = tf.TensorShape(input_shape).as_list()
    start = 2 if self.data_format == 'channels_first' else 1
    for i in range(self.rank):
      size = convolutional.conv_output_length(dims[start + i], self.pool_size[i], self.padding,
                                              self.strides[i])
      if size is not None and size <= 0:
        raise ValueError(
            f'Layer {self.name}: pooling {dims} with pool_size={self.pool_size}, '
            f'strides={self.strides} and padding={self.padding!r} gives an output size <= 0 in '
            f'dimension {start + i}. Fix: a smaller pool_size, or padding="same".')
      dims[start + i] = size
    return tf.TensorShape(dims)

  def call(self, inputs):
    rank, channels_first = self.rank, self.data_format == 'channels_first'
    x = inputs
    pool, strides = list(self.pool_size), list(self.strides)
    if rank == 1:
      x = tf.expand_dims(x, 3 if channels_first else 2)
      pool, strides = pool + [1], strides + [1]
    if channels_first and rank == 3:
      x = tf.transpose(x, [0, 2, 3, 4, 1])
      channels_first = False
    if channels_first:
      ksize, step, fmt = [1, 1] + pool, [1, 1] + strides, 'NCHW'
    else:
      ksize, step = [1] + pool + [1], [1] + strides + [1]
      fmt = 'NDHWC' if rank == 3 else 'NHWC'
    if fmt == 'NCHW':
      # TensorFlow's CPU pooling is NHWC only: transpose around it.
      x = tf.transpose(x, [0, 2, 3, 1])
      ksize, step, fmt = [1] + pool + [1], [1] + strides + [1], 'NHWC'
      transpose_back = True
    else:
      transpose_back = False
    op = {('max', 'NHWC'): tf.nn.max_pool2d, ('avg', 'NHWC'): tf.nn.avg_pool2d,
          ('max', 'NDHWC'): tf.nn.max_pool3d, ('avg', 'NDHWC'): tf.nn.avg_pool3d}[
              (self.mode, fmt)]
    outputs = op(x, ksize=ksize, strides=step, padding=self.padding.upper(), data_format=fmt)
    if transpose_back:
      outputs = tf.transpose(outputs, [0, 3, 1, 2])
    if self.data_format == 'channels_first' and rank == 3:
      outputs = tf.transpose(outputs, [0, 4, 1, 2, 3])
    if rank == 1:
      outputs = tf.squeeze(outputs, [3 if self.data_format == 'channels_first' else 2])
    return outputs


def _pooling_class(class_name, rank, mode, doc):
  return type(class_name, (_Pooling,), {'rank': rank, 'mode': mode, '__doc__': doc,
                                        '__module__': __name__})


MaxPooling1D = _pooling_class('MaxPooling1D', 1, 'max', 'Max pooling over [batch, width, channels].')
MaxPooling2D = _pooling_class('MaxPooling2D', 2, 'max', 'Max pooling over images.')
MaxPooling3D = _pooling_class('MaxPooling3D', 3, 'max', 'Max pooling over volumes.')
AveragePooling1D = _pooling_class('AveragePooling1D', 1, 'avg',
                                  'Average pooling over [batch, width, channels].')
AveragePooling2D = _pooling_class('AveragePooling2D', 2, 'avg', 'Average pooling over images.')
AveragePooling3D = _pooling_class('AveragePooling3D', 3, 'avg', 'Average pooling over volumes.')


def _apply(layer_class, inputs, pool_size, strides, padding, data_format, name):
  # The legacy pooling functions name the layer but give it no `_scope`.
  layer = layer_class(pool_size, strides, padding=padding, data_format=data_format, name=name)
  return layer(inputs)


def max_pooling1d(inputs, pool_size, strides, padding='valid', data_format='channels_last',
                  name=None):
  """`tf.compat.v1.layers.max_pooling1d`."""
  return _apply(MaxPooling1D, inputs, pool_size, strides, padding, data_format, name)


def max_pooling2d(inputs, pool_size, strides, padding='valid', data_format='channels_last',
                  name=None):
  """`tf.compat.v1.layers.max_pooling2d`."""
  return _apply(MaxPooling2D, inputs, pool_size, strides, padding, data_format, name)


def max_pooling3d(inputs, pool_size, strides, padding='valid', data_format='channels_last',
                  name=None):
  """`tf.compat.v1.layers.max_pooling3d`."""
  return _apply(MaxPooling3D, inputs, pool_size, strides, padding, data_format, name)


def average_pooling1d(inputs, pool_size, strides, padding='valid', data_format='channels_last',
                      name=None):
  """`tf.compat.v1.layers.average_pooling1d`."""
  return _apply(AveragePooling1D, inputs, pool_size, strides, padding, data_format, name)


def average_pooling2d(inputs, pool_size, strides, padding='valid', data_format='channels_last',
                      name=None):
  """`tf.compat.v1.layers.average_pooling2d`."""
  return _apply(AveragePooling2D, inputs, pool_size, strides, padding, data_format, name)


def average_pooling3d(inputs, pool_size, strides, padding='valid', data_format='channels_last',
                      name=None):
  """`tf.compat.v1.layers.average_pooling3d`."""
  return _apply(AveragePooling3D, inputs, pool_size, strides, padding, data_format, name)
