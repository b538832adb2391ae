"""Argument checks shared by every front-end.

Every check runs before the first op or variable is created, so a bad
argument never leaves a half-built layer in the graph. Messages name the
argument, what was received and what is expected.
"""
import collections.abc
import math
import numbers
import os
import re

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
# The keys of tf.layers' `renorm_clipping`, and the bound each one must
# respect: r = stddev / moving stddev is 1 for a batch like the average, so a
# clip range that excludes 1 (rmin > 1 or rmax < 1) distorts every batch; d
# is clipped to [-dmax, dmax], which needs dmax >= 0.
RENORM_CLIPPING_KEYS = ('rmax', 'rmin', 'dmax')
RENORM_CLIPPING_BOUNDS = {'rmin': (None, 1.0), 'rmax': (1.0, None), 'dmax': (0.0, None)}
# Op-level random seeds are int64 attributes.
SEED_RANGE = (-2 ** 63, 2 ** 63 - 1)
# The names TensorFlow accepts for a name scope: at the top level the first
# character is restricted (the op-name rule), inside a scope it is not.
ROOT_SCOPE_NAME = re.compile(r'^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$')
SCOPE_NAME = re.compile(r'^[A-Za-z0-9_.\\/>-]*$')
# Integer dtypes of a shape tensor (dropout's `noise_shape`).
SHAPE_DTYPES = (tf.int32, tf.int64)


def check_graph_tensor(tensor, arg_name):
  """A tensor or variable the default graph can use: its own, or one of the
  graphs it is nested in (a cond branch or loop body captures those). An op
  on another graph's tensor would fail only after the layer has created its
  variables."""
  graph = getattr(tensor, 'graph', None)
  usable = tf.compat.v1.get_default_graph()
  while usable is not None and usable is not graph:
    usable = getattr(usable, 'outer_graph', None)
  if graph is not None and usable is None:
    raise ValueError(f'`{arg_name}` ({tensor.name!r}) belongs to another graph than the default '
                     'graph this call builds into; build it under the same '
                     '`with graph.as_default():`.')
  return tensor


# numpy dtype kinds that convert to a tensor batch norm can use: bool,
# integers, floats, complex.
NUMERIC_KINDS = 'biufc'
# The other kinds, in words: (what they are, the Python element type).
NON_NUMERIC_KINDS = {'U': ('strings', 'str'), 'S': ('byte strings', 'bytes'),
                     'O': ('Python objects', None), 'M': ('datetimes', 'datetime64'),
                     'm': ('time intervals', 'timedelta64'), 'V': ('raw records', 'void')}


def static_shape_and_dtype(inputs, arg_name='inputs'):
  """The static shape and dtype of a tensor or array-like, without adding ops."""
  if isinstance(inputs, (tf.Tensor, tf.Variable)):
    check_graph_tensor(inputs, arg_name)
    return inputs.shape, inputs.dtype.base_dtype
  if tf.is_tensor(inputs):
    raise TypeError(f'`{arg_name}` must be a dense tf.Tensor, received {type(inputs).__name__}.')
  if isinstance(inputs, (str, bytes)):
    raise TypeError(f'`{arg_name}` must be a numeric tensor or array, received the string '
                    f'{inputs!r}.')
  try:
    array = np.asarray(inputs)
  except Exception as error:  # pragma: no cover - numpy's own message is kept
    raise TypeError(f'`{arg_name}` must be a tensor or array-like, received {type(inputs).__name__}: {error}')
  if array.dtype.kind not in NUMERIC_KINDS:
    raise TypeError(f'`{arg_name}` must be a numeric tensor or array, received '
                    f'{_describe_non_numeric(inputs, array)} ({inputs!r:.60}).')
  return tf.TensorShape(array.shape), tf.as_dtype(array.dtype)


def _describe_non_numeric(inputs, array):
  """What a non-numeric array-like holds, in words ('strings (a list of
  str)'), not numpy's dtype code ('<U1')."""
  what, element = NON_NUMERIC_KINDS.get(array.dtype.kind, ('values', None))
  container = type(inputs).__name__
  if isinstance(inputs, np.ndarray):
    container = 'numpy array'
  if element is None:
    element = type(array.flat[0]).__name__ if array.size else array.dtype.name
  return f'{what} (a {container} of {element})'


def check_float_dtype(dtype, arg_name='inputs'):
  if dtype not in FLOAT_DTYPES:
    names = ', '.join(d.name for d in FLOAT_DTYPES)
    raise TypeError(
        f'`{arg_name}` must be a floating tensor ({names}), received dtype {dtype.name}. '
        'Cast integer or boolean data with tf.cast(x, tf.float32) first.')


def check_real_dtype(dtype, arg_name):
  """Float, integer or bool: what casts to a float without losing meaning
  (slim's `batch_weights` are cast to the input's dtype)."""
  if not (dtype.is_floating or dtype.is_integer or dtype == tf.bool):
    raise TypeError(f'`{arg_name}` must be a float, integer or bool tensor, received dtype '
                    f'{dtype.name}.')


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


def _is_real(value):
  return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_number(value, arg_name, low=None, high=None, low_inclusive=True, high_inclusive=True):
  """A finite Python or numpy real number within [low, high]; returns a float.

  Infinity and NaN are refused everywhere: an infinite epsilon or clip value
  builds and runs, and silently makes every output 0 or NaN.
  """
  if not _is_real(value):
    raise TypeError(f'`{arg_name}` must be a float, received {value!r} ({type(value).__name__}).')
  if not math.isfinite(value):
    raise ValueError(f'`{arg_name}` must be a finite number, received {value!r}.')
  low_ok = low is None or (value >= low if low_inclusive else value > low)
  high_ok = high is None or (value <= high if high_inclusive else value < high)
  if not (low_ok and high_ok):
    if low is not None and high is not None:
      expected = (('[' if low_inclusive else '(') + f'{low:g}, {high:g}' +
                  (']' if high_inclusive else ')'))
      expected = f'in {expected}'
    elif low is not None:
      expected = ('>= ' if low_inclusive else '> ') + f'{low:g}'
    else:
      expected = ('<= ' if high_inclusive else '< ') + f'{high:g}'
    raise ValueError(f'`{arg_name}` must be {expected}, received {value!r}.')
  return float(value)


def check_probability(value, arg_name, low_inclusive=True, high_inclusive=True):
  return check_number(value, arg_name, 0, 1, low_inclusive, high_inclusive)


def check_positive(value, arg_name):
  """A finite number > 0 (bn_layer's `eps`)."""
  return check_number(value, arg_name, low=0, low_inclusive=False)


def check_non_negative(value, arg_name):
  """A finite number >= 0 (the drop-ins' `epsilon`: 0 is what their legacy accepts)."""
  return check_number(value, arg_name, low=0)


def check_integer(value, arg_name, low=None, high=None):
  """A Python or numpy int (not a bool) within [low, high]; returns an int."""
  if not _is_int(value):
    raise TypeError(f'`{arg_name}` must be an int, received {value!r} ({type(value).__name__}).')
  if (low is not None and value < low) or (high is not None and value > high):
    bounds = (f'in [{low}, {high}]' if low is not None and high is not None else
              f'>= {low}' if low is not None else f'<= {high}')
    raise ValueError(f'`{arg_name}` must be an int {bounds}, received {value!r}.')
  return int(value)


def check_seed(seed, arg_name='seed'):
  return None if seed is None else check_integer(seed, arg_name, *SEED_RANGE)


def check_name(name, arg_name='name', optional=True):
  """A variable or name scope name: a valid string, or None or '' when optional."""
  if optional and (name is None or name == ''):
    return name  # '' is TensorFlow's top-level scope
  if not isinstance(name, str) or not name:
    expected = 'None or a non-empty string' if optional else 'a non-empty string'
    raise TypeError(f'`{arg_name}` must be {expected}, received {name!r}.')
  pattern = SCOPE_NAME if tf.compat.v1.get_default_graph().get_name_scope() else ROOT_SCOPE_NAME
  if not pattern.match(name):
    raise ValueError(f'`{arg_name}` must be a valid scope name (matching {pattern.pattern}), '
                     f'received {name!r}.')
  return name


def check_dict(value, keys, arg_name, allow_unknown=False):
  """None (an empty dict) or a dict whose keys are among `keys`; returns a dict."""
  if value is None:
    return {}
  if not isinstance(value, collections.abc.Mapping):
    raise TypeError(f'`{arg_name}` must be None or a dict with keys among {list(keys)}, '
                    f'received {value!r} ({type(value).__name__}).')
  unknown = [k for k in value if k not in keys]
  if unknown and not allow_unknown:
    raise ValueError(f'`{arg_name}` has unknown keys {sorted(map(str, unknown))}; expected a '
                     f'dict with keys among {list(keys)}, received {dict(value)!r}.')
  return dict(value)


def check_renorm_clipping(renorm_clipping, arg_name='renorm_clipping'):
  """tf.layers' clip dict, with finite values that keep r = 1 and d = 0 inside.

  The legacy checks the keys only: it accepts NaN (every training output
  NaN), a negative dmax (every output shifted), rmin > rmax and scalar
  tensors, whose values cannot be checked while building. A value of None is
  "no clip", as in the legacy.
  """
  clipping = check_dict(renorm_clipping, RENORM_CLIPPING_KEYS, arg_name)
  checked = {}
  for key, value in clipping.items():
    if value is None:
      continue
    if tf.is_tensor(value):
      raise TypeError(f'`{arg_name}[{key!r}]` must be a Python number (a tensor cannot be '
                      f'checked while building), received {value!r}.')
    low, high = RENORM_CLIPPING_BOUNDS[key]
    checked[key] = check_number(value, f'{arg_name}[{key!r}]', low=low, high=high)
  return checked


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


def check_noise_shape(noise_shape, shape, arg_name='noise_shape', input_name='inputs'):
  """dropout's mask shape, checked against the input's static shape.

  The mask multiplies the input, so it must broadcast to it without growing
  it: aligned from the last dimension, each size is 1 or the input's, and it
  has no more dimensions than the input. A None size means the input's.

  Returns:
    (dims, dynamic): `dims` is None, a list of ints and Nones, or a 1-D
    integer tensor; `dynamic` says whether part of the rule can only be
    checked at run time (a tensor with no static value, or a size the
    input's static shape does not know).
  """
  if noise_shape is None:
    return None, False
  if tf.is_tensor(noise_shape):
    check_graph_tensor(noise_shape, arg_name)
    if noise_shape.dtype.base_dtype not in SHAPE_DTYPES:
      raise TypeError(f'`{arg_name}` must be a list of ints or a 1-D int32/int64 tensor, '
                      f'received a {noise_shape.dtype.base_dtype.name} tensor {noise_shape.name!r}.')
    if noise_shape.shape.rank not in (None, 1):
      raise ValueError(f'`{arg_name}` must be 1-D (a shape), received a tensor of shape '
                       f'{noise_shape.shape}.')
    static = tf.get_static_value(noise_shape)
    if static is None:
      length = noise_shape.shape[0] if noise_shape.shape.rank == 1 else None
      if length is not None and shape.rank is not None and length > shape.rank:
        raise ValueError(f'`{arg_name}` has {length} dimensions, more than `{input_name}` '
                         f'(shape {shape}).')
      return noise_shape, True
    dims = [int(d) for d in static]
  elif isinstance(noise_shape, tf.TensorShape):
    if noise_shape.rank is None:
      raise ValueError(f'`{arg_name}` must have a known number of dimensions, received '
                       f'{noise_shape}.')
    dims = noise_shape.as_list()
  elif isinstance(noise_shape, (list, tuple)):
    dims = [None if d is None else check_integer(d, f'{arg_name}[{i}]', low=0)
            for i, d in enumerate(noise_shape)]
  else:
    raise TypeError(f'`{arg_name}` must be None, a list of ints or a 1-D int tensor, received '
                    f'{noise_shape!r} ({type(noise_shape).__name__}).')
  if any(d is not None and d < 0 for d in dims):
    raise ValueError(f'`{arg_name}` must hold sizes >= 0, received {dims}.')
  if shape.rank is None:
    return dims, bool(dims)
  if len(dims) > shape.rank:
    raise ValueError(f'`{arg_name}`={dims} has more dimensions than `{input_name}` (shape '
                     f'{shape}): the mask would change the output\'s shape.')
  dynamic = False
  for offset, (size, input_size) in enumerate(zip(reversed(dims), reversed(shape.as_list()))):
    if size is None or size == 1:
      continue
    if input_size is None:
      dynamic = True
    elif size != input_size:
      raise ValueError(
          f'`{arg_name}`={dims} does not broadcast to `{input_name}` of shape {shape}: '
          f'dimension {shape.rank - 1 - offset} is {size}, expected 1 or {input_size}.')
  return dims, dynamic


def check_callable(value, arg_name, optional=True):
  if (value is None and optional) or callable(value):
    return value
  expected = 'callable or None' if optional else 'callable'
  raise TypeError(f'`{arg_name}` must be {expected}, received {value!r} ({type(value).__name__}).')


def check_path(path, arg_name):
  """A non-empty str or os.PathLike path; returns it as a str."""
  if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
    raise TypeError(f'`{arg_name}` must be a path (str or os.PathLike), received {path!r} '
                    f'({type(path).__name__}).')
  path = os.fspath(path)
  if not path:
    raise ValueError(f'`{arg_name}` must be a non-empty path, received {path!r}.')
  return path


def check_variable_list(variables, arg_name, graph=None):
  """None, or a list (any iterable but a string or dict) of tf.Variable, of
  `graph` when given; returns None or the list."""
  if variables is None:
    return None
  if isinstance(variables, (str, bytes, collections.abc.Mapping)) or not isinstance(
      variables, collections.abc.Iterable):
    raise TypeError(f'`{arg_name}` must be None or a list of tf.Variable, received '
                    f'{variables!r:.200} ({type(variables).__name__}).')
  variables = list(variables)
  for index, variable in enumerate(variables):
    if not isinstance(variable, tf.Variable):
      raise TypeError(f'`{arg_name}[{index}]` must be a tf.Variable, received {variable!r} '
                      f'({type(variable).__name__}).')
    if graph is not None and variable.graph is not graph:
      raise ValueError(f'`{arg_name}[{index}]` ({variable.name!r}) belongs to another graph '
                       f'than {graph!r}.')
  return variables


def check_graph(graph, arg_name='graph'):
  """None (the default graph) or a tf.Graph; returns the graph."""
  if graph is None:
    return tf.compat.v1.get_default_graph()
  if not isinstance(graph, tf.Graph):
    raise TypeError(f'`{arg_name}` must be a tf.Graph or None, received {graph!r} '
                    f'({type(graph).__name__}).')
  return graph


def check_session(sess, arg_name='sess'):
  """An open tf.compat.v1.Session (or InteractiveSession)."""
  if not isinstance(sess, (tf.compat.v1.Session, tf.compat.v1.InteractiveSession)):
    raise TypeError(f'`{arg_name}` must be a tf.compat.v1.Session, received {sess!r} '
                    f'({type(sess).__name__}).')
  if getattr(sess, '_closed', False):
    raise ValueError(f'`{arg_name}` is closed: pass an open tf.compat.v1.Session.')
  return sess


def check_graph_mode(function_name):
  if tf.executing_eagerly():
    raise RuntimeError(
        f'tf1_bn.{function_name} builds TF1 graph-mode layers and needs a graph: call it '
        'inside `with tf.Graph().as_default():` or after '
        '`tf.compat.v1.disable_eager_execution()`.')


def check_synchronized(synchronized, virtual_batch_size=None, in_loop=False):
  """`synchronized` of the three front-ends: a bool, not with ghost batches,
  not inside a loop body (`in_loop`: the caller's `tf1_bn.bn.loops.in_loop()`)."""
  synchronized = check_bool(synchronized, 'synchronized')
  if synchronized and in_loop:
    raise ValueError(
        '`synchronized=True` inside a loop body (tf.while_loop, dynamic_rnn, map_fn, scan) is '
        'not supported: each iteration\'s all-reduce would have to meet the same iteration on '
        'every replica, which TensorFlow\'s collectives do not arrange inside a loop (the step '
        'hangs). Use synchronized=False inside the loop (each replica\'s own batch), or '
        'synchronized BN outside it, on the loop\'s stacked outputs.')
  if synchronized and virtual_batch_size is not None:
    raise ValueError('`synchronized=True` cannot be combined with `virtual_batch_size`: ghost '
                     'batches normalize parts of one replica\'s batch, synchronized layers the '
                     f'whole global batch; received virtual_batch_size={virtual_batch_size}.')
  return synchronized
