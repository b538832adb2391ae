"""The cells of `tf.compat.v1.nn.rnn_cell`: BasicRNNCell, GRUCell, BasicLSTMCell,
LSTMCell and MultiRNNCell, with the legacy variable names and math.

Variable names (inside the cell's scope, see `rnn_cell_base`):

* BasicRNNCell: `basic_rnn_cell/kernel` `[depth + units, units]`, `bias`.
* GRUCell: `gru_cell/gates/kernel` `[depth + units, 2 * units]` (reset, update),
  `gates/bias` (initialized to 1), `candidate/kernel` `[depth + units, units]`,
  `candidate/bias`.
* BasicLSTMCell: `basic_lstm_cell/kernel` `[depth + units, 4 * units]`, `bias`.
* LSTMCell: `lstm_cell/kernel` `[depth + h, 4 * units]` (h = num_proj or
  units), `bias`, with peepholes `w_f_diag`, `w_i_diag`, `w_o_diag`
  `[units]`, with a projection `projection/kernel` `[units, num_proj]`.
* MultiRNNCell: `multi_rnn_cell/cell_<i>/<the cell's own scope>`.

The four LSTM gate blocks of the kernel and bias are, in order, i (input),
j (candidate), f (forget), o (output). `forget_bias` is added to f at every
step; it is not in the bias variable (a checkpoint from CudnnLSTM needs
`forget_bias=0.0`).
"""
import tensorflow as tf

from tf1_bn.common import validation as v
from tf1_bn.legacy import rnn_cell_base as base
from tf1_bn.legacy.rnn_cell_base import BIAS_NAME, WEIGHTS_NAME, LSTMStateTuple

# The rank of one time step's inputs: [batch, depth].
STEP_RANK = 2


class _DenseStepCell(base.LayerRNNCell):
  """Shared by the built-in cells: input checks and the state layout."""

  def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None, **kwargs):
    num_units = base.check_units(num_units)
    activation = base.check_activation(activation)
    super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
    self._num_units = num_units
    self._activation = activation
    self._input_depth = None

  def check_inputs(self, inputs, first_call):
    if not tf.is_tensor(inputs):
      inputs = tf.convert_to_tensor(inputs)
    shape = inputs.shape
    name = self._scope.name if self._scope is not None else self._name
    if shape.rank is not None and shape.rank != STEP_RANK:
      raise ValueError(
          f'Input 0 of layer "{self._name}" is incompatible with the layer: expected '
          f'ndim={STEP_RANK}, found ndim={shape.rank}. Full shape received: {shape}. An rnn cell '
          f'takes one time step, [batch, depth]; run a sequence [batch, time, depth] through '
          f'tf.compat.v1.nn.dynamic_rnn (or unstack it for static_rnn).')
    depth = shape[-1] if shape.rank is not None else None
    if depth is None:
      raise ValueError(
          f'Expected inputs.shape[-1] to be known, received shape: {shape} (cell {name!r}). '
          f'The depth sizes the cell\'s kernel, so it must be static: give the placeholder '
          f'its last dimension, or call `inputs.set_shape([None, None, depth])` after an op '
          f'(a reshape with -1, a tf.py_function) that lost it.')
    base.check_cell_dtype(inputs.dtype.base_dtype, 'inputs')
    if inputs.dtype.base_dtype != (self._dtype or inputs.dtype.base_dtype):
      raise TypeError(f'Cell {name!r} has {self._dtype.name} variables and received '
                      f'{inputs.dtype.base_dtype.name} inputs; cast the inputs or build the '
                      f'cell with dtype={inputs.dtype.base_dtype.name!r}.')
    if first_call:
      self._input_depth = int(depth)
    elif self._input_depth is not None and int(depth) != self._input_depth:
      state_depth = self._kernel_state_depth()
      raise ValueError(
          f'Dimensions must be equal, but are {int(depth) + state_depth} and '
          f'{self._input_depth + state_depth} for the kernel matmul of cell {name!r}: it was '
          f'built for inputs of depth {self._input_depth} (its kernel is '
          f'[{self._input_depth} + {state_depth}, ...]) and now received depth {int(depth)} '
          f'(inputs shape {shape}). A cell instance shares its variables across calls, so '
          f'every call must have the same depth; use a new cell for the other inputs.')

  def _kernel_state_depth(self):
    return self._num_units

  @property
  def state_size(self):
    return self._num_units

  @property
  def output_size(self):
    return self._num_units


class BasicRNNCell(_DenseStepCell):
  """The most basic RNN: `output = new_state = activation(W [x, state] + b)`.

  Args:
    num_units: int > 0, the state (and output) size.
    activation: default tanh; a callable or a name such as 'relu'.
    reuse: True reuses the variables already in the scope `name`.
    name: the scope name, default `basic_rnn_cell` (made unique).
    dtype: the variables' dtype, default the inputs'.
  """

  def build(self, input_shape):
    depth = input_shape[-1]
    self._kernel = self.add_weight(WEIGHTS_NAME, [depth + self._num_units, self._num_units])
    self._bias = self.add_weight(BIAS_NAME, [self._num_units],
                                 initializer=tf.compat.v1.zeros_initializer())

  def call(self, inputs, state):
    gate_inputs = tf.matmul(tf.concat([inputs, state], 1), self._kernel)
    output = self._activation(tf.nn.bias_add(gate_inputs, self._bias))
    return output, output


class GRUCell(_DenseStepCell):
  """Gated recurrent unit (Cho et al., 2014), the legacy formulation.

  r, u = sigmoid(W_g [x, h] + b_g); c = act(W_c [x, r * h] + b_c);
  h' = u * h + (1 - u) * c. The gate bias starts at 1 (`bias_initializer`
  overrides it and the candidate bias, which starts at 0).

  Args:
    num_units, activation, reuse, name, dtype: as BasicRNNCell.
    kernel_initializer: for both kernels; default: the variable scope's
      initializer, else glorot-uniform.
    bias_initializer: for both biases (default 1 for the gates, 0 for the
      candidate).
  """

  def __init__(self, num_units, activation=None, reuse=None, kernel_initializer=None,
               bias_initializer=None, name=None, dtype=None, **kwargs):
    kernel_initializer = base.check_initializer(kernel_initializer, 'kernel_initializer')
    bias_initializer = base.check_initializer(bias_initializer, 'bias_initializer')
    super().__init__(num_units, activation=activation, reuse=reuse, name=name, dtype=dtype,
                     **kwargs)
    self._kernel_initializer = kernel_initializer
    self._bias_initializer = bias_initializer

  def build(self, input_shape):
    depth, units = input_shape[-1], self._num_units
    bias_init = self._bias_initializer
    self._gate_kernel = self.add_weight(f'gates/{WEIGHTS_NAME}', [depth + units, 2 * units],
                                        initializer=self._kernel_initializer)
    self._gate_bias = self.add_weight(
        f'gates/{BIAS_NAME}', [2 * units],
        initializer=bias_init or tf.compat.v1.constant_initializer(1.0))
    self._candidate_kernel = self.add_weight(f'candidate/{WEIGHTS_NAME}', [depth + units, units],
                                             initializer=self._kernel_initializer)
    self._candidate_bias = self.add_weight(
        f'candidate/{BIAS_NAME}', [units], initializer=bias_init or tf.compat.v1.zeros_initializer())

  def call(self, inputs, state):
    gates = tf.nn.bias_add(tf.matmul(tf.concat([inputs, state], 1), self._gate_kernel),
                           self._gate_bias)
    r, u = tf.split(tf.sigmoid(gates), 2, axis=1)
    candidate = tf.nn.bias_add(
        tf.matmul(tf.concat([inputs, r * state], 1), self._candidate_kernel), self._candidate_bias)
    c = self._activation(candidate)
    new_h = u * state + (1 - u) * c
    return new_h, new_h


def _split_state(cell, state, c_size, h_size):
  """(c, h) from a tuple state or a concatenated one ([c, h] along axis 1)."""
  if cell._state_is_tuple:
    c, h = state
    return c, h
  return (tf.slice(state, [0, 0], [-1, c_size]), tf.slice(state, [0, c_size], [-1, h_size]))


def _join_state(cell, c, h):
  return LSTMStateTuple(c, h) if cell._state_is_tuple else tf.concat([c, h], 1)


class BasicLSTMCell(_DenseStepCell):
  """The basic LSTM (no peepholes, projection or clipping), legacy `basic_lstm_cell`.

  c' = c * sigmoid(f + forget_bias) + sigmoid(i) * act(j);
  h' = act(c') * sigmoid(o), with [i, j, f, o] = W [x, h] + b.

  Args:
    num_units: int > 0.
    forget_bias: float added to the forget gate (not stored in the bias).
    state_is_tuple: True: states are `LSTMStateTuple(c, h)`; False: `[c, h]`
      concatenated on axis 1.
    activation, reuse, name, dtype: as BasicRNNCell.
  """

  def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None,
               reuse=None, name=None, dtype=None, **kwargs):
    forget_bias = v.check_number(forget_bias, 'forget_bias')
    state_is_tuple = v.check_bool(state_is_tuple, 'state_is_tuple')
    super().__init__(num_units, activation=activation, reuse=reuse, name=name, dtype=dtype,
                     **kwargs)
    self._forget_bias = forget_bias
    self._state_is_tuple = state_is_tuple

  @property
  def state_size(self):
    units = self._num_units
    return LSTMStateTuple(units, units) if self._state_is_tuple else 2 * units

  def build(self, input_shape):
    depth, units = input_shape[-1], self._num_units
    self._kernel = self.add_weight(WEIGHTS_NAME, [depth + units, 4 * units])
    self._bias = self.add_weight(BIAS_NAME, [4 * units],
                                 initializer=tf.compat.v1.zeros_initializer())

  def call(self, inputs, state):
    c, h = _split_state(self, state, self._num_units, self._num_units)
    gates = tf.nn.bias_add(tf.matmul(tf.concat([inputs, h], 1), self._kernel), self._bias)
    i, j, f, o = tf.split(gates, 4, axis=1)
    forget_bias = tf.constant(self._forget_bias, dtype=f.dtype)
    new_c = c * tf.sigmoid(f + forget_bias) + tf.sigmoid(i) * self._activation(j)
    new_h = self._activation(new_c) * tf.sigmoid(o)
    return new_h, _join_state(self, new_c, new_h)


class LSTMCell(_DenseStepCell):
  """The full LSTM of `tf.compat.v1.nn.rnn_cell.LSTMCell`, legacy `lstm_cell`.

  Peepholes (Sak et al., 2014) add `w_f_diag * c` and `w_i_diag * c` to the
  forget and input gates and `w_o_diag * c'` to the output gate; `cell_clip`
  clips c' to [-cell_clip, cell_clip] before the output; `num_proj` projects
  the output h' = act(c') * sigmoid(o) to `num_proj` units (then the state is
  `(c: units, h: num_proj)` and the next step's kernel reads the projected
  h), clipped to `proj_clip`.

  Args:
    num_units: int > 0.
    use_peepholes: bool.
    cell_clip: None or a float > 0.
    initializer: kernel, peephole and projection initializer; default: the
      variable scope's initializer, else glorot-uniform.
    num_proj: None or an int > 0.
    proj_clip: None or a float > 0 (used only with `num_proj`).
    num_unit_shards, num_proj_shards: None or an int > 0: the kernel (the
      projection) is a PartitionedVariable of that many shards on axis 0
      (`kernel/part_0`, ...), as the legacy did.
    forget_bias, state_is_tuple, activation, reuse, name, dtype: as
      BasicLSTMCell.
  """

  def __init__(self, num_units, use_peepholes=False, cell_clip=None, initializer=None,
               num_proj=None, proj_clip=None, num_unit_shards=None, num_proj_shards=None,
               forget_bias=1.0, state_is_tuple=True, activation=None, reuse=None, name=None,
               dtype=None, **kwargs):
    use_peepholes = v.check_bool(use_peepholes, 'use_peepholes')
    cell_clip = base.check_optional_clip(cell_clip, 'cell_clip')
    initializer = base.check_initializer(initializer)
    num_proj = None if num_proj is None else base.check_units(num_proj, 'num_proj')
    proj_clip = base.check_optional_clip(proj_clip, 'proj_clip')
    num_unit_shards = (None if num_unit_shards is None else
                       v.check_integer(num_unit_shards, 'num_unit_shards', low=1))
    num_proj_shards = (None if num_proj_shards is None else
                       v.check_integer(num_proj_shards, 'num_proj_shards', low=1))
    forget_bias = v.check_number(forget_bias, 'forget_bias')
    state_is_tuple = v.check_bool(state_is_tuple, 'state_is_tuple')
    super().__init__(num_units, activation=activation, reuse=reuse, name=name, dtype=dtype,
                     **kwargs)
    self._use_peepholes = use_peepholes
    self._cell_clip = cell_clip
    self._initializer = initializer
    self._num_proj = num_proj
    self._proj_clip = proj_clip
    self._num_unit_shards = num_unit_shards
    self._num_proj_shards = num_proj_shards
    self._forget_bias = forget_bias
    self._state_is_tuple = state_is_tuple
    h_size = num_proj or num_units
    self._state_size = (LSTMStateTuple(num_units, h_size) if state_is_tuple
                        else num_units + h_size)
    self._output_size = h_size

  @property
  def state_size(self):
    return self._state_size

  @property
  def output_size(self):
    return self._output_size

  def _kernel_state_depth(self):
    return self._output_size

  def build(self, input_shape):
    depth, units = input_shape[-1], self._num_units
    partitioner = (tf.compat.v1.fixed_size_partitioner(self._num_unit_shards)
                   if self._num_unit_shards is not None else None)
    self._kernel = self.add_weight(WEIGHTS_NAME, [depth + self._output_size, 4 * units],
                                   initializer=self._initializer, partitioner=partitioner)
    self._bias = self.add_weight(BIAS_NAME, [4 * units],
                                 initializer=tf.compat.v1.zeros_initializer())
    if self._use_peepholes:
      self._w_f_diag = self.add_weight('w_f_diag', [units], initializer=self._initializer)
      self._w_i_diag = self.add_weight('w_i_diag', [units], initializer=self._initializer)
      self._w_o_diag = self.add_weight('w_o_diag', [units], initializer=self._initializer)
    if self._num_proj is not None:
      partitioner = (tf.compat.v1.fixed_size_partitioner(self._num_proj_shards)
                     if self._num_proj_shards is not None else None)
      self._proj_kernel = self.add_weight(f'projection/{WEIGHTS_NAME}', [units, self._num_proj],
                                          initializer=self._initializer, partitioner=partitioner)

  def call(self, inputs, state):
    act = self._activation
    c_prev, m_prev = _split_state(self, state, self._num_units, self._output_size)
    lstm_matrix = tf.nn.bias_add(tf.matmul(tf.concat([inputs, m_prev], 1), self._kernel),
                                 self._bias)
    i, j, f, o = tf.split(lstm_matrix, 4, axis=1)
    if self._use_peepholes:
      c = (tf.sigmoid(f + self._forget_bias + self._w_f_diag * c_prev) * c_prev +
           tf.sigmoid(i + self._w_i_diag * c_prev) * act(j))
    else:
      c = tf.sigmoid(f + self._forget_bias) * c_prev + tf.sigmoid(i) * act(j)
    if self._cell_clip is not None:
      c = tf.clip_by_value(c, -self._cell_clip, self._cell_clip)
    if self._use_peepholes:
      m = tf.sigmoid(o + self._w_o_diag * c) * act(c)
    else:
      m = tf.sigmoid(o) * act(c)
    if self._num_proj is not None:
      m = tf.matmul(m, self._proj_kernel)
      if self._proj_clip is not None:
        m = tf.clip_by_value(m, -self._proj_clip, self._proj_clip)
    return m, _join_state(self, c, m)


class MultiRNNCell(base.RNNCell):
  """Stacks cells: each one's output is the next one's input; the state is
  the tuple of their states (or their concatenation with
  `state_is_tuple=False`, only for cells with flat states).

  Cell i builds under `multi_rnn_cell/cell_<i>/`. Passing the same cell
  object twice shares its variables (legacy behaviour; usually a mistake:
  build one cell per layer, e.g. `[LSTMCell(n) for _ in range(layers)]`).
  """

  def __init__(self, cells, state_is_tuple=True):
    if isinstance(cells, (str, bytes)) or not isinstance(cells, (list, tuple)):
      raise TypeError(f'`cells` must be a non-empty list of RNN cells, received {cells!r}.')
    if not cells:
      raise ValueError('`cells` must be a non-empty list of RNN cells: MultiRNNCell needs at '
                       'least one cell.')
    for index, cell in enumerate(cells):
      base.check_cell(cell, f'cells[{index}]')
    state_is_tuple = v.check_bool(state_is_tuple, 'state_is_tuple')
    if not state_is_tuple:
      nested = [i for i, cell in enumerate(cells) if tf.nest.is_nested(cell.state_size)]
      if nested:
        raise ValueError(f'MultiRNNCell(state_is_tuple=False) concatenates flat states, but '
                         f'cells {nested} have tuple states; use state_is_tuple=True (or '
                         f'build those cells with state_is_tuple=False).')
    super().__init__()
    self._cells = list(cells)
    self._state_is_tuple = state_is_tuple

  @property
  def state_size(self):
    if self._state_is_tuple:
      return tuple(cell.state_size for cell in self._cells)
    return sum(cell.state_size for cell in self._cells)

  @property
  def output_size(self):
    return self._cells[-1].output_size

  def zero_state(self, batch_size, dtype):
    with tf.compat.v1.name_scope(type(self).__name__ + 'ZeroState'):
      if self._state_is_tuple:
        return tuple(cell.zero_state(batch_size, dtype) for cell in self._cells)
      return base.zero_state_tensors(self.state_size, batch_size, dtype)

  def _cell_weights(self, attr):
    weights = []
    for cell in self._cells:
      weights.extend(getattr(cell, attr, []))
    return weights

  @property
  def trainable_weights(self):
    return self._cell_weights('trainable_weights') if self.trainable else []

  @property
  def non_trainable_weights(self):
    weights = self._cell_weights('non_trainable_weights')
    if not self.trainable:
      return self._cell_weights('trainable_weights') + weights
    return weights

  def call(self, inputs, state):
    if self._state_is_tuple and not tf.nest.is_nested(state):
      raise ValueError(f'MultiRNNCell expected a tuple of {len(self._cells)} states, one per '
                       f'cell, received {state!r}.')
    if self._state_is_tuple and len(state) != len(self._cells):
      raise ValueError(f'MultiRNNCell has {len(self._cells)} cells and received '
                       f'{len(state)} states.')
    position, current, new_states = 0, inputs, []
    for index, cell in enumerate(self._cells):
      with tf.compat.v1.variable_scope(f'cell_{index}'):
        if self._state_is_tuple:
          cell_state = state[index]
        else:
          cell_state = tf.slice(state, [0, position], [-1, cell.state_size])
          position += cell.state_size
        current, new_state = cell(current, cell_state)
        new_states.append(new_state)
    return current, (tuple(new_states) if self._state_is_tuple else tf.concat(new_states, 1))
