"""Argument checks shared by the `tf.compat.v1.layers` layers.

Each runs in the layer's constructor, before any scope, variable or op
exists, and names the argument, what it received and what it expects.
The legacy layers' first sentences are kept where users search for them
(`The \\`kernel_size\\` argument must be a tuple of 2 integers`).
"""
import numbers

import numpy as np
import tensorflow as tf

from tf1_bn.common import validation as v
from tf1_bn.legacy import layers_bn

PADDINGS = ('valid', 'same')
# 'causal' (left padding only) exists for the 1-D convolutions.
PADDINGS_1D_CONV = ('valid', 'same', 'causal')
DATA_FORMATS = ('channels_last', 'channels_first')

# Activations accepted by name, as the Keras-based layers accepted them.
ACTIVATIONS = {
    'linear': None,
    'relu': tf.nn.relu,
    'relu6': tf.nn.relu6,
    'elu': tf.nn.elu,
    'selu': tf.nn.selu,
    'sigmoid': tf.math.sigmoid,
    'tanh': tf.math.tanh,
    'softplus': tf.math.softplus,
    'softsign': tf.math.softsign,
    'softmax': tf.nn.softmax,
    'swish': tf.nn.silu,
    'silu': tf.nn.silu,
}


def _is_int(value):
  return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool,
                                                                                       np.bool_))


def normalize_tuple(value, n, arg_name, allow_zero=False):
  """An int or a sequence of `n` ints -> a tuple of `n` ints (> 0, or >= 0)."""
  if _is_int(value):
    values = (int(value),) * n
  else:
    try:
      values = tuple(value)
    except TypeError:
      raise TypeError(f'The `{arg_name}` argument must be a tuple of {n} integers. Received '
                      f'{arg_name}={value!r} ({type(value).__name__}).') from None
    if len(values) != n or not all(_is_int(x) for x in values):
      raise ValueError(
          f'The `{arg_name}` argument must be a tuple of {n} integers. Received '
          f'{arg_name}={value!r}. Cause: this layer has {n} spatial dimension(s), one size each. '
          f'Fix: pass one int (the same for every dimension) or {n} ints, e.g. '
          f'{arg_name}={(3,) * n if n > 1 else 3}; for another number of dimensions use the '
          'layer of that rank (conv1d / conv2d / conv3d).')
    values = tuple(int(x) for x in values)
  low = 0 if allow_zero else 1
  if any(x < low for x in values):
    raise ValueError(f'The `{arg_name}` argument must be a tuple of {n} integers >= {low}. '
                     f'Received {arg_name}={value!r}.')
  return values


def normalize_padding(value, choices=PADDINGS):
  """'valid' / 'same' (any case), or 'causal' where `choices` has it."""
  if not isinstance(value, str) or value.lower() not in choices:
    raise ValueError(f'The `padding` argument must be one of {list(choices)} (any case). '
                     f'Received padding={value!r}.')
  return value.lower()


def normalize_data_format(value):
  if not isinstance(value, str) or value.lower() not in DATA_FORMATS:
    raise ValueError(f'The `data_format` argument must be one of {list(DATA_FORMATS)}. '
                     f'Received data_format={value!r}.')
  return value.lower()


def tf_data_format(data_format, rank):
  """'channels_last' / 'channels_first' -> 'NWC', 'NHWC', 'NDHWC' / 'NCW', ... for `rank` spatial dims."""
  spatial = {1: 'W', 2: 'HW', 3: 'DHW'}[rank]
  return f'N{spatial}C' if data_format == 'channels_last' else f'NC{spatial}'


def activation_fn(value):
  """None, a callable, or a name among ACTIVATIONS -> a callable or None."""
  if value is None or callable(value):
    return value
  if isinstance(value, str) and value in ACTIVATIONS:
    return ACTIVATIONS[value]
  raise ValueError(f'`activation` must be None, a callable or one of {sorted(ACTIVATIONS)}, '
                   f'received {value!r}.')


def initializer(value, arg_name):
  """None (the scope's or get_variable's default), a callable, or a name."""
  if value is None:
    return None
  return layers_bn.initializer_from(value, None, arg_name)


def positive_int(value, arg_name):
  """`filters` and `units`: an int > 0 (a float with an integral value is accepted, as by the legacy)."""
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  return v.check_integer(value, arg_name, low=1)


def callables(**values):
  """Checks regularizers and constraints: each None or callable."""
  for arg_name, value in values.items():
    v.check_callable(value, arg_name)


def layer_dtype_check(dtype, layer_name):
  """Weights of these layers are floating: an integer input is an error."""
  dtype = tf.as_dtype(dtype)
  if not (dtype.is_floating or dtype.is_complex):
    raise TypeError(f'Layer {layer_name} can only be built with a floating-point dtype; its '
                    f'input has dtype {dtype.name}. Fix: tf.cast(x, tf.float32) first.')


def set_kernel_and_bias(layer, activation, use_bias, kernel_initializer, bias_initializer,
                        kernel_regularizer, bias_regularizer, kernel_constraint,
                        bias_constraint):
  """Checks the kernel-and-bias arguments of dense and the convolutions and
  sets them on `layer` (`layer.activation`, `layer.kernel_initializer`, ...)."""
  layer.activation = activation_fn(activation)
  layer.use_bias = v.check_bool(use_bias, 'use_bias')
  layer.kernel_initializer = initializer(kernel_initializer, 'kernel_initializer')
  layer.bias_initializer = initializer(bias_initializer, 'bias_initializer')
  callables(kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, bias_constraint=bias_constraint)
  layer.kernel_regularizer, layer.bias_regularizer = kernel_regularizer, bias_regularizer
  layer.kernel_constraint, layer.bias_constraint = kernel_constraint, bias_constraint
