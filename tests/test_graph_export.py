"""`tf1_bn.export_graph` / `tf1-bn export` on graphs tf1_bn did not build.

The fixtures (tests/fixtures/export, scripts/make_export_fixtures.py) are
real legacy artefacts written under TensorFlow 2.12 with the original
tf.layers, tf-slim, Keras 2 and the recipe; their inference outputs recorded
there are the reference. Each is exported once (with TFLite float and int8)
in a module fixture. Graphs with ops TensorFlow 2.21 cannot build
(FusedBatchNorm V1/V2, BatchNormWithGlobalNormalization) are GraphDefs
written here by hand with a producer version of 8, checked against the
original graph run by TensorFlow and against numpy.
"""
import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tf1_bn.deploy import pipeline
from tf1_bn.studies import cli

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'export')
# fixture: (SOURCE relative to FIXTURES, extra arguments)
SOURCES = {
    'layers': ('layers/model.ckpt.meta', {}),
    'slim': ('slim/model.ckpt', {}),
    'recipe': ('recipe', {'training': ['phase_train']}),
    'keras2': ('keras2', {}),
    'frozen': ('frozen.pb', {}),
}
TRAINING_OPS = ('Switch', 'Merge', 'RefSwitch', 'Assign', 'AssignSub', 'AssignMovingAvg',
                'RandomUniform', 'FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3',
                'Rsqrt', 'Mean', 'SquaredDifference', 'BatchNormWithGlobalNormalization')
RTOL = 1e-5
v1 = tf.compat.v1


def _relative(value, reference):
  return np.max(np.abs(value - reference)) / np.max(np.abs(reference))


def _fixture_arrays(name):
  with np.load(os.path.join(FIXTURES, name)) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
  """{fixture: (OUT, ExportReport)}: each exported once with --int8, two at a
  time (most of an export is its TFLite child process starting TensorFlow;
  each export has its own graphs and sessions)."""
  from concurrent.futures import ThreadPoolExecutor
  root = tmp_path_factory.mktemp('exports')
  data = os.path.join(FIXTURES, 'inputs.npz')

  def export(name):
    source, extra = SOURCES[name]
    names = {} if name == 'keras2' else {'inputs': ['x'], 'outputs': ['logits']}
    out = str(root / name)
    return out, tf1_bn.export_graph(os.path.join(FIXTURES, source), out, data=data, int8=True,
                                    **names, **extra)

  with ThreadPoolExecutor(max_workers=2) as pool:
    return dict(zip(SOURCES, pool.map(export, SOURCES)))


def _saved_graph_ops(out):
  """The op types of the exported SavedModel's graph (and functions), read
  from saved_model.pb itself."""
  from tensorflow.core.protobuf import saved_model_pb2
  saved = saved_model_pb2.SavedModel()
  with open(os.path.join(out, 'saved_model', 'saved_model.pb'), 'rb') as f:
    saved.ParseFromString(f.read())
  (meta_graph,) = saved.meta_graphs
  ops = [n.op for n in meta_graph.graph_def.node]
  for function in meta_graph.graph_def.library.function:
    ops += [n.op for n in function.node_def]
  return ops


def _run_tflite(path, inputs):
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    Interpreter = tf.lite.Interpreter
  interpreter = Interpreter(model_path=path)
  runner = interpreter.get_signature_runner('serving_default')
  ops = [op['op_name'] for op in interpreter._get_ops_details()]
  return runner(**inputs), ops


@pytest.mark.parametrize('name', list(SOURCES))
def test_fixture_saved_model_matches_the_legacy_recording(exports, name):
  out, report = exports[name]
  assert report.ok, report.markdown()
  inputs = _fixture_arrays('inputs.npz')
  expected = _fixture_arrays('expected.npz')[name]
  loaded = tf.saved_model.load(os.path.join(out, 'saved_model'))
  key = 'logits'
  result = loaded.signatures['serving_default'](x=tf.constant(inputs['x']))[key].numpy()
  assert _relative(result, expected) < RTOL


@pytest.mark.parametrize('name', list(SOURCES))
def test_fixture_training_graph_gone_and_bn_folded(exports, name):
  out, report = exports[name]
  ops = _saved_graph_ops(out)
  assert not set(ops) & set(TRAINING_OPS), sorted(set(ops) & set(TRAINING_OPS))
  assert not report.training_mode
  # every BN found was folded into its conv / matmul: the ops stay as many
  assert report.folding.folded == len(report.forms) >= 1
  assert ops.count('Conv2D') == report.ops_before.get('Conv2D', 0)
  assert report.ops_after.get('Switch', 0) == report.ops_after.get('Merge', 0) == 0
  assert report.ops_before.get('Switch', 0) + report.ops_before.get('Merge', 0) > 0
  text = open(os.path.join(out, 'report.md'), encoding='utf-8').read()
  for binding in report.bound:
    assert f'`{binding.name}`' in text


@pytest.mark.parametrize('name', list(SOURCES))
def test_fixture_tflite_float_and_int8(exports, name):
  out, report = exports[name]
  inputs = _fixture_arrays('inputs.npz')
  expected = _fixture_arrays('expected.npz')[name]
  result, ops = _run_tflite(os.path.join(out, 'model.tflite'), inputs)
  assert _relative(result['logits'], expected) < RTOL
  assert not [op for op in ops if op.startswith('Flex')]
  assert 'CONV_2D' in ops and 'RANDOM_UNIFORM' not in ops
  result, ops = _run_tflite(os.path.join(out, 'model_int8.tflite'), inputs)
  assert 'QUANTIZE' in ops
  # int8 against the float model: a few percent of the logits' range
  assert _relative(result['logits'], expected) < 0.1
  assert report.int8.comparisons[0].relative == pytest.approx(
      _relative(result['logits'], expected), rel=1e-6)


def test_keep_prob_bound_and_dropout_mask_removed(exports):
  _, report = exports['layers']
  assert {b.name: b.value for b in report.bound} == {'is_training': False, 'keep_prob': 1.0}
  assert report.masks_removed == 1
  assert report.ops_before['RandomUniform'] == 1 and 'RandomUniform' not in report.ops_after


# --- hand-written graphs: old BN ops, every foldable op ------------------------
def _const(graph_def, name, value):
  node = graph_def.node.add()
  node.name, node.op = name, 'Const'
  node.attr['dtype'].type = tf.float32.as_datatype_enum
  node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(value, np.float32)))
  return name


def _old_bn_graph(rng, channels=3):
  """x -> Conv2D -> FusedBatchNorm (V1) -> Relu -> BatchNormWithGlobalNormalization
  -> DepthwiseConv2dNative -> FusedBatchNormV2 -> output, producer 8."""
  graph_def = tf.compat.v1.GraphDef()
  graph_def.versions.producer = 8
  x = graph_def.node.add()
  x.name, x.op = 'x', 'Placeholder'
  x.attr['dtype'].type = tf.float32.as_datatype_enum
  x.attr['shape'].shape.CopyFrom(tf.TensorShape([None, 5, 5, 2]).as_proto())
  params = {}

  def bn_params(prefix):
    values = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.5, channels),
              rng.normal(2, 1, channels), rng.uniform(0.1, 2, channels)]
    params[prefix] = values
    return [_const(graph_def, f'{prefix}/{role}', value)
            for role, value in zip(('gamma', 'beta', 'mean', 'variance'), values)]

  def op(name, op_type, inputs, **attrs):
    node = graph_def.node.add()
    node.name, node.op = name, op_type
    node.input.extend(inputs)
    node.attr['T'].type = tf.float32.as_datatype_enum
    for key, value in attrs.items():
      if isinstance(value, bool):
        node.attr[key].b = value
      elif isinstance(value, float):
        node.attr[key].f = value
      elif isinstance(value, bytes):
        node.attr[key].s = value
      else:
        node.attr[key].list.i.extend(value)
    return name

  kernel = _const(graph_def, 'conv/kernel', rng.normal(0, 0.5, (3, 3, 2, channels)))
  conv = op('conv', 'Conv2D', ['x', kernel], strides=[1, 1, 1, 1], padding=b'SAME')
  gamma, beta, mean, variance = bn_params('bn1')
  bn1 = op('bn1', 'FusedBatchNorm', [conv, gamma, beta, mean, variance], epsilon=1e-3,
           is_training=False, data_format=b'NHWC')
  relu = op('relu', 'Relu', [bn1])
  gamma, beta, mean, variance = bn_params('bn2')
  bn2 = op('bn2', 'BatchNormWithGlobalNormalization', [relu, mean, variance, beta, gamma],
           variance_epsilon=1e-3, scale_after_normalization=True)
  depthwise_kernel = _const(graph_def, 'dw/kernel', rng.normal(0, 0.5, (3, 3, channels, 1)))
  dw = op('dw', 'DepthwiseConv2dNative', [bn2, depthwise_kernel], strides=[1, 1, 1, 1],
          padding=b'SAME')
  gamma, beta, mean, variance = bn_params('bn3')
  bn3 = op('bn3', 'FusedBatchNormV2', [dw, gamma, beta, mean, variance], epsilon=1e-3,
           is_training=False, data_format=b'NHWC')
  bn3_node = [n for n in graph_def.node if n.name == bn3][0]
  bn3_node.attr['U'].type = tf.float32.as_datatype_enum
  op('y', 'Identity', [bn3])
  return graph_def, params


def _numpy_bn(x, values, epsilon=1e-3):
  gamma, beta, mean, variance = (np.asarray(p, np.float64) for p in values)
  return (x - mean) * gamma / np.sqrt(variance + epsilon) + beta


def test_old_bn_ops_fold_or_rewrite_exactly(tmp_path):
  rng = np.random.default_rng(3)
  graph_def, params = _old_bn_graph(rng)
  source = tmp_path / 'old.pb'
  source.write_bytes(graph_def.SerializeToString())
  x = rng.normal(1, 2, (2, 5, 5, 2)).astype(np.float32)
  np.savez(tmp_path / 'x.npz', x=x)
  report = tf1_bn.export_graph(str(source), str(tmp_path / 'out'), inputs=['x'],
                               outputs=['y'], data=str(tmp_path / 'x.npz'))
  assert report.ok
  assert sorted(report.forms.values()) == ['BatchNormWithGlobalNormalization',
                                           'FusedBatchNorm', 'FusedBatchNormV2']
  assert report.folding.into_ops == {'bn1:0': 'conv', 'bn3:0': 'dw'}
  assert report.folding.multiply_add == ['bn2:0']  # after a Relu: exact form
  # numpy float64 through the BN layers, with TensorFlow's own conv outputs
  with tf.Graph().as_default() as graph:
    tf.graph_util.import_graph_def(graph_def, name='')
    with v1.Session() as sess:
      conv, dw_in, dw, y = sess.run(['conv:0', 'bn2:0', 'dw:0', 'y:0'], {'x:0': x})
  np.testing.assert_allclose(dw_in, _numpy_bn(np.maximum(_numpy_bn(conv, params['bn1']), 0),
                                              params['bn2']), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(y, _numpy_bn(dw, params['bn3']), rtol=1e-5, atol=1e-5)
  loaded = tf.saved_model.load(str(tmp_path / 'out' / 'saved_model'))
  exported = loaded.signatures['serving_default'](x=tf.constant(x))['y'].numpy()
  assert _relative(exported, y) < RTOL
  ops = _saved_graph_ops(str(tmp_path / 'out'))
  assert not set(ops) & set(TRAINING_OPS)


def _modern_forms_graph(rng):
  """Constants-only graph (TensorFlow 2.21 ops) with a BN after each foldable op."""
  with tf.Graph().as_default() as graph:
    x3 = v1.placeholder(tf.float32, (None, 3, 4, 4, 2), name='x3')
    x2 = v1.placeholder(tf.float32, (None, 4, 4, 2), name='x2')
    xm = v1.placeholder(tf.float32, (None, 6), name='xm')

    def stats(c):
      return (tf.constant(rng.uniform(0.5, 1.5, c), tf.float32),
              tf.constant(rng.normal(0, 0.5, c), tf.float32),
              tf.constant(rng.normal(1, 1, c), tf.float32),
              tf.constant(rng.uniform(0.1, 2, c), tf.float32))

    def w(*shape):
      return tf.constant(rng.normal(0, 0.5, shape), tf.float32)

    c3 = tf.nn.conv3d(x3, w(2, 2, 2, 2, 3), [1] * 5, 'SAME')
    g, b, m, var = stats(3)
    y3 = v1.nn.fused_batch_norm(c3, g, b, m, var, 1e-3, data_format='NDHWC',
                                is_training=False)[0]
    t3 = tf.nn.conv3d_transpose(y3, w(2, 2, 2, 2, 3), tf.stack([tf.shape(x3)[0], 3, 4, 4, 2]),
                                [1] * 5, 'SAME')
    g, b, m, var = stats(2)
    y3 = tf.identity(v1.nn.fused_batch_norm(t3, g, b, m, var, 1e-3, data_format='NDHWC',
                                            is_training=False)[0], name='y3')
    t2 = tf.nn.conv2d_transpose(x2, w(3, 3, 4, 2), tf.stack([tf.shape(x2)[0], 4, 4, 4]),
                                [1, 1, 1, 1], 'SAME')
    _, _, m, var = stats(4)
    y2 = tf.identity(tf.nn.batch_normalization(t2, m, var, None, None, 1e-3), name='y2')
    # a channels-first FusedBatchNormV3 after a transpose of an NHWC conv
    nchw = tf.transpose(tf.nn.conv2d(x2, w(3, 3, 2, 3), [1, 1, 1, 1], 'SAME'), [0, 3, 1, 2])
    g, b, m, var = stats(3)
    yc = tf.identity(v1.nn.fused_batch_norm(nchw, g, b, m, var, 1e-3, data_format='NCHW',
                                            is_training=False)[0], name='yc')
    dense = tf.nn.bias_add(tf.matmul(xm, w(6, 5)), w(5))
    g, b, m, var = stats(5)
    ym = tf.identity(tf.nn.batch_normalization(dense, m, var, b, g, 1e-3), name='ym')
    inputs = {'x3': rng.normal(0, 1, (2, 3, 4, 4, 2)), 'x2': rng.normal(0, 1, (2, 4, 4, 2)),
              'xm': rng.normal(0, 1, (2, 6))}
    inputs = {k: v.astype(np.float32) for k, v in inputs.items()}
    with v1.Session() as sess:
      reference = sess.run({'y3': y3, 'y2': y2, 'ym': ym, 'yc': yc},
                           {graph.get_tensor_by_name(k + ':0'): v for k, v in inputs.items()})
    return graph.as_graph_def(), inputs, reference


def test_every_foldable_op_folds(tmp_path):
  rng = np.random.default_rng(5)
  graph_def, inputs, reference = _modern_forms_graph(rng)
  (tmp_path / 'g.pb').write_bytes(graph_def.SerializeToString())
  np.savez(tmp_path / 'in.npz', **inputs)
  report = tf1_bn.export_graph(str(tmp_path / 'g.pb'), str(tmp_path / 'out'),
                               inputs=list(inputs), outputs=['y3', 'y2', 'ym', 'yc'],
                               data=str(tmp_path / 'in.npz'))
  assert report.ok
  op_types = {n.name: n.op for n in graph_def.node}
  assert sorted(op_types[n] for n in report.folding.into_ops.values()) == [
      'Conv2D', 'Conv2DBackpropInput', 'Conv3D', 'Conv3DBackpropInputV2', 'MatMul']
  assert not report.folding.multiply_add
  loaded = tf.saved_model.load(str(tmp_path / 'out' / 'saved_model'))
  result = loaded.signatures['serving_default'](**{k: tf.constant(v) for k, v in inputs.items()})
  for key, value in reference.items():
    assert _relative(result[key].numpy(), value) < RTOL, key


def test_tiny_variance_channels_are_flagged():
  from tf1_bn.deploy import bn_forms, tflite
  variance = np.array([1.0, 0.8, 1e-6, 1.2])
  record = {'input': 'x:0', 'output': 'bn:0', 'axes': [3], 'rank': 4, 'dtype': 'float32',
            'epsilon': 1e-5, 'gamma': 'g', 'beta': None, 'mean': 'm', 'variance': 'v'}
  found = bn_forms.Found([record], {'g': np.ones(4), 'm': np.zeros(4), 'v': variance},
                         {'bn:0': 'FusedBatchNormV3'}, [])
  flagged = tflite.tiny_variance_channels(found)
  scale = 1 / np.sqrt(variance + 1e-5)
  assert [(layer, channel) for layer, channel, _, _ in flagged] == [('bn:0', 2)]
  assert flagged[0][3] == pytest.approx(scale[2] / np.median(scale))


def test_a_converter_crash_is_reported_not_raised(tmp_path, monkeypatch):
  """The int8 converter has aborted whole processes: the child dying by a
  signal becomes a failed Result (export exit status 1), never a crash."""
  import subprocess
  import sys
  from tf1_bn.deploy import tflite
  real_run = subprocess.run

  def aborting_child(command, **kwargs):
    abort = 'import os, signal; os.kill(os.getpid(), signal.SIGABRT)'
    return real_run([sys.executable, '-c', abort], **kwargs)

  monkeypatch.setattr(tflite.subprocess, 'run', aborting_child)
  inputs = {'x': np.zeros((1, 2), np.float32)}
  float_result, int8_result = tflite.convert_and_verify(
      str(tmp_path / 'saved_model'), str(tmp_path), inputs, {'y': np.ones((1, 2))}, RTOL,
      int8=True)
  assert not float_result.ok and 'signal 6' in float_result.error
  assert not int8_result.ok and int8_result.error.startswith('not tried')
  assert os.listdir(tmp_path) == []  # no inputs file, no half-written model left


# Recorded from TensorFlow 2.21's converter on a graph with tf.linalg.svd.
CONVERTER_FAILURE = """ConverterError: Could not translate MLIR to FlatBuffer.<unknown>:0: error: \
loc(fused["Svd:", "Svd"]): 'tf.Svd' op is neither a custom op nor a flex op
<unknown>:0: error: failed while converting: 'main':
Some ops in the model are custom ops, See instructions to implement custom ops: https://x
Custom ops: Svd
Details:
"""


def test_an_op_tflite_cannot_convert_is_named():
  from tf1_bn.deploy import tflite
  message = tflite.one_line(CONVERTER_FAILURE)
  assert message.startswith('TFLite cannot convert the op(s) Svd ')


def _bool_variable_model(prefix, rng):
  """A meta graph + checkpoint whose switch is a bool variable (True when
  saved) choosing batch moments or stored statistics through a TF1 cond."""
  v1.disable_control_flow_v2()
  try:
    with tf.Graph().as_default():
      x = v1.placeholder(tf.float32, (None, 4), name='x')
      training = v1.get_variable('training', initializer=True, trainable=False)
      stats = rng.normal(1, 0.5, 4).astype(np.float32), rng.uniform(0.2, 2, 4).astype(np.float32)
      mean = v1.get_variable('moving_mean', initializer=stats[0])
      variance = v1.get_variable('moving_variance', initializer=stats[1])
      kernel = v1.get_variable('kernel', initializer=rng.normal(0, 1, (4, 4)).astype(np.float32))
      h = tf.matmul(x, kernel)
      m, var = tf.cond(training, lambda: tf.nn.moments(h, [0]),
                       lambda: (tf.identity(mean), tf.identity(variance)))
      tf.identity(tf.nn.batch_normalization(h, m, var, None, None, 1e-3), name='y')
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        v1.train.Saver().save(sess, prefix)
        return sess.run(kernel), stats
  finally:
    v1.enable_control_flow_v2()


def test_bool_variable_switch_is_found_and_bound(tmp_path):
  rng = np.random.default_rng(11)
  kernel, (mean, variance) = _bool_variable_model(str(tmp_path / 'm.ckpt'), rng)
  report = tf1_bn.export_graph(str(tmp_path / 'm.ckpt.meta'), str(tmp_path / 'out'),
                               inputs=['x'], outputs=['y'])
  assert report.ok and [(b.name, b.value) for b in report.bound] == [('training', False)]
  assert list(report.folding.into_ops.values()) == ['MatMul']
  x = rng.normal(0, 1, (3, 4)).astype(np.float32)
  loaded = tf.saved_model.load(str(tmp_path / 'out' / 'saved_model'))
  result = loaded.signatures['serving_default'](x=tf.constant(x))['y'].numpy()
  expected = (x.astype(np.float64) @ kernel - mean) / np.sqrt(variance.astype(np.float64) + 1e-3)
  assert _relative(result, expected) < RTOL


def test_tensorflow2_functional_cond_is_lowered_and_pruned(tmp_path):
  """tf.cond in a TensorFlow 2 graph builds a StatelessIf whose branches are
  functions (a fused BN in training mode in one, inference mode in the other)."""
  rng = np.random.default_rng(13)
  values = {name: rng.uniform(0.5, 1.5, 3).astype(np.float32)
            for name in ('gamma', 'beta', 'mean', 'variance')}
  kernel = rng.normal(0, 1, (3, 3, 2, 3)).astype(np.float32)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, (None, 5, 5, 2), name='x')
    training = v1.placeholder(tf.bool, (), name='is_training')
    params = {k: v1.get_variable(k, initializer=v) for k, v in values.items()}
    h = tf.nn.conv2d(x, v1.get_variable('kernel', initializer=kernel), 1, 'SAME')
    y = tf.cond(training,
                lambda: v1.nn.fused_batch_norm(h, params['gamma'], params['beta'])[0],
                lambda: v1.nn.fused_batch_norm(h, params['gamma'], params['beta'],
                                               params['mean'], params['variance'],
                                               is_training=False)[0])
    tf.identity(y, name='y')
    assert {op.type for op in v1.get_default_graph().get_operations()} & {'If', 'StatelessIf'}
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      v1.train.Saver().save(sess, str(tmp_path / 'm.ckpt'))
      x_value = rng.normal(0, 1, (2, 5, 5, 2)).astype(np.float32)
      conv = sess.run(h, {x: x_value})
  report = tf1_bn.export_graph(str(tmp_path / 'm.ckpt.meta'), str(tmp_path / 'out'),
                               inputs=['x'], outputs=['y'])
  assert report.ok and report.conds_lowered == 1 and report.folding.folded == 1
  ops = _saved_graph_ops(str(tmp_path / 'out'))
  assert not set(ops) & (set(TRAINING_OPS) | {'If', 'StatelessIf'})
  loaded = tf.saved_model.load(str(tmp_path / 'out' / 'saved_model'))
  result = loaded.signatures['serving_default'](x=tf.constant(x_value))['y'].numpy()
  # tf.compat.v1.nn.fused_batch_norm's epsilon is 1e-3
  expected = _numpy_bn(conv, [values[k] for k in ('gamma', 'beta', 'mean', 'variance')])
  assert _relative(result, expected) < RTOL


# --- errors and exit status -----------------------------------------------------
def _two_switch_graph(path):
  """Two tf.conds with Switch / Merge, as TF1 built them."""
  v1.disable_control_flow_v2()
  try:
    _two_conds(path)
  finally:
    v1.enable_control_flow_v2()


def _two_conds(path):
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, (None, 2), name='x')
    a = v1.placeholder(tf.bool, (), name='is_training')
    b = v1.placeholder_with_default(False, (), name='use_ema')
    training_ops = []

    def training_branch():
      training_ops.append(x * 2.0)
      return training_ops[-1]

    y = tf.cond(a, training_branch, lambda: x)
    y = tf.cond(b, lambda: y + 1.0, lambda: y)
    # colocated with an op of a pruned branch (tf-keras graphs have such nodes):
    # the subgraph the output needs must not keep it
    with v1.colocate_with(training_ops[0]):
      y = tf.identity(y, name='y')
  path.write_bytes(graph.as_graph_def().SerializeToString())


def _cli(argv, capsys):
  status = cli.main(['export'] + [str(a) for a in argv])
  return status, capsys.readouterr().err


def test_several_switch_candidates_exit_2_listing_them(tmp_path, capsys):
  _two_switch_graph(tmp_path / 'g.pb')
  status, err = _cli([tmp_path / 'g.pb', tmp_path / 'out', '--inputs', 'x', '--outputs', 'y'],
                     capsys)
  assert status == 2 and 'is_training' in err and 'use_ema' in err
  assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err
  assert not (tmp_path / 'out').exists() and os.listdir(tmp_path) == ['g.pb']
  status, err = _cli([tmp_path / 'g.pb', tmp_path / 'out', '--inputs', 'x', '--outputs', 'y',
                      '--training', 'use_ema'], capsys)
  assert status == 2 and 'is_training' in err and 'not bound' in err
  status, _ = _cli([tmp_path / 'g.pb', tmp_path / 'out', '--inputs', 'x', '--outputs', 'y',
                    '--training', 'is_training', '--training', 'use_ema=false'], capsys)
  assert status == 0


def test_unknown_name_lists_close_names(tmp_path, capsys):
  source = os.path.join(FIXTURES, 'frozen.pb')
  status, err = _cli([source, tmp_path / 'out', '--inputs', 'x', '--outputs', 'logit'], capsys)
  assert status == 2 and "'logit' is not in the graph" in err and 'logits' in err
  assert not (tmp_path / 'out').exists()


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path, capsys):
  meta = os.path.join(FIXTURES, 'layers', 'model.ckpt.meta')
  with pytest.raises(tf1_bn.CheckpointError):
    tf1_bn.export_graph(meta, str(tmp_path / 'out'), inputs=['x'], outputs=['logits'],
                        checkpoint=str(tmp_path / 'nothing'))
  status, err = _cli([meta, tmp_path / 'out', '--inputs', 'x', '--outputs', 'logits',
                      '--checkpoint', os.path.join(FIXTURES, 'slim', 'model.ckpt')], capsys)
  # slim's checkpoint has none of tf.layers' variables: the first ones are named
  assert status == 2 and 'has no value for the variable(s) bn1/beta, bn1/gamma' in err
  assert os.listdir(tmp_path) == []


def test_beyond_tolerance_exit_1_written_and_existing_out_refused(tmp_path, capsys):
  source = os.path.join(FIXTURES, 'frozen.pb')
  args = [source, tmp_path / 'out', '--inputs', 'x', '--outputs', 'logits']
  status, _ = _cli(args + ['--rtol', '1e-12'], capsys)
  assert status == 1
  assert sorted(os.listdir(tmp_path / 'out')) == ['report.md', 'saved_model']
  assert '**no**' in (tmp_path / 'out' / 'report.md').read_text()
  status, err = _cli(args, capsys)
  assert status == 2 and 'not empty' in err and '--force' in err
  status, _ = _cli(args + ['--force'], capsys)
  assert status == 0 and sorted(os.listdir(tmp_path)) == ['out']


def test_onnx_converts_and_verifies_or_is_refused_up_front(tmp_path, capsys):
  """With tf2onnx and onnxruntime (the `onnx` extra) the ONNX model matches the
  TF 2.12 recording; without them --onnx is a bad argument, nothing written."""
  args = [os.path.join(FIXTURES, 'frozen.pb'), tmp_path / 'out', '--inputs', 'x', '--outputs',
          'logits', '--onnx', '--data', os.path.join(FIXTURES, 'inputs.npz')]
  status, err = _cli(args, capsys)
  if importlib.util.find_spec('tf2onnx') is None or importlib.util.find_spec(
      'onnxruntime') is None:
    assert status == 2 and 'tf1_bn[onnx]' in err and not (tmp_path / 'out').exists()
    return
  import onnxruntime
  assert status == 0, err
  session = onnxruntime.InferenceSession(str(tmp_path / 'out' / 'model.onnx'),
                                         providers=['CPUExecutionProvider'])
  result = session.run(['logits'], {'x': _fixture_arrays('inputs.npz')['x']})[0]
  assert _relative(result, _fixture_arrays('expected.npz')['frozen']) < RTOL


def test_a_recurrent_model_with_bn_in_its_loop_exports(tmp_path):
  """A saved model whose BN lives in dynamic_rnn's loop body (a BNLSTMCell,
  per-step statistics updated in place there): its updates do not reach the
  SavedModel, which gives the original graph's inference outputs."""
  rng = np.random.default_rng(17)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, (None, 5, 3), name='x')
    outputs, _ = v1.nn.dynamic_rnn(tf1_bn.BNLSTMCell(4, 5), x, dtype=tf.float32)
    tf.identity(outputs[:, -1], name='y')
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.1), tf.reduce_sum(outputs))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(3):
        sess.run(train, {x: rng.normal(1, 1, (6, 5, 3)), tf1_bn.training_placeholder(): True})
      x_value = rng.normal(0, 1, (6, 5, 3)).astype(np.float32)
      expected = sess.run('y:0', {x: x_value})
      v1.train.Saver().save(sess, str(tmp_path / 'm.ckpt'))
  report = tf1_bn.export_graph(str(tmp_path / 'm.ckpt.meta'), str(tmp_path / 'out'),
                               inputs=['x'], outputs=['y'])
  # The switch is found through the loop's inputs (it is read inside the body).
  assert report.ok and [(b.name, b.value) for b in report.bound] == [('training', False)]
  ops = _saved_graph_ops(str(tmp_path / 'out'))
  assert not set(ops) & set(pipeline.ASSIGN_OPS)
  loaded = tf.saved_model.load(str(tmp_path / 'out' / 'saved_model'))
  result = loaded.signatures['serving_default'](x=tf.constant(x_value))['y'].numpy()
  assert _relative(result, expected) < RTOL
