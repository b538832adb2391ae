"""Inference against float64 numpy where cancellation bites, in the session
and in exports: channel means 0 to 6e4 against spreads 1e-3 to 3, and a
constant channel (input equal to its moving mean 60000, variance 1e-18: the
answer is beta exactly).

`x * s + (beta - mean * s)` loses that channel (-0.84 instead of 0 with
epsilon 1e-5: x * s and mean * s are about 2e7); every path must compute
`(x - mean) * s + beta`: the session's XLA-compiled kernel, the native
FusedBatchNormV3, `fused=False`, and exports (unfolded, where grappler's
remapper would rewrite a frozen FusedBatchNormV3 into the cancelling form,
and folded). Each SavedModel is loaded in eager TensorFlow 2 and run.
"""
import numpy as np
import pytest
import tensorflow as tf

import reference
import tf1_bn
from tf1_bn.bn import kernels

v1 = tf.compat.v1
EPSILON = 1e-5
MEANS = np.array([0.0, 1.5, 300.0, 6e3, 6e4, 6e4])
STDDEVS = np.array([3.0, 1.0, 0.1, 0.01, 1e-3, 0.0])  # the last channel is constant
CONSTANT_VARIANCE = 1e-18
# (rank, axis): dense, sequences and images and volumes, channels last and first.
LAYOUTS = [(2, -1), (3, -1), (3, 1), (4, -1), (4, 1), (5, -1), (5, 1)]
# Per-channel tolerance, relative to the channel's largest |expected| (at least 1).
TOLERANCE = {np.float32: 1e-6, np.float16: 1e-3}
BN_OPS = {'FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3'}


def _layout_shape(rank, axis, rng):
  channels = len(MEANS)
  shape = [5] + list(rng.randint(2, 4, size=rank - 2))
  shape.insert(axis % rank, channels)
  return shape[:rank]


def _data(shape, axis, dtype, rng):
  """Inputs spread around each channel's mean; the constant channel is the mean."""
  spread = reference.broadcast(STDDEVS, shape, axis)
  centre = reference.broadcast(MEANS, shape, axis)
  return (centre + spread * rng.randn(*shape)).astype(dtype)


def _parameters(rng):
  variance = np.where(STDDEVS > 0, STDDEVS ** 2, CONSTANT_VARIANCE).astype(np.float32)
  return {'moving_mean': MEANS.astype(np.float32), 'moving_variance': variance,
          'gamma': rng.uniform(0.5, 1.5, len(MEANS)).astype(np.float32),
          'beta': rng.uniform(-1, 1, len(MEANS)).astype(np.float32)}


def _layers(dtype, rng, fused=None):
  """One bn_layer per layout in the default graph, in inference mode; returns
  (data and axis by name, placeholders by name, outputs by name)."""
  data, inputs, outputs = {}, {}, {}
  for i, (rank, axis) in enumerate(LAYOUTS):
    name = f'rank{rank}_axis{axis % rank}'
    shape = _layout_shape(rank, axis, rng)
    data[name] = (_data(shape, axis, dtype, rng), axis)
    inputs[name] = v1.placeholder(tf.as_dtype(dtype), [None] + shape[1:], name=name)
    outputs[name] = tf1_bn.bn_layer(inputs[name], axis=axis, eps=EPSILON, name=f'bn{i}',
                                    fused=fused)
  return data, inputs, outputs


def _load(sess, params):
  sess.run(v1.global_variables_initializer())
  for variable in v1.global_variables():
    variable.load(params[variable.op.name.split('/')[-1]], sess)


def _export(dtype, fold, export_dir, rng):
  """The layers exported with the moving statistics set; returns (inputs by
  signature name, the stored parameters, the report)."""
  params = _parameters(rng)
  with tf.Graph().as_default():
    data, inputs, outputs = _layers(dtype, rng)
    with v1.Session() as sess:
      _load(sess, params)
      report = tf1_bn.export_inference(sess, inputs, outputs, export_dir, fold=fold)
  return data, params, report


def _check_outputs(outputs, data, params, dtype):
  """Every output against numpy, per channel, relative to the channel's
  largest |expected| (at least 1)."""
  for name, (x, axis) in data.items():
    expected = reference.normalize(x, params['moving_mean'], params['moving_variance'],
                                   params['gamma'], params['beta'], EPSILON, axis)
    assert outputs[name].dtype == dtype
    actual = outputs[name].astype(np.float64)
    moved = np.moveaxis(actual - expected, axis, 0).reshape(len(MEANS), -1)
    scale = np.maximum(np.abs(np.moveaxis(expected, axis, 0).reshape(len(MEANS), -1)).max(1), 1)
    worst = (np.abs(moved).max(1) / scale).max()
    assert worst <= TOLERANCE[dtype], f'{name}: per-channel error {worst:.2e}'


def _check_against_numpy(dtype, fold, tmp_path):
  rng = np.random.RandomState(0)
  data, params, report = _export(dtype, fold, str(tmp_path / 'model'), rng)
  serve = tf.saved_model.load(str(tmp_path / 'model')).signatures['serving_default']
  outputs = serve(**{name: tf.constant(x) for name, (x, _) in data.items()})
  graph_def = serve.graph.as_graph_def()
  ops = {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function
                                          for n in f.node_def}
  _check_outputs({name: t.numpy() for name, t in outputs.items()}, data, params, dtype)
  return report, ops


@pytest.mark.parametrize('dtype', [np.float32, np.float16])
@pytest.mark.parametrize('path', ['xla', 'native', 'unfused'])
def test_session_inference_is_exact_with_large_means(monkeypatch, path, dtype):
  if path == 'native':
    monkeypatch.setattr(kernels, 'xla_inference_enabled', lambda: False)
  elif path == 'xla' and not kernels.xla_inference_enabled():
    pytest.skip('XLA is not usable here')
  rng = np.random.RandomState(0)
  params = _parameters(rng)
  with tf.Graph().as_default():
    data, inputs, outputs = _layers(dtype, rng, fused=False if path == 'unfused' else None)
    with v1.Session() as sess:
      _load(sess, params)
      got = sess.run(outputs, {inputs[name]: x for name, (x, _) in data.items()})
  _check_outputs(got, data, params, dtype)


@pytest.mark.parametrize('fold', [False, True], ids=['unfolded', 'folded'])
def test_float32_export_is_exact_with_large_means(tmp_path, fold):
  report, ops = _check_against_numpy(np.float32, fold, tmp_path)
  # Nothing precedes the layers: explicit (x - mean) * s + beta either way.
  assert report.folded == 0 and len(report.multiply_add) == len(LAYOUTS)
  assert not ops & BN_OPS and {'Sub', 'Mul', 'AddV2'} <= ops


def test_float16_export_is_exact_with_large_means(tmp_path):
  report, ops = _check_against_numpy(np.float16, False, tmp_path)
  # 16-bit layers keep the session's inference kernel (computed in float32;
  # grappler leaves it alone): on a CPU the inlined (x - mean) * s + beta,
  # else FusedBatchNormV3.
  assert len(report.kept) == len(LAYOUTS) and report.multiply_add == []
  assert ('Sub' if kernels.xla_inference_enabled() else 'FusedBatchNormV3') in ops


def test_float16_layer_after_a_conv_folds(tmp_path):
  rng = np.random.RandomState(1)
  kernel = rng.randn(3, 3, 2, 4).astype(np.float16)
  images = rng.randn(3, 5, 5, 2).astype(np.float16)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float16, [None, 5, 5, 2], name='images')
    y = tf1_bn.bn_layer(tf.nn.conv2d(x, tf.constant(kernel), 1, 'SAME'), eps=EPSILON)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      mean, variance = rng.randn(4) * 3, rng.uniform(0.5, 2, 4)
      v1.global_variables('bn/moving_mean')[0].load(mean, sess)
      v1.global_variables('bn/moving_variance')[0].load(variance, sess)
      report = tf1_bn.export_inference(sess, {'x': x}, {'y': y}, str(tmp_path / 'model'))
  serve = tf.saved_model.load(str(tmp_path / 'model')).signatures['serving_default']
  actual = serve(x=tf.constant(images))['y'].numpy()
  conv = tf.nn.conv2d(images.astype(np.float64), kernel.astype(np.float64), 1, 'SAME').numpy()
  expected = (conv - mean) / np.sqrt(variance + EPSILON)
  assert list(report.into_ops.values()) == ['Conv2D']
  assert reference.max_relative_error(actual, expected) <= 5e-3


@pytest.mark.parametrize('relu', [False, True], ids=['conv-bn', 'conv-bn-relu'])
def test_session_inference_after_a_conv_is_exact_with_large_means(relu):
  # After a Conv2D the session runs the native kernel, which grappler fuses
  # into the convolution (tests/test_kernels.py): the fused convolution must
  # subtract the mean first too. An identity 1x1 convolution passes the
  # large-mean channels through unchanged.
  rng = np.random.RandomState(3)
  params = _parameters(rng)
  shape = [4, 3, 3, len(MEANS)]
  data = _data(shape, -1, np.float32, rng)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, shape)
    identity = tf.constant(np.eye(len(MEANS), dtype=np.float32)[None, None])
    y = tf1_bn.bn_layer(tf.nn.conv2d(x, identity, 1, 'SAME'), eps=EPSILON, training=False)
    if relu:
      y = tf.nn.relu(y)
    with v1.Session() as sess:
      _load(sess, params)
      got = sess.run(y, {x: data})
  expected = reference.normalize(data, params['moving_mean'], params['moving_variance'],
                                 params['gamma'], params['beta'], EPSILON, -1)
  if relu:
    expected = np.maximum(expected, 0)
  moved = np.moveaxis(got - expected, -1, 0).reshape(len(MEANS), -1)
  scale = np.maximum(np.abs(np.moveaxis(expected, -1, 0).reshape(len(MEANS), -1)).max(1), 1)
  assert (np.abs(moved).max(1) / scale).max() <= TOLERANCE[np.float32]
