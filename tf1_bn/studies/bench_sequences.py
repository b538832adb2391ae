"""The graphs of the bench's sequence cases (`tf1-bn bench --cases
masked:BxTxC bnlstm:BxTxDxU`); the bench (bench.py) times them.

* `masked_steps([B, T, C])`: one training step (forward and the gradients of
  gamma and beta; moving statistics updated) of BN on a zero-padded
  `[B, T, C]` tensor with random lengths: `bn_layer(x, mask=m)` against
  `bn_layer(x)` on the same tensor (no mask: the padding counted), the same
  on the unfused kernels (the path a mask takes), and the masked BN a user
  would write by hand (`tf.nn.weighted_moments` with the mask as weights,
  then `tf.nn.batch_normalization`). Reference row: `bn_layer(x)`; target:
  masked within 1.3x of it.
* `bn_lstm_steps([B, T, D, U])`: one training step of `dynamic_rnn` over T
  steps of D inputs with U units: `tf1_bn.BNLSTMCell` against the same LSTM
  without BN (the sequence study's baseline cell). Reference row: the LSTM.

Each returns {row name: build}, `build()` making, in the current graph, the
step's `(fetch, feed, init)`; nothing here times anything.
"""
import numpy as np

UNMASKED = 'bn_layer(x)'
MASKED = 'bn_layer(x, mask=m)'
UNFUSED = 'bn_layer(x, fused=False)'
BY_HAND = 'weighted_moments by hand'
LSTM = 'LSTM'
BN_LSTM = 'BNLSTMCell'


def _train_step(feed, loss):
  """(fetch, feed, init) of a training step: the loss, the gradients of the
  trainable variables and the update ops, with the training switch on."""
  import tensorflow as tf
  from tf1_bn.bn.switch import training_placeholder
  v1 = tf.compat.v1
  variables = v1.trainable_variables()
  fetch = [loss] + [tf.group(*tf.gradients(loss, variables))] * bool(variables)
  fetch += v1.get_collection(v1.GraphKeys.UPDATE_OPS)
  return fetch, {**feed, training_placeholder(): True}, v1.global_variables_initializer()


def _hand_written_masked(x, mask):
  import tensorflow as tf
  v1 = tf.compat.v1
  weights = tf.cast(mask, x.dtype)[:, :, tf.newaxis]
  mean, variance = tf.nn.weighted_moments(x, [0, 1], weights)
  channels = x.shape[-1]
  gamma = v1.get_variable('gamma', [channels], initializer=v1.ones_initializer())
  beta = v1.get_variable('beta', [channels], initializer=v1.zeros_initializer())
  return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-5)


def masked_steps(shape, seed=0):
  """{row: build} for BN on a padded `shape` = [B, T, C] tensor (see above)."""
  import tensorflow as tf
  from tf1_bn.bn.bn_layer import bn_layer
  v1 = tf.compat.v1
  batch, length, channels = shape
  rng = np.random.RandomState(seed)
  lengths = rng.randint(1, length + 1, batch)
  mask_value = np.arange(length)[None, :] < lengths[:, None]
  x_value = rng.randn(batch, length, channels).astype(np.float32) * mask_value[:, :, None]
  layers = {UNMASKED: lambda x, m: bn_layer(x), MASKED: lambda x, m: bn_layer(x, mask=m),
            UNFUSED: lambda x, m: bn_layer(x, fused=False), BY_HAND: _hand_written_masked}

  def build(layer):
    x = v1.placeholder(tf.float32, shape)
    mask = v1.placeholder(tf.bool, shape[:2])
    loss = tf.reduce_sum(tf.square(layer(x, mask)))
    return _train_step({x: x_value, mask: mask_value}, loss)

  return {name: (lambda layer=layer: build(layer)) for name, layer in layers.items()}


def bn_lstm_steps(shape, seed=0):
  """{row: build} for a dynamic_rnn training step, `shape` = [B, T, D, U]."""
  import tensorflow as tf
  from tf1_bn.legacy.bn_lstm import BNLSTMCell
  from tf1_bn.studies import sequence_study
  v1 = tf.compat.v1
  batch, length, depth, units = shape
  x_value = np.random.RandomState(seed).randn(batch, length, depth).astype(np.float32)
  cells = {LSTM: lambda: sequence_study.BaselineLSTMCell(units),
           BN_LSTM: lambda: BNLSTMCell(units, length)}

  def build(make_cell):
    x = v1.placeholder(tf.float32, [batch, length, depth])
    outputs, _ = v1.nn.dynamic_rnn(make_cell(), x, dtype=tf.float32)
    return _train_step({x: x_value}, tf.reduce_sum(tf.square(outputs)))

  return {name: (lambda make_cell=make_cell: build(make_cell))
          for name, make_cell in cells.items()}
