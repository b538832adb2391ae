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


def _train_and_export(build, input_shape, tmp_path, steps=15, fold=True, training=None, seed=0,
                      also_unfolded=False):
  """Builds `build(x) -> output` on a placeholder, trains a few steps with
  the training switch on, exports. Returns (session outputs, exported
  outputs, op types of the exported graph, its placeholders, report); with
  `also_unfolded`, then the outputs of a second, unfolded export."""
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
      if also_unfolded:
        tf1_bn.export_inference(sess, {'x': x}, {'y': y}, str(tmp_path / 'unfolded'),
                                fold=False, training=training)
  serve = _serve(tmp_path / 'model')
  actual = serve(x=tf.constant(test))['y'].numpy()
  graph_def = serve.graph.as_graph_def()
  ops = {n.op for n in graph_def.node} | {
      n.op for f in graph_def.library.function for n in f.node_def}
  placeholders = [n.name for n in graph_def.node if n.op.startswith('Placeholder')]
  result = (expected, actual, ops, placeholders, report)
  if also_unfolded:
    result += (_serve(tmp_path / 'unfolded')(x=tf.constant(test))['y'].numpy(),)
  return result


def _serve(export_dir):
  return tf.saved_model.load(str(export_dir)).signatures['serving_default']


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
  # The session ran the XLA transform; the export runs (x - mean) * s + beta.
  assert reference.max_relative_error(actual, expected) <= 1e-6
  assert _xla_marked(str(tmp_path / 'model')) == []
  assert not ops & (BN_OPS | CONTROL_FLOW_OPS | UPDATE_OPS)
  assert 'RandomUniform' not in ops  # dropout's training path is gone too
  assert placeholders == ['inputs']
  assert report.folded == 0 and len(report.multiply_add) == 4


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
  serve = _serve(tmp_path / 'model')
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
  serve = _serve(tmp_path / 'model')
  assert reference.max_relative_error(serve(x=tf.constant(test))['y'].numpy(), expected) <= 1e-5
  assert list(report.into_ops.values()) == ['MatMul']


def _check_folds_through(build, input_shape, tmp_path, into):
  """The layers of `build` fold into the ops named `into`: no BN op is left
  and the folded export agrees with the unfolded one and the session."""
  expected, folded, ops, _, report, unfolded = _train_and_export(
      build, input_shape, tmp_path, also_unfolded=True)
  assert sorted(report.into_ops.values()) == sorted(into) and report.multiply_add == []
  assert not ops & BN_OPS
  assert reference.max_relative_error(folded, unfolded) <= 1e-5
  assert reference.max_relative_error(folded, expected) <= 1e-5


def _dcgan_generator(x):
  """DCGAN-tensorflow's generator: linear + reshape, then conv2d_transpose +
  bias_add + reshape to its own shape, each followed by slim's batch_norm
  (in place, scale=True, epsilon 1e-5, decay 0.9, as its ops.py)."""
  def bn(h, name):
    return tf1_bn.batch_norm(h, decay=0.9, updates_collections=None, epsilon=1e-5, scale=True,
                             is_training=tf1_bn.training_placeholder(), scope=name)

  h = tf.matmul(x, v1.get_variable('h0_lin/Matrix', [4, 2 * 2 * 8])) + v1.get_variable(
      'h0_lin/bias', [2 * 2 * 8])
  h = tf.nn.relu(bn(tf.reshape(h, [-1, 2, 2, 8]), 'g_bn0'))
  output_shape = tf.stack([tf.shape(h)[0], 4, 4, 6])
  deconv = tf.nn.conv2d_transpose(h, v1.get_variable('h1/w', [3, 3, 6, 8]), output_shape,
                                  [1, 2, 2, 1])
  # DCGAN reshapes to deconv.get_shape(), static there (a fixed batch size).
  deconv = tf.reshape(tf.nn.bias_add(deconv, v1.get_variable('h1/biases', [6])),
                      [-1] + deconv.shape.as_list()[1:])
  return bn(deconv, 'g_bn1')


def test_dcgan_generator_folds_into_matmul_and_conv2d_transpose(tmp_path):
  _check_folds_through(_dcgan_generator, [4], tmp_path, into=['MatMul', 'conv2d_transpose'])


def test_conv3d_transpose_and_channels_first_transpose_fold(tmp_path):
  def build(x):
    output_shape = tf.stack([tf.shape(x)[0], 4, 4, 4, 3])
    h = tf.nn.conv3d_transpose(x, v1.get_variable('w3', [2, 2, 2, 3, 2]), output_shape,
                               [1, 2, 2, 2, 1])
    h = tf1_bn.bn_layer(h, name='bn3d')
    h = tf.reshape(h, [-1, 4, 16, 3])
    h = tf.nn.conv2d(h, v1.get_variable('k', [3, 3, 3, 5]), 1, 'SAME')
    h = tf.transpose(h, [0, 3, 1, 2])  # the conv's channels move to axis 1
    return tf1_bn.bn_layer(h, axis=1, name='bn_nchw')
  _check_folds_through(build, [2, 2, 2, 2], tmp_path, into=['Conv2D', 'conv3d_transpose'])


@pytest.mark.parametrize('layout', ['mixed_reshape', 'batch_into_rows', 'batch_transposed'])
def test_layouts_not_followed_become_a_multiply_add(tmp_path, layout):
  # Channels mixed (by the reshape, or with the batch) cannot fold; a batch
  # moved off axis 0 is not followed (conservatively).
  def build(x):
    if layout == 'mixed_reshape':  # each conv channel lands in both BN channels
      h = tf.nn.conv2d(tf.reshape(x, [-1, 2, 2, 1]), v1.get_variable('k', [1, 1, 1, 3]), 1,
                       'SAME')
      h = tf.reshape(h, [-1, 6, 2])
    else:
      h = tf.matmul(x, v1.get_variable('w', [4, 6]))
      if layout == 'batch_into_rows':  # a row of 4 holds parts of two examples
        h = tf.reshape(h, [-1, 4])
      else:
        h = tf.transpose(tf.reshape(h, [-1, 2, 3]), [1, 0, 2])
    return tf1_bn.bn_layer(h)
  expected, actual, ops, _, report = _train_and_export(build, [4], tmp_path, seed=3)
  assert report.folded == 0 and len(report.multiply_add) == 1
  assert reference.max_relative_error(actual, expected) <= 1e-5


def test_several_axes_become_a_multiply_add(tmp_path):
  def build(x):
    h = tf.nn.conv2d(x, v1.get_variable('k', [3, 3, 2, 3]), 1, 'SAME')
    h = tf1_bn.bn_layer(h, axis=[1, 3], name='two_axes')
    return tf1_bn.batch_normalization(h, axis=[2, 3], training=tf1_bn.training_placeholder())
  expected, actual, ops, _, report = _train_and_export(build, [4, 5, 2], tmp_path)
  assert report.folded == 0 and len(report.multiply_add) == 2 and not ops & BN_OPS
  assert reference.max_relative_error(actual, expected) <= 1e-5


def test_unused_input_is_refused_with_its_name(tmp_path):
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4], name='inputs')
    labels = v1.placeholder(tf.int64, [None], name='labels')
    y = tf1_bn.bn_layer(x)
    tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=y))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      with pytest.raises(ValueError, match=r"no output depends on.*'labels' \(labels:0\)"):
        tf1_bn.export_inference(sess, {'x': x, 'labels': labels}, {'y': y},
                                str(tmp_path / 'model'))
  assert not (tmp_path / 'model').exists()


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
