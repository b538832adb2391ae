"""Call order (a layer called several times in a step) with masks, per-step
statistics and loops.

References: numpy float64 of the calls taken one after the other (masked
moments, one row per step, a loop's iterations in order), and
`tf.gradients` for the moving statistics, which must be None on every one of
these paths too (loop reads through the variable's handle, per-step rows).
"""
import itertools

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tests import reference
from tests.test_masking import masked_reference

v1 = tf.compat.v1
UPDATE_OPS = v1.GraphKeys.UPDATE_OPS
EPS = 1e-3
DECAY = 0.9
RTOL = 1e-5
B, T, C = 4, 5, 3
MAX_STEPS = 3


def _bn_layer(x, reuse, in_place=False, **kw):
  return tf1_bn.bn_layer(x, name='bn', eps=EPS, moving_decay=DECAY, reuse=reuse,
                         updates='inline' if in_place else 'collection', **kw)


def _layers(x, reuse, in_place=False, **kw):
  assert not in_place, 'tf.layers has no in-place update'
  return tf1_bn.batch_normalization(x, name='bn', epsilon=EPS, momentum=DECAY, reuse=reuse,
                                    **kw)


def _slim(x, reuse, in_place=False, training=True, **kw):
  return tf1_bn.batch_norm(x, scope='bn', epsilon=EPS, decay=DECAY, scale=True, reuse=reuse,
                           is_training=training, fused=False,
                           updates_collections=None if in_place else UPDATE_OPS, **kw)


FRONT_ENDS = {'bn_layer': _bn_layer, 'batch_normalization': _layers, 'batch_norm': _slim}
IN_PLACE = ('bn_layer', 'batch_norm')


def _variables():
  return {var.op.name.split('/')[-1]: var for var in v1.global_variables()}


def _masks():
  rng = np.random.RandomState(3)
  x1 = (rng.randn(B, T, C) * 2 + 3).astype(np.float32)
  x2 = (rng.randn(B, T, C) * 0.5 - 1).astype(np.float32)
  first = np.arange(T)[None, :] < np.array([5, 2, 3, 1])[:, None]
  second = np.arange(T)[None, :] < np.array([1, 4, 5, 2])[:, None]
  return x1, x2, first, second


def _sequential(moving, calls):
  """The moving statistics after masked calls taken one after the other."""
  mean, variance = moving
  for _, mean_k, variance_k in calls:
    mean = DECAY * mean + (1 - DECAY) * mean_k
    variance = DECAY * variance + (1 - DECAY) * variance_k
  return mean, variance


def _masked(x, mask):
  ones, zeros = np.ones(C), np.zeros(C)
  y, mean, variance = masked_reference(x, mask, ones, zeros, np.zeros_like(x), EPS)[:3]
  return y, mean, variance


@pytest.mark.parametrize('front_end,in_place',
                         [(f, False) for f in sorted(FRONT_ENDS)] + [(f, True) for f in IN_PLACE])
@pytest.mark.filterwarnings('ignore:tf1_bn. the layer of')
def test_masked_calls_update_in_call_order(front_end, in_place):
  """A reused layer with a different mask per call: each call normalizes with
  its own masked statistics and the step leaves the sequential result. In a
  collection the updates are chained by call order; in place the second
  call's input is computed from the first call's output (ordered by data)."""
  build = FRONT_ENDS[front_end]
  x1, x2, m1, m2 = _masks()
  with tf.Graph().as_default():
    y1 = build(tf.constant(x1), None, in_place, training=True, mask=tf.constant(m1))
    second = (y1 * 2.0 + tf.constant(x2)) if in_place else tf.constant(x2)
    y2 = build(second, True, in_place, training=True, mask=tf.constant(m2))
    variables = _variables()
    updates = v1.get_collection(UPDATE_OPS)
    assert (len(updates) == 0) == in_place
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      moving = (np.zeros(C), np.ones(C))
      for _ in range(3):
        out1, out2 = sess.run([y1, y2, updates])[:2]
        r1 = _masked(x1, m1)
        r2 = _masked(out1.astype(np.float64) * 2 + x2 if in_place else x2, m2)
        moving = _sequential(moving, [r1, r2])
        assert reference.max_relative_error(out1, r1[0]) < RTOL
        assert reference.max_relative_error(out2, r2[0]) < RTOL
        actual = sess.run([variables['moving_mean'], variables['moving_variance']])
        assert reference.max_relative_error(actual[0], moving[0]) < RTOL
        assert reference.max_relative_error(actual[1], moving[1]) < RTOL


@pytest.mark.parametrize('front_end', IN_PLACE)
def test_per_step_rows_in_place_in_series(front_end):
  """An unrolled network with per-step statistics and updates in place:
  steps past the last share its row, each update applied (the data orders
  them: step t's input is computed from step t-1's output)."""
  build = FRONT_ENDS[front_end]
  steps = MAX_STEPS + 2
  x = np.random.RandomState(4).randn(steps, B, C).astype(np.float32) * 2 + 1
  with tf.Graph().as_default():
    ys, previous = [], 0.0
    for t in range(steps):
      previous = build(tf.constant(x[t]) + previous, t > 0 or None, True, training=True,
                       step=t, max_steps=MAX_STEPS)
      ys.append(previous)
    variables = _variables()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      outputs = sess.run(ys)
      actual = sess.run([variables['moving_mean'], variables['moving_variance']])
  mean, variance = np.zeros((MAX_STEPS, C)), np.ones((MAX_STEPS, C))
  previous = 0.0
  for t in range(steps):
    y, m, s = reference.batch_norm_train(x[t] + previous, None, None, EPS, [-1])
    assert reference.max_relative_error(outputs[t], y) < RTOL
    row = min(t, MAX_STEPS - 1)
    mean[row] = DECAY * mean[row] + (1 - DECAY) * m
    variance[row] = DECAY * variance[row] + (1 - DECAY) * s
    previous = outputs[t].astype(np.float64)
  assert reference.max_relative_error(actual[0], mean) < RTOL
  assert reference.max_relative_error(actual[1], variance) < RTOL


def _loop_body(build, x, training, per_step):
  """A while_loop whose body calls the layer twice, the second call reusing it."""
  def body(t, outputs):
    kw = dict(step=t, max_steps=MAX_STEPS) if per_step else {}
    y = build(x[t], None, training=training, **kw)
    y = build(y * 2.0, True, training=training, **kw)
    return t + 1, outputs.write(t, y)
  return tf.while_loop(lambda t, _: t < T, body, [0, tf.TensorArray(tf.float32, T)])[1].stack()


def _unrolled(build, x, training, per_step):
  ys = []
  for t in range(T):
    kw = dict(step=t, max_steps=MAX_STEPS) if per_step else {}
    ys.append(build(x[t], t > 0 or None, training=training, **kw))
  return tf.stack(ys)


def _map_fn(build, x, training, per_step):
  return tf.map_fn(lambda e: build(e, None, training=training), x)


GRADIENT_CASES = [
    case for case in itertools.product(sorted(FRONT_ENDS), ('while_loop', 'map_fn', 'unrolled'),
                                       (True, False, 'placeholder'), (False, True))
    if not (case[1] == 'map_fn' and case[3])
    # In a loop, training True reads no moving statistic forward.
    and not (case[1] != 'unrolled' and case[2] is True)]


@pytest.mark.parametrize('front_end,construct,training,per_step', GRADIENT_CASES,
                         ids=lambda value: str(value))
def test_no_gradient_for_the_moving_statistics(graph, front_end, construct, training, per_step):
  """Loop reads (through the handle) and per-step rows are behind a
  stop-gradient too. Outside loops tf.gradients for the moving statistics
  is None. A control-flow-v2 loop's gradient has a value for every variable
  its body captures (while_v2 fills unconnected gradients with zeros): that
  value is exactly zero, the forward pass contributing nothing."""
  build = FRONT_ENDS[front_end]
  x = v1.placeholder(tf.float32, [T, B, C])
  switch = v1.placeholder(tf.bool, []) if training == 'placeholder' else training
  construct_fn = {'while_loop': _loop_body, 'map_fn': _map_fn, 'unrolled': _unrolled}[construct]
  y = construct_fn(build, x, switch, per_step)
  loss = tf.reduce_sum(tf.square(y) * tf.range(C, dtype=tf.float32))
  moving = [var for var in v1.global_variables() if var.op.name.split('/')[-1].startswith(
      'moving_')]
  assert len(moving) == 2
  gradients = tf.gradients(loss, moving)
  if construct == 'unrolled':
    assert gradients == [None, None]
    return
  feed = {x: np.random.RandomState(6).randn(T, B, C).astype(np.float32) * 2 + 1}
  if training == 'placeholder':
    feed[switch] = False
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    sess.run(v1.assign(moving[0], tf.fill(moving[0].shape, 0.5)))
    values = sess.run(gradients, feed)
  for value in values:
    assert not np.any(value)


def test_loop_calls_take_no_part_in_the_call_order():
  """The layer called outside a loop, twice inside its body, then outside
  again: the two outside calls are chained (collection), the loop's updates
  stay in the loop (in place, iteration order), nothing of the loop in
  UPDATE_OPS, and each part computes its numpy result."""
  rng = np.random.RandomState(5)
  x_out = (rng.randn(2, B, C) * 2 + 1).astype(np.float32)
  x_loop = (rng.randn(T, B, C) * 1.5 - 2).astype(np.float32)
  with tf.Graph().as_default():
    before = _bn_layer(tf.constant(x_out[0]), None, training=True)
    looped = _loop_body(lambda x, reuse, training: _bn_layer(x, True, training=training),
                        tf.constant(x_loop), True, False)
    after = _bn_layer(tf.constant(x_out[1]), True, training=True)
    updates = v1.get_collection(UPDATE_OPS)
    assert len(updates) == 2
    assert all(op.graph is before.graph for op in updates)
    variables = _variables()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run([before, after, updates])
      actual_outside = sess.run([variables['moving_mean'], variables['moving_variance']])
      sess.run(looped)
      actual_loop = sess.run([variables['moving_mean'], variables['moving_variance']])
  mean, variance = np.zeros(C), np.ones(C)
  for x in x_out:
    _, m, s = reference.batch_norm_train(x, None, None, EPS, [-1])
    mean, variance = DECAY * mean + (1 - DECAY) * m, DECAY * variance + (1 - DECAY) * s
  assert reference.max_relative_error(actual_outside[0], mean) < RTOL
  assert reference.max_relative_error(actual_outside[1], variance) < RTOL
  for x in x_loop:
    y, m, s = reference.batch_norm_train(x, None, None, EPS, [-1])
    mean, variance = DECAY * mean + (1 - DECAY) * m, DECAY * variance + (1 - DECAY) * s
    _, m, s = reference.batch_norm_train(y * 2, None, None, EPS, [-1])
    mean, variance = DECAY * mean + (1 - DECAY) * m, DECAY * variance + (1 - DECAY) * s
  assert reference.max_relative_error(actual_loop[0], mean) < RTOL
  assert reference.max_relative_error(actual_loop[1], variance) < RTOL
