"""tf1_bn's tf.compat.v1.layers: errors, nothing half-built, the patch, numbers against numpy.

Parity with the legacy layers is tests/test_tf_layers_parity.py; here the
behaviours the legacy does not define or that need no child process.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tf1_bn import layers

v1 = tf.compat.v1


def _graph_size(graph):
  return (len(graph.get_operations()), len(graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)))


def _raises_nothing_built(graph, error, match, fn):
  before = _graph_size(graph)
  with pytest.raises(error, match=match):
    fn()
  assert _graph_size(graph) == before


def _placeholder(shape):
  return v1.placeholder(tf.float32, shape)


# -- errors: legacy wording, cause and fix, nothing built -------------------

@pytest.mark.parametrize('shape,call,error,match', [
    ([None, 5], lambda x: layers.conv2d(x, 4, 3), ValueError,
     r'Input 0 of layer conv2d_1 is incompatible with the layer: expected ndim=4, found '
     r'ndim=2\..*Fix:'),
    ([None, 5, 5, None], lambda x: layers.conv2d(x, 4, 3), ValueError,
     r'The channel dimension of the inputs should be defined\. Found `None`\..*Fix:'),
    ([None, 3, 5, 5], lambda x: layers.conv2d(x, 4, 3, data_format='channels_first'),
     ValueError, None),
    ([None, 5, 5, 3], lambda x: layers.conv2d(x, 4, [3, 3, 3]), ValueError,
     r'The `kernel_size` argument must be a tuple of 2 integers\. Received '
     r'kernel_size=\[3, 3, 3\]\..*Fix:'),
    ([None, 5, 5, 3], lambda x: layers.conv2d(x, 4, 3, padding='full'), ValueError,
     r'`padding`.*Received padding=\'full\''),
    ([None, 5, 5, 3], lambda x: layers.conv2d(x, 4, 3, padding='causal'), ValueError,
     r'`padding`'),
    ([None, 5, 5, 3], lambda x: layers.conv2d(x, 4, 3, strides=2, dilation_rate=2), ValueError,
     r'`strides > 1` not supported in conjunction with `dilation_rate > 1`'),
    ([None, 5, 5, 3], lambda x: layers.conv2d(x, 0, 3), ValueError, r'`filters`'),
    ([None, 5, 5, 3], lambda x: layers.conv2d(x, 4, 7), ValueError,
     r'One of the dimensions in the output is <= 0'),
    ([None, 5, 5, 3], lambda x: layers.conv2d(x, 4, 3, data_format='NHWC'), ValueError,
     r'`data_format`'),
    ([None, 5, 5, 3], lambda x: layers.conv2d(x, 4, 3, kernel_regularizer=0.1), TypeError,
     r'`kernel_regularizer` must be callable'),
    ([None, 5, 5, 3], lambda x: layers.separable_conv2d(x, 4, 3, depth_multiplier=0),
     ValueError, r'`depth_multiplier`'),
    ([None, 5, 5, 3], lambda x: layers.max_pooling2d(x, 2, [2, 2, 2]), ValueError,
     r'The `strides` argument must be a tuple of 2 integers'),
    ([None, 5, 5, 3], lambda x: layers.max_pooling2d(x, 6, 1), ValueError, r'output size <= 0'),
    ([None, None], lambda x: layers.dense(x, 4), ValueError,
     r'The last dimension of the inputs to a Dense layer should be defined\. Found None\.'),
    ([None, 5], lambda x: layers.dense(x, 4, activation='nope'), ValueError, r'`activation`'),
    ([None, 5], lambda x: layers.dropout(x, 1.0, training=True), ValueError, r'`rate`'),
    ([None, 5], lambda x: layers.dropout(x, 0.5, training='yes'), TypeError, r'`training`'),
    ([None, 5], lambda x: layers.Dense(4, bogus=1)(x), TypeError, r'bogus'),
    ([None, 5], lambda x: layers.conv1d(x, 4, 3), ValueError, r'expected ndim=3, found ndim=2'),
])
def test_bad_input_raises_before_building(graph, shape, call, error, match):
  x = _placeholder(shape)
  if match is None:  # channels_first with a None channel dimension
    x = _placeholder([None, None, 5, 5])
    match = r'channel dimension.*axis -3'
  _raises_nothing_built(graph, error, match, lambda: call(x))


def test_layer_reused_with_another_size_says_why(graph):
  layer = layers.Dense(3)
  layer(_placeholder([None, 5]))
  other = _placeholder([None, 4])
  _raises_nothing_built(graph, ValueError,
                        r'expected axis -1 of input shape to have value 5.*a layer reuses its '
                        r'variables', lambda: layer(other))


def test_eager_mode_is_refused():
  with pytest.raises(RuntimeError, match='needs a graph'):
    layers.dense(np.ones((2, 3), np.float32), 2)


# -- numbers against numpy ---------------------------------------------------

def _run(graph, fetches, feed):
  with v1.Session(graph=graph) as sess:
    sess.run(v1.global_variables_initializer())
    return sess.run(fetches, feed)


def test_dense_and_flatten_match_numpy(graph, rng):
  x = _placeholder([None, 2, 3])
  layer = layers.Dense(4, activation=tf.nn.relu)
  y = layer(layers.flatten(x))
  value = rng.randn(5, 2, 3).astype(np.float32)
  out, kernel, bias = _run(graph, [y, layer.kernel, layer.bias], {x: value})
  expected = np.maximum(value.reshape(5, 6).astype(np.float64) @ kernel + bias, 0)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  assert not bias.any()
  limit = np.sqrt(6.0 / (6 + 4))
  assert np.abs(kernel).max() <= limit


def test_conv2d_same_padding_matches_numpy(graph, rng):
  x = _placeholder([None, 5, 4, 2])
  y = layers.conv2d(x, 3, [3, 2], strides=2, padding='SAME',
                    bias_initializer=v1.constant_initializer(0.5))
  value = rng.randn(2, 5, 4, 2).astype(np.float32)
  out, kernel = _run(graph, [y, v1.global_variables()[0]], {x: value})
  # 'same' with stride 2: output ceil(5/2) x ceil(4/2); padding split with the
  # extra on the end (pad total = (out - 1) * stride + k - in).
  pad_h, pad_w = (3 - 1) * 2 + 3 - 5, (2 - 1) * 2 + 2 - 4
  padded = np.pad(value.astype(np.float64),
                  [(0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                   (0, 0)])
  expected = np.zeros((2, 3, 2, 3))
  for i in range(3):
    for j in range(2):
      window = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 2, :]
      expected[:, i, j, :] = np.einsum('nhwc,hwcf->nf', window, kernel) + 0.5
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_regularizers_go_to_the_collection_once(graph):
  x = _placeholder([None, 4])
  regularizer = lambda w: 0.5 * tf.reduce_sum(tf.square(w))  # noqa: E731
  layer = layers.Dense(3, kernel_regularizer=regularizer,
                       kernel_initializer=v1.constant_initializer(2.0))
  layer(x)
  layer(x)
  losses = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
  assert len(losses) == 1 and len(layer.losses) == 1
  assert _run(graph, losses[0], None) == pytest.approx(0.5 * 4 * 3 * 4.0)


# -- the namespace and the patch ----------------------------------------------

LEGACY_NAMES = sorted(layers.__all__)


def test_namespace_lists_the_legacy_names():
  expected = {'Layer', 'InputSpec', 'Dense', 'Dropout', 'Flatten', 'Conv1D', 'Conv2D', 'Conv3D',
              'Conv2DTranspose', 'Conv3DTranspose', 'SeparableConv1D', 'SeparableConv2D',
              'AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D', 'MaxPooling1D',
              'MaxPooling2D', 'MaxPooling3D', 'BatchNormalization', 'dense', 'dropout',
              'flatten', 'conv1d', 'conv2d', 'conv3d', 'conv2d_transpose', 'conv3d_transpose',
              'separable_conv1d', 'separable_conv2d', 'average_pooling1d', 'average_pooling2d',
              'average_pooling3d', 'max_pooling1d', 'max_pooling2d', 'max_pooling3d',
              'batch_normalization', 'experimental'}
  assert set(LEGACY_NAMES) == expected
  assert layers.batch_normalization is tf1_bn.batch_normalization
  from tf1_bn.layers import conv2d
  assert conv2d is layers.conv2d


def test_patch_is_idempotent_and_reversible():
  import tensorflow.compat.v1 as imported_v1
  before = (tf.compat.v1.layers, imported_v1.layers, tf.compat.v2.compat.v1.layers)
  loader = tf.compat.v1.layers
  first = tf1_bn.patch_layers()
  try:
    assert first.applied and not tf1_bn.patch_layers().applied
    for namespace in (tf.compat.v1.layers, imported_v1.layers, tf.compat.v2.compat.v1.layers):
      assert namespace is layers
    # A reference taken before the patch finds tf1_bn's names too.
    assert loader.conv2d is layers.conv2d and loader.Dense is layers.Dense
    from tensorflow._api.v2.compat.v1.layers import dense
    assert dense is layers.dense
  finally:
    tf1_bn.unpatch_layers()
  after = (tf.compat.v1.layers, imported_v1.layers, tf.compat.v2.compat.v1.layers)
  assert all(a is b for a, b in zip(after, before))
  assert 'conv2d' not in vars(loader)
  tf1_bn.unpatch_layers()  # a no-op


def test_patch_as_context_manager():
  with tf1_bn.patch_layers():
    assert tf.compat.v1.layers.max_pooling2d is layers.max_pooling2d
  assert tf.compat.v1.layers is not layers


CHILD = textwrap.dedent('''
    import importlib.abc, sys

    # As if tf-keras were not installed: `import tf_keras` raises ImportError,
    # and importlib.util.find_spec (which TensorFlow's import calls, catching
    # ValueError) finds nothing.
    class Blocked(ImportError, ValueError):
        pass

    class NoTfKeras(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == 'tf_keras' or name.startswith('tf_keras.'):
                raise Blocked('tf_keras is blocked in this process')

    sys.meta_path.insert(0, NoTfKeras())
    import tf1_bn
    tf1_bn.patch_layers()
    import numpy as np
    import tensorflow.compat.v1 as tf
    tf.disable_eager_execution()
    x = tf.placeholder(tf.float32, [None, 6, 6, 2])
    training = tf.placeholder_with_default(False, [])
    h = tf.layers.conv2d(x, 3, 3, activation=tf.nn.relu)
    h = tf.layers.batch_normalization(h, training=training)
    h = tf.layers.max_pooling2d(h, 2, 2)
    y = tf.layers.dense(tf.layers.flatten(h), 2)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        out = sess.run(y, {x: np.ones((3, 6, 6, 2), np.float32), training: True})
    # tf-keras never loaded (TensorFlow's own import loads Keras 3 itself;
    # that tf1_bn's layers import no Keras is test_layers_import_no_keras).
    assert not [m for m in sys.modules if m.split('.')[0] == 'tf_keras']
    print('ok', out.shape, sorted(v.name for v in tf.global_variables())[:2])
''')


def test_patched_model_runs_without_tf_keras():
  # TF_USE_LEGACY_KERAS=1 while tf-keras cannot be imported: the setting
  # must not matter. (Without the variable, the same holds in
  # tests/test_real_models.py's tf1_bn child.)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_USE_LEGACY_KERAS='1')
  result = subprocess.run([sys.executable, '-c', CHILD], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "ok (3, 2) ['batch_normalization/beta:0', 'batch_normalization/gamma:0']" in \
      result.stdout


def test_layers_import_no_keras():
  import ast
  import pathlib
  root = pathlib.Path(tf1_bn.__file__).parent / 'legacy'
  files = sorted(root.glob('tf_layers/*.py')) + [root / 'layers_patch.py']
  for path in files:
    for node in ast.walk(ast.parse(path.read_text())):
      names = []
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        names = [node.module or '']
      for name in names:
        assert 'keras' not in name, f'{path.name} imports {name}'


LEGACY_ACTIVE_CHILD = textwrap.dedent('''
    import tensorflow as tf
    loader = tf.compat.v1.layers
    legacy_conv2d = loader.conv2d  # tf-keras' legacy function
    import tf1_bn
    tf1_bn.patch_layers()
    assert tf.compat.v1.layers.conv2d is tf1_bn.layers.conv2d
    assert loader.conv2d is tf1_bn.layers.conv2d
    tf1_bn.unpatch_layers()
    assert tf.compat.v1.layers is loader and loader.conv2d is legacy_conv2d
    print('ok')
''')


def test_patch_and_unpatch_with_the_legacy_layers_active():
  try:
    import tf_keras  # noqa: F401
  except ImportError:
    pytest.skip('tf-keras is not installed')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TF_USE_LEGACY_KERAS='1')
  result = subprocess.run([sys.executable, '-c', LEGACY_ACTIVE_CHILD], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('ok')


def _class_and_function(mask_value, x_value, build_class, build_function):
  """Runs a training step then inference of the class form and of the function
  form on the same graph-level inputs; returns their fetched values."""
  results = []
  for build in (build_class, build_function):
    with tf.Graph().as_default():
      x = v1.placeholder(tf.float32, x_value.shape)
      mask = v1.placeholder(tf.bool, mask_value.shape)
      training = v1.placeholder(tf.bool, [])
      outputs = build(x, mask, training)
      updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
      statistics = sorted((var for var in v1.global_variables() if 'moving' in var.name),
                          key=lambda var: var.name)
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        feed = {x: x_value, mask: mask_value}
        trained, _ = sess.run([outputs, updates], {**feed, training: True})
        inferred = sess.run(outputs, {**feed, training: False})
        results.append((trained, inferred, sess.run(statistics)))
  return results


def test_batch_normalization_class_takes_mask_and_step(rng):
  # The class form with max_steps= / step= / mask= gives exactly what the
  # function form (tested against numpy in test_steps and test_masking) gives.
  steps_count, max_steps = 4, 3
  x_value = (rng.randn(steps_count, 5, 6, 3) * 2 + 1).astype(np.float32)
  mask_value = rng.rand(steps_count, 5, 6) > 0.3

  def with_class(x, mask, training):
    bn = layers.BatchNormalization(momentum=0.8, max_steps=max_steps, name='bn')
    return tf.stack([bn(x[t], training=training, mask=mask[t], step=t)
                     for t in range(steps_count)])

  def with_function(x, mask, training):
    return tf.stack([tf1_bn.batch_normalization(
        x[t], momentum=0.8, training=training, mask=mask[t], step=t, max_steps=max_steps,
        name='bn', reuse=t > 0) for t in range(steps_count)])

  ours, expected = _class_and_function(mask_value, x_value, with_class, with_function)
  (trained, inferred, statistics), (want_trained, want_inferred, want_statistics) = ours, expected
  np.testing.assert_array_equal(trained, want_trained)
  np.testing.assert_array_equal(inferred, want_inferred)
  assert [s.shape for s in statistics] == [(max_steps, 3)] * 2
  for got, want in zip(statistics, want_statistics):
    np.testing.assert_array_equal(got, want)
  assert not np.allclose(statistics[0], 0)  # the rows were updated


@pytest.mark.parametrize('make, call, match', [
    (lambda: layers.BatchNormalization(), dict(step=0), 'max_steps=None'),
    (lambda: layers.BatchNormalization(max_steps=2), dict(), 'called with step=None'),
    (lambda: layers.BatchNormalization(max_steps=2), dict(step=-1), '`step`'),
    (lambda: layers.BatchNormalization(renorm=True, max_steps=2), dict(step=0), 'renorm'),
    (lambda: layers.BatchNormalization(), dict(mask=np.ones([3, 4], bool)), '`mask`'),
])
def test_batch_normalization_class_checks_mask_and_step_before_building(graph, make, call,
                                                                         match):
  layer = make()
  x = _placeholder([2, 4, 3])
  _raises_nothing_built(graph, ValueError, match, lambda: layer(x, training=True, **call))
  assert not v1.global_variables()
