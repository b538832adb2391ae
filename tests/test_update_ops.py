"""minimize and check_update_ops: the forgotten-UPDATE_OPS bug made loud."""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn

v1 = tf.compat.v1


def _model(updates='collection'):
  x = v1.placeholder(tf.float32, [None, 4])
  h = tf1_bn.bn_layer(x, name='first', updates=updates)
  h = tf1_bn.bn_layer(h, name='second')
  loss = tf.reduce_mean(tf.square(h - 1.0))
  return x, loss


def test_minimize_runs_the_updates(rng):
  data = rng.randn(16, 4).astype(np.float32) + 2.0
  with tf.Graph().as_default():
    x, loss = _model()
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.1), loss)
    assert tf1_bn.check_update_ops(train) is None
    mean = [v for v in v1.global_variables() if v.op.name == 'first/moving_mean'][0]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(train, {x: data, tf1_bn.training_placeholder(): True})
      np.testing.assert_allclose(sess.run(mean), 0.1 * data.mean(0), rtol=1e-5)


def test_plain_minimize_is_reported_with_every_layer():
  with tf.Graph().as_default():
    x, loss = _model()
    train = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    with pytest.raises(tf1_bn.MissingUpdateOpsError) as info:
      tf1_bn.check_update_ops(train)
  assert info.value.layers == ('first', 'second')
  assert 'first, second' in str(info.value)
  assert 'tf1_bn.minimize' in str(info.value)


def test_partial_dependency_names_only_the_missing_layer():
  with tf.Graph().as_default():
    x, loss = _model()
    first_update = [op for op in v1.get_collection(v1.GraphKeys.UPDATE_OPS)
                    if op.name.startswith('first/')]
    with tf.control_dependencies(first_update):
      train = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    with pytest.raises(tf1_bn.MissingUpdateOpsError) as info:
      tf1_bn.check_update_ops([train, loss])
  assert info.value.layers == ('second',)


def test_inline_layers_need_nothing():
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4])
    loss = tf.reduce_sum(tf1_bn.bn_layer(x, updates='inline'))
    train = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    assert tf1_bn.check_update_ops(train) is None


def test_manual_control_dependencies_pass():
  with tf.Graph().as_default() as g:
    x, loss = _model()
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
      train = v1.train.AdamOptimizer().minimize(loss)
    assert tf1_bn.check_update_ops(train, graph=g) is None


def test_bad_fetches():
  with tf.Graph().as_default():
    _model()
    with pytest.raises(TypeError, match='fetches'):
      tf1_bn.check_update_ops(['not a tensor'])
