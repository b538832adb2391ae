"""Per-time-step statistics (step=, max_steps=) on the three front-ends.

Reference: numpy float64 moving averages, one row per step (steps past the
last share the last row); inference with the step's row; export (folded and
not) against the session; checkpoints of [T, C] statistics.
"""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tests import reference

v1 = tf.compat.v1
RTOL = 1e-5
T, B, C, MAX_STEPS = 4, 5, 3, 3
FRONT_ENDS = {
    'bn_layer': (lambda x, tr, **kw: tf1_bn.bn_layer(x, training=tr, name='bn', eps=1e-3, **kw),
                 0.9),
    'batch_normalization': (lambda x, tr, **kw: tf1_bn.batch_normalization(
        x, training=tr, name='bn', momentum=0.9, **kw), 0.9),
    'batch_norm': (lambda x, tr, **kw: tf1_bn.batch_norm(
        x, is_training=tr, scope='bn', decay=0.9, scale=True, fused=False, **kw), 0.9),
}


def _data(seed=0):
  rng = np.random.RandomState(seed)
  return (rng.randn(T, B, C) * rng.uniform(0.5, 3, (T, 1, C)) + rng.randn(T, 1, C) * 3).astype(
      np.float32)


def _reference(x, decay):
  """Rows after one pass over the steps, and each step's inference output."""
  mean, var = np.zeros((MAX_STEPS, C)), np.ones((MAX_STEPS, C))
  for t in range(T):
    row = min(t, MAX_STEPS - 1)
    m, s = reference.moments(x[t], -1)
    mean[row] = decay * mean[row] + (1 - decay) * m
    var[row] = decay * var[row] + (1 - decay) * s
  inferred = np.stack([reference.normalize(x[t], mean[min(t, MAX_STEPS - 1)],
                                           var[min(t, MAX_STEPS - 1)], None, None, 1e-3, -1)
                       for t in range(T)])
  return mean, var, inferred


def _unrolled(build, x, training):
  return tf.stack([build(x[t], training, step=t, max_steps=MAX_STEPS, reuse=t > 0)
                   for t in range(T)])


def _in_while_loop(build, x, training):
  def body(t, outputs):
    return t + 1, outputs.write(t, build(x[t], training, step=t, max_steps=MAX_STEPS))
  _, outputs = tf.while_loop(lambda t, _: t < T, body, [0, tf.TensorArray(tf.float32, T)])
  return outputs.stack()


def _run(front_end, construct, seed=0):
  build, decay = FRONT_ENDS[front_end]
  x_value = _data(seed)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [T, B, C])
    training = v1.placeholder(tf.bool, [])
    ys = (_unrolled if construct == 'unrolled' else _in_while_loop)(build, x, training)
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.0), tf.reduce_sum(ys))
    variables = {var.op.name: var for var in v1.global_variables()}
    assert variables['bn/moving_mean'].shape == (MAX_STEPS, C)
    assert variables['bn/beta'].shape == (C,)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(train, {x: x_value, training: True})
      moving = sess.run([variables['bn/moving_mean'], variables['bn/moving_variance']])
      inferred = sess.run(ys, {x: x_value, training: False})
  mean, var, expected = _reference(x_value, decay)
  assert reference.max_relative_error(moving[0], mean) < RTOL
  assert reference.max_relative_error(moving[1], var) < RTOL
  assert reference.max_relative_error(inferred, expected) < RTOL


@pytest.mark.parametrize('front_end', sorted(FRONT_ENDS))
def test_unrolled_python_steps(front_end):
  _run(front_end, 'unrolled')


@pytest.mark.parametrize('front_end', ['bn_layer', 'batch_norm'])
def test_loop_counter_as_step(front_end):
  _run(front_end, 'while_loop', seed=1)


def test_negative_tensor_step_fails_when_run():
  with tf.Graph().as_default():
    step = v1.placeholder(tf.int32, [])
    y = tf1_bn.bn_layer(tf.ones([2, 3]), training=True, step=step, max_steps=2)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      with pytest.raises(tf.errors.InvalidArgumentError, match='`step`.*>= 0'):
        sess.run(y, {step: -1})


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(step=1), ValueError, 'needs `max_steps`'),
    (dict(max_steps=3), ValueError, 'needs `step`'),
    (dict(step=1, max_steps=0), ValueError, 'max_steps'),
    (dict(step=-1, max_steps=3), ValueError, 'step'),
    (dict(step=1.5, max_steps=3), TypeError, 'step'),
    (dict(step=tf.constant(1.0), max_steps=3), TypeError, 'integer tensor'),
])
@pytest.mark.parametrize('front_end', sorted(FRONT_ENDS))
def test_bad_step_arguments_build_nothing(front_end, kwargs, error, message):
  build, _ = FRONT_ENDS[front_end]
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [B, C])
    kwargs = {k: (tf.constant(1.0) if isinstance(val, tf.Tensor) else val)
              for k, val in kwargs.items()}
    with pytest.raises(error, match=message):
      build(x, True, **kwargs)
    assert not v1.global_variables()


def test_options_without_per_step_statistics_are_refused():
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [B, C])
    with pytest.raises(ValueError, match='renorm'):
      tf1_bn.batch_normalization(x, renorm=True, step=0, max_steps=2)
    with pytest.raises(ValueError, match='zero_debias_moving_mean'):
      tf1_bn.batch_norm(x, zero_debias_moving_mean=True, step=0, max_steps=2)
    assert not v1.global_variables()


def _serve(path):
  return tf.saved_model.load(str(path)).signatures['serving_default']


@pytest.mark.parametrize('fold', [True, False])
def test_export_and_checkpoint(tmp_path, fold):
  rng = np.random.RandomState(2)
  x_value = rng.randn(B, 2, 4).astype(np.float32)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 2, 4], name='x')
    step = v1.placeholder_with_default(tf.constant(2, tf.int64), [], name='step')
    kernel = v1.get_variable('kernel', [4, C])
    # Python steps: folded into the matmul before them; a tensor step: kept.
    h = [tf1_bn.bn_layer(tf.matmul(x[:, t], kernel), step=t, max_steps=2, name='fixed',
                         reuse=t > 0) for t in range(2)]
    y = tf.concat(h + [tf1_bn.bn_layer(tf.matmul(x[:, 1], kernel), step=step, max_steps=2,
                                       name='dynamic')], 1)
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.0), tf.reduce_sum(y))
    saver = v1.train.Saver()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(3):
        sess.run(train, {x: rng.randn(8, 2, 4) * 2 + 1, tf1_bn.training_placeholder(): True})
      expected = sess.run(y, {x: x_value})
      report = tf1_bn.export_inference(sess, {'x': x}, {'y': y}, str(tmp_path / 'model'),
                                       fold=fold)
      saver.save(sess, str(tmp_path / 'ckpt'))
      saved = {v.op.name: sess.run(v) for v in v1.global_variables()}
  assert report.per_step_kept == [y.op.inputs[2].name] or len(report.per_step_kept) == 1
  assert len(report.into_ops) == (2 if fold else 0)
  actual = _serve(tmp_path / 'model')(x=tf.constant(x_value))['y'].numpy()
  assert reference.max_relative_error(actual, expected) < RTOL
  inspected = tf1_bn.inspect_checkpoint(str(tmp_path / 'ckpt'))
  assert {layer.path for layer in inspected.layers} == {'fixed', 'dynamic'}
  # [T, C] statistics: C channels and T steps, not T * C channels.
  assert {(layer.channels, layer.steps) for layer in inspected.layers} == {(C, 2)}
  assert f'channels {C}  steps 2  moving mean' in inspected.text()
  with tf.Graph().as_default():
    tf1_bn.bn_layer(tf.ones([2, 3]), step=0, max_steps=2, name='fixed')
    with v1.Session() as sess:
      tf1_bn.restore(sess, str(tmp_path / 'ckpt'), var_list=v1.global_variables())
      restored = {v.op.name: sess.run(v) for v in v1.global_variables()}
  np.testing.assert_array_equal(restored['fixed/moving_mean'], saved['fixed/moving_mean'])


def test_recompute_statistics_row_by_row():
  # Python steps 0, 1, 2 with max_steps=2: row 0 from step 0's inputs, row 1
  # from steps 1 and 2 together (population variance of all their values).
  x_value = _data(4)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [T, B, C])
    for t in range(3):
      tf1_bn.bn_layer(x[t], name='bn', step=t, max_steps=2, reuse=t > 0)
    variables = {var.op.name: var for var in v1.global_variables()}
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      report = tf1_bn.recompute_statistics(sess, [{x: x_value}])
      mean, variance = sess.run([variables['bn/moving_mean'], variables['bn/moving_variance']])
  assert [layer.scope for layer in report.layers] == ['bn[step 0]', 'bn[step 1]']
  rows = [x_value[0], np.concatenate([x_value[1], x_value[2]])]
  for row, values in enumerate(rows):
    expected_mean, expected_variance = reference.moments(values, -1)
    assert reference.max_relative_error(mean[row], expected_mean) < RTOL
    assert reference.max_relative_error(variance[row], expected_variance) < RTOL


def test_recompute_statistics_keeps_a_tensor_step_layer():
  # A tensor `step` layer is named in report.skipped and left as it is; the
  # layer beside it is recomputed. A graph of only such layers is refused.
  x_value = _data(5)[0]
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [B, C])
    tf1_bn.bn_layer(x, step=tf.constant(0) + 0, max_steps=2, name='dynamic')
    tf1_bn.bn_layer(x, name='fixed')
    variables = {var.op.name: var for var in v1.global_variables()}
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(variables['dynamic/moving_mean'].assign(np.full([2, C], 0.5, np.float32)))
      report = tf1_bn.recompute_statistics(sess, [{x: x_value}])
      kept, fixed = sess.run([variables['dynamic/moving_mean'], variables['fixed/moving_mean']])
  assert [layer.scope for layer in report.layers] == ['fixed']
  assert list(report.skipped) == ['dynamic']
  assert 'tensor `step`' in report.skipped['dynamic']
  assert 'not recomputed: dynamic keeps per-step statistics' in str(report)
  np.testing.assert_array_equal(kept, np.full([2, C], 0.5, np.float32))
  assert reference.max_relative_error(fixed, reference.moments(x_value, -1)[0]) < RTOL
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [B, C])
    tf1_bn.bn_layer(x, step=tf.constant(0) + 0, max_steps=2, name='dynamic')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      with pytest.raises(ValueError, match=r'can be recomputed: dynamic keeps per-step .* '
                                           r'Nothing was run'):
        tf1_bn.recompute_statistics(sess, [{x: x_value}])
