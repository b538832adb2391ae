"""Benchmark cases for sequences: a BN-LSTM training step, and masked BN
against what a user would otherwise write.

* `bn_lstm_case`: one training step (forward, backward, update) of
  dynamic_rnn with `tf1_bn.BNLSTMCell` against the same LSTM without BN
  (the sequence study's baseline cell);
* `masked_case`: a training step of BN on a padded `[B, T, C]` tensor:
  `bn_layer(x, mask=m)` against `bn_layer(x)` on the same tensor (no mask,
  the padding counted; also on the unfused kernels, the path a mask takes)
  and a hand-written masked BN (`tf.nn.weighted_moments`
  with the mask as weights, then `tf.nn.batch_normalization`). Target:
  masked within 1.3x of unmasked.

Each case returns rows `{'case', 'implementation', 'ms', 'ratio',
'reference'}`: median step times of implementations run alternately in one
process, and their ratio to the reference implementation.
"""
import time

import numpy as np
import tensorflow as tf

from tf1_bn.bn.bn_layer import bn_layer
from tf1_bn.bn.switch import training_placeholder
from tf1_bn.legacy.bn_lstm import BNLSTMCell
from tf1_bn.studies import sequence_study

v1 = tf.compat.v1
MASKED_SHAPE = (64, 50, 256)
LSTM_SHAPE = (64, 8, 8, 128)  # batch, steps, input depth, units


class _Step:
  """A graph with one training step; `run()` times one session call."""

  def __init__(self, build, feed_values):
    self.graph = tf.Graph()
    with self.graph.as_default():
      placeholders, loss = build()
      variables = v1.trainable_variables()
      train = [tf.group(*tf.gradients(loss, variables))] if variables else []
      self.fetch = [loss] + train + v1.get_collection(v1.GraphKeys.UPDATE_OPS)
      self.feed = dict(zip(placeholders, feed_values))
      self.feed[training_placeholder()] = True
      init = v1.global_variables_initializer()
    self.sess = v1.Session(graph=self.graph)
    self.sess.run(init)

  def run(self):
    start = time.perf_counter()
    self.sess.run(self.fetch, self.feed)
    return time.perf_counter() - start


def _alternate(steps_by_name, steps, warmup):
  """Median seconds per implementation, run in a new random order each round."""
  for step in steps_by_name.values():
    for _ in range(warmup):
      step.run()
  times = {name: [] for name in steps_by_name}
  order = np.random.RandomState(0)
  for _ in range(steps):
    for name in order.permutation(list(steps_by_name)):
      times[name].append(steps_by_name[name].run())
  for step in steps_by_name.values():
    step.sess.close()
  return {name: float(np.median(samples)) for name, samples in times.items()}


def _rows(case, medians, reference):
  return [{'case': case, 'implementation': name, 'ms': seconds * 1e3,
           'ratio': seconds / medians[reference], 'reference': reference}
          for name, seconds in medians.items()]


def _hand_written_masked(x, mask):
  weights = tf.cast(mask, x.dtype)[:, :, tf.newaxis]
  mean, variance = tf.nn.weighted_moments(x, [0, 1], weights)
  channels = x.shape[-1]
  gamma = v1.get_variable('gamma', [channels], initializer=v1.ones_initializer())
  beta = v1.get_variable('beta', [channels], initializer=v1.zeros_initializer())
  return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-5)


def masked_case(shape=MASKED_SHAPE, steps=20, warmup=3, seed=0):
  """Masked BN against unmasked BN on the same padded tensor and the
  hand-written weighted moments; ratios to unmasked bn_layer."""
  batch, length, channels = shape
  rng = np.random.RandomState(seed)
  x_value = rng.randn(batch, length, channels).astype(np.float32)
  lengths = rng.randint(1, length + 1, batch).astype(np.int32)
  mask_value = np.arange(length)[None, :] < lengths[:, None]
  x_value *= mask_value[:, :, None]

  def build(kind):
    def graph():
      x = v1.placeholder(tf.float32, shape)
      mask = v1.placeholder(tf.bool, shape[:2])
      if kind == 'masked':
        y = bn_layer(x, mask=mask)
      elif kind == 'unmasked':
        y = bn_layer(x)
      elif kind == 'unfused':
        y = bn_layer(x, fused=False)
      else:
        y = _hand_written_masked(x, mask)
      return [x, mask], tf.reduce_sum(tf.square(y))
    return _Step(graph, [x_value, mask_value])

  implementations = {'bn_layer(x)': build('unmasked'), 'bn_layer(x, mask=m)': build('masked'),
                     'bn_layer(x, fused=False)': build('unfused'),
                     'weighted_moments by hand': build('hand')}
  return _rows(f'masked BN {"x".join(map(str, shape))}',
               _alternate(implementations, steps, warmup), 'bn_layer(x)')


def bn_lstm_case(shape=LSTM_SHAPE, steps=10, warmup=2, seed=0):
  """A dynamic_rnn training step: BNLSTMCell against the same LSTM without BN."""
  batch, length, depth, units = shape
  x_value = np.random.RandomState(seed).randn(batch, length, depth).astype(np.float32)

  def build(cell_kind):
    def graph():
      x = v1.placeholder(tf.float32, [batch, length, depth])
      cell = (BNLSTMCell(units, length) if cell_kind == 'bn'
              else sequence_study._LSTMCell(units))  # pylint: disable=protected-access
      outputs, _ = v1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
      return [x], tf.reduce_sum(tf.square(outputs))
    return _Step(graph, [x_value])

  implementations = {'LSTM': build('plain'), 'BNLSTMCell': build('bn')}
  return _rows(f'LSTM step {"x".join(map(str, shape))}',
               _alternate(implementations, steps, warmup), 'LSTM')
