"""tf-slim 1.1.0's own BatchNormTest (tf_slim/layers/layers_test.py), ported
to run against `tf1_bn.batch_norm`.

One private helper per behaviour, as slim has one `_test...` method per
behaviour; slim's thin `test...` wrappers over fused / data_format /
zero-debias / dtype are the parametrizations, with ids that name them (slim's
testDelayedUpdateMovingVars is its NHWC unfused case again, kept once).
Slim's references are numpy moments of the batch (with Bessel's correction
where slim's fused kernel applies it); its tolerances are kept: assertAllClose
is rtol=atol=1e-6, and a bare np.allclose is rtol=1e-5, atol=1e-8.

Changes from slim's file, each for running here rather than for passing:
the cases slim runs only with a CUDA GPU (fused NCHW, NHWC against NCHW,
float16 against float32) run on the CPU, where tf1_bn has those kernels too;
`np.product` (removed from numpy 2) is `np.prod`; the arg_scope case uses
`tf1_bn.patch_slim()`; `_testEvalMovingVars` passes its
`zero_debias_moving_mean` on (slim's helper drops it, so its ZeroDebias
wrapper tested the default again). Added: training under a partitioner
(slim has only evaluation).
"""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn

v1 = tf.compat.v1
UPDATE_OPS = v1.GraphKeys.UPDATE_OPS
MODEL_VARIABLES = v1.GraphKeys.MODEL_VARIABLES
REGULARIZATION_LOSSES = v1.GraphKeys.REGULARIZATION_LOSSES
ALL_CLOSE = dict(rtol=1e-6, atol=1e-6)  # tf.test.TestCase.assertAllClose


def _all_close(actual, expected, **tolerance):
  np.testing.assert_allclose(actual, expected, **{**ALL_CLOSE, **tolerance})


def _variable(name):
  """The global variable whose op name is `name`."""
  matches = [v for v in v1.global_variables() if v.op.name == name]
  assert len(matches) == 1, (name, [v.op.name for v in v1.global_variables()])
  return matches[0]


def _named(leaf, collection=v1.GraphKeys.GLOBAL_VARIABLES):
  """Variables whose last name component is `leaf` (slim's get_variables_by_name)."""
  return [v for v in v1.get_collection(collection) if v.op.name.split('/')[-1] == leaf]


def _with_bessel(sample_size, variance):
  """slim's _addBesselsCorrection: (corrected variance, correction factor)."""
  factor = sample_size / (sample_size - 1)
  return variance * factor, factor


def _images(data_format, batch_size=10, height=2, width=2, channels=3, offset=0.0):
  """slim's seeded images and their moments over every axis but the channel."""
  rng = np.random.RandomState(1)
  if data_format == 'NHWC':
    shape, axis = (batch_size, height, width, channels), (0, 1, 2)
  else:
    shape, axis = (batch_size, channels, height, width), (0, 2, 3)
  values = rng.rand(*shape) + offset
  return values, values.mean(axis=axis), values.var(axis=axis), axis


def _moving(scope='BatchNorm'):
  return _variable(scope + '/moving_mean'), _variable(scope + '/moving_variance')


def _initial_statistics(sess, channels=3, scope='BatchNorm'):
  """The moving statistics, checked to start at mean 0 and variance 1."""
  moving_mean, moving_variance = _moving(scope)
  _all_close(sess.run(moving_mean), [0] * channels)
  _all_close(sess.run(moving_variance), [1] * channels)
  return moving_mean, moving_variance


def _with_update_barrier(output):
  """slim's barrier: the output depends on every op in UPDATE_OPS."""
  with tf.control_dependencies(v1.get_collection(UPDATE_OPS)):
    barrier = tf.no_op(name='barrier')
  with tf.control_dependencies([barrier]):
    return tf.identity(output)


def _is_training_variable():
  # A fed tensor: tf.identity because variables cannot be fed (as slim).
  return tf.identity(tf.Variable(True))


# --- building, names, collections, errors --------------------------------------

def test_center_false_builds(graph):  # testBatchNormCenterFalse
  a = v1.placeholder(tf.float32, (10, 10, 10, 10))
  tf1_bn.batch_norm(a, center=False, data_format='NCHW', zero_debias_moving_mean=True)


def test_unknown_shape(graph):  # testUnknownShape
  with pytest.raises(ValueError, match='undefined rank'):
    tf1_bn.batch_norm(v1.placeholder(tf.float32))


def test_invalid_data_format(graph):  # testInvalidDataFormat
  with pytest.raises(ValueError, match='data_format has to be either NCHW or NHWC.'):
    tf1_bn.batch_norm(v1.placeholder(tf.float32), data_format='CHWN')


@pytest.mark.parametrize('data_format,shape', [('NHWC', (5, 3, 3, None)),
                                               ('NCHW', (5, None, 3, 3))],
                         ids=['NHWC', 'NCHW'])
def test_unknown_channels_dim(graph, data_format, shape):  # testUnknownChannelsDim*
  inputs = v1.placeholder(tf.float32)
  inputs.set_shape(tf.TensorShape(shape))
  with pytest.raises(ValueError, match='undefined'):
    tf1_bn.batch_norm(inputs, data_format=data_format)


@pytest.mark.parametrize('fused,dtype', [(False, np.float32), (True, np.float32),
                                         (True, np.float16)],
                         ids=['Default', 'Fused', 'FusedFloat16'])
def test_create_op(graph, fused, dtype):  # testCreateOp*
  images = np.random.RandomState(0).uniform(size=(5, 3, 3, 3)).astype(dtype)
  output = tf1_bn.batch_norm(images, fused=fused)
  assert output.op.name.startswith('BatchNorm/FusedBatchNorm' if fused else 'BatchNorm/batchnorm')
  assert output.shape.as_list() == [5, 3, 3, 3]
  assert v1.get_collection(REGULARIZATION_LOSSES) == []


@pytest.mark.parametrize('fused', [True, False], ids=['Fused', 'NonFused'])
@pytest.mark.parametrize('param', ['beta', 'gamma'])
def test_create_op_regularizer(graph, param, fused):  # testCreateOp{Beta,Gamma}Regularizer*
  images = np.random.RandomState(0).uniform(size=(5, 3, 3, 3)).astype('f')
  tf1_bn.batch_norm(images, param_regularizers={param: lambda x: 0.1 * tf.reduce_sum(x)},
                    scale=param == 'gamma', fused=fused)
  losses = v1.get_collection(REGULARIZATION_LOSSES)
  assert len(losses) == 1
  assert losses[0].op.name == f'BatchNorm/{param}/Regularizer/mul'


def test_create_variables(graph):  # testCreateVariables
  tf1_bn.batch_norm(tf.random.uniform((5, 3, 3, 3), seed=1), scale=True)
  for leaf in ('beta', 'gamma', 'moving_mean', 'moving_variance'):
    assert _named(leaf)[0].op.name == 'BatchNorm/' + leaf


def test_moving_average_variables(graph):  # testMovingAverageVariables
  tf1_bn.batch_norm(tf.random.uniform((5, 3, 3, 3), seed=1), scale=True)
  assert len(v1.get_collection(MODEL_VARIABLES)) == 4
  assert _named('moving_mean')[0].op.name == 'BatchNorm/moving_mean'
  assert _named('moving_variance')[0].op.name == 'BatchNorm/moving_variance'


def test_moving_average_variables_zero_debias(graph):  # testMovingAverageVariablesZeroDebias
  tf1_bn.batch_norm(tf.random.uniform((5, 3, 3, 3), seed=1), scale=True,
                    zero_debias_moving_mean=True, fused=False)
  assert len(v1.get_collection(MODEL_VARIABLES)) == 6
  assert _named('moving_mean')[0].op.name == 'BatchNorm/moving_mean'
  assert _named('moving_variance')[0].op.name == 'BatchNorm/moving_variance'
  assert _named('biased')[0].op.name == 'BatchNorm/BatchNorm/moving_mean/biased'
  assert _named('local_step')[0].op.name == 'BatchNorm/BatchNorm/moving_mean/local_step'


def test_updates_collection(graph):  # testUpdatesCollection
  tf1_bn.batch_norm(tf.random.uniform((5, 3, 3, 3), seed=1), updates_collections='my_update_ops')
  update_moving_mean, update_moving_variance = v1.get_collection('my_update_ops')
  # Tensors (what slim's assigns return), not Operations: `.op` works.
  assert update_moving_mean.op.name.startswith('BatchNorm/AssignMovingAvg')
  assert update_moving_variance.op.name.startswith('BatchNorm/AssignMovingAvg_1')


# The kinds of update slim puts in its collections: what the assigns return
# on its own fused and general paths, Operations on its tf.layers path.
UPDATE_KINDS = {
    'fused': (dict(updates_collections='mine'), 'mine', False),
    'general': (dict(batch_weights=np.ones(5, np.float32)), UPDATE_OPS, False),
    'zero-debias': (dict(zero_debias_moving_mean=True), UPDATE_OPS, False),
    'tf.layers path': ({}, UPDATE_OPS, True),
}


@pytest.mark.parametrize('case', sorted(UPDATE_KINDS))
def test_update_kinds_and_what_running_them_returns(graph, case):
  kwargs, collection, operations = UPDATE_KINDS[case]
  values, batch_mean = _images('NHWC', batch_size=5)[:2]
  images = tf.constant(values, tf.float32)
  tf1_bn.batch_norm(images, decay=0.5, **kwargs)
  updates = v1.get_collection(collection)
  assert len(updates) == 2
  assert all(isinstance(u, tf.Operation) == operations for u in updates)
  # check_update_ops and minimize take either kind.
  with pytest.raises(tf1_bn.MissingUpdateOpsError):
    tf1_bn.check_update_ops(tf.no_op())
  with tf.control_dependencies(updates):
    step = tf.no_op()
  assert tf1_bn.check_update_ops([step]) is None
  assert tf1_bn.check_update_ops(updates) is None
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    returned = sess.run(updates)
    mean, variance = sess.run(_moving())
  if not operations:  # a tensor's value is the variable after its assign
    np.testing.assert_array_equal(returned[0], mean)
    np.testing.assert_array_equal(returned[1], variance)
  if 'zero_debias_moving_mean' not in kwargs:
    np.testing.assert_allclose(mean, 0.5 * batch_mean, rtol=1e-5, atol=1e-6)


def test_minimize_runs_update_tensors(graph):
  values, batch_mean = _images('NHWC', batch_size=5)[:2]
  images = tf.constant(values, tf.float32)
  y = tf1_bn.batch_norm(images, decay=0.5, updates_collections=UPDATE_OPS, fused=True,
                        zero_debias_moving_mean=True, scale=True)
  train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.1), tf.reduce_sum(y * y))
  assert tf1_bn.check_update_ops(train) is None
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    sess.run(train)
    mean = sess.run(_moving()[0])
  # zero-debiased: the batch mean itself after one step
  np.testing.assert_allclose(mean, batch_mean, rtol=1e-5, atol=1e-6)


def test_variables_collections(graph):  # testVariablesCollections
  collections = {name: [name] for name in ('beta', 'gamma', 'moving_mean', 'moving_variance')}
  tf1_bn.batch_norm(tf.random.uniform((5, 5, 5, 3), seed=1), scale=True,
                    variables_collections=collections)
  for var_name, names in collections.items():
    collection = v1.get_collection(names[0])
    assert len(collection) == 1
    assert collection[0].op.name == 'BatchNorm/' + var_name


def test_reuse_variables(graph):  # testReuseVariables
  images = tf.random.uniform((5, 3, 3, 3), seed=1)
  tf1_bn.batch_norm(images, scale=True, scope='bn')
  tf1_bn.batch_norm(images, scale=True, scope='bn', reuse=True)
  assert len(_named('beta')) == 1 and len(_named('gamma')) == 1
  assert len(_named('moving_mean') + _named('moving_variance')) == 2


def test_reuse_update_ops(graph):  # testReuseUpdateOps
  tf_slim = pytest.importorskip('tf_slim')
  images = tf.random.uniform((5, 3, 3, 3), seed=1)
  with tf1_bn.patch_slim(), tf_slim.arg_scope([tf1_bn.batch_norm],
                                              updates_collections='update_ops'):
    tf1_bn.batch_norm(images, scope='bn')
    assert len(v1.get_collection('update_ops')) == 2
    tf1_bn.batch_norm(images, scope='bn', reuse=True)
    assert len(v1.get_collection('update_ops')) == 4


def test_create_moving_vars(graph):  # testCreateMovingVars
  tf1_bn.batch_norm(tf.random.uniform((5, 3, 3, 3), seed=1))
  for leaf in ('moving_mean', 'moving_variance'):
    found = [v for v in v1.global_variables() if v.op.name.startswith('BatchNorm/' + leaf)]
    assert [v.op.name for v in found] == ['BatchNorm/' + leaf]


# --- moving statistics ---------------------------------------------------------

def test_zero_debias_moving_mean(graph):  # testZeroDebiasMovingMean
  values, mean, variance, _ = _images('NHWC', height=3, width=3)
  output = tf1_bn.batch_norm(tf.constant(values, tf.float32), decay=0.1, updates_collections=None,
                             zero_debias_moving_mean=True, fused=False)
  moving_mean, moving_variance = _moving()
  biased, local_step = _named('biased')[0], _named('local_step')[0]
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    _all_close(sess.run(local_step), 0)
    _all_close(sess.run(moving_mean), [0] * 3)
    _all_close(sess.run(biased), [0] * 3)
    _all_close(sess.run(moving_variance), [1] * 3)
    for i in range(10):
      _all_close(sess.run(local_step), i)
      sess.run([output])
      _all_close(sess.run(moving_mean), mean)  # debiased: exact after every update
    _all_close(sess.run(moving_mean), mean)
    _all_close(sess.run(moving_variance), variance)
    _all_close(sess.run(biased), mean)


def _check_updates_converge(fused, data_format, zero_debias, in_place):
  """slim's _testNoneUpdatesCollections (in place) and
  _testDelayedUpdateMovingVars (UPDATE_OPS run through a barrier): ten
  updates with decay 0.1 reach the batch's moments."""
  values, mean, variance, _ = _images(data_format)
  if fused:
    variance, _ = _with_bessel(values.size // 3, variance)
  with tf.Graph().as_default(), v1.Session() as sess:
    output = tf1_bn.batch_norm(tf.constant(values, tf.float32), decay=0.1, fused=fused,
                               data_format=data_format, zero_debias_moving_mean=zero_debias,
                               **({'updates_collections': None} if in_place else {}))
    assert len(v1.get_collection(UPDATE_OPS)) == (0 if in_place else 2)
    if not in_place:
      output = _with_update_barrier(output)
    sess.run(v1.global_variables_initializer())
    moving_mean, moving_variance = _initial_statistics(sess)
    for _ in range(10):
      sess.run([output])
      if zero_debias:
        _all_close(sess.run(moving_mean), mean)
    _all_close(sess.run(moving_mean), mean)
    _all_close(sess.run(moving_variance), variance)


FUSED_FORMATS_DEBIAS = [(False, 'NHWC', False), (False, 'NCHW', False), (False, 'NHWC', True),
                        (False, 'NCHW', True), (True, 'NCHW', False), (True, 'NHWC', False),
                        (True, 'NCHW', True), (True, 'NHWC', True)]
FUSED_FORMATS_DEBIAS_IDS = ['NHWC', 'NCHW', 'NHWCZeroDebias', 'NCHWZeroDebias', 'FusedNCHW',
                            'FusedNHWC', 'FusedNCHWZeroDebias', 'FusedNHWCZeroDebias']
FUSED_FORMATS = [(False, 'NHWC'), (False, 'NCHW'), (True, 'NCHW'), (True, 'NHWC')]
FUSED_FORMATS_IDS = ['NHWC', 'NCHW', 'FusedNCHW', 'FusedNHWC']


@pytest.mark.parametrize('fused,data_format,zero_debias', FUSED_FORMATS_DEBIAS,
                         ids=FUSED_FORMATS_DEBIAS_IDS)
def test_none_updates_collections(fused, data_format, zero_debias):  # testNoneUpdatesCollections*
  _check_updates_converge(fused, data_format, zero_debias, in_place=True)


@pytest.mark.parametrize('fused,data_format', FUSED_FORMATS, ids=FUSED_FORMATS_IDS)
def test_delayed_update_moving_vars(fused, data_format):  # testDelayedUpdateMovingVars*
  _check_updates_converge(fused, data_format, zero_debias=False, in_place=False)


def _check_eval_moving_vars(zero_debias=False):
  rng = np.random.RandomState(2)
  shape = (10, 3, 3, 3)
  values = rng.rand(*shape)
  mean, variance = values.mean(axis=(0, 1, 2)), values.var(axis=(0, 1, 2))
  images = tf.constant(values, tf.float32)
  output = tf1_bn.batch_norm(images, decay=0.1, is_training=False,
                             zero_debias_moving_mean=zero_debias)
  assert v1.get_collection(UPDATE_OPS) == []
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    moving_mean, moving_variance = _initial_statistics(sess)
    # As a Saver restore would.
    sess.run([v1.assign(moving_mean, mean), v1.assign(moving_variance, variance)])
    for _ in range(10):
      sess.run([output], {images: rng.rand(*shape)})
    # Other images, and still the restored statistics.
    _all_close(sess.run(moving_mean), mean)
    _all_close(sess.run(moving_variance), variance)


@pytest.mark.parametrize('zero_debias', [False, True], ids=['Default', 'ZeroDebias'])
def test_eval_moving_vars(graph, zero_debias):  # testEvalMovingVars, ...ZeroDebias
  _check_eval_moving_vars(zero_debias)


def test_eval_moving_vars_with_partitioner(graph):  # testEvalMovingVarsWithPartitioner
  partitioner = v1.fixed_size_partitioner(2, axis=0)
  with v1.variable_scope(v1.get_variable_scope(), partitioner=partitioner):
    _check_eval_moving_vars()


@pytest.mark.parametrize('fused,zero_debias', [(None, False), (False, False), (True, False),
                                               (False, True), (True, True)],
                         ids=['Layer', 'General', 'Fused', 'GeneralZeroDebias',
                              'FusedZeroDebias'])
def test_train_with_partitioner(graph, fused, zero_debias):  # added: slim tests eval only
  values, mean, variance, _ = _images('NHWC', channels=5)
  if fused is not False:
    variance, _ = _with_bessel(values.size // 5, variance)
  partitioner = v1.fixed_size_partitioner(2, axis=0)
  with v1.variable_scope(v1.get_variable_scope(), partitioner=partitioner):
    output = tf1_bn.batch_norm(
        tf.constant(values, tf.float32), decay=0.1, scale=True, fused=fused,
        zero_debias_moving_mean=zero_debias,
        param_initializers={'gamma': v1.random_uniform_initializer(0.5, 1.5, seed=1),
                            'beta': v1.random_uniform_initializer(-1, 1, seed=2)})
  # gamma and beta are partitioned, the statistics are not (as slim).
  parts = {leaf: [_variable(f'BatchNorm/{leaf}/part_{i}') for i in range(2)]
           for leaf in ('gamma', 'beta')}
  assert [v.op.name for v in _named('moving_mean')] == ['BatchNorm/moving_mean']
  output = _with_update_barrier(output)
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    gamma, beta = (np.concatenate(sess.run(parts[leaf])) for leaf in ('gamma', 'beta'))
    for _ in range(10):
      out = sess.run(output)
    moving_mean, moving_variance = sess.run(list(_moving()))
  batch_variance = values.var(axis=(0, 1, 2))
  _all_close(out, (values - mean) / np.sqrt(batch_variance + 1e-3) * gamma + beta, atol=1e-5)
  _all_close(moving_mean, mean)
  _all_close(moving_variance, variance)


def _check_reuse_vars(fused, zero_debias=False):
  rng = np.random.RandomState(3)
  values = rng.rand(10, 3, 3, 3)
  mean, variance = values.mean(axis=(0, 1, 2)), values.var(axis=(0, 1, 2))
  if fused:
    variance, factor = _with_bessel(10 * 3 * 3, variance)
  images = tf.constant(values, tf.float32)
  output_train = tf1_bn.batch_norm(images, decay=0.1, is_training=True, scope='BN', fused=fused,
                                   zero_debias_moving_mean=zero_debias)
  output_eval = tf1_bn.batch_norm(images, decay=0.1, is_training=False, scope='BN', reuse=True,
                                  fused=fused, zero_debias_moving_mean=zero_debias)
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    moving_mean, moving_variance = _initial_statistics(sess, scope='BN')
    train_op = _with_update_barrier(output_train)
    assert not np.allclose(sess.run([output_train]), sess.run([output_eval]))
    for _ in range(10):
      sess.run([train_op])
    _all_close(sess.run(moving_mean), mean)
    _all_close(sess.run(moving_variance), variance)
    if fused:
      # The fused kernel averages the sample variance; undo it to compare.
      sess.run(v1.assign(moving_variance, moving_variance / factor))
    # After convergence training and evaluation agree.
    _all_close(sess.run([output_train]), sess.run([output_eval]))


@pytest.mark.parametrize('fused,zero_debias', [(False, False), (True, False), (False, True),
                                               (True, True)],
                         ids=['Default', 'Fused', 'DefaultZeroDebias', 'FusedZeroDebias'])
def test_reuse_vars(graph, fused, zero_debias):  # testReuseVars*
  _check_reuse_vars(fused, zero_debias)


def _check_is_training_variable(fused, data_format, zero_debias=False, in_place=False):
  """slim's _testIsTrainingVariable (UPDATE_OPS through a barrier) and
  _testNoneUpdatesCollectionIsTrainingVariable (in place): a fed tensor
  is_training; the outputs differ before the updates and agree after."""
  values, mean, variance, _ = _images(data_format)
  if fused:
    variance, factor = _with_bessel(values.size // 3, variance)
  with tf.Graph().as_default(), v1.Session() as sess:
    is_training = _is_training_variable()
    output = tf1_bn.batch_norm(tf.constant(values, tf.float32), decay=0.1,
                               is_training=is_training, fused=fused, data_format=data_format,
                               zero_debias_moving_mean=zero_debias,
                               **({'updates_collections': None} if in_place else {}))
    assert len(v1.get_collection(UPDATE_OPS)) == (0 if in_place else 2)
    sess.run(v1.global_variables_initializer())
    moving_mean, moving_variance = _initial_statistics(sess)
    if in_place:
      for _ in range(10):  # is_training False: no update
        sess.run([output], {is_training: False})
      _all_close(sess.run(moving_mean), [0] * 3)
      _all_close(sess.run(moving_variance), [1] * 3)
    assert not np.allclose(sess.run([output], {is_training: True}),
                           sess.run([output], {is_training: False}))
    train_op = output if in_place else _with_update_barrier(output)
    for _ in range(10):
      sess.run([train_op], {is_training: True})
    _all_close(sess.run(moving_mean), mean)
    _all_close(sess.run(moving_variance), variance)
    output_true = sess.run([output], {is_training: True})
    if fused:
      # The fused kernel averages the sample variance; undo it to compare.
      sess.run(v1.assign(moving_variance, moving_variance / factor))
    output_false = sess.run([output], {is_training: False})
    if in_place:
      assert np.allclose(output_true, output_false)  # slim's bare np.allclose
    else:
      _all_close(output_true, output_false)


@pytest.mark.parametrize('fused,data_format,zero_debias', FUSED_FORMATS_DEBIAS,
                         ids=FUSED_FORMATS_DEBIAS_IDS)
def test_is_training_variable(fused, data_format, zero_debias):  # testIsTrainingVariable*
  _check_is_training_variable(fused, data_format, zero_debias)


@pytest.mark.parametrize('fused,data_format', FUSED_FORMATS, ids=FUSED_FORMATS_IDS)
def test_none_updates_collection_is_training_variable(fused, data_format):
  # testNoneUpdatesCollectionIsTrainingVariable*
  _check_is_training_variable(fused, data_format, in_place=True)


def _check_no_updates_when_not_training(updates_collections):
  values = np.random.RandomState(4).rand(10, 3, 3, 3)
  output = tf1_bn.batch_norm(tf.constant(values, tf.float32), decay=0.1,
                             updates_collections=updates_collections, is_training=False)
  assert v1.get_collection(UPDATE_OPS) == []
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    moving_mean, moving_variance = _initial_statistics(sess)
    for _ in range(10):
      sess.run([output])
    _all_close(sess.run(moving_mean), [0] * 3)
    _all_close(sess.run(moving_variance), [1] * 3)


@pytest.mark.parametrize('updates_collections', [UPDATE_OPS, None],
                         ids=['NoUpdatesWhenIsTrainingFalse', 'NoneUpdatesCollectionNoTraining'])
def test_no_updates_when_is_training_false(graph, updates_collections):
  _check_no_updates_when_not_training(updates_collections)


def _check_train_moving_vars(fused, data_format):
  # The gradients stay stable while the moving mean (slim's moments shift)
  # moves towards 256.
  values, mean, variance, axis = _images(data_format, height=7, width=7, channels=32,
                                         offset=256)
  if fused:
    variance, _ = _with_bessel(10 * 7 * 7, variance)
  with tf.Graph().as_default(), v1.Session() as sess:
    images = tf.constant(values, tf.float32)
    output = tf1_bn.batch_norm(images, decay=0.2, updates_collections=None, is_training=True,
                               fused=fused, data_format=data_format)
    assert v1.get_collection(UPDATE_OPS) == []
    [images_gradients] = tf.gradients(tf.reduce_sum(output), images)
    sess.run(v1.global_variables_initializer())
    moving_mean, moving_variance = _initial_statistics(sess, channels=32)
    initial_gradients = sess.run(images_gradients)
    for _ in range(10):
      out, gradients = sess.run([output, images_gradients])
      _all_close(out.mean(axis=axis), [0] * 32, rtol=1e-3, atol=1e-3)
      _all_close(out.var(axis=axis), [1] * 32, rtol=1e-2, atol=1e-2)
      assert 0 <= np.abs(initial_gradients - gradients).max() < 5e-5
    _all_close(sess.run(moving_mean), mean)
    _all_close(sess.run(moving_variance), variance)


@pytest.mark.parametrize('fused,data_format', FUSED_FORMATS, ids=FUSED_FORMATS_IDS)
def test_train_moving_vars(fused, data_format):  # testTrainMovingVars*
  _check_train_moving_vars(fused, data_format)


# --- values ----------------------------------------------------------------------

def _constant_initializers(channels):
  ramp = lambda start: np.arange(start, channels + start, dtype=np.float32)
  return {'beta': v1.constant_initializer(ramp(2)),
          'gamma': v1.constant_initializer(ramp(10) * 2.0),
          'moving_mean': v1.constant_initializer(ramp(3) * 5.0),
          'moving_variance': v1.constant_initializer(ramp(1) * 4.0)}


def test_custom_initializer(graph):  # testCustomInitializer
  # Inference with epsilon 0: (9 - 5) / sqrt(4) * 2 + 5 == 9.
  images = (np.ones((5, 3, 3, 3)) * 9.0).astype('f')
  constant = lambda value: v1.constant_initializer((np.ones(3) * value).astype('f'))
  output = tf1_bn.batch_norm(images, is_training=False, scale=True, epsilon=0.0,
                             param_initializers={'beta': constant(5.0), 'gamma': constant(2.0),
                                                 'moving_mean': constant(5.0),
                                                 'moving_variance': constant(4.0)})
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    _all_close(sess.run(output), images)


def _run_with_format(shape, data_format, is_training):
  """slim's _runBatchNormalizationWithFormat: the output, in NHWC order."""
  channels = shape[-1]
  with tf.Graph().as_default(), v1.Session() as sess:
    images = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    if data_format == 'NCHW':
      images = tf.transpose(images, [0, len(shape) - 1] + list(range(1, len(shape) - 1)))
    output = tf1_bn.batch_norm(images, is_training=is_training, scale=True, epsilon=0.5,
                               param_initializers=_constant_initializers(channels),
                               data_format=data_format)
    if data_format == 'NCHW':
      output = tf.transpose(output, [0] + list(range(2, len(shape))) + [1])
    sess.run(v1.global_variables_initializer())
    return sess.run(output)


@pytest.mark.parametrize('is_training', [False, True], ids=['Inference', 'Training'])
def test_nhwc_and_nchw_produce_same_output(is_training):  # testNHWCAndNCHW*ProduceSameOutput
  for shape in [[7, 3, 5], [5, 2, 3, 4], [11, 3, 2, 4, 5]]:
    nhwc = _run_with_format(shape, 'NHWC', is_training)
    nchw = _run_with_format(shape, 'NCHW', is_training)
    _all_close(nhwc, nchw, rtol=1e-4, atol=1e-4)


def test_batch_norm_beta(graph):  # testBatchNormBeta (tf-slim issue 11673)
  for dtype in (tf.float32, tf.float16):
    tf1_bn.batch_norm(v1.placeholder(dtype, (10, 10, 10, 10)), center=False,
                      data_format='NCHW', zero_debias_moving_mean=True)
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())


def test_variables_are_float32(graph):  # testVariablesAreFloat32
  tf1_bn.batch_norm(tf.random.uniform((5, 3, 3, 3), seed=1, dtype=tf.float16), scale=True)
  for leaf in ('beta', 'gamma', 'moving_mean', 'moving_variance'):
    variable = _named(leaf)[0]  # slim's is_float_var, resource case
    assert variable.dtype == tf.float32 and variable.op.outputs[0].dtype == tf.resource


def _run_fused(shape, dtype):
  """slim's _runFusedBatchNorm: NCHW, fused, training, custom parameters."""
  with tf.Graph().as_default(), v1.Session() as sess:
    images = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    output = tf1_bn.batch_norm(images, fused=True, is_training=True, scale=True, epsilon=0.5,
                               param_initializers=_constant_initializers(shape[1]),
                               data_format='NCHW')
    sess.run(v1.global_variables_initializer())
    return sess.run(output)


def test_fused_batch_norm_float16_matches_float32():  # testFusedBatchNormFloat16MatchesFloat32
  shape = [5, 4, 2, 3]
  _all_close(_run_fused(shape, np.float32), _run_fused(shape, np.float16), rtol=1e-3)


def test_adjustment_created(graph):  # testAdjustmentCreated
  adjustments = []

  def create_adjustment(shape):
    made = [tf.ones(shape[-1:]), tf.zeros(shape[-1:])]
    adjustments.extend(made)
    return made

  images = tf.zeros([10, 5, 5, 8])
  output = tf1_bn.batch_norm(images, is_training=True, adjustment=create_adjustment)
  assert output.shape.as_list() == images.shape.as_list()
  assert len(adjustments) == 2
  assert [a.shape.as_list() for a in adjustments] == [[8], [8]]


# --- tf-slim's own BatchNormTest, unmodified, on the patched slim ---------------

# Run in a child process: patch_slim changes tf-slim for the whole process,
# and the test case builds its own graphs and sessions.
_OWN_TESTS_CHILD = '''
import json, unittest
import tensorflow as tf
import tf1_bn
tf1_bn.patch_slim()
from tf_slim.layers import layers_test
suite = unittest.defaultTestLoader.loadTestsFromTestCase(layers_test.BatchNormTest)
result = unittest.TextTestRunner(verbosity=0).run(suite)
print(json.dumps({
    'run': result.testsRun,
    'skipped': [t.id().rsplit('.', 1)[-1] for t, _ in result.skipped],
    'failed': [t.id().rsplit('.', 1)[-1] + ': ' + tb.strip().splitlines()[-1]
               for t, tb in result.failures + result.errors]}))
'''
# BatchNormTest's 67 methods; tf.test.TestCase's inherited `test_session`
# is a deprecated helper that unittest skips, not a test of batch_norm.
SLIM_OWN_TESTS = 66


def test_slims_own_batch_norm_tests_pass_on_the_patched_slim():
  import json
  import os
  import subprocess
  import sys
  pytest.importorskip('tf_slim')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join(
      [os.path.dirname(os.path.dirname(os.path.abspath(tf1_bn.__file__)))] +
      [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
  child = subprocess.run([sys.executable, '-c', _OWN_TESTS_CHILD], capture_output=True,
                         text=True, env=env, timeout=600)
  assert child.returncode == 0, child.stderr[-3000:]
  report = json.loads(child.stdout.strip().splitlines()[-1])
  assert report['failed'] == []
  assert report['skipped'] == ['test_session']
  assert report['run'] - len(report['skipped']) == SLIM_OWN_TESTS
