"""`Dense`, `Dropout`, `Flatten` and their functions, as `tf.compat.v1.layers` had them.

* `dense(x, units)`: `x @ kernel + bias` on the last axis. Variables
  `dense/kernel` [in, units] (glorot-uniform unless `kernel_initializer` or
  the variable scope's initializer says otherwise) and `dense/bias` [units]
  (zeros). Inputs of rank > 2 are contracted on their last axis
  (`tf.tensordot`), as the legacy layer did; the last dimension must be
  static.
* `dropout(x, rate, training=False)`: tf1_bn's dropout (`tf1_bn.dropout`,
  inverted: training keeps a unit with probability 1 - rate and scales it by
  1 / (1 - rate)); **the default is inference** (`training=False`), as in the
  legacy function, so pass the training switch. Same random numbers as the
  legacy layer for the same graph seed and `seed`.
* `flatten(x)`: [batch, d1, d2, ...] -> [batch, d1 * d2 * ...]; with
  `data_format='channels_first'` the channels are moved last first, so a
  model trained in one layout keeps its dense weights in the other.
"""
import numpy as np
import tensorflow as tf

from tf1_bn.bn import dropout as dropout_lib
from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v
from tf1_bn.legacy.tf_layers import args
from tf1_bn.legacy.tf_layers import base

_ZEROS = tf.compat.v1.zeros_initializer()


class Dense(base.Layer):
  """Densely-connected layer: `activation(inputs @ kernel + bias)`.

  Properties after the first call: `kernel`, `bias` (None without
  `use_bias`), and those of `Layer`.
  """

  def __init__(self, units, activation=None, use_bias=True, kernel_initializer=None,
               bias_initializer=_ZEROS, kernel_regularizer=None, bias_regularizer=None,
               activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
               trainable=True, name=None, **kwargs):
    self.units = args.positive_int(units, 'units')
    args.set_kernel_and_bias(self, activation, use_bias, kernel_initializer, bias_initializer,
                             kernel_regularizer, bias_regularizer, kernel_constraint,
                             bias_constraint)
    super().__init__(trainable=trainable, name=name,
                     activity_regularizer=activity_regularizer, **kwargs)
    self.input_spec = base.InputSpec(min_ndim=2)
    self.kernel = self.bias = None

  def _check_before_build(self, inputs):
    shape = inputs.shape
    args.layer_dtype_check(self._dtype or inputs.dtype, self.name)
    if shape.rank is not None and shape[-1] is None:
      raise ValueError(
          f'The last dimension of the inputs to a Dense layer should be defined. Found None. '
          f'Full input shape received: {shape}. Cause: the kernel\'s first dimension is the '
          'input\'s last, so it must be static. Fix: give the placeholder or tf.reshape a '
          'static last dimension (e.g. tf.reshape(x, [-1, 128])), or set_shape it.')
    if shape.rank is None:
      raise ValueError(f'Layer {self.name}: the input has an unknown rank; dense needs a '
                       'static last dimension. Fix: x.set_shape([None, features]).')

  def build(self, input_shape):
    last = int(input_shape[-1])
    self.input_spec = base.InputSpec(min_ndim=2, axes={-1: last})
    self.kernel = self.add_weight('kernel', [last, self.units],
                                  initializer=self.kernel_initializer,
                                  regularizer=self.kernel_regularizer,
                                  constraint=self.kernel_constraint, dtype=self.dtype)
    if self.use_bias:
      self.bias = self.add_weight('bias', [self.units], initializer=self.bias_initializer,
                                  regularizer=self.bias_regularizer,
                                  constraint=self.bias_constraint, dtype=self.dtype)
    self.built = True

  def call(self, inputs):
    rank = inputs.shape.rank
    if rank == 2:
      outputs = tf.matmul(inputs, self.kernel)
    else:
      outputs = tf.tensordot(inputs, self.kernel, [[rank - 1], [0]])
      outputs.set_shape(inputs.shape[:-1].concatenate([self.units]))
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)[:-1].concatenate([self.units])


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
          bias_initializer=_ZEROS, kernel_regularizer=None, bias_regularizer=None,
          activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
          trainable=True, name=None, reuse=None):
  """Functional `Dense`: `tf.compat.v1.layers.dense` (see the module doc)."""
  return base.apply_function(Dense, inputs, locals())


class Dropout(base.Layer):
  """Dropout layer; `layer(x, training=...)` with `training=False` by default (see module doc).

  `rate` is a Python float in [0, 1) (the legacy also took a tensor; here a
  rate is checked while building). `noise_shape` drops whole slices (e.g.
  [batch, 1, 1, channels] drops feature maps); None sizes take the input's.
  """

  def __init__(self, rate=0.5, noise_shape=None, seed=None, name=None, **kwargs):
    self.rate = v.check_probability(rate, 'rate', high_inclusive=False)
    self.noise_shape = noise_shape
    self.seed = v.check_seed(seed)
    super().__init__(name=name, **kwargs)

  def call(self, inputs, training=False):
    return dropout_lib.dropout(inputs, self.rate, training=training,
                               noise_shape=self.noise_shape, seed=self.seed)

  def _check_before_build(self, inputs):
    v.check_noise_shape(self.noise_shape, inputs.shape)


def dropout(inputs, rate=0.5, noise_shape=None, seed=None, training=False, name=None):
  """Functional `Dropout`: `tf.compat.v1.layers.dropout`; inference unless `training`."""
  training = switch_lib.check_training(training, allow_int=True)
  layer = Dropout(rate, noise_shape=noise_shape, seed=seed, name=name)
  return layer(inputs, training=training)


class Flatten(base.Layer):
  """Flattens all but the batch dimension (see the module doc for `channels_first`)."""

  def __init__(self, data_format='channels_last', **kwargs):
    self.data_format = args.normalize_data_format(data_format)
    super().__init__(**kwargs)
    self.input_spec = base.InputSpec(min_ndim=1)

  def call(self, inputs):
    rank = inputs.shape.rank
    if self.data_format == 'channels_first' and rank is not None and rank > 1:
      inputs = tf.transpose(inputs, [0] + list(range(2, rank)) + [1])
    if rank == 1:
      return tf.expand_dims(inputs, 1)
    shape = inputs.shape
    rest = shape[1:]
    if rest.is_fully_defined():
      target = tf.constant([-1, int(np.prod(rest.as_list()))])
    elif shape[0] is not None:
      target = tf.constant([int(shape[0]), -1])
    else:
      target = [tf.shape(inputs)[0], -1]
    return tf.reshape(inputs, target)

  def compute_output_shape(self, input_shape):
    shape = tf.TensorShape(input_shape).as_list()
    rest = shape[1:]
    return tf.TensorShape([shape[0], None if None in rest else int(np.prod(rest))])


def flatten(inputs, name=None, data_format='channels_last'):
  """Functional `Flatten`: `tf.compat.v1.layers.flatten`."""
  layer = Flatten(name=name, data_format=data_format)
  return layer(inputs)
