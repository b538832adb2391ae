"""Argument checks shared by every front-end.

Every check runs before the first op or variable is created, so a bad
argument never leaves a half-built layer in the graph. Messages name the
argument, what was received and what is expected.
"""
import numbers

import numpy as np
import tensorflow as tf

# Input dtypes a BN layer accepts.
FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
# 16-bit inputs keep variables and statistics in float32 (variance overflows
# float16 easily) and return the input dtype.
HALF_DTYPES = (tf.float16, tf.bfloat16)
# Dtypes the fused kernel (FusedBatchNormV3) accepts for its input.
FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)
# The rank range of `bn_layer` (dense, sequence, image and volume inputs).
BN_LAYER_MIN_RANK = 2
BN_LAYER_MAX_RANK = 5
UPDATE_STYLES = ('collection', 'inline')


def static_shape_and_dtype(inputs, arg_name='inputs'):
  """The static shape and dtype of a tensor or array-like, without adding ops."""
  if isinstance(inputs, (tf.Tensor, tf.Variable)):
    return inputs.shape, inputs.dtype.base_dtype
  if tf.is_tensor(inputs):
    raise TypeError(f'`{arg_name}` must be a dense tf.Tensor, received {type(inputs).__name__}.')
  try:
    array = np.asarray(inputs)
  except Exception as error:  # pragma: no cover - numpy's own message is kept
    raise TypeError(f'`{arg_name}` must be a tensor or array-like, received {type(inputs).__name__}: {error}')
  if array.dtype == object:
    raise TypeError(f'`{arg_name}` must be a numeric tensor, received {type(inputs).__name__} of objects.')
  return tf.TensorShape(array.shape), tf.as_dtype(array.dtype)


def check_float_dtype(dtype, arg_name='inputs'):
  if dtype not in FLOAT_DTYPES:
    names = ', '.join(d.name for d in FLOAT_DTYPES)
    raise TypeError(
        f'`{arg_name}` must be a floating tensor ({names}), received dtype {dtype.name}. '
        'Cast integer or boolean data with tf.cast(x, tf.float32) first.')


def check_rank(shape, arg_name='inputs', min_rank=1, max_rank=None):
  if shape.rank is None:
    raise ValueError(
        f'`{arg_name}` has undefined rank (unknown rank: a placeholder made without `shape`, '
        'for instance); batch normalization needs a known rank to '
        'choose its reduction axes. Give the placeholder a shape such as [None, 64].')
  if shape.rank < min_rank or (max_rank is not None and shape.rank > max_rank):
    expected = f'{min_rank} to {max_rank}' if max_rank is not None else f'at least {min_rank}'
    raise ValueError(f'`{arg_name}` must have rank {expected}, received shape {shape}.')
  return shape.rank


def _is_int(value):
  return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def normalize_axis(axis, shape, arg_name='axis', input_name='inputs'):
  """Returns the sorted non-negative axes, all with static sizes.

  A None size on a normalized axis is the classic "Input has undefined `axis`
  dimension" error; the usual cause is a (features, batch) layout.
  """
  rank = shape.rank
  axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
  if not axes or not all(_is_int(a) for a in axes):
    raise TypeError(f'`{arg_name}` must be an int or a non-empty list of ints, received {axis!r}.')
  resolved = []
  for a in axes:
    if not -rank <= a < rank:
      raise ValueError(
          f'`{arg_name}`={axis!r} is out of range for `{input_name}` of rank {rank} '
          f'(shape {shape}); expected values in [{-rank}, {rank - 1}].')
    resolved.append(int(a) % rank)
  if len(set(resolved)) != len(resolved):
    raise ValueError(f'`{arg_name}`={axis!r} names the same dimension twice for rank {rank}.')
  resolved.sort()
  undefined = [a for a in resolved if shape[a] is None]
  if undefined:
    raise ValueError(
        f'Input has undefined `axis` dimension: `{input_name}` has shape {shape} and '
        f'{arg_name}={axis!r} (dimension {undefined} is None). The normalized axis must be '
        'static. The usual cause is a (features, batch) layout made by transposing a '
        '(batch, features) tensor: either normalize axis 0 of the transposed tensor, '
        'or keep the data batch-major and normalize axis -1.')
  return resolved


def check_probability(value, arg_name, low_inclusive=True, high_inclusive=True):
  ok_type = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
  if not ok_type:
    raise TypeError(f'`{arg_name}` must be a float, received {value!r} ({type(value).__name__}).')
  low_ok = value >= 0 if low_inclusive else value > 0
  high_ok = value <= 1 if high_inclusive else value < 1
  if not (low_ok and high_ok):
    interval = ('[' if low_inclusive else '(') + '0, 1' + (']' if high_inclusive else ')')
    raise ValueError(f'`{arg_name}` must be in {interval}, received {value!r}.')
  return float(value)


def check_positive(value, arg_name):
  if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
    raise TypeError(f'`{arg_name}` must be a positive float, received {value!r}.')
  if not value > 0:
    raise ValueError(f'`{arg_name}` must be > 0, received {value!r}.')
  return float(value)


def check_choice(value, choices, arg_name):
  if value not in choices:
    raise ValueError(f'`{arg_name}` must be one of {list(choices)}, received {value!r}.')
  return value


def check_bool(value, arg_name):
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f'`{arg_name}` must be a bool, received {value!r} ({type(value).__name__}).')
  return bool(value)


def check_reuse(reuse, arg_name='reuse'):
  if reuse is None or reuse is tf.compat.v1.AUTO_REUSE or isinstance(reuse, (bool, np.bool_)):
    return reuse
  raise TypeError(f'`{arg_name}` must be None, True, False or tf.compat.v1.AUTO_REUSE, received {reuse!r}.')


def check_graph_mode(function_name):
  if tf.executing_eagerly():
    raise RuntimeError(
        f'tf1_bn.{function_name} builds TF1 graph-mode layers and needs a graph: call it '
        'inside `with tf.Graph().as_default():` or after '
        '`tf.compat.v1.disable_eager_execution()`.')
