"""batch_normalization (tf.layers) and batch_norm (slim): names, collections, fixes, errors."""
import warnings

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tf1_bn.common import log
from reference import max_relative_error

v1 = tf.compat.v1
UPDATE_OPS = v1.GraphKeys.UPDATE_OPS


def _names(collection=v1.GraphKeys.GLOBAL_VARIABLES):
  return [v.op.name for v in v1.get_collection(collection)]


def test_layers_default_names_are_uniquified_per_scope(graph):
  x = v1.placeholder(tf.float32, [None, 3])
  tf1_bn.batch_normalization(x)
  tf1_bn.batch_normalization(x, training=True)
  with v1.variable_scope('tower'):
    tf1_bn.batch_normalization(x, renorm=True, training=True)
  assert _names() == [
      'batch_normalization/gamma', 'batch_normalization/beta',
      'batch_normalization/moving_mean', 'batch_normalization/moving_variance',
      'batch_normalization_1/gamma', 'batch_normalization_1/beta',
      'batch_normalization_1/moving_mean', 'batch_normalization_1/moving_variance',
      'tower/batch_normalization/gamma', 'tower/batch_normalization/beta',
      'tower/batch_normalization/moving_mean', 'tower/batch_normalization/moving_variance',
      'tower/batch_normalization/moving_stddev', 'tower/batch_normalization/renorm_mean',
      'tower/batch_normalization/renorm_stddev']
  assert len(v1.get_collection(UPDATE_OPS)) == 4  # two per training call
  assert len(_names(v1.GraphKeys.TRAINABLE_VARIABLES)) == 6


def test_layers_regularizers_and_constraints(graph):
  x = v1.placeholder(tf.float32, [None, 3])
  y = tf1_bn.batch_normalization(x, training=True,
                                 gamma_regularizer=lambda g: 0.5 * tf.reduce_sum(g),
                                 beta_constraint=lambda b: tf.clip_by_value(b, -0.1, 0.1))
  losses = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
  assert len(losses) == 1
  train = v1.train.GradientDescentOptimizer(10.0).minimize(-tf.reduce_sum(y))
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    assert sess.run(losses[0]) == pytest.approx(1.5)
    sess.run(train, {x: np.random.RandomState(0).randn(4, 3)})
    beta = [v for v in v1.global_variables() if v.op.name.endswith('beta')][0]
    np.testing.assert_allclose(sess.run(beta), 0.1)  # 10 * 4 would be 40 unconstrained


def _ghost_reference(data, virtual):
  """tf.layers' ghost batches: [N, C] -> [virtual, N / virtual, C], statistics over axis 0."""
  ghost = data.reshape(virtual, -1, data.shape[-1]).astype(np.float64)
  mean, var = ghost.mean(0, keepdims=True), ghost.var(0, keepdims=True)
  return ((ghost - mean) / np.sqrt(var + 1e-3)).reshape(data.shape), mean.mean(1), var.mean(1)


def test_virtual_batch_with_tensor_training_uses_ghost_batches(graph, rng):
  # The legacy function ignores virtual_batch_size for a tensor `training`.
  data = rng.randn(8, 3).astype(np.float32) * 2 + 1
  x = v1.placeholder(tf.float32, [None, 3])
  switch = v1.placeholder(tf.bool, [])
  y = tf1_bn.batch_normalization(x, training=switch, virtual_batch_size=4, momentum=0.0)
  mean_var = [v for v in v1.global_variables() if v.op.name.endswith('moving_mean')][0]
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    out, _ = sess.run([y, v1.get_collection(UPDATE_OPS)], {x: data, switch: True})
    moving_mean = sess.run(mean_var)
    inference = sess.run(y, {x: data, switch: False})
  expected, ghost_mean, ghost_var = _ghost_reference(data, 4)
  assert max_relative_error(out, expected) < 1e-5
  assert max_relative_error(moving_mean.reshape(-1), ghost_mean.reshape(-1)) < 1e-5
  np.testing.assert_allclose(
      inference, (data - ghost_mean.reshape(-1)) / np.sqrt(ghost_var.reshape(-1) + 1e-3),
      rtol=1e-4, atol=1e-5)


def test_virtual_batch_not_a_multiple(graph, rng):
  static = v1.placeholder(tf.float32, [6, 3])
  with pytest.raises(ValueError, match='6 .*not a multiple of virtual_batch_size=4'):
    tf1_bn.batch_normalization(static, training=True, virtual_batch_size=4)
  dynamic = v1.placeholder(tf.float32, [None, 3])
  y = tf1_bn.batch_normalization(dynamic, training=True, virtual_batch_size=4)
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    with pytest.raises(tf.errors.InvalidArgumentError, match='virtual_batch_size=4'):
      sess.run(y, {dynamic: rng.randn(6, 3)})


def test_fused_true_fallback_warns_once_with_reason(graph, monkeypatch):
  monkeypatch.setattr(log, '_warned', set())  # whatever ran before in this process
  x = v1.placeholder(tf.float32, [None, 7])
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    tf1_bn.batch_normalization(x, fused=True, renorm=True, training=True)
    tf1_bn.batch_normalization(x, fused=True, renorm=True, training=True)
  messages = [str(w.message) for w in caught if 'fused=True' in str(w.message)]
  assert len(messages) == 1 and 'renorm' in messages[0]


def test_slim_names_collections_and_activation(graph, rng):
  x = v1.placeholder(tf.float32, [None, 2, 2, 3])
  y = tf1_bn.batch_norm(x, scale=True, activation_fn=tf.nn.relu,
                        variables_collections={'moving_mean': ['stats']},
                        outputs_collections='outputs')
  tf1_bn.batch_norm(x, zero_debias_moving_mean=True)
  assert _names() == [
      'BatchNorm/gamma', 'BatchNorm/beta', 'BatchNorm/moving_mean', 'BatchNorm/moving_variance',
      'BatchNorm_1/beta', 'BatchNorm_1/moving_mean', 'BatchNorm_1/moving_variance',
      'BatchNorm_1/BatchNorm_1/moving_mean/biased',
      'BatchNorm_1/BatchNorm_1/moving_mean/local_step']
  assert _names(v1.GraphKeys.MODEL_VARIABLES)[:4] == _names()[:4]
  assert _names('stats') == ['BatchNorm/moving_mean']
  assert v1.get_collection('outputs') == [y] and y.aliases == ['BatchNorm']
  assert len(v1.get_collection(UPDATE_OPS)) == 4
  data = rng.randn(4, 2, 2, 3).astype(np.float32)
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    assert (sess.run(y, {x: data}) >= 0).all()


def test_slim_inplace_updates_and_custom_collections(graph, rng):
  x = v1.placeholder(tf.float32, [None, 3])
  y = tf1_bn.batch_norm(x, updates_collections=None, decay=0.5)
  tf1_bn.batch_norm(x, updates_collections=['mine'])
  assert v1.get_collection(UPDATE_OPS) == [] and len(v1.get_collection('mine')) == 2
  data = rng.randn(5, 3).astype(np.float32)
  mean = [v for v in v1.global_variables() if v.op.name == 'BatchNorm/moving_mean'][0]
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    sess.run(y, {x: data})
    np.testing.assert_allclose(sess.run(mean), 0.5 * data.mean(0), rtol=1e-5)


BAD = {
    'data_format': (lambda x: tf1_bn.batch_norm(x, data_format='NCWH'), ValueError, 'data_format'),
    'renorm_keys': (lambda x: tf1_bn.batch_normalization(x, renorm=True,
                                                         renorm_clipping={'rmax': 2, 'r': 1}),
                    ValueError, 'renorm_clipping'),
    'momentum': (lambda x: tf1_bn.batch_normalization(x, momentum=2.0), ValueError, 'momentum'),
    'virtual_axis0': (lambda x: tf1_bn.batch_normalization(x, axis=0, virtual_batch_size=2),
                      ValueError, 'axis'),
    'virtual_type': (lambda x: tf1_bn.batch_normalization(x, virtual_batch_size=2.5),
                     TypeError, 'virtual_batch_size'),
    'slim_renorm_weights': (lambda x: tf1_bn.batch_norm(x, renorm=True, batch_weights=tf.ones([4])),
                            ValueError, 'renorm'),
    'param_keys': (lambda x: tf1_bn.batch_norm(x, param_initializers={'gama': None}),
                   ValueError, 'param_initializers'),
    'initializer': (lambda x: tf1_bn.batch_normalization(x, gamma_initializer=3),
                    TypeError, 'gamma_initializer'),
    'training_float': (lambda x: tf1_bn.batch_norm(x, is_training=v1.placeholder(tf.float32, [])),
                       TypeError, 'is_training'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_arguments(case):
  build, error, pattern = BAD[case]
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [4, 3])
    with pytest.raises(error, match=pattern):
      build(x)
    assert v1.global_variables() == [] and v1.get_collection(UPDATE_OPS) == []
