"""The cell wrappers of `tf.compat.v1.nn.rnn_cell`: DropoutWrapper,
ResidualWrapper, DeviceWrapper.

A wrapper adds no variable scope: it calls the wrapped cell with the same
`scope`, so `DropoutWrapper(LSTMCell(n))` under dynamic_rnn still names
`rnn/lstm_cell/kernel`, as the legacy wrappers did.

DropoutWrapper and the training switch
--------------------------------------
The legacy DropoutWrapper drops whenever a keep probability is below 1: it
has no notion of training, and models fed `keep_prob` through a placeholder
(0.5 to train, 1.0 to evaluate). This one keeps that as its DEFAULT
(`training=True`), so unmodified code gets exactly the legacy graph (the same
`tf.nn.dropout` ops with the same seeds). Its extra argument `training`
puts dropout on tf1_bn's switch instead:

* `training=True` (default): always drop, the legacy behaviour;
* `training=None`: drop only while `tf1_bn.training_placeholder()` is fed
  True (the switch batch norm and `tf1_bn.dropout` use); inference needs no
  feed;
* a scalar tf.bool tensor: drop only while it is True;
* `training=False`: never drop (no dropout op is built).

With a tensor switch the step builds the legacy dropout ops and selects
their result while training and the undropped values otherwise
(`tf.where` on the switch, no `tf.cond` in the loop body): training runs
draw exactly the masks of the always-on wrapper, and inference is exactly
the cell without dropout.
"""
import hashlib
import numbers

import tensorflow as tf

from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v
from tf1_bn.legacy import rnn_cell_base as base
from tf1_bn.legacy.rnn_cell_base import LSTMStateTuple

KEEP_PROB_ARGS = ('input_keep_prob', 'state_keep_prob', 'output_keep_prob')


class _CellWrapper(base.RNNCell):
  """Delegates the protocol to `cell`; calls it with the caller's scope."""

  def __init__(self, cell, **kwargs):
    base.check_cell(cell)
    super().__init__(**kwargs)
    self.cell = cell

  @property
  def wrapped_cell(self):
    return self.cell

  @property
  def state_size(self):
    return self.cell.state_size

  @property
  def output_size(self):
    return self.cell.output_size

  def zero_state(self, batch_size, dtype):
    with tf.compat.v1.name_scope(type(self).__name__ + 'ZeroState'):
      return self.cell.zero_state(batch_size, dtype)

  def __call__(self, inputs, state, scope=None, **kwargs):
    v.check_graph_mode(f'{type(self).__name__} (a tf.compat.v1.nn.rnn_cell wrapper)')
    return self._call_wrapped_cell(inputs, state, self.cell.__call__, scope=scope, **kwargs)

  def build(self, input_shape):
    if hasattr(self.cell, 'build') and not getattr(self.cell, 'built', False):
      self.cell.build(input_shape)
    self.built = True

  @property
  def built(self):
    return getattr(self.cell, 'built', self._wrapper_built)

  @built.setter
  def built(self, value):
    self._wrapper_built = value

  def _delegate(self, attr):
    return list(getattr(self.cell, attr, []))

  trainable_weights = property(lambda self: self._delegate('trainable_weights'))
  non_trainable_weights = property(lambda self: self._delegate('non_trainable_weights'))
  weights = property(lambda self: self._delegate('weights'))


def _default_dropout_state_filter_visitor(substate):
  """Drops every state term except an LSTM's memory `c` (and TensorArrays)."""
  if isinstance(substate, LSTMStateTuple):
    return LSTMStateTuple(c=False, h=True)
  if isinstance(substate, tf.TensorArray):
    return False
  return True


def _enumerated_map_up_to(shallow, fn, *structures):
  index = [0]

  def numbered(*args):
    result = fn(index[0], *args)
    index[0] += 1
    return result
  return tf.__internal__.nest.map_structure_up_to(shallow, numbered, *structures)


def _check_keep_prob(value, arg_name):
  """A float in (0, 1], or a scalar float tensor (checked when constant)."""
  if tf.is_tensor(value):
    v.check_graph_tensor(value, arg_name)
    if not value.dtype.is_floating or value.shape.rank not in (None, 0):
      raise TypeError(f'`{arg_name}` must be a float in (0, 1] or a scalar float tensor, '
                      f'received {value!r}.')
    constant = tf.get_static_value(value)
    if constant is None:
      return value
    value = float(constant)
  return v.check_number(value, arg_name, 0, 1, low_inclusive=False)


class DropoutWrapper(_CellWrapper):
  """Dropout on a cell's inputs, outputs and states (the legacy wrapper).

  Args:
    cell: the wrapped RNN cell.
    input_keep_prob, output_keep_prob, state_keep_prob: the probability of
      keeping a unit, a float in (0, 1] or a scalar float tensor (a
      placeholder fed per run). 1 builds no dropout. Kept units are scaled by
      1 / keep_prob. State dropout applies to the terms the state filter
      selects: by default every term but an LSTM's memory `c`.
    variational_recurrent: True draws one mask per run (per `session.run`)
      and uses it at every time step (Gal and Ghahramani, 2016), instead of a
      new mask per step. It needs `dtype`, and `input_size` when the input
      is dropped. The masks are built when the wrapper is constructed, so
      construct it in the graph (and under the device) of the model.
    input_size: the depth(s) of the inputs (an int, TensorShape or nest of
      them), for `variational_recurrent` with input dropout.
    dtype: the dtype of the masks, for `variational_recurrent`.
    seed: an int: the op seeds of the masks are derived from it as the legacy
      derived them (md5 of seed and a salt), so with the same graph seed the
      same masks are drawn.
    dropout_state_filter_visitor: a function of a (sub)state returning True,
      False, or a structure of bools saying which terms to drop.
    training: when dropout applies (see the module docstring): True
      (default, always: the legacy), None (tf1_bn's training placeholder), a
      scalar tf.bool tensor, or False (never).
  """

  def __init__(self, cell, input_keep_prob=1.0, output_keep_prob=1.0, state_keep_prob=1.0,
               variational_recurrent=False, input_size=None, dtype=None, seed=None,
               dropout_state_filter_visitor=None, training=True, **kwargs):
    base.check_cell(cell)
    keeps = {name: _check_keep_prob(value, name) for name, value in zip(
        KEEP_PROB_ARGS, (input_keep_prob, state_keep_prob, output_keep_prob))}
    variational_recurrent = v.check_bool(variational_recurrent, 'variational_recurrent')
    seed = v.check_seed(seed)
    dropout_state_filter_visitor = v.check_callable(
        dropout_state_filter_visitor, 'dropout_state_filter_visitor')
    training = switch_lib.check_training(training)
    dtype = base.check_cell_dtype(dtype)
    if variational_recurrent:
      if dtype is None:
        raise ValueError('DropoutWrapper(variational_recurrent=True) needs `dtype` (the dtype '
                         'of the masks, that of the inputs and states), received None.')
      if _should_drop(keeps['input_keep_prob']) and input_size is None:
        raise ValueError('DropoutWrapper(variational_recurrent=True) with input_keep_prob < 1 '
                         '(or a tensor) needs `input_size`, the depth of the inputs, to build '
                         'the input mask; received None.')
    super().__init__(cell, dtype=dtype, **kwargs)
    self._input_keep_prob = keeps['input_keep_prob']
    self._state_keep_prob = keeps['state_keep_prob']
    self._output_keep_prob = keeps['output_keep_prob']
    self._variational_recurrent = variational_recurrent
    self._input_size = input_size
    self._seed = seed
    self._training = training
    self._dropout_state_filter = (dropout_state_filter_visitor or
                                  _default_dropout_state_filter_visitor)
    self._recurrent_input_noise = None
    self._recurrent_state_noise = None
    self._recurrent_output_noise = None
    if variational_recurrent:
      self._build_recurrent_noise(cell, input_size, dtype)

  def _build_recurrent_noise(self, cell, input_size, dtype):
    def noise(salt, size):
      def draw(index, s):
        shape = [1] + ([s] if isinstance(s, numbers.Integral) else tf.TensorShape(s).as_list())
        return tf.random.uniform(shape, seed=self._gen_seed(salt, index), dtype=dtype)
      return _enumerated_map_up_to(size, draw, size)
    if _should_drop(self._input_keep_prob):
      self._recurrent_input_noise = noise('input', input_size)
    self._recurrent_state_noise = noise('state', cell.state_size)
    self._recurrent_output_noise = noise('output', cell.output_size)

  def _gen_seed(self, salt_prefix, index):
    if self._seed is None:
      return None
    text = f'{self._seed}{salt_prefix}_{index}'.encode('utf-8')
    return int(hashlib.md5(text).hexdigest()[:8], 16) & 0x7FFFFFFF

  def _switched_dropout(self, values, salt, noise, keep_prob, shallow=None):
    """`_dropout` on the training switch: the legacy ops while training (the
    same masks as the always-on wrapper), the values themselves otherwise."""
    if not _should_drop(keep_prob):
      return values
    training = self._training
    known = switch_lib.static_value(training) if training is not None else None
    if known is False:
      return values
    dropped = self._dropout(values, salt, noise, keep_prob, shallow)
    if known is True:
      return dropped
    training = switch_lib.resolve_training(training)
    return tf.nest.map_structure(lambda d, x: tf.where(training, d, x), dropped, values)

  def _dropout(self, values, salt, noise, keep_prob, shallow=None):
    shallow = values if shallow is None else shallow
    if not self._variational_recurrent:
      def drop(index, do_dropout, value):
        if isinstance(do_dropout, bool) and not do_dropout:
          return value
        rate = 1.0 - keep_prob if isinstance(keep_prob, float) else 1.0 - tf.cast(
            keep_prob, value.dtype)
        return tf.nn.dropout(value, rate=rate, seed=self._gen_seed(salt, index))
      return _enumerated_map_up_to(shallow, drop, shallow, values)

    def drop_variational(index, do_dropout, value, mask_noise):
      if isinstance(do_dropout, bool) and not do_dropout:
        return value
      keep = keep_prob if isinstance(keep_prob, float) else tf.cast(keep_prob, value.dtype)
      result = tf.divide(value, keep) * tf.floor(keep + mask_noise)
      result.set_shape(value.shape)
      return result
    return _enumerated_map_up_to(shallow, drop_variational, shallow, values, noise)

  def _call_wrapped_cell(self, inputs, state, cell_call_fn, **kwargs):
    inputs = self._switched_dropout(inputs, 'input', self._recurrent_input_noise,
                                    self._input_keep_prob)
    output, new_state = cell_call_fn(inputs, state, **kwargs)
    if _should_drop(self._state_keep_prob):
      shallow = tf.__internal__.nest.get_traverse_shallow_structure(
          self._dropout_state_filter, new_state)
      new_state = self._switched_dropout(new_state, 'state', self._recurrent_state_noise,
                                         self._state_keep_prob, shallow)
    output = self._switched_dropout(output, 'output', self._recurrent_output_noise,
                                    self._output_keep_prob)
    return output, new_state


def _should_drop(keep_prob):
  return not isinstance(keep_prob, float) or keep_prob < 1


class ResidualWrapper(_CellWrapper):
  """Adds the cell's inputs to its outputs (`residual_fn(inputs, outputs)`
  when given). The input depth must equal the cell's output size."""

  def __init__(self, cell, residual_fn=None, **kwargs):
    residual_fn = v.check_callable(residual_fn, 'residual_fn')
    super().__init__(cell, **kwargs)
    self._residual_fn = residual_fn

  def _call_wrapped_cell(self, inputs, state, cell_call_fn, **kwargs):
    if self._residual_fn is None:
      for x in tf.nest.flatten(inputs):
        depth = x.shape[-1] if x.shape.rank else None
        if depth is not None and tf.TensorShape(self.output_size).rank == 1 and \
            depth != tf.TensorShape(self.output_size)[0]:
          raise ValueError(
              f'ResidualWrapper adds the inputs to the outputs, but the inputs have depth '
              f'{depth} and the wrapped cell outputs {self.output_size} units; give the cell '
              f'{depth} units, project the inputs first, or pass `residual_fn`.')
    outputs, new_state = cell_call_fn(inputs, state, **kwargs)
    if self._residual_fn is not None:
      return self._residual_fn(inputs, outputs), new_state
    tf.nest.assert_same_structure(inputs, outputs)
    return tf.nest.map_structure(lambda x, y: x + y, inputs, outputs), new_state


class DeviceWrapper(_CellWrapper):
  """Runs the wrapped cell (and builds its zero state) under `tf.device(device)`."""

  def __init__(self, cell, device, **kwargs):
    if not (isinstance(device, str) or callable(device) or device is None):
      raise TypeError(f'`device` must be a device string or function, received {device!r}.')
    super().__init__(cell, **kwargs)
    self._device = device

  def zero_state(self, batch_size, dtype):
    with tf.compat.v1.name_scope(type(self).__name__ + 'ZeroState'):
      with tf.compat.v1.device(self._device):
        return self.cell.zero_state(batch_size, dtype)

  def _call_wrapped_cell(self, inputs, state, cell_call_fn, **kwargs):
    with tf.compat.v1.device(self._device):
      return cell_call_fn(inputs, state, **kwargs)
