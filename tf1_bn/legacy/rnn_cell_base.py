"""The rnn-cell protocol of `tf.compat.v1.nn.rnn_cell`, on tf.compat.v1 variables.

What `tf.compat.v1.nn.dynamic_rnn`, `static_rnn` and
`bidirectional_dynamic_rnn` need from a cell (they check it with
`rnn_cell_impl.assert_like_rnncell`):

* `state_size`: an int, a `TensorShape`, or a nested structure of them
  (`LSTMStateTuple(c=units, h=units)` for an LSTM);
* `output_size`: an int or `TensorShape`;
* `zero_state(batch_size, dtype)` / `get_initial_state(inputs, batch_size,
  dtype)`: zeros shaped `[batch] + size` in the structure of `state_size`;
* `cell(inputs, state)` -> `(output, new_state)` for ONE time step:
  `inputs` is `[batch, depth]`, `new_state` has the structure of `state`.

Writing a cell: subclass `RNNCell`, define `state_size` and `output_size`,
create variables in `build(input_shape)` with `self.add_weight(name, shape,
initializer=...)` (or `self.add_variable`, the same), and compute one step in
`call(inputs, state, **kwargs)`; keyword arguments given to the cell call
(for example `training=`) reach `call`. Variables created inside `call`
with `tf.compat.v1.get_variable` (an old-style cell, or a layer such as
batch norm used inside the step) are created in the cell's scope, reused
at later calls like those of `build`, and tracked in `cell.variables`.

`RNNCell` is a `tf.compat.v1.layers` `Layer` (`tf1_bn.legacy.tf_layers.base`),
as the legacy cells were: the scope handling below is that class's.

Scopes and sharing, as the legacy cells (tf.layers' Layer) did:

* The variable scope is fixed at the FIRST call: a scope named after the
  cell (`name=`, else the class name in snake case: `lstm_cell`, `gru_cell`,
  `multi_rnn_cell`) opened inside the variable scope current at that call,
  and made unique there like any `variable_scope(default_name=...)`: a
  second LSTMCell built in the same scope gets `lstm_cell_1`. Re-entering a
  named scope (`rnn` again, or `variable_scope('model', reuse=True)`) starts
  the count again, which is how an evaluation copy finds `model/lstm_cell`.
* `cell(inputs, state, scope='s')` on the first call uses the scope `s`
  itself (variables `s/kernel`, no cell name appended).
* A cell instance called again (every time step of `static_rnn`, or another
  `dynamic_rnn`) re-enters its own scope with `reuse=True`: one set of
  variables per instance, whatever the variable scope of the later call.
* `reuse=True` at construction opens the scope `name` itself (not made
  unique) and reuses the variables already there.
* The variables take the dtype of the first inputs unless `dtype=` is given.

`RNNCell` itself follows the plain legacy `RNNCell` (its `MultiRNNCell` and
old custom cells are of that kind): at the first call it also captures the
variable scope current then, and later calls re-enter that scope before
their own, so a cell's variables do not move when a later call comes from
elsewhere. Cells with a `build` (all of the built-in ones except
`MultiRNNCell`) skip that capture, as the legacy `LayerRNNCell` did.
"""
import collections
import weakref

import tensorflow as tf

from tf1_bn.common import validation as v
from tf1_bn.legacy.tf_layers import base as layer_base

# The variable names the legacy cells use.
WEIGHTS_NAME = 'kernel'
BIAS_NAME = 'bias'
# Keyword arguments the legacy cells forward to their base layer.
LAYER_KWARGS = ('trainable', '_scope', '_reuse')

_LSTMStateTupleBase = collections.namedtuple('LSTMStateTuple', ('c', 'h'))


class LSTMStateTuple(_LSTMStateTupleBase):
  """The state of an LSTM cell with `state_is_tuple=True`: `(c, h)`.

  `c` is the memory (cell) state, `h` the output (hidden) state, in that
  order, as every legacy checkpoint-consuming code unpacks it.
  """
  __slots__ = ()

  @property
  def dtype(self):
    c, h = self
    if c.dtype != h.dtype:
      raise TypeError(f'LSTMStateTuple: the c and h states have different dtypes: '
                      f'{c.dtype} and {h.dtype}.')
    return c.dtype


# `LSTMCell` -> `lstm_cell`, the way the legacy layers derive scope names.
snake_case = layer_base.to_snake_case

# Per-graph counters for the `name` of unnamed cells (lstm_cell, lstm_cell_1, ...).
_NAME_COUNTS = weakref.WeakKeyDictionary()


def is_like_rnn_cell(cell):
  """The duck-typing check of the rnn functions (assert_like_rnncell)."""
  def has(attr):
    try:
      getattr(cell, attr)
    except (AttributeError, NotImplementedError):
      return False
    return True
  return (has('output_size') and has('state_size') and
          (has('get_initial_state') or has('zero_state')) and callable(cell))


def check_cell(cell, arg_name='cell'):
  if not is_like_rnn_cell(cell):
    raise TypeError(
        f'`{arg_name}` must be an RNN cell (an object with `output_size`, `state_size`, '
        f'`zero_state` or `get_initial_state`, and a call), received {cell!r} '
        f'({type(cell).__name__}).')
  return cell


def check_cell_dtype(dtype, arg_name='dtype'):
  """None or a floating (or complex) dtype, as the legacy cells accept."""
  if dtype is None:
    return None
  try:
    dtype = tf.as_dtype(dtype)
  except TypeError as error:
    raise TypeError(f'`{arg_name}` must be None or a float dtype, received {dtype!r}: {error}')
  if not (dtype.is_floating or dtype.is_complex):
    raise ValueError(f'`{arg_name}`: RNN cells only support floating point inputs and '
                     f'variables, received {dtype.name}.')
  return dtype


def check_units(num_units, arg_name='num_units'):
  return v.check_integer(num_units, arg_name, low=1)


def check_optional_clip(value, arg_name):
  return None if value is None else v.check_positive(value, arg_name)


# The activations named by string in the legacy cells (through Keras' registry).
ACTIVATIONS = {
    'tanh': tf.tanh, 'sigmoid': tf.sigmoid, 'relu': tf.nn.relu, 'relu6': tf.nn.relu6,
    'elu': tf.nn.elu, 'selu': tf.nn.selu, 'softsign': tf.nn.softsign,
    'softplus': tf.nn.softplus, 'linear': tf.identity, 'hard_sigmoid': None,
}
ACTIVATIONS['hard_sigmoid'] = lambda x: tf.clip_by_value(0.2 * x + 0.5, 0.0, 1.0)


def check_activation(activation, arg_name='activation'):
  """A callable or a name in ACTIVATIONS; None (or any false value) is tanh."""
  if not activation:
    return tf.tanh
  if isinstance(activation, str):
    if activation not in ACTIVATIONS:
      raise ValueError(f'`{arg_name}` must be a callable or one of {sorted(ACTIVATIONS)}, '
                       f'received {activation!r}.')
    return ACTIVATIONS[activation]
  return v.check_callable(activation, arg_name, optional=False)


# Initializers named by string (the Keras names the legacy accepted).
INITIALIZERS = {
    'glorot_uniform': tf.compat.v1.glorot_uniform_initializer,
    'glorot_normal': tf.compat.v1.glorot_normal_initializer,
    'orthogonal': tf.compat.v1.orthogonal_initializer,
    'zeros': tf.compat.v1.zeros_initializer,
    'ones': tf.compat.v1.ones_initializer,
    'he_normal': tf.compat.v1.initializers.he_normal,
    'he_uniform': tf.compat.v1.initializers.he_uniform,
    'lecun_normal': tf.compat.v1.initializers.lecun_normal,
    'lecun_uniform': tf.compat.v1.initializers.lecun_uniform,
}


def check_initializer(initializer, arg_name='initializer'):
  """None (the variable scope's initializer, else glorot-uniform), a callable
  initializer, or a name in INITIALIZERS."""
  if initializer is None:
    return None
  if isinstance(initializer, str):
    if initializer not in INITIALIZERS:
      raise ValueError(f'`{arg_name}` must be None, an initializer or one of '
                       f'{sorted(INITIALIZERS)}, received {initializer!r}.')
    return INITIALIZERS[initializer]()
  return v.check_callable(initializer, arg_name, optional=False)


def _zeros(batch_size, size, dtype):
  dims = [size] if isinstance(size, int) else tf.TensorShape(size).as_list()
  if tf.is_tensor(batch_size):
    batch = tf.reshape(tf.cast(batch_size, tf.int32), [1])
    static_batch = tf.get_static_value(batch_size)
    static_batch = None if static_batch is None else int(static_batch)
    zeros = tf.zeros(tf.concat([batch, tf.constant(dims, tf.int32)], 0), dtype=dtype)
    zeros.set_shape([static_batch] + dims)
    return zeros
  return tf.zeros([batch_size] + dims, dtype=dtype)


def zero_state_tensors(state_size, batch_size, dtype):
  """Zeros `[batch_size] + s` for each `s` in the structure `state_size`."""
  return tf.nest.map_structure(lambda s: _zeros(batch_size, s, dtype), state_size)


class RNNCell(layer_base.Layer):
  """Base class of the rnn cells (see the module docstring for the protocol).

  A `tf.compat.v1.layers` `Layer` (as the legacy cells were): it shares the
  layers' scope handling (`_set_scope`, the scope re-entered with reuse at
  every later call), `name`, `losses`, `apply` and `add_variable`; what
  differs for cells is below (the call with a state, variables tracked
  through a custom getter, the cells' naming and dtype checks).

  Args (all keyword, as the legacy base):
    trainable: False keeps the cell's variables out of TRAINABLE_VARIABLES.
    name: the cell's scope name (made unique in its variable scope unless
      `reuse=True`); default: the class name in snake case.
    dtype: the variables' dtype; default: the dtype of the first inputs.
  """

  # Plain cells capture the caller's variable scope at their first call.
  _captures_call_scope = True

  def __init__(self, trainable=True, name=None, dtype=None, **kwargs):
    unknown = sorted(set(kwargs) - set(LAYER_KWARGS))
    if unknown:
      raise TypeError(f'{type(self).__name__}: unknown keyword arguments {unknown}; '
                      f'expected among {sorted(("trainable", "name", "dtype"))}.')
    reuse = v.check_reuse(kwargs.get('_reuse'), 'reuse')
    trainable = v.check_bool(kwargs.get('trainable', trainable), 'trainable')
    if name is not None:
      name = v.check_name(name)
    self._dtype = check_cell_dtype(dtype)
    self._trainable = trainable
    self._call_scope = None
    self._weights = []
    self._activity_regularizer = None
    self.input_spec = None
    self._init_scoping(name, kwargs.get('_scope'), reuse)

  def _init_set_name(self, name):
    self._base_name = name or snake_case(type(self).__name__)
    self._name = name or layer_base.unique_layer_name(self._base_name, first=0,
                                                      counts=_NAME_COUNTS)

  # --- the protocol -------------------------------------------------------
  @property
  def state_size(self):
    raise NotImplementedError(f'{type(self).__name__} must define `state_size`.')

  @property
  def output_size(self):
    raise NotImplementedError(f'{type(self).__name__} must define `output_size`.')

  def call(self, inputs, state):
    """One step: returns `(output, new_state)`."""
    raise NotImplementedError(f'{type(self).__name__} must define `call(inputs, state)`.')

  def zero_state(self, batch_size, dtype):
    """Zero-filled state tensor(s) in the structure of `state_size`."""
    with tf.compat.v1.name_scope(type(self).__name__ + 'ZeroState'):
      return zero_state_tensors(self.state_size, batch_size, dtype)

  def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
    """`zero_state`, with the batch size and dtype taken from `inputs` when given."""
    if inputs is not None:
      inputs = tf.convert_to_tensor(inputs, name='inputs')
      static_batch = inputs.shape[0] if inputs.shape.rank else None
      if batch_size is not None:
        given = (tf.get_static_value(batch_size, partial=True) if tf.is_tensor(batch_size)
                 else batch_size)
        if static_batch != given:
          raise ValueError(f'{self.name}.get_initial_state: `batch_size` ({batch_size}) differs '
                           f'from the batch size of `inputs` ({static_batch}); pass one of them.')
      if dtype is not None and inputs.dtype != dtype:
        raise ValueError(f'{self.name}.get_initial_state: `dtype` ({tf.as_dtype(dtype).name}) '
                         f'differs from the dtype of `inputs` ({inputs.dtype.name}).')
      batch_size = static_batch or tf.shape(inputs)[0]
      dtype = inputs.dtype
    if batch_size is None or dtype is None:
      raise ValueError(f'{self.name}.get_initial_state needs `batch_size` and `dtype` (or '
                       f'`inputs`), received batch_size={batch_size}, dtype={dtype}.')
    return self.zero_state(batch_size, dtype)

  def __call__(self, inputs, state, scope=None, **kwargs):
    """Runs one step in the cell's variable scope (see the module docstring)."""
    v.check_graph_mode(f'{type(self).__name__} (a tf.compat.v1.nn.rnn_cell cell)')
    if not self._captures_call_scope:
      return self._scoped_call(inputs, state, scope, kwargs)
    if scope is not None:
      with tf.compat.v1.variable_scope(scope, custom_getter=self._track_getter) as scope:
        return self._scoped_call(inputs, state, scope, kwargs)
    if self._call_scope is None:
      self._call_scope = tf.compat.v1.get_variable_scope()
    with tf.compat.v1.variable_scope(self._call_scope, custom_getter=self._track_getter,
                                     auxiliary_name_scope=False):
      return self._scoped_call(inputs, state, None, kwargs)

  # --- scopes and variables -----------------------------------------------
  def _scoped_call(self, inputs, state, scope, kwargs):
    self._set_scope(scope)
    # The getter tracks variables `call` creates with get_variable (a BN inside
    # a cell, old-style cells) in `variables`, as those of `build`.
    with self._entered_scope(custom_getter=self._track_getter):
      if not self.built:
        self.check_inputs(inputs, first_call=True)
        if self._dtype is None:
          self._dtype = tf.as_dtype(tf.nest.flatten(inputs)[0].dtype)
        self.build(self._input_shape(inputs))
        self.built = True
      else:
        self.check_inputs(inputs, first_call=False)
      if layer_base.accepts_argument(self.call, 'scope'):
        kwargs = dict(kwargs, scope=self._scope)
      return self.call(inputs, state, **kwargs)

  @staticmethod
  def _input_shape(inputs):
    shapes = tf.nest.map_structure(lambda x: tf.TensorShape(x.shape), inputs)
    return shapes

  def check_inputs(self, inputs, first_call):
    """Validates a step's inputs before any op; the built-in cells check rank
    and depth here. The base accepts anything."""
    del inputs, first_call

  def _track_getter(self, getter, *args, **kwargs):
    variable = getter(*args, **kwargs)
    self._track(variable)
    return variable

  def _track(self, variable):
    # A partitioned variable (LSTMCell's num_unit_shards) iterates over its parts.
    parts = [variable] if isinstance(variable, tf.Variable) else list(variable)
    for part in parts:
      if all(part is not known for known in self._weights):
        self._weights.append(part)

  def add_weight(self, name, shape, dtype=None, initializer=None, regularizer=None,
                 trainable=True, constraint=None, partitioner=None, **kwargs):
    """Creates (or, once built or with reuse, gets) a variable in the cell's scope.

    `tf.compat.v1.get_variable` semantics: `initializer=None` takes the
    variable scope's initializer, else glorot-uniform; a `regularizer` adds
    its loss to REGULARIZATION_LOSSES; `trainable=False` (or a cell built
    with `trainable=False`) keeps the variable out of TRAINABLE_VARIABLES.
    """
    self._set_scope(None)
    dtype = tf.as_dtype(dtype or self._dtype or tf.float32)
    reuse = True if self.built else self._reuse
    trainable = bool(trainable) and self._trainable
    with tf.compat.v1.variable_scope(self._scope, reuse=reuse, auxiliary_name_scope=False):
      losses_before = len(tf.compat.v1.get_collection(
          tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES))
      variable = tf.compat.v1.get_variable(
          name, shape, dtype=dtype, initializer=initializer, regularizer=regularizer,
          trainable=trainable, constraint=constraint, partitioner=partitioner, **kwargs)
      self._losses.extend(tf.compat.v1.get_collection(
          tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)[losses_before:])
    self._track(variable)
    return variable

  # --- what user code reads -----------------------------------------------
  @property
  def dtype(self):
    return None if self._dtype is None else self._dtype.name

  @property
  def trainable(self):
    return self._trainable

  @property
  def scope_name(self):
    if self._scope is None:
      raise ValueError(f'No name available for the scope of cell {self._name!r}: it is set at '
                       'the first call of the cell; call it first.')
    return self._scope.name

  @property
  def trainable_weights(self):
    if not self._trainable:
      return []
    return [w for w in self._weights if getattr(w, 'trainable', True)]

  @property
  def non_trainable_weights(self):
    trainable = set(id(w) for w in self.trainable_weights)
    return [w for w in self._weights if id(w) not in trainable]

  def __repr__(self):
    return f'<{type(self).__module__}.{type(self).__name__} {self._name!r}>'


class LayerRNNCell(RNNCell):
  """A cell whose variables are created in `build` (the legacy LayerRNNCell):
  no capture of the caller's variable scope, only its own."""

  _captures_call_scope = False
