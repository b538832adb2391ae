"""`BNLSTMCell`: the recurrent batch-normalized LSTM of Cooijmans et al. 2017.

"Recurrent Batch Normalization" (ICLR 2017) normalizes the input and the
recurrent contributions of an LSTM separately, and the cell state before the
output nonlinearity, with statistics kept per time step:

    (f, i, o, g) = BN(W_x x_t; gamma_x) + BN(W_h h_{t-1}; gamma_h) + b
    c_t = sigmoid(f + forget_bias) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(BN(c_t; gamma_c, beta_c))

* Each BN is `tf1_bn.batch_normalization` with per-step statistics
  (`step=t, max_steps=max_steps`): moving mean and variance of shape
  `[max_steps, 4 * num_units]` (`[max_steps, num_units]` for the cell
  state), population variance, steps past `max_steps - 1` sharing the last
  row. Inference (training False) uses them: unlike the hand-written cells
  that keep no population statistics, a trained model evaluates without
  batch statistics.
* The three gammas start at 0.1 (the paper: a smaller gamma keeps tanh and
  the sigmoids out of saturation and the gradients flowing); the W_x and
  W_h normalizations have no beta (the single bias `b` plays that role);
  the cell-state normalization has its own beta, starting at 0.
* Gate order in the 4 * num_units columns of the kernels, the bias and the
  x/h statistics: forget, input, output, candidate (f, i, o, g), the
  paper's. `forget_bias` (default 1.0) is added to f's pre-activation, as
  `tf.compat.v1.nn.rnn_cell.LSTMCell` does, and is not a variable.
* Variables, under the cell's variable scope (default `bn_lstm_cell`, inside
  `rnn/` for dynamic_rnn): `kernel_x` [input depth, 4 * num_units] (Glorot
  uniform), `kernel_h` [num_units, 4 * num_units] (orthogonal, as in the
  paper), `bias` [4 * num_units] (zeros), and the BN scopes `bn_x`, `bn_h`
  (gamma, moving_mean, moving_variance) and `bn_c` (gamma, beta, moving
  statistics).

The state is `BNLSTMState(c, h, step)`: c and h `[batch, num_units]` in the
input's dtype, and `step` `[batch, 1]` int32, the time step (0 in
`zero_state`, +1 at each call), carried in the state so that the cell picks
the statistics row itself under `dynamic_rnn` (whose loop counter it does not
see), `static_rnn` and `bidirectional_dynamic_rnn`. A custom initial state
must start `step` at 0 (or at the step it resumes), the same for every
example.

Padded batches: pass the lengths to the cell too,
`BNLSTMCell(..., sequence_length=lengths)` with
`dynamic_rnn(cell, x, sequence_length=lengths)`: at step t only the
sequences with t < length enter the batch statistics (the others are
masked, see `tf1_bn.bn.masking`), so padding never shifts them. (The rnn
functions stop a finished sequence's state and outputs but still call the
cell on the whole batch; from its state alone the cell cannot tell a
sequence that just ended from one that goes on.)

`training`: None (default) means the graph's switch
`tf1_bn.training_placeholder()` (feed it True to train), as for
`tf1_bn.bn_layer`; a Python bool or a scalar tf.bool tensor otherwise.
Inside `dynamic_rnn` the statistics are updated in place at every time step
(see `tf1_bn.bn.loops`); in `static_rnn` their updates go to UPDATE_OPS
(`tf1_bn.minimize` runs them).

The cell is one of tf1_bn's rnn cells (`tf1_bn.legacy.rnn_cell_base`'s
`LayerRNNCell`, what `patch_layers()` installs as
`tf.compat.v1.nn.rnn_cell.RNNCell`): the same scope rules as `LSTMCell` (a
second cell in one scope is `bn_lstm_cell_1`; `cell(inputs, state,
scope='s')`; one set of variables per instance), `cell.variables`,
`cell.trainable_variables` and `cell.weights` list its variables, BN
variables included, and it composes with `MultiRNNCell` and the wrappers.
"""
import collections

import tensorflow as tf

from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v
from tf1_bn.legacy import layers_bn
from tf1_bn.legacy import rnn_cell_base as base

BNLSTMState = collections.namedtuple('BNLSTMState', ('c', 'h', 'step'))
GATES = ('forget', 'input', 'output', 'candidate')
GAMMA_INIT = 0.1


class BNLSTMCell(base.LayerRNNCell):
  """Recurrent batch-normalized LSTM cell (see the module doc)."""

  def __init__(self, num_units, max_steps, training=None, forget_bias=1.0, momentum=0.99,
               epsilon=1e-3, gamma_init=GAMMA_INIT, activation=None, name='bn_lstm_cell',
               reuse=None, sequence_length=None):
    """
    Args:
      num_units: the LSTM's size, an int >= 1.
      max_steps: the number of time steps with statistics of their own, an
        int >= 1 (usually the sequence length); later steps share the last.
      training: None (the graph's training placeholder), a Python bool or a
        scalar tf.bool tensor.
      forget_bias: added to the forget gate's pre-activation.
      momentum: the moving statistics' decay (tf.layers' `momentum`).
      epsilon: added to the variances.
      gamma_init: the three gammas' initial value (0.1 in the paper).
      activation: the cell and output nonlinearity; None for tanh.
      name: the cell's scope name (made unique in its variable scope unless
        `reuse=True`), as for the other cells.
      reuse: as for the other cells: True reuses the variables of the scope
        `name`.
      sequence_length: None, or the [batch] int lengths given to the rnn
        function: steps past a sequence's length are left out of the batch
        statistics.
    """
    num_units = v.check_integer(num_units, 'num_units', low=1)
    max_steps = v.check_integer(max_steps, 'max_steps', low=1)
    training = switch_lib.check_training(training)
    forget_bias = v.check_number(forget_bias, 'forget_bias')
    momentum = v.check_probability(momentum, 'momentum')
    epsilon = v.check_non_negative(epsilon, 'epsilon')
    gamma_init = v.check_number(gamma_init, 'gamma_init')
    activation = v.check_callable(activation, 'activation') or tf.tanh
    name = v.check_name(name, optional=False)
    super().__init__(name=name, _reuse=reuse)
    self._num_units, self._max_steps, self._training = num_units, max_steps, training
    self._forget_bias, self._momentum, self._epsilon = forget_bias, momentum, epsilon
    self._gamma_init, self._activation = gamma_init, activation
    self._lengths = None
    if sequence_length is not None:
      shape, dtype = v.static_shape_and_dtype(sequence_length, 'sequence_length')
      if not dtype.is_integer or shape.rank != 1:
        raise TypeError(f'`sequence_length` must be a [batch] integer tensor or array, received '
                        f'{dtype.name} of shape {shape}.')
      self._lengths = sequence_length

  @property
  def state_size(self):
    return BNLSTMState(self._num_units, self._num_units, 1)

  @property
  def output_size(self):
    return self._num_units

  def zero_state(self, batch_size, dtype):
    """c and h zeros in `dtype`, step 0."""
    zeros = tf.zeros(tf.stack([batch_size, self._num_units]), dtype)
    return BNLSTMState(zeros, zeros, tf.zeros(tf.stack([batch_size, 1]), tf.int32))

  def _bn(self, x, name, step, center, active):
    return layers_bn.batch_normalization(
        x, momentum=self._momentum, epsilon=self._epsilon, center=center,
        gamma_initializer=tf.compat.v1.constant_initializer(self._gamma_init),
        training=switch_lib.resolve_training(self._training), name=name, step=step,
        max_steps=self._max_steps, mask=active)

  def check_inputs(self, inputs, first_call):
    """One time step [batch, depth], float, with a static depth; checked
    before any op."""
    del first_call
    x = tf.convert_to_tensor(inputs)
    v.check_float_dtype(x.dtype.base_dtype)
    if x.shape.rank != 2 or x.shape[-1] is None:
      raise ValueError(f'`inputs` must be [batch, depth] with a static depth, received shape '
                       f'{x.shape}.')

  def build(self, input_shape):
    depth, units = input_shape[-1], self._num_units
    self._kernel_x = self.add_weight('kernel_x', [depth, 4 * units],
                                     initializer=tf.compat.v1.glorot_uniform_initializer())
    self._kernel_h = self.add_weight('kernel_h', [units, 4 * units],
                                     initializer=tf.compat.v1.orthogonal_initializer())
    self._bias = self.add_weight('bias', [4 * units],
                                 initializer=tf.compat.v1.zeros_initializer())

  def call(self, inputs, state):
    """One time step; returns (h_t, BNLSTMState(c_t, h_t, step + 1))."""
    c, h, step = state
    x = tf.convert_to_tensor(inputs)
    dtype = x.dtype.base_dtype
    # Every example is at the same time step (0 for an empty batch).
    t = tf.reduce_max(tf.concat([tf.reshape(step, [-1]), [0]], 0))
    active = None
    if self._lengths is not None:
      active = tf.cast(t, tf.int64) < tf.cast(self._lengths, tf.int64)
    gates = (self._bn(tf.matmul(x, self._kernel_x), 'bn_x', t, False, active) +
             self._bn(tf.matmul(h, self._kernel_h), 'bn_h', t, False, active) + self._bias)
    f, i, o, g = tf.split(gates, 4, axis=1)
    new_c = (tf.sigmoid(f + tf.cast(self._forget_bias, dtype)) * c +
             tf.sigmoid(i) * self._activation(g))
    new_h = tf.sigmoid(o) * self._activation(self._bn(new_c, 'bn_c', t, True, active))
    return new_h, BNLSTMState(new_c, new_h, step + 1)
