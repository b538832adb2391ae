"""The fast kernels: XLA-compiled inference against the native FusedBatchNormV3 and numpy.

Every fused-applicable layer's inference on CPU runs FusedBatchNormV3
compiled by XLA, except on a Conv2D's output, where the native kernel lets
grappler fuse it into the convolution (and in training, the fused kernel
with the ReLU after it); these tests pin that it does, that it computes what the
native kernel computes (for
ranks 2 to 5, channels last and first, float32 / float16 / bfloat16), that a
frozen layer's gradients are the closed-form ones, and that TF1_BN_XLA=0 or a
failing probe brings FusedBatchNormV3 back.
"""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tf1_bn.common import log
from tf1_bn.bn import kernels
from reference import broadcast, max_relative_error, normalize, reduction_axes

v1 = tf.compat.v1

# (shape, axis): dense, sequence, NHWC, NCHW, NDHWC, NCDHW, a middle axis.
SINGLE_AXIS_LAYOUTS = [
    ([8, 5], -1),
    ([6, 4, 3], -1),
    ([4, 5, 6, 3], -1),
    ([4, 3, 5, 6], 1),
    ([2, 3, 4, 5, 2], -1),
    ([2, 3, 4, 5, 2], 1),
    ([3, 4, 5, 2], 2),
]
EPSILON = 1e-3


@pytest.fixture
def fused_kernel(monkeypatch):
  """Inference on FusedBatchNormV3, as without XLA."""
  monkeypatch.setattr(kernels, 'xla_inference_enabled', lambda: False)


@pytest.fixture
def fresh_probe(monkeypatch):
  """A probe that runs again, and runs again after the test."""
  kernels.xla_inference_enabled.cache_clear()
  monkeypatch.setattr(log, '_warned', set())
  yield
  kernels.xla_inference_enabled.cache_clear()


def _nodes(graph):
  """Every node, also those in function bodies (a cond's branches)."""
  graph_def = graph.as_graph_def()
  return list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]


def _xla_calls(graph):
  return [n for n in _nodes(graph) if n.op in ('PartitionedCall', 'StatefulPartitionedCall')
          and n.attr['_XlaMustCompile'].b]


def _op_types(graph):
  return {n.op for n in _nodes(graph)}


def _frozen_layer(rng, shape, axis, dtype):
  """A frozen layer's outputs and gradients for two batch sizes, with the
  parameters used (float32)."""
  channels = shape[axis]
  params = {'gamma': rng.uniform(0.5, 2.0, channels), 'beta': rng.uniform(-1, 1, channels),
            'moving_mean': rng.randn(channels) * 2, 'moving_variance': rng.uniform(0.2, 4, channels)}
  params = {k: v.astype(np.float32) for k, v in params.items()}
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(dtype, [None] + shape[1:])
    y = tf1_bn.bn_layer(x, training=False, axis=axis, eps=EPSILON)
    upstream = v1.placeholder(tf.float32, [None] + shape[1:])
    variables = {v.op.name.split('/')[-1]: v for v in v1.global_variables()}
    loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    grads = tf.gradients(loss, [x, variables['gamma'], variables['beta']])
    results = []
    with v1.Session() as sess:
      for name, value in params.items():
        variables[name].load(value, sess)
      for batch in (shape[0], 1):  # a new batch size compiles again
        data = (rng.randn(batch, *shape[1:]) * 3 + 1.5).astype(dtype.as_numpy_dtype)
        dy = rng.randn(batch, *shape[1:]).astype(np.float32)
        out, (dx, dgamma, dbeta) = sess.run([y, grads], {x: data, upstream: dy})
        results.append((data, dy, out, dx, dgamma, dbeta))
  return graph, params, results


def _closed_form(data, dy, params, axis):
  """Inference output and the gradients of sum(cast(y, float32) * dy), in
  float64. The cast's gradient rounds dy to the input's dtype."""
  x = data.astype(np.float64)
  dy = dy.astype(data.dtype).astype(np.float64)
  mean, var = params['moving_mean'], params['moving_variance']
  gamma, beta = params['gamma'], params['beta']
  y = normalize(x, mean, var, gamma, beta, EPSILON, axis)
  inv = 1 / np.sqrt(var.astype(np.float64) + EPSILON)
  red = reduction_axes(x.ndim, axis)
  dx = dy * broadcast(gamma * inv, x.shape, axis)
  dgamma = (dy * (x - broadcast(mean, x.shape, axis))).sum(red) * inv
  return y, dx, dgamma, dy.sum(red)


def _check_against_closed_form(rng, shape, axis, dtype, tol):
  graph, params, results = _frozen_layer(rng, shape, axis, dtype)
  for data, dy, out, dx, dgamma, dbeta in results:
    y_ref, dx_ref, dgamma_ref, dbeta_ref = _closed_form(data, dy, params, axis)
    assert out.dtype == dtype.as_numpy_dtype and out.shape == data.shape
    assert max_relative_error(out, y_ref) < tol
    assert max_relative_error(dx, dx_ref) < tol
    assert max_relative_error(dgamma, dgamma_ref) < 1e-5
    assert max_relative_error(dbeta, dbeta_ref) < 1e-5
  return graph


def _check_parity_with_fused_kernel(rng, shape, axis, dtype, monkeypatch, tol):
  seed = rng.randint(1 << 30)
  _, _, xla = _frozen_layer(np.random.RandomState(seed), shape, axis, dtype)
  monkeypatch.setattr(kernels, 'xla_inference_enabled', lambda: False)
  graph, _, fused = _frozen_layer(np.random.RandomState(seed), shape, axis, dtype)
  assert not _xla_calls(graph)
  for a, b in zip(xla, fused):
    for got, expected in zip(a[2:], b[2:]):
      assert max_relative_error(got, expected) <= tol


@pytest.mark.parametrize('shape,axis', SINGLE_AXIS_LAYOUTS)
def test_xla_inference_float32_matches_closed_form(rng, shape, axis):
  graph = _check_against_closed_form(rng, shape, axis, tf.float32, 2e-6)
  assert len(_xla_calls(graph)) == 1
  # The inference kernel exists only inside the compiled function.
  assert 'FusedBatchNormV3' not in {op.type for op in graph.get_operations()}


@pytest.mark.parametrize('shape,axis', SINGLE_AXIS_LAYOUTS)
def test_fused_kernel_inference_float32_matches_closed_form(rng, shape, axis, fused_kernel):
  graph = _check_against_closed_form(rng, shape, axis, tf.float32, 2e-6)
  assert not _xla_calls(graph)


@pytest.mark.parametrize('dtype,tol', [(tf.float16, 1e-3), (tf.bfloat16, 8e-3)])
@pytest.mark.parametrize('shape,axis', [([4, 5, 6, 3], -1), ([4, 3, 5, 6], 1)])
def test_xla_inference_half_precision_matches_closed_form(rng, shape, axis, dtype, tol):
  _check_against_closed_form(rng, shape, axis, dtype, tol)


@pytest.mark.parametrize('shape,axis', SINGLE_AXIS_LAYOUTS)
def test_xla_and_fused_kernel_agree_float32(rng, shape, axis, monkeypatch):
  _check_parity_with_fused_kernel(rng, shape, axis, tf.float32, monkeypatch, 1e-6)


@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16])
def test_xla_and_fused_kernel_agree_half_precision(rng, dtype, monkeypatch):
  # Both compute in float32 and round once: at most one unit in the last place.
  ulp = {tf.float16: 2 ** -10, tf.bfloat16: 2 ** -7}[dtype]
  _check_parity_with_fused_kernel(rng, [4, 5, 6, 3], -1, dtype, monkeypatch, ulp)


def test_every_front_end_and_switch_uses_the_compiled_kernel(graph):
  x = v1.placeholder(tf.float32, [None, 4, 4, 3])
  tf1_bn.bn_layer(x, training=False, name='a')
  tf1_bn.batch_normalization(x, training=v1.placeholder(tf.bool, []), name='b')
  tf1_bn.batch_norm(x, is_training=v1.placeholder(tf.bool, []), scope='c')
  # One in each cond and one beside it (the export path) for the two
  # tensor switches; one for the Python False.
  assert len(_xla_calls(graph)) == 5
  # Inference kernels only inside the compiled function, training ones outside.
  compiled = {f.signature.name for f in graph.as_graph_def().library.function
              if f.attr['_XlaMustCompile'].b}
  for function in graph.as_graph_def().library.function:
    for node in function.node_def:
      if node.op == 'FusedBatchNormV3':
        assert node.attr['is_training'].b == (function.signature.name not in compiled)


def test_multi_axis_and_float64_keep_the_general_path(graph):
  tf1_bn.bn_layer(v1.placeholder(tf.float32, [None, 4, 4, 3]), axis=[1, 3], training=False,
                  name='two_axes')
  tf1_bn.bn_layer(v1.placeholder(tf.float64, [None, 3]), training=False, name='float64')
  tf1_bn.bn_layer(v1.placeholder(tf.float32, [None, 3]), training=False, fused=False,
                  name='unfused')
  assert not _xla_calls(graph)


def test_environment_variable_turns_xla_off(monkeypatch, fresh_probe):
  monkeypatch.setenv(kernels.XLA_ENV, '0')
  assert kernels.xla_inference_enabled() is False
  with tf.Graph().as_default() as g:
    tf1_bn.bn_layer(v1.placeholder(tf.float32, [None, 3]), training=False)
  assert not _xla_calls(g)
  assert 'FusedBatchNormV3' in _op_types(g)


def test_failing_probe_falls_back_with_a_warning(monkeypatch, fresh_probe, caplog):
  def unusable(*args, **kwargs):
    raise RuntimeError('no XLA in this build')

  monkeypatch.setattr(kernels, '_xla_shift_and_scale', unusable)
  with pytest.warns(UserWarning, match='XLA is not usable here .*no XLA in this build'):
    assert kernels.xla_inference_enabled() is False
  with tf.Graph().as_default() as g:
    tf1_bn.bn_layer(v1.placeholder(tf.float32, [None, 3]), training=False)
  assert 'FusedBatchNormV3' in _op_types(g)


def test_probe_passes_on_this_machine(fresh_probe):
  assert kernels.xla_inference_enabled() is (not kernels.gpu_present())


def _executed_kernels(fetch, feed, graph):
  """The kernels a session runs for `fetch` after grappler: BN and conv op types."""
  with v1.Session(graph=graph) as sess:
    sess.run(v1.global_variables_initializer())
    sess.run(fetch, feed)
    metadata = v1.RunMetadata()
    sess.run(fetch, feed, options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE,
                                                output_partition_graphs=True),
             run_metadata=metadata)
  return sorted({node.op for g in metadata.partition_graphs for node in g.node
                 if 'BatchNorm' in node.op or 'Conv2D' in node.op})


def _conv_bn_relu(rng, normalize, training):
  """conv2d -> BN -> ReLU (and its gradient in training) through `normalize`;
  returns the kernels run."""
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [4, 6, 6, 3])
    kernel = v1.get_variable('kernel', [3, 3, 3, 8])
    y = tf.nn.relu(normalize(tf.nn.conv2d(x, kernel, 1, 'SAME'), training))
    fetch = [y]
    if training:
      loss = tf.reduce_sum(y)
      with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        fetch.append(tf.gradients(loss, [x, kernel]))
    return _executed_kernels(fetch, {x: rng.randn(4, 6, 6, 3)}, graph)


def _plain_fused_kernel(h, training):
  """What the legacy fused layer builds: FusedBatchNormV3 on variables."""
  gamma, beta = v1.get_variable('gamma', [8]), v1.get_variable('beta', [8])
  mean = v1.get_variable('mean', [8], trainable=False)
  variance = v1.get_variable('variance', [8], trainable=False,
                             initializer=v1.ones_initializer())
  if training:
    y, batch_mean, _ = v1.nn.fused_batch_norm(h, gamma, beta, epsilon=1e-3)[:3]
    v1.add_to_collection(v1.GraphKeys.UPDATE_OPS, mean.assign_sub(0.1 * (mean - batch_mean)))
    return y
  return v1.nn.fused_batch_norm(h, gamma, beta, mean, variance, epsilon=1e-3,
                                is_training=False)[0]


@pytest.mark.parametrize('training', [True, False], ids=['train', 'inference'])
@pytest.mark.parametrize('front_end', ['batch_normalization', 'bn_layer'])
def test_grappler_fuses_conv_bn_relu_as_for_the_plain_kernel(rng, front_end, training):
  # Inference: the BN disappears into the convolution; training: BN and ReLU
  # become one kernel. The same kernels run as for FusedBatchNormV3 on
  # variables (what the legacy layers build), none more.
  build = {'batch_normalization': lambda h, t: tf1_bn.batch_normalization(h, training=t,
                                                                          fused=True),
           'bn_layer': lambda h, t: tf1_bn.bn_layer(h, training=t)}[front_end]
  ours = _conv_bn_relu(rng, build, training)
  assert ours == _conv_bn_relu(rng, _plain_fused_kernel, training)
  if training:
    assert any(op.endswith('FusedBatchNormEx') for op in ours), ours
  else:
    assert not any('BatchNorm' in op for op in ours), ours
