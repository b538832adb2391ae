"""The convolutions of `tf.compat.v1.layers`: conv1d/2d/3d, their transposes, separable convolutions.

Variables, in the layer's scope: `kernel` (spatial sizes + [in, filters];
for a transpose spatial sizes + [filters, in]) and `bias` [filters]; the
separable layers have `depthwise_kernel` (spatial sizes + [in,
depth_multiplier]) and `pointwise_kernel` (ones + [in * depth_multiplier,
filters]) instead of `kernel`. Kernels default to glorot-uniform (the
variable scope's initializer when it has one), biases to zeros.

Semantics kept from the legacy layers, which users' numbers depend on:

* `padding` is 'valid' (the default: no padding, the output shrinks by
  `dilated kernel - 1`) or 'same' (output size `ceil(input / stride)`),
  any case; 1-D convolutions also take 'causal' (left padding only, for
  sequence models).
* `data_format='channels_first'` keeps NCHW tensors; the kernel layout is the
  same in both formats, so a checkpoint serves both.
* `strides > 1` cannot be combined with `dilation_rate > 1`.
* An input of the wrong rank raises the legacy `Input 0 of layer conv2d is
  incompatible with the layer: expected ndim=4, found ndim=2`; an input
  whose channel dimension is None raises `The channel dimension of the inputs
  should be defined. Found \\`None\\``; both before anything is built.

On CPU, channels_first transposes and separable convolutions run in NHWC
(TensorFlow's CPU kernels lack NCHW for them) and transpose back: same
numbers, same variables.
"""
import tensorflow as tf

from tf1_bn.legacy.tf_layers import args
from tf1_bn.legacy.tf_layers import base

_ZEROS = tf.compat.v1.zeros_initializer()


def conv_output_length(length, kernel, padding, stride, dilation=1):
  """Output size of a convolution or pooling over one dimension (None stays None)."""
  if length is None:
    return None
  dilated = kernel + (kernel - 1) * (dilation - 1)
  if padding in ('same', 'causal'):
    out = length
  else:
    out = length - dilated + 1
  return (out + stride - 1) // stride


def deconv_output_length(length, kernel, padding, stride):
  """Output size of a transposed convolution over one dimension."""
  if length is None:
    return None
  if padding == 'valid':
    return length * stride + max(kernel - stride, 0)
  return length * stride


def _to_channels_last(x, rank):
  return tf.transpose(x, [0] + list(range(2, rank + 2)) + [1])


def _to_channels_first(x, rank):
  return tf.transpose(x, [0, rank + 1] + list(range(1, rank + 1)))


class _Conv(base.Layer):
  """The convolution layers' shared arguments, checks and variables."""

  rank = None
  transpose = False
  separable = False

  def __init__(self, filters, kernel_size, strides=1, padding='valid',
               data_format='channels_last', dilation_rate=1, activation=None, use_bias=True,
               kernel_initializer=None, bias_initializer=_ZEROS, kernel_regularizer=None,
               bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
               bias_constraint=None, trainable=True, name=None, **kwargs):
    rank = self.rank
    self.filters = args.positive_int(filters, 'filters')
    self.kernel_size = args.normalize_tuple(kernel_size, rank, 'kernel_size')
    self.strides = args.normalize_tuple(strides, rank, 'strides')
    causal_ok = rank == 1 and not self.transpose
    self.padding = args.normalize_padding(
        padding, args.PADDINGS_1D_CONV if causal_ok else args.PADDINGS)
    self.data_format = args.normalize_data_format(data_format)
    self.dilation_rate = args.normalize_tuple(dilation_rate, rank, 'dilation_rate')
    if max(self.strides) > 1 and max(self.dilation_rate) > 1:
      raise ValueError(f'`strides > 1` not supported in conjunction with `dilation_rate > 1`. '
                       f'Received: strides={self.strides} and '
                       f'dilation_rate={self.dilation_rate}.')
    args.set_kernel_and_bias(self, activation, use_bias, kernel_initializer, bias_initializer,
                             kernel_regularizer, bias_regularizer, kernel_constraint,
                             bias_constraint)
    super().__init__(trainable=trainable, name=name,
                     activity_regularizer=activity_regularizer, **kwargs)
    exact = self.transpose or self.separable
    self.input_spec = base.InputSpec(ndim=rank + 2) if exact else base.InputSpec(
        min_ndim=rank + 2)
    self.kernel = self.bias = None

  @property
  def _channel_axis(self):
    return -1 - self.rank if self.data_format == 'channels_first' else -1

  def _spatial_axes(self, ndim):
    start = ndim - self.rank - (0 if self.data_format == 'channels_first' else 1)
    return list(range(start, start + self.rank))

  def _check_before_build(self, inputs):
    shape = inputs.shape
    args.layer_dtype_check(self._dtype or inputs.dtype, self.name)
    if shape.rank is None:
      raise ValueError(f'Layer {self.name}: the input has an unknown rank; a {self.rank}-D '
                       f'convolution needs rank {self.rank + 2} with a static channel '
                       'dimension. Fix: x.set_shape([...]) or give the placeholder a shape.')
    axis = self._channel_axis
    if shape[axis] is None:
      raise ValueError(
          f'The channel dimension of the inputs should be defined. Found `None`. The input '
          f'shape received is {shape}, where axis {axis} is the channel dimension '
          f'(data_format={self.data_format!r}). Cause: the kernel\'s size depends on the number '
          'of input channels, so it must be static. Fix: give the placeholder a static channel '
          'size, or x.set_shape(...) after an op that lost it (tf.reshape with -1, '
          'tf.image.resize with a dynamic size...).')
    self._output_shape(shape)  # raises for an output <= 0

  def _output_shape(self, input_shape):
    dims = tf.TensorShape(input_shape).as_list()
    spatial = self._spatial_axes(len(dims))
    out = list(dims)
    for i, axis in enumerate(spatial):
      if self.transpose:
        size = deconv_output_length(dims[axis], self.kernel_size[i], self.padding,
                                    self.strides[i])
      else:
        size = conv_output_length(dims[axis], self.kernel_size[i], self.padding,
                                  self.strides[i], self.dilation_rate[i])
      if size is not None and size <= 0:
        raise ValueError(
            f'One of the dimensions in the output is <= 0 due to downsampling in {self.name}. '
            f'Consider increasing the input size. Received input shape {dims} which would '
            f'produce output shape with a zero or negative value in a dimension '
            f'(kernel_size={self.kernel_size}, strides={self.strides}, '
            f'padding={self.padding!r}).')
      out[axis] = size
    out[self._channel_axis] = self.filters
    return tf.TensorShape(out)

  def compute_output_shape(self, input_shape):
    return self._output_shape(input_shape)

  def build(self, input_shape):
    channels = int(input_shape[self._channel_axis])
    self.input_spec = base.InputSpec(
        ndim=self.input_spec.ndim, min_ndim=self.input_spec.min_ndim,
        axes={self._channel_axis: channels})
    self._build_kernels(channels)
    if self.use_bias:
      self.bias = self.add_weight('bias', [self.filters], initializer=self.bias_initializer,
                                  regularizer=self.bias_regularizer,
                                  constraint=self.bias_constraint, dtype=self.dtype)
    self.built = True

  def _build_kernels(self, channels):
    shape = list(self.kernel_size) + ([self.filters, channels] if self.transpose else
                                      [channels, self.filters])
    self.kernel = self.add_weight('kernel', shape, initializer=self.kernel_initializer,
                                  regularizer=self.kernel_regularizer,
                                  constraint=self.kernel_constraint, dtype=self.dtype)

  def call(self, inputs):
    input_shape = inputs.shape
    outputs = self._convolve(inputs)
    if self.use_bias:
      outputs = self._add_bias(outputs)
    outputs.set_shape(self._output_shape(input_shape))
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs

  def _causal_padding(self, ndim):
    left = self.dilation_rate[0] * (self.kernel_size[0] - 1)
    pads = [[0, 0]] * ndim
    pads[self._spatial_axes(ndim)[0]] = [left, 0]
    return pads

  def _convolve(self, inputs):
    padding = self.padding
    if padding == 'causal':
      inputs = tf.pad(inputs, self._causal_padding(inputs.shape.rank))
      padding = 'valid'
    return tf.nn.convolution(inputs, self.kernel, strides=list(self.strides),
                             padding=padding.upper(), dilations=list(self.dilation_rate),
                             data_format=args.tf_data_format(self.data_format, self.rank),
                             name=type(self).__name__)

  def _add_bias(self, outputs):
    if self.data_format == 'channels_last':
      return tf.nn.bias_add(outputs, self.bias)
    ndim = outputs.shape.rank
    if self.rank in (2, 3) and ndim == self.rank + 2:
      return tf.nn.bias_add(outputs, self.bias, data_format='NCHW')
    return outputs + tf.reshape(self.bias, [self.filters] + [1] * self.rank)


class Conv1D(_Conv):
  """1-D convolution (temporal): inputs [batch, width, channels] (or channels_first)."""
  rank = 1


class Conv2D(_Conv):
  """2-D convolution: inputs [batch, height, width, channels] (or channels_first)."""
  rank = 2


class Conv3D(_Conv):
  """3-D convolution: inputs [batch, depth, height, width, channels] (or channels_first)."""
  rank = 3


class _ConvTranspose(_Conv):
  """Transposed convolution ("deconvolution"): the gradient of a convolution.

  Output spatial size: `input * stride` with 'same', `input * stride +
  max(kernel - stride, 0)` with 'valid'. The legacy class takes no
  `dilation_rate`.
  """
  transpose = True

  def __init__(self, filters, kernel_size, strides=1, padding='valid',
               data_format='channels_last', activation=None, use_bias=True,
               kernel_initializer=None, bias_initializer=_ZEROS, kernel_regularizer=None,
               bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
               bias_constraint=None, trainable=True, name=None, **kwargs):
    super().__init__(filters, kernel_size, strides=strides, padding=padding,
                     data_format=data_format, activation=activation, use_bias=use_bias,
                     kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                     kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                     activity_regularizer=activity_regularizer,
                     kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                     trainable=trainable, name=name, **kwargs)

  def _convolve(self, inputs):
    rank = self.rank
    x = _to_channels_last(inputs, rank) if self.data_format == 'channels_first' else inputs
    static = x.shape.as_list()
    dynamic = tf.shape(x)
    sizes = [dynamic[0]]
    for i in range(rank):
      length = static[1 + i] if static[1 + i] is not None else dynamic[1 + i]
      sizes.append(deconv_output_length(length, self.kernel_size[i], self.padding,
                                        self.strides[i]))
    sizes.append(self.filters)
    op = tf.nn.conv2d_transpose if rank == 2 else tf.nn.conv3d_transpose
    outputs = op(x, self.kernel, tf.stack(sizes), strides=[1, *self.strides, 1],
                 padding=self.padding.upper(), name=type(self).__name__)
    if self.data_format == 'channels_first':
      outputs = _to_channels_first(outputs, rank)
    return outputs


class Conv2DTranspose(_ConvTranspose):
  """2-D transposed convolution (upsampling by `strides`)."""
  rank = 2


class Conv3DTranspose(_ConvTranspose):
  """3-D transposed convolution (upsampling by `strides`)."""
  rank = 3


class _SeparableConv(_Conv):
  """Depthwise then pointwise convolution: `depth_multiplier` filters per input
  channel, mixed by a 1x1 convolution into `filters` channels."""
  separable = True

  def __init__(self, filters, kernel_size, strides=1, padding='valid',
               data_format='channels_last', dilation_rate=1, depth_multiplier=1,
               activation=None, use_bias=True, depthwise_initializer=None,
               pointwise_initializer=None, bias_initializer=_ZEROS, depthwise_regularizer=None,
               pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
               depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
               trainable=True, name=None, **kwargs):
    self.depth_multiplier = args.positive_int(depth_multiplier, 'depth_multiplier')
    self.depthwise_initializer = args.initializer(depthwise_initializer, 'depthwise_initializer')
    self.pointwise_initializer = args.initializer(pointwise_initializer, 'pointwise_initializer')
    args.callables(depthwise_regularizer=depthwise_regularizer,
                   pointwise_regularizer=pointwise_regularizer,
                   depthwise_constraint=depthwise_constraint,
                   pointwise_constraint=pointwise_constraint)
    self.depthwise_regularizer = depthwise_regularizer
    self.pointwise_regularizer = pointwise_regularizer
    self.depthwise_constraint = depthwise_constraint
    self.pointwise_constraint = pointwise_constraint
    super().__init__(filters, kernel_size, strides=strides, padding=padding,
                     data_format=data_format, dilation_rate=dilation_rate,
                     activation=activation, use_bias=use_bias, bias_initializer=bias_initializer,
                     bias_regularizer=bias_regularizer,
                     activity_regularizer=activity_regularizer, bias_constraint=bias_constraint,
                     trainable=trainable, name=name, **kwargs)
    self.depthwise_kernel = self.pointwise_kernel = None

  def _build_kernels(self, channels):
    self.depthwise_kernel = self.add_weight(
        'depthwise_kernel', list(self.kernel_size) + [channels, self.depth_multiplier],
        initializer=self.depthwise_initializer, regularizer=self.depthwise_regularizer,
        constraint=self.depthwise_constraint, dtype=self.dtype)
    self.pointwise_kernel = self.add_weight(
        'pointwise_kernel', [1] * self.rank + [channels * self.depth_multiplier, self.filters],
        initializer=self.pointwise_initializer, regularizer=self.pointwise_regularizer,
        constraint=self.pointwise_constraint, dtype=self.dtype)

  def _convolve(self, inputs):
    x = inputs
    padding = self.padding
    if padding == 'causal':
      x = tf.pad(x, self._causal_padding(x.shape.rank))
      padding = 'valid'
    if self.data_format == 'channels_first':
      x = _to_channels_last(x, self.rank)
    depthwise, pointwise = self.depthwise_kernel, self.pointwise_kernel
    strides, dilations = list(self.strides), list(self.dilation_rate)
    if self.rank == 1:  # as a 2-D convolution over [batch, 1, width, channels]
      x = tf.expand_dims(x, 1)
      depthwise, pointwise = tf.expand_dims(depthwise, 0), tf.expand_dims(pointwise, 0)
      strides, dilations = [1] + strides, [1] + dilations
    outputs = tf.nn.separable_conv2d(x, depthwise, pointwise, strides=[1, *strides, 1],
                                     padding=padding.upper(), dilations=dilations,
                                     name=type(self).__name__)
    if self.rank == 1:
      outputs = tf.squeeze(outputs, [1])
    if self.data_format == 'channels_first':
      outputs = _to_channels_first(outputs, self.rank)
    return outputs


class SeparableConv1D(_SeparableConv):
  """Depthwise-separable 1-D convolution."""
  rank = 1


class SeparableConv2D(_SeparableConv):
  """Depthwise-separable 2-D convolution."""
  rank = 2


def conv1d(inputs, filters, kernel_size, strides=1, padding='valid',
           data_format='channels_last', dilation_rate=1, activation=None, use_bias=True,
           kernel_initializer=None, bias_initializer=_ZEROS, kernel_regularizer=None,
           bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
           bias_constraint=None, trainable=True, name=None, reuse=None):
  """`tf.compat.v1.layers.conv1d`: a `Conv1D` in scope `name` (default `conv1d[_N]`)."""
  return base.apply_function(Conv1D, inputs, locals())


def conv2d(inputs, filters, kernel_size, strides=(1, 1), padding='valid',
           data_format='channels_last', dilation_rate=(1, 1), activation=None, use_bias=True,
           kernel_initializer=None, bias_initializer=_ZEROS, kernel_regularizer=None,
           bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
           bias_constraint=None, trainable=True, name=None, reuse=None):
  """`tf.compat.v1.layers.conv2d`: a `Conv2D` in scope `name` (default `conv2d[_N]`)."""
  return base.apply_function(Conv2D, inputs, locals())


def conv3d(inputs, filters, kernel_size, strides=(1, 1, 1), padding='valid',
           data_format='channels_last', dilation_rate=(1, 1, 1), activation=None,
           use_bias=True, kernel_initializer=None, bias_initializer=_ZEROS,
           kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
           kernel_constraint=None, bias_constraint=None, trainable=True, name=None, reuse=None):
  """`tf.compat.v1.layers.conv3d`: a `Conv3D` in scope `name` (default `conv3d[_N]`)."""
  return base.apply_function(Conv3D, inputs, locals())


def conv2d_transpose(inputs, filters, kernel_size, strides=(1, 1), padding='valid',
                     data_format='channels_last', activation=None, use_bias=True,
                     kernel_initializer=None, bias_initializer=_ZEROS, kernel_regularizer=None,
                     bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                     bias_constraint=None, trainable=True, name=None, reuse=None):
  """`tf.compat.v1.layers.conv2d_transpose` (default scope `conv2d_transpose[_N]`)."""
  return base.apply_function(Conv2DTranspose, inputs, locals())


def conv3d_transpose(inputs, filters, kernel_size, strides=(1, 1, 1), padding='valid',
                     data_format='channels_last', activation=None, use_bias=True,
                     kernel_initializer=None, bias_initializer=_ZEROS, kernel_regularizer=None,
                     bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                     bias_constraint=None, trainable=True, name=None, reuse=None):
  """`tf.compat.v1.layers.conv3d_transpose` (default scope `conv3d_transpose[_N]`)."""
  return base.apply_function(Conv3DTranspose, inputs, locals())


def separable_conv1d(inputs, filters, kernel_size, strides=1, padding='valid',
                     data_format='channels_last', dilation_rate=1, depth_multiplier=1,
                     activation=None, use_bias=True, depthwise_initializer=None,
                     pointwise_initializer=None, bias_initializer=_ZEROS,
                     depthwise_regularizer=None, pointwise_regularizer=None,
                     bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                     pointwise_constraint=None, bias_constraint=None, trainable=True, name=None,
                     reuse=None):
  """`tf.compat.v1.layers.separable_conv1d` (default scope `separable_conv1d[_N]`)."""
  return base.apply_function(SeparableConv1D, inputs, locals())


def separable_conv2d(inputs, filters, kernel_size, strides=(1, 1), padding='valid',
                     data_format='channels_last', dilation_rate=(1, 1), depth_multiplier=1,
                     activation=None, use_bias=True, depthwise_initializer=None,
                     pointwise_initializer=None, bias_initializer=_ZEROS,
                     depthwise_regularizer=None, pointwise_regularizer=None,
                     bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                     pointwise_constraint=None, bias_constraint=None, trainable=True, name=None,
                     reuse=None):
  """`tf.compat.v1.layers.separable_conv2d` (default scope `separable_conv2d[_N]`)."""
  return base.apply_function(SeparableConv2D, inputs, locals())
