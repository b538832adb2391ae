"""Exported inference against float64 numpy where cancellation bites: channel
means 0 to 6e4 against spreads 1e-3 to 3, and a constant channel (input equal
to its moving mean 60000, variance 1e-18: the answer is beta exactly).

`x * s + (beta - mean * s)` loses that channel (-0.84 instead of 0 with
epsilon 1e-5: x * s and mean * s are about 2e7); the export must compute
`(x - mean) * s + beta`. Each SavedModel is loaded in eager TensorFlow 2 and
run; the session is not the reference (its own kernel is another matter).
"""
import numpy as np
import pytest
import tensorflow as tf

import reference
import tf1_bn
from tf1_bn import kernels

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


def _export(dtype, fold, export_dir, rng):
  """One bn_layer per layout, in inference mode with the moving statistics set;
  returns (inputs by signature name, the stored parameters)."""
  variance = np.where(STDDEVS > 0, STDDEVS ** 2, CONSTANT_VARIANCE).astype(np.float32)
  params = {'moving_mean': MEANS.astype(np.float32), 'moving_variance': variance,
            'gamma': rng.uniform(0.5, 1.5, len(MEANS)).astype(np.float32),
            'beta': rng.uniform(-1, 1, len(MEANS)).astype(np.float32)}
  data, inputs, outputs = {}, {}, {}
  with tf.Graph().as_default():
    for i, (rank, axis) in enumerate(LAYOUTS):
      name = f'rank{rank}_axis{axis % rank}'
      shape = _layout_shape(rank, axis, rng)
      data[name] = (_data(shape, axis, dtype, rng), axis)
      inputs[name] = v1.placeholder(tf.as_dtype(dtype), [None] + shape[1:], name=name)
      outputs[name] = tf1_bn.bn_layer(inputs[name], axis=axis, eps=EPSILON, name=f'bn{i}')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for variable in v1.global_variables():
        variable.load(params[variable.op.name.split('/')[-1]], sess)
      report = tf1_bn.export_inference(sess, inputs, outputs, export_dir, fold=fold)
  return data, params, report


def _check_against_numpy(dtype, fold, tmp_path):
  rng = np.random.RandomState(0)
  data, params, report = _export(dtype, fold, str(tmp_path / 'model'), rng)
  serve = tf.saved_model.load(str(tmp_path / 'model')).signatures['serving_default']
  outputs = serve(**{name: tf.constant(x) for name, (x, _) in data.items()})
  graph_def = serve.graph.as_graph_def()
  ops = {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function
                                          for n in f.node_def}
  for name, (x, axis) in data.items():
    expected = reference.normalize(x, params['moving_mean'], params['moving_variance'],
                                   params['gamma'], params['beta'], EPSILON, axis)
    actual = outputs[name].numpy().astype(np.float64)
    assert outputs[name].dtype == tf.as_dtype(dtype)
    moved = np.moveaxis(actual - expected, axis, 0).reshape(len(MEANS), -1)
    scale = np.maximum(np.abs(np.moveaxis(expected, axis, 0).reshape(len(MEANS), -1)).max(1), 1)
    worst = (np.abs(moved).max(1) / scale).max()
    assert worst <= TOLERANCE[dtype], f'{name}: per-channel error {worst:.2e}'
  return report, ops


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
