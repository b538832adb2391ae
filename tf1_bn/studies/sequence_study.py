"""The sequence study: BN in recurrent models on the digits read row by row.

Each 8x8 digit is a sequence of 8 rows of 8 pixels, classified from the last
output of an LSTM (dynamic_rnn, 32 units). Two comparisons, every model
trained with the same seed, data order, optimizer and steps, in a session
loop that feeds `{tf1_bn.training_placeholder(): True}`, and evaluated on the
held-out split without it (the moving statistics normalize):

* a plain LSTM versus `tf1_bn.BNLSTMCell` (recurrent BN, per-step
  statistics) on the full sequences: test accuracy along training and the
  steps to reach 90%;
* variable-length sequences (each image cut to a random 4 to 8 rows, the
  rest zero-padded; dynamic_rnn with `sequence_length`), with a BN layer on
  the projected rows before the LSTM, without and with
  `mask=tf.sequence_mask(lengths)`: test accuracy, and how far the layer's
  moving mean and variance lie from the statistics of the real rows.

`run(...)` returns one row (a dict) per model; `report(rows)` formats them;
`main()` is `python -m tf1_bn.studies.sequence_study`.
"""
import argparse
import collections
import sys
import time

import numpy as np
import tensorflow as tf

from tf1_bn.bn.bn_layer import bn_layer
from tf1_bn.bn.switch import training_placeholder
from tf1_bn.bn.update_ops import minimize
from tf1_bn.legacy.bn_lstm import BNLSTMCell
from tf1_bn.studies import digits

v1 = tf.compat.v1

ROWS = 8
ROW_WIDTH = 8
UNITS = 32
PROJECTION = 16
MIN_ROWS = 4
TARGET_ACCURACY = 0.9
LEARNING_RATE = 0.005
BATCH_SIZE = 32
BN_DECAY = 0.9
STEPS = 300
EVAL_EVERY = 25
MODELS = ('LSTM', 'BNLSTMCell', 'padded, BN without mask', 'padded, BN with mask')

LSTMState = collections.namedtuple('LSTMState', ('c', 'h'))


class BaselineLSTMCell:
  """The baseline: BNLSTMCell's equations and initializers without BN
  (f, i, o, g; forget bias 1), on the rnn-cell protocol."""

  def __init__(self, num_units):
    self.output_size = num_units
    self.state_size = LSTMState(num_units, num_units)

  def zero_state(self, batch_size, dtype):
    zeros = tf.zeros(tf.stack([batch_size, self.output_size]), dtype)
    return LSTMState(zeros, zeros)

  def __call__(self, inputs, state, scope=None):
    units = self.output_size
    with v1.variable_scope(scope or 'lstm_cell'):
      kernel_x = v1.get_variable('kernel_x', [inputs.shape[-1], 4 * units],
                                 initializer=v1.glorot_uniform_initializer())
      kernel_h = v1.get_variable('kernel_h', [units, 4 * units],
                                 initializer=v1.orthogonal_initializer())
      bias = v1.get_variable('bias', [4 * units], initializer=v1.zeros_initializer())
    gates = tf.matmul(inputs, kernel_x) + tf.matmul(state.h, kernel_h) + bias
    f, i, o, g = tf.split(gates, 4, axis=1)
    c = tf.sigmoid(f + 1.0) * state.c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, LSTMState(c, h)


def as_sequences(features):
  """[N, 64] digits -> [N, 8 rows, 8 pixels]."""
  return np.reshape(features, [-1, ROWS, ROW_WIDTH])


def cut(sequences, seed):
  """Each sequence cut to a random 4 to 8 rows, the rest zeros; returns
  (padded sequences, lengths)."""
  lengths = np.random.RandomState(seed).randint(MIN_ROWS, ROWS + 1, len(sequences))
  keep = np.arange(ROWS)[None, :] < lengths[:, None]
  return (sequences * keep[:, :, None]).astype(np.float32), lengths.astype(np.int32)


def _logits(name, x, lengths):
  """The model's logits, and the padded models' BN input and mask (else None)."""
  statistics = None
  if name == 'LSTM':
    _, state = v1.nn.dynamic_rnn(BaselineLSTMCell(UNITS), x, dtype=tf.float32)
  elif name == 'BNLSTMCell':
    cell = BNLSTMCell(UNITS, ROWS, momentum=BN_DECAY)
    _, state = v1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
  else:
    mask = tf.sequence_mask(lengths, ROWS)
    kernel = v1.get_variable('projection', [ROW_WIDTH, PROJECTION],
                             initializer=v1.glorot_uniform_initializer())
    projected = tf.einsum('btr,rp->btp', x, kernel)
    normalized = bn_layer(projected, name='bn', moving_decay=BN_DECAY,
                          mask=mask if name.endswith('with mask') else None)
    _, state = v1.nn.dynamic_rnn(BaselineLSTMCell(UNITS), tf.nn.relu(normalized), dtype=tf.float32,
                                 sequence_length=lengths)
    statistics = (projected, mask)
  with v1.variable_scope('head'):
    w = v1.get_variable('kernel', [UNITS, digits.NUM_CLASSES],
                        initializer=v1.glorot_uniform_initializer())
    b = v1.get_variable('bias', [digits.NUM_CLASSES], initializer=v1.zeros_initializer())
  return tf.matmul(state.h, w) + b, statistics


def train_model(name, split, steps, batch_size=BATCH_SIZE, seed=0, eval_every=EVAL_EVERY):
  """Trains one model; returns its row: curve [(step, test accuracy)],
  steps_to_target (None if never), final_accuracy, seconds, and for the
  padded models the BN statistics' distance from the real rows'."""
  padded = name.startswith('padded')
  train_x, test_x = as_sequences(split.train_x), as_sequences(split.test_x)
  train_lengths = np.full(len(train_x), ROWS, np.int32)
  test_lengths = np.full(len(test_x), ROWS, np.int32)
  if padded:
    train_x, train_lengths = cut(train_x, seed + 1)
    test_x, test_lengths = cut(test_x, seed + 2)
  graph = tf.Graph()
  with graph.as_default():
    v1.set_random_seed(seed)
    x = v1.placeholder(tf.float32, [None, ROWS, ROW_WIDTH])
    lengths = v1.placeholder(tf.int32, [None])
    labels = v1.placeholder(tf.int64, [None])
    logits, statistics = _logits(name, x, lengths)
    loss = digits.cross_entropy(logits, labels)
    train = minimize(v1.train.AdamOptimizer(LEARNING_RATE), loss)
    accuracy = digits.accuracy(logits, labels)
    moving = [var for var in v1.global_variables() if var.op.name in ('bn/moving_mean',
                                                                       'bn/moving_variance')]
    init = v1.global_variables_initializer()
  curve, start = [], time.perf_counter()
  test_feed = {x: test_x, lengths: test_lengths, labels: split.test_y}
  with digits.single_thread_session(graph) as sess:
    sess.run(init)
    for step, index in enumerate(digits.minibatches(len(train_x), steps, batch_size, seed), 1):
      sess.run(train, {x: train_x[index], lengths: train_lengths[index],
                       labels: split.train_y[index], training_placeholder(graph): True})
      if step % eval_every == 0 or step == steps:
        curve.append((step, float(sess.run(accuracy, test_feed))))
    row = {'model': name, 'curve': curve, 'final_accuracy': curve[-1][1],
           'steps_to_target': next((s for s, a in curve if a >= TARGET_ACCURACY), None),
           'seconds': time.perf_counter() - start}
    if statistics is not None:
      row.update(_statistics_gap(sess, statistics, moving, x, lengths, train_x, train_lengths))
  return row


def _statistics_gap(sess, statistics, moving, x, lengths, train_x, train_lengths):
  """The BN layer's moving statistics against the real rows' (all training
  data, padding excluded), in units of the real standard deviation."""
  projected, mask = statistics
  values, keep = sess.run([projected, mask], {x: train_x, lengths: train_lengths})
  real = values[keep].astype(np.float64)
  padded_mean = values.reshape(-1, values.shape[-1]).mean(0)
  mean, std = real.mean(0), real.std(0)
  moving_mean, moving_variance = sess.run(moving)
  return {'mean_gap': float(np.max(np.abs(moving_mean - mean) / std)),
          'variance_ratio': float(np.median(moving_variance / real.var(0))),
          'padding_mean_gap': float(np.max(np.abs(padded_mean - mean) / std))}


def run(steps=STEPS, batch_size=BATCH_SIZE, seed=0, eval_every=EVAL_EVERY, models=MODELS):
  """Trains every model of `models`; returns their rows (see train_model)."""
  split = digits.load(seed)
  return [train_model(name, split, steps, batch_size, seed, eval_every) for name in models]


def report(rows):
  """The study as text: a markdown table and, for the padded models, the
  statistics' distance from the real rows'."""
  lines = ['| model | test accuracy | steps to 90% | seconds |', '|---|---|---|---|']
  for row in rows:
    reached = row['steps_to_target'] if row['steps_to_target'] is not None else 'never'
    lines.append(f"| {row['model']} | {row['final_accuracy']:.3f} | {reached} | "
                 f"{row['seconds']:.1f} |")
  for row in rows:
    if 'mean_gap' in row:
      lines.append(
          f"\n{row['model']}: moving mean off the real rows' mean by up to "
          f"{row['mean_gap']:.2f} standard deviations (the padded batch's own mean is off by "
          f"{row['padding_mean_gap']:.2f}); moving variance / real variance, median "
          f"{row['variance_ratio']:.2f}.")
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m tf1_bn.studies.sequence_study',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=STEPS)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  tf.get_logger().setLevel('ERROR')
  print(report(run(args.steps, seed=args.seed)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
