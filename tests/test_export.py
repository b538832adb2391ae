"""export_inference: a SavedModel with training frozen to False, loaded in
eager TensorFlow 2, against the session's own inference outputs; folding
against the unfolded graph."""
import numpy as np
import pytest
import tensorflow as tf

import reference
import tf1_bn

v1 = tf.compat.v1

CONTROL_FLOW_OPS = {'If', 'StatelessIf', 'Switch', 'Merge', 'While', 'StatelessWhile'}
UPDATE_OPS = {'AssignSubVariableOp', 'AssignVariableOp', 'AssignAddVariableOp', 'AssignSub'}
BN_OPS = {'FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3', 'Rsqrt'}


def _train_and_export(build, input_shape, tmp_path, steps=15, fold=True, training=None, seed=0):
  """Builds `build(x) -> output` on a placeholder, trains a few steps with
  the training switch on, exports. Returns (session outputs, exported
  outputs, op types of the exported graph, report)."""
  rng = np.random.RandomState(seed)
  with tf.Graph().as_default():
    v1.set_random_seed(seed)
    x = v1.placeholder(tf.float32, [None] + input_shape, name='inputs')
    y = build(x)
    loss = tf.reduce_mean(tf.square(y - 1.0))
    train = tf1_bn.minimize(v1.train.AdamOptimizer(0.01), loss)
    feed_training = {tf1_bn.training_placeholder(): True}
    if training is not None:
      feed_training[training] = True
    test = (rng.randn(6, *input_shape) * 2 + 1).astype(np.float32)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(steps):
        sess.run(train, {x: rng.randn(16, *input_shape) * 2 + 1, **feed_training})
      expected = sess.run(y, {x: test})
      report = tf1_bn.export_inference(sess, {'x': x}, {'y': y}, str(tmp_path / 'model'),
                                       fold=fold, training=training)
  loaded = tf.saved_model.load(str(tmp_path / 'model'))
  serve = loaded.signatures['serving_default']
  actual = serve(x=tf.constant(test))['y'].numpy()
  graph_def = serve.graph.as_graph_def()
  ops = {n.op for n in graph_def.node} | {
      n.op for f in graph_def.library.function for n in f.node_def}
  placeholders = [n.name for n in graph_def.node if n.op.startswith('Placeholder')]
  return expected, actual, ops, placeholders, report


def _cnn(x):
  h = tf.nn.conv2d(x, v1.get_variable('k1', [3, 3, 3, 8]), 1, 'SAME')          # no bias
  h = tf.nn.relu(tf1_bn.bn_layer(h, name='bn1'))
  h = tf.nn.bias_add(tf.nn.conv2d(h, v1.get_variable('k2', [3, 3, 8, 8]), 1, 'SAME'),
                     v1.get_variable('b2', [8]))
  h = tf.nn.relu(tf1_bn.batch_normalization(h, training=tf1_bn.training_placeholder(),
                                            fused=False))
  h = tf.nn.depthwise_conv2d(h, v1.get_variable('dw', [3, 3, 8, 2]), [1, 1, 1, 1], 'SAME')
  h = tf1_bn.batch_norm(h, is_training=tf1_bn.training_placeholder(), scale=True)
  h = tf1_bn.dropout(tf.reshape(h, [-1, 8 * 8 * 16]), 0.3)
  h = tf.matmul(h, v1.get_variable('w', [10, 8 * 8 * 16]), transpose_b=True)
  return tf1_bn.bn_layer(h, name='bn_out', updates='inline')


def _xla_marked(export_dir):
  """Nodes and functions of an exported model that ask for XLA."""
  graph_def = tf.saved_model.load(export_dir).signatures['serving_default'].graph.as_graph_def()
  functions = [f for f in graph_def.library.function]
  return ([n.name for n in graph_def.node if n.attr['_XlaMustCompile'].b] +
          [n.name for f in functions for n in f.node_def if n.attr['_XlaMustCompile'].b] +
          [f.signature.name for f in functions if f.attr['_XlaMustCompile'].b])


def test_unfolded_export_equals_session_inference_with_no_training_path(tmp_path):
  expected, actual, ops, placeholders, report = _train_and_export(_cnn, [8, 8, 3], tmp_path,
                                                                 fold=False)
  # The session ran the XLA transform; the export runs it as plain ops.
  assert reference.max_relative_error(actual, expected) <= 1e-6
  assert 'PartitionedCall' in ops and _xla_marked(str(tmp_path / 'model')) == []
  assert not ops & CONTROL_FLOW_OPS and not ops & UPDATE_OPS
  assert 'RandomUniform' not in ops  # dropout's training path is gone too
  assert placeholders == ['inputs']
  assert report.folded == 0 and report.multiply_add == []


def test_folded_export_has_no_bn_op_and_equal_outputs(tmp_path):
  expected, actual, ops, placeholders, report = _train_and_export(_cnn, [8, 8, 3], tmp_path)
  assert reference.max_relative_error(actual, expected) <= 1e-5
  assert not ops & (BN_OPS | CONTROL_FLOW_OPS | UPDATE_OPS)
  assert placeholders == ['inputs']
  assert sorted(report.into_ops.values()) == ['Conv2D', 'Conv2D_1', 'MatMul', 'depthwise']
  assert 'folded into the conv/matmul' in report.summary()


def test_bn_after_nothing_foldable_becomes_one_multiply_add(tmp_path):
  def build(x):
    h = tf1_bn.bn_layer(x, name='on_input')                                 # follows a placeholder
    h = tf.matmul(h, v1.get_variable('w', [4, 5]))
    skip = h
    h = tf1_bn.batch_normalization(h, training=tf1_bn.training_placeholder())  # h also read below
    return h + skip
  expected, actual, ops, _, report = _train_and_export(build, [4], tmp_path)
  assert reference.max_relative_error(actual, expected) <= 1e-5
  assert not ops & BN_OPS
  assert report.folded == 0 and len(report.multiply_add) == 2


def test_conv3d_and_matmul_with_bias_fold(tmp_path):
  def build(x):
    h = tf.nn.conv3d(x, v1.get_variable('k', [2, 2, 2, 2, 4]), [1] * 5, 'SAME')
    h = tf1_bn.bn_layer(h, name='bn3d')
    h = tf.reshape(h, [-1, 3 * 3 * 3 * 4])
    h = tf.matmul(h, v1.get_variable('w', [108, 6])) + v1.get_variable('b', [6])
    return tf1_bn.bn_layer(h, name='bn_dense', fused=False)
  expected, actual, ops, _, report = _train_and_export(build, [3, 3, 3, 2], tmp_path)
  assert reference.max_relative_error(actual, expected) <= 1e-5
  assert not ops & BN_OPS
  assert sorted(report.into_ops.values()) == ['Conv3D', 'MatMul']


def test_own_training_placeholder_is_frozen_to_false(tmp_path):
  rng = np.random.RandomState(0)
  test = rng.randn(5, 4).astype(np.float32)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4], name='inputs')
    is_training = v1.placeholder(tf.bool, [], name='is_training')
    h = tf1_bn.batch_normalization(tf.matmul(x, v1.get_variable('w', [4, 3])),
                                   training=is_training)
    y = tf.cond(is_training, lambda: h * 2.0, lambda: h - 1.0)  # a cond of the user's own
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.1), tf.reduce_mean(y ** 2))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(5):
        sess.run(train, {x: rng.randn(8, 4) + 3, is_training: True})
      expected = sess.run(y, {x: test, is_training: False})
      report = tf1_bn.export_inference(sess, {'x': x}, {'y': y}, str(tmp_path / 'model'),
                                       training=is_training)
  serve = tf.saved_model.load(str(tmp_path / 'model')).signatures['serving_default']
  assert reference.max_relative_error(serve(x=tf.constant(test))['y'].numpy(), expected) <= 1e-5
  graph_def = serve.graph.as_graph_def()
  assert [n.name for n in graph_def.node if n.op.startswith('Placeholder')] == ['inputs']
  assert report.folded == 1


def test_layer_built_for_inference_only_folds(tmp_path):
  test = np.random.RandomState(1).randn(5, 4).astype(np.float32)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4], name='inputs')
    y = tf1_bn.bn_layer(tf.matmul(x, v1.get_variable('w', [4, 3])), training=False)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      moving = v1.global_variables('bn/moving_')
      moving[0].load(np.array([0.5, -1.0, 2.0], np.float32), sess)
      moving[1].load(np.array([4.0, 0.25, 1.0], np.float32), sess)
      expected = sess.run(y, {x: test})
      report = tf1_bn.export_inference(sess, {'x': x}, {'y': y}, str(tmp_path / 'model'))
  serve = tf.saved_model.load(str(tmp_path / 'model')).signatures['serving_default']
  assert reference.max_relative_error(serve(x=tf.constant(test))['y'].numpy(), expected) <= 1e-5
  assert list(report.into_ops.values()) == ['MatMul']


def test_bad_arguments(tmp_path):
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4])
    y = tf1_bn.bn_layer(x)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      with pytest.raises(TypeError, match='`inputs` must be a non-empty dict'):
        tf1_bn.export_inference(sess, [x], {'y': y}, str(tmp_path / 'a'))
      with pytest.raises(TypeError, match='`outputs` must map strings to tensors'):
        tf1_bn.export_inference(sess, {'x': x}, {'y': 3}, str(tmp_path / 'a'))
      (tmp_path / 'exists').mkdir()
      with pytest.raises(ValueError, match='`export_dir` must not exist yet'):
        tf1_bn.export_inference(sess, {'x': x}, {'y': y}, str(tmp_path / 'exists'))
