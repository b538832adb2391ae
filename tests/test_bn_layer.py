"""bn_layer against numpy: outputs, moving statistics, gradients, switches, errors."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from reference import (batch_norm_train, ema, ema_closed_form, max_relative_error, moments,
                       normalize)

v1 = tf.compat.v1
UPDATE_OPS = v1.GraphKeys.UPDATE_OPS

# (shape, axis): dense, sequence, NHWC, NCHW, NDHWC, a middle axis, two axes.
LAYOUTS = [
    ([8, 5], -1),
    ([6, 4, 3], -1),
    ([4, 5, 6, 3], -1),
    ([4, 3, 5, 6], 1),
    ([2, 3, 4, 5, 2], -1),
    ([3, 4, 5, 2], 2),
    ([4, 5, 6, 3], [1, 3]),
]
FUSED = [None, False]


def _data(rng, shape, dtype=np.float32):
  return (rng.randn(*shape) * 3.0 + 1.5).astype(dtype)


def _placeholder(shape, dtype=tf.float32):
  return v1.placeholder(dtype, [None] + list(shape[1:]))


def _moving(scope='bn'):
  variables = {v.op.name: v for v in v1.global_variables()}
  return variables[scope + '/moving_mean'], variables[scope + '/moving_variance']


# --- training and inference outputs -----------------------------------------

def _check_training_output(rng, shape, axis, fused, dtype=np.float32, tol=2e-6):
  data = _data(rng, shape, dtype)
  with tf.Graph().as_default() as g:
    x = _placeholder(shape, tf.as_dtype(dtype))
    y = tf1_bn.bn_layer(x, training=True, axis=axis, fused=fused)
    gamma, beta = [v for v in v1.global_variables() if v.op.name in ('bn/gamma', 'bn/beta')]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      g_val = rng.uniform(0.5, 2.0, gamma.shape).astype(np.float32)
      b_val = rng.uniform(-1, 1, beta.shape).astype(np.float32)
      gamma.load(g_val, sess)
      beta.load(b_val, sess)
      out = sess.run(y, {x: data})
  expected, _, _ = batch_norm_train(data, g_val, b_val, 1e-5, axis)
  assert out.dtype == dtype
  assert out.shape == data.shape
  assert max_relative_error(out, expected) < tol


@pytest.mark.parametrize('fused', FUSED)
@pytest.mark.parametrize('shape,axis', LAYOUTS)
def test_training_output_matches_numpy(rng, shape, axis, fused):
  _check_training_output(rng, shape, axis, fused)


def test_training_output_float64(rng):
  _check_training_output(rng, [6, 4, 4, 3], -1, None, np.float64, tol=1e-12)


def _check_inference_output(rng, shape, axis, fused, training_kind):
  data = _data(rng, shape)
  with tf.Graph().as_default() as g:
    x = _placeholder(shape)
    training = {'bool': False, 'placeholder': v1.placeholder(tf.bool, []),
                'default': None}[training_kind]
    y = tf1_bn.bn_layer(x, training=training, axis=axis, fused=fused)
    mean_var, var_var = _moving()
    gamma = [v for v in v1.global_variables() if v.op.name == 'bn/gamma'][0]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      mean = rng.randn(*mean_var.shape).astype(np.float32)
      var = rng.uniform(0.2, 4.0, var_var.shape).astype(np.float32)
      g_val = rng.uniform(0.5, 2.0, gamma.shape).astype(np.float32)
      mean_var.load(mean, sess)
      var_var.load(var, sess)
      gamma.load(g_val, sess)
      feed = {x: data}
      if training_kind == 'placeholder':
        feed[training] = False
      out = sess.run(y, feed)
  expected = normalize(data, mean, var, g_val, np.zeros_like(mean), 1e-5, axis)
  assert max_relative_error(out, expected) < 2e-6


@pytest.mark.parametrize('training_kind', ['bool', 'placeholder', 'default'])
@pytest.mark.parametrize('fused', FUSED)
@pytest.mark.parametrize('shape,axis', LAYOUTS)
def test_inference_uses_moving_statistics(rng, shape, axis, fused, training_kind):
  _check_inference_output(rng, shape, axis, fused, training_kind)


def test_inference_before_any_update_is_identity(graph, rng):
  # Moving mean 0 / variance 1: no division by sqrt(eps) at step 0.
  data = _data(rng, [5, 4])
  x = _placeholder(data.shape)
  y = tf1_bn.bn_layer(x)
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())  # no feed needed
    out = sess.run(y, {x: data})
  np.testing.assert_allclose(out, data / np.sqrt(1 + 1e-5), rtol=1e-6)


# --- moving statistics --------------------------------------------------------

def _check_moving_statistics(rng, shape, axis, fused, updates, steps=6, decay=0.8):
  batches = [_data(rng, shape) * (i + 1) for i in range(steps)]
  with tf.Graph().as_default():
    x = _placeholder(shape)
    y = tf1_bn.bn_layer(x, moving_decay=decay, axis=axis, fused=fused, updates=updates)
    fetch = v1.get_collection(UPDATE_OPS) if updates == 'collection' else y
    mean_var, var_var = _moving()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for batch in batches:
        sess.run(fetch, {x: batch, tf1_bn.training_placeholder(): True})
      got_mean, got_var = sess.run([mean_var, var_var])
  stats = [moments(b, axis) for b in batches]
  want_mean = ema_closed_form(np.zeros_like(stats[0][0]), [m for m, _ in stats], decay)
  want_var = ema_closed_form(np.ones_like(stats[0][1]), [s for _, s in stats], decay)
  np.testing.assert_allclose(want_mean, ema(np.zeros_like(want_mean), [m for m, _ in stats], decay))
  assert max_relative_error(got_mean.reshape(want_mean.shape), want_mean) < 1e-5
  assert max_relative_error(got_var.reshape(want_var.shape), want_var) < 1e-5


@pytest.mark.parametrize('updates', ['collection', 'inline'])
@pytest.mark.parametrize('fused', FUSED)
@pytest.mark.parametrize('shape,axis', [LAYOUTS[0], LAYOUTS[2], LAYOUTS[3], LAYOUTS[6]])
def test_moving_statistics_follow_closed_form_ema(rng, shape, axis, fused, updates):
  _check_moving_statistics(rng, shape, axis, fused, updates)


def test_update_with_training_false_changes_nothing(graph, rng):
  x = _placeholder([6, 3])
  tf1_bn.bn_layer(x)
  update = v1.get_collection(UPDATE_OPS)
  mean_var, var_var = _moving()
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    sess.run(update, {x: _data(rng, [6, 3]), tf1_bn.training_placeholder(): True})
    before = sess.run([mean_var, var_var])
    for _ in range(3):
      sess.run(update, {x: _data(rng, [6, 3]) * 7})  # training defaults to False
      sess.run(update, {x: _data(rng, [6, 3]), tf1_bn.training_placeholder(): False})
    after = sess.run([mean_var, var_var])
  for b, a in zip(before, after):
    assert b.tobytes() == a.tobytes()


def test_one_update_op_per_layer_call(graph):
  x = _placeholder([4, 3])
  h = tf1_bn.bn_layer(x, name='a')
  h = tf1_bn.bn_layer(h, name='b')
  tf1_bn.bn_layer(h, name='a', reuse=True)
  assert len(v1.get_collection(UPDATE_OPS)) == 3


def test_inline_mode_adds_nothing_to_update_ops(graph, rng):
  x = _placeholder([6, 3])
  y = tf1_bn.bn_layer(x, updates='inline')
  assert v1.get_collection(UPDATE_OPS) == []
  mean_var, _ = _moving()
  data = _data(rng, [6, 3])
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    sess.run(y, {x: data, tf1_bn.training_placeholder(): True})
    np.testing.assert_allclose(sess.run(mean_var), 0.1 * data.mean(0), rtol=1e-5)
    sess.run(y, {x: data})
    np.testing.assert_allclose(sess.run(mean_var), 0.1 * data.mean(0), rtol=1e-5)


def test_python_false_builds_no_update_and_no_cond(graph):
  x = _placeholder([4, 4, 4, 3])
  tf1_bn.bn_layer(x, training=False)
  types = {op.type for op in graph.get_operations()}
  assert v1.get_collection(UPDATE_OPS) == []
  assert not types & {'If', 'StatelessIf', 'Switch', 'AssignSubVariableOp', 'AssignSub'}
  # The inference path computes no batch statistics.
  assert not types & {'Mean', 'SquaredDifference'}
  fused = [op for op in graph.get_operations() if op.type == 'FusedBatchNormV3']
  assert all(not op.get_attr('is_training') for op in fused)


def test_python_true_builds_no_cond(graph):
  x = _placeholder([4, 3])
  tf1_bn.bn_layer(x, training=True)
  types = {op.type for op in graph.get_operations()}
  assert not types & {'If', 'StatelessIf', 'Switch'}
  assert len(v1.get_collection(UPDATE_OPS)) == 1


# --- gradients ------------------------------------------------------------------

def _finite_difference(sess, loss, var, value, delta=1e-6):
  """Central differences of `loss` with respect to every element of `var`."""
  grad = np.zeros_like(value)
  for index in np.ndindex(*value.shape):
    for sign in (1, -1):
      shifted = value.copy()
      shifted[index] += sign * delta
      var.load(shifted, sess)
      grad[index] += sign * sess.run(loss) / (2 * delta)
  var.load(value, sess)
  return grad


@pytest.mark.parametrize('fused', FUSED)
@pytest.mark.parametrize('shape,axis', [([5, 3], -1), ([3, 2, 3, 2], -1), ([3, 2, 3, 2], 1)])
def test_gradients_match_finite_differences(rng, shape, axis, fused):
  data = _data(rng, shape).astype(np.float64)
  with tf.Graph().as_default():
    x = v1.get_variable('x', initializer=data)
    y = tf1_bn.bn_layer(x, training=True, axis=axis, fused=fused)
    loss = tf.reduce_sum(y * tf.constant(rng.randn(*shape)))
    targets = [x] + v1.trainable_variables()[1:]
    grads = tf.gradients(loss, targets)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      values = {}
      for var in targets[1:]:
        values[var] = rng.uniform(0.5, 1.5, var.shape)
        var.load(values[var], sess)
      values[x] = data
      analytic = sess.run(grads)
      for var, got in zip(targets, analytic):
        numeric = _finite_difference(sess, loss, var, values[var])
        np.testing.assert_allclose(got, numeric, rtol=1e-5, atol=1e-6)


def test_float32_gradients_match_numpy_formula(rng):
  # dL/dx of batch norm in closed form, for float32 on the fused kernel.
  data = _data(rng, [16, 4])
  upstream = rng.randn(16, 4).astype(np.float32)
  with tf.Graph().as_default():
    x = tf.constant(data)
    y = tf1_bn.bn_layer(x, training=True)
    grad = tf.gradients(tf.reduce_sum(y * upstream), x)[0]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      got = sess.run(grad)
  d = data.astype(np.float64)
  mean, var = d.mean(0), d.var(0)
  xhat = (d - mean) / np.sqrt(var + 1e-5)
  expected = (upstream - upstream.mean(0) - xhat * (upstream * xhat).mean(0)) / np.sqrt(var + 1e-5)
  assert max_relative_error(got, expected) < 1e-5


# --- variables, names, reuse, trainable ----------------------------------------

def test_variable_names_collections_and_saver(graph, tmp_path):
  x = _placeholder([4, 3])
  with tf.name_scope('outer'):
    with v1.variable_scope('net'):
      tf1_bn.bn_layer(x, name='bn1')
  names = sorted(v.op.name for v in v1.global_variables())
  assert names == ['net/bn1/beta', 'net/bn1/gamma', 'net/bn1/moving_mean',
                   'net/bn1/moving_variance']
  trainable = sorted(v.op.name for v in v1.trainable_variables())
  assert trainable == ['net/bn1/beta', 'net/bn1/gamma']
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())  # no feed needed
    path = v1.train.Saver().save(sess, str(tmp_path / 'model.ckpt'))
  saved = sorted(name for name, _ in tf.train.list_variables(path))
  assert saved == names  # a default Saver keeps the moving statistics


def test_saver_round_trip_restores_moving_statistics(tmp_path, rng):
  data = _data(rng, [8, 3])
  with tf.Graph().as_default():
    x = _placeholder([8, 3])
    y = tf1_bn.bn_layer(x)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(3):
        sess.run(v1.get_collection(UPDATE_OPS), {x: data, tf1_bn.training_placeholder(): True})
      expected = sess.run(y, {x: data})
      path = v1.train.Saver().save(sess, str(tmp_path / 'model.ckpt'))
  with tf.Graph().as_default():
    x = _placeholder([8, 3])
    y = tf1_bn.bn_layer(x)
    with v1.Session() as sess:
      v1.train.Saver().restore(sess, path)
      np.testing.assert_array_equal(sess.run(y, {x: data}), expected)


def test_center_and_scale_off_drop_variables(graph, rng):
  x = _placeholder([6, 3])
  y = tf1_bn.bn_layer(x, center=False, scale=False, training=True)
  assert sorted(v.op.name for v in v1.global_variables()) == ['bn/moving_mean',
                                                             'bn/moving_variance']
  data = _data(rng, [6, 3])
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    out = sess.run(y, {x: data})
  assert max_relative_error(out, batch_norm_train(data, None, None, 1e-5, -1)[0]) < 2e-6


@pytest.mark.parametrize('reuse', [True, v1.AUTO_REUSE])
def test_reuse_shares_every_variable(rng, reuse):
  data_a, data_b = _data(rng, [6, 3]), _data(rng, [4, 3]) * 2
  with tf.Graph().as_default():
    train_x = _placeholder([6, 3])
    eval_x = _placeholder([4, 3])
    first_reuse = None if reuse is True else reuse
    train_y = tf1_bn.bn_layer(train_x, training=True, reuse=first_reuse)
    count = len(v1.global_variables())
    eval_y = tf1_bn.bn_layer(eval_x, training=False, reuse=reuse)
    assert len(v1.global_variables()) == count == 4
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run([train_y] + v1.get_collection(UPDATE_OPS), {train_x: data_a})
      mean, var = sess.run(_moving())
      out = sess.run(eval_y, {eval_x: data_b})
  np.testing.assert_allclose(mean, 0.1 * data_a.mean(0), rtol=1e-5)
  expected = normalize(data_b, mean, var, np.ones(3), np.zeros(3), 1e-5, -1)
  assert max_relative_error(out, expected) < 2e-6


def test_second_call_without_reuse_fails_clearly(graph):
  x = _placeholder([6, 3])
  tf1_bn.bn_layer(x)
  with pytest.raises(ValueError, match='bn/gamma'):
    tf1_bn.bn_layer(x)


@pytest.mark.parametrize('training', [True, 'placeholder'])
def test_trainable_false_freezes_the_layer(rng, training):
  data = _data(rng, [8, 3])
  with tf.Graph().as_default():
    x = _placeholder([8, 3])
    switch = v1.placeholder(tf.bool, []) if training == 'placeholder' else True
    y = tf1_bn.bn_layer(x, training=switch, trainable=False)
    assert v1.trainable_variables() == []
    assert v1.get_collection(UPDATE_OPS) == []
    feed = {x: data}
    if training == 'placeholder':
      feed[switch] = True
    mean_var, var_var = _moving()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      mean_var.load(np.full(3, 0.5, np.float32), sess)
      var_var.load(np.full(3, 2.0, np.float32), sess)
      out = sess.run(y, feed)
      stats = sess.run([mean_var, var_var])
  np.testing.assert_allclose(out, (data - 0.5) / np.sqrt(2.0 + 1e-5), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(stats[0], 0.5)
  np.testing.assert_array_equal(stats[1], 2.0)


# --- one placeholder, several batch sizes ------------------------------------

@pytest.mark.parametrize('fused', FUSED)
def test_batches_of_seven_then_two_in_both_modes(rng, fused):
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 5])
    y = tf1_bn.bn_layer(x, fused=fused)
    update = v1.get_collection(UPDATE_OPS)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for size in (7, 2):
        data = _data(rng, [size, 5])
        out, _ = sess.run([y, update], {x: data, tf1_bn.training_placeholder(): True})
        assert out.shape == (size, 5)
        assert max_relative_error(out, batch_norm_train(data, None, None, 1e-5, -1)[0]) < 2e-6
      mean, var = sess.run(_moving())
      for size in (7, 2):
        data = _data(rng, [size, 5])
        out = sess.run(y, {x: data})
        assert max_relative_error(out, normalize(data, mean, var, None, None, 1e-5, -1)) < 2e-6


# --- guards -------------------------------------------------------------------

@pytest.mark.parametrize('fused', FUSED)
@pytest.mark.parametrize('bad', ['empty', 'nan', 'inf'])
def test_bad_batch_never_changes_moving_statistics(rng, fused, bad):
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 2, 2, 3])
    tf1_bn.bn_layer(x, fused=fused)
    update = v1.get_collection(UPDATE_OPS)
    stats = _moving()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(update, {x: _data(rng, [4, 2, 2, 3]), tf1_bn.training_placeholder(): True})
      before = sess.run(stats)
      data = {'empty': np.zeros([0, 2, 2, 3], np.float32),
              'nan': np.where(np.arange(48).reshape(4, 2, 2, 3) == 5, np.nan,
                              _data(rng, [4, 2, 2, 3])).astype(np.float32),
              'inf': np.full([4, 2, 2, 3], np.inf, np.float32)}[bad]
      sess.run(update, {x: data, tf1_bn.training_placeholder(): True})
      after = sess.run(stats)
  for b, a in zip(before, after):
    assert b.tobytes() == a.tobytes()


# --- dtypes -------------------------------------------------------------------

@pytest.mark.parametrize('fused', FUSED)
@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16])
def test_half_precision_keeps_float32_variables(rng, dtype, fused):
  data = _data(rng, [8, 3, 3, 4])
  with tf.Graph().as_default():
    x = v1.placeholder(dtype, [None, 3, 3, 4])
    y = tf1_bn.bn_layer(x, fused=fused)
    assert y.dtype == dtype
    assert all(v.dtype.base_dtype == tf.float32 for v in v1.global_variables())
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      rounded = sess.run(tf.cast(x, tf.float32), {x: data})
      out, _ = sess.run([tf.cast(y, tf.float32), v1.get_collection(UPDATE_OPS)],
                        {x: data, tf1_bn.training_placeholder(): True})
      mean, _ = sess.run(_moving())
  tol = 1e-2 if dtype == tf.float16 else 3e-2
  assert max_relative_error(out, batch_norm_train(rounded, None, None, 1e-5, -1)[0]) < tol
  assert max_relative_error(mean, 0.1 * rounded.mean((0, 1, 2))) < 1e-5


# --- errors -------------------------------------------------------------------

def _check_error(build, error, pattern):
  with tf.Graph().as_default() as g:
    x = v1.placeholder(tf.float32, [None, 4])
    before = len(g.get_operations())
    with pytest.raises(error, match=pattern):
      build(x)
    assert len(g.get_operations()) == before, 'half-built graph after an error'
    assert v1.global_variables() == []


ERRORS = {
    'float_training': (lambda x: tf1_bn.bn_layer(x, training=v1.placeholder(tf.float32, [])),
                       TypeError, 'training.*float32'),
    'vector_training': (lambda x: tf1_bn.bn_layer(x, training=v1.placeholder(tf.bool, [2])),
                        ValueError, r'training.*scalar.*\(2,\)'),
    'string_training': (lambda x: tf1_bn.bn_layer(x, training='yes'), TypeError, 'training'),
    'int_training': (lambda x: tf1_bn.bn_layer(x, training=1), TypeError, 'training'),
    'axis_range': (lambda x: tf1_bn.bn_layer(x, axis=2), ValueError, 'axis.*out of range'),
    'axis_type': (lambda x: tf1_bn.bn_layer(x, axis=1.0), TypeError, 'axis'),
    'decay': (lambda x: tf1_bn.bn_layer(x, moving_decay=1.5), ValueError, 'moving_decay.*1.5'),
    'eps': (lambda x: tf1_bn.bn_layer(x, eps=0.0), ValueError, 'eps'),
    'updates': (lambda x: tf1_bn.bn_layer(x, updates='later'), ValueError, 'updates.*later'),
    'int_input': (lambda x: tf1_bn.bn_layer(np.ones([2, 4], np.int32)), TypeError, 'int32'),
    'bool_input': (lambda x: tf1_bn.bn_layer(np.ones([2, 4], bool)), TypeError, 'bool'),
    'rank1': (lambda x: tf1_bn.bn_layer(np.ones([4], np.float32)), ValueError, 'rank 2 to 5'),
    'rank6': (lambda x: tf1_bn.bn_layer(np.ones([1] * 6, np.float32)), ValueError, 'rank'),
    'unknown_rank': (lambda x: tf1_bn.bn_layer(v1.placeholder(tf.float32)), ValueError,
                     'unknown rank'),
    'undefined_axis': (lambda x: tf1_bn.bn_layer(tf.transpose(x)), ValueError,
                       r'undefined `axis` dimension.*\(features, batch\)'),
    'reuse_missing': (lambda x: tf1_bn.bn_layer(x, reuse=True), ValueError, 'bn/gamma'),
}


@pytest.mark.parametrize('case', sorted(ERRORS))
def test_bad_arguments_raise_clear_errors(case):
  build, error, pattern = ERRORS[case]
  if case in ('unknown_rank', 'undefined_axis', 'vector_training', 'float_training'):
    # These build a placeholder or transpose first; check the message and
    # that no BN variable or update exists.
    with tf.Graph().as_default():
      x = v1.placeholder(tf.float32, [None, 4])
      with pytest.raises(error, match=pattern):
        build(x)
      assert v1.global_variables() == []
      assert v1.get_collection(UPDATE_OPS) == []
    return
  _check_error(build, error, pattern)


def test_undefined_axis_message_names_shape_and_axis(graph):
  x = v1.placeholder(tf.float32, [None, 5])
  with pytest.raises(ValueError) as info:
    tf1_bn.bn_layer(tf.transpose(x))
  message = str(info.value)
  assert '(5, None)' in message and 'axis=-1' in message and 'axis 0' in message


def test_eager_mode_is_refused():
  with pytest.raises(RuntimeError, match='graph'):
    tf1_bn.bn_layer(np.ones([2, 3], np.float32))


# --- the training placeholder ------------------------------------------------

def test_training_placeholder_is_one_per_graph_at_top_level(graph):
  with tf.name_scope('deep'):
    first = tf1_bn.training_placeholder()
  assert first is tf1_bn.training_placeholder()
  assert first.op.name == 'training'
  assert first.op.type == 'PlaceholderWithDefault'
  assert first.dtype == tf.bool and first.shape.rank == 0
  with tf.Graph().as_default():
    assert tf1_bn.training_placeholder() is not first


def test_works_with_legacy_keras_env_set():
  # The package must not depend on which Keras TF_USE_LEGACY_KERAS selects.
  code = textwrap.dedent('''
      import numpy as np, tensorflow as tf, tf1_bn
      with tf.Graph().as_default():
          x = tf.constant(np.arange(12, dtype=np.float32).reshape(4, 3))
          y = tf1_bn.bn_layer(x, training=True)
          with tf.compat.v1.Session() as s:
              s.run(tf.compat.v1.global_variables_initializer())
              out = s.run(y)
      d = np.arange(12, dtype=np.float64).reshape(4, 3)
      ref = (d - d.mean(0)) / np.sqrt(d.var(0) + 1e-5)
      assert np.abs(out - ref).max() < 1e-5, out
      print('OK')
  ''')
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'OK' in result.stdout
