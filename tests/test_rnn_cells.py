"""tf1_bn's rnn cells on their own: the patch, errors, DropoutWrapper's switch.

Values are checked against numpy (float64) or against the same cell run
without the wrapper; the legacy comparisons are in test_rnn_cells_parity.py.
"""
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tf1_bn.legacy import rnn_cell as rc
from tf1_bn.legacy import rnn_cell_patch

v1 = tf.compat.v1
HERE = pathlib.Path(__file__).resolve().parent


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


# --- the patch ---------------------------------------------------------------
def test_patch_installs_every_name_in_every_wrapper_and_unpatch_restores():
  import tensorflow.compat.v1 as v1_module
  objects = [tf.compat.v1.nn, v1_module.nn, sys.modules['tensorflow._api.v2.compat.v1'].nn]
  before = [obj.__dict__.get('rnn_cell') for obj in objects]
  assert not rnn_cell_patch.is_patched()
  assert rnn_cell_patch.patch() is True
  try:
    assert rnn_cell_patch.patch() is False  # idempotent
    for obj in objects:
      for name in rc.__all__:
        assert getattr(obj.rnn_cell, name) is getattr(rc, name)
    from tensorflow.compat.v1.nn.rnn_cell import LSTMCell  # noqa: the import form too
    assert LSTMCell is rc.LSTMCell
    # A reference to the lazy loader taken before the patch sees the cells too.
    for original in before:
      if original is not None:
        assert original.__dict__['GRUCell'] is rc.GRUCell
  finally:
    assert rnn_cell_patch.unpatch() is True
  assert not rnn_cell_patch.is_patched()
  assert [obj.__dict__.get('rnn_cell') for obj in objects] == before
  for original in before:
    if original is not None:
      assert 'GRUCell' not in original.__dict__
  assert rnn_cell_patch.unpatch() is False


PATCH_CHILD = textwrap.dedent('''
    import os, sys
    {prelude}
    # compat.v1 imported first: then tf.compat.v1 and the _api module are
    # different wrapper objects, and this reference predates the patch.
    import tensorflow.compat.v1 as early_v1
    from tensorflow.compat.v1.nn import rnn_cell as early_rnn_cell
    import tensorflow as tf
    import tensorflow.compat.v1 as v1
    from tf1_bn.legacy import rnn_cell_patch
    before = tf.compat.v1.nn.rnn_cell
    early_keys = set(early_rnn_cell.__dict__)
    rnn_cell_patch.patch()
    cell = v1.nn.rnn_cell.LSTMCell(3)
    assert type(cell).__module__ == 'tf1_bn.legacy.rnn_cells', type(cell)
    for module in (early_v1, tf.compat.v1, sys.modules['tensorflow._api.v2.compat.v1']):
      assert module.nn.rnn_cell.MultiRNNCell.__module__ == 'tf1_bn.legacy.rnn_cells'
    assert early_rnn_cell.GRUCell.__module__ == 'tf1_bn.legacy.rnn_cells'
    from tensorflow.compat.v1.nn.rnn_cell import DropoutWrapper
    assert DropoutWrapper.__module__ == 'tf1_bn.legacy.rnn_wrappers'
    with tf.Graph().as_default():
      x = v1.placeholder(tf.float32, [None, 4, 2])
      v1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
      assert [v.name for v in v1.global_variables()] == ['rnn/lstm_cell/kernel:0',
                                                          'rnn/lstm_cell/bias:0']
    rnn_cell_patch.unpatch()
    assert tf.compat.v1.nn.rnn_cell is before
    assert set(early_rnn_cell.__dict__) == early_keys  # the names written before are gone
    if {blocked}:
      try:
        import tf_keras
        raise AssertionError('tf_keras imported')
      except ImportError:
        pass
    print('ok')
''')

BLOCK_TF_KERAS = textwrap.dedent(f'''
    sys.path.insert(0, {str(HERE)!r})
    import no_tf_keras
    no_tf_keras.install()
''')


@pytest.mark.parametrize('legacy_keras,prelude', [
    ('1', ''),  # tf-keras installed and routed: the patch still wins
    ('0', BLOCK_TF_KERAS),  # tf-keras absent
    ('1', BLOCK_TF_KERAS),  # the variable set but tf-keras absent
], ids=['legacy_keras', 'no_tf_keras', 'legacy_set_no_tf_keras'])
def test_patch_works_whatever_keras_is_routed(legacy_keras, prelude):
  import os
  env = dict(os.environ, TF_USE_LEGACY_KERAS=legacy_keras, TF_CPP_MIN_LOG_LEVEL='2')
  code = PATCH_CHILD.format(prelude=prelude, blocked=bool(prelude))
  result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('ok')


# --- values against numpy -----------------------------------------------------
def test_lstm_step_matches_numpy_with_peepholes_projection_and_clips(graph):
  rng = np.random.RandomState(0)
  units, proj, depth, batch = 4, 3, 5, 2
  cell = rc.LSTMCell(units, use_peepholes=True, cell_clip=0.5, num_proj=proj, proj_clip=0.3,
                     forget_bias=0.7)
  x = rng.randn(batch, depth)
  c0, h0 = rng.randn(batch, units), rng.randn(batch, proj)
  out, state = cell(tf.constant(x, tf.float64), rc.LSTMStateTuple(
      tf.constant(c0), tf.constant(h0)))
  with v1.Session() as sess:
    sess.run(v1.global_variables_initializer())
    values = {var.name.split('/', 1)[1]: var for var in cell.variables}
    params = {k: rng.uniform(-0.5, 0.5, var.shape.as_list()) for k, var in values.items()}
    for k, var in values.items():
      var.load(params[k], sess)
    got_out, got_state = sess.run([out, state])
  z = np.concatenate([x, h0], 1) @ params['kernel:0'] + params['bias:0']
  i, j, f, o = np.split(z, 4, axis=1)
  c = (_sigmoid(f + 0.7 + params['w_f_diag:0'] * c0) * c0 +
       _sigmoid(i + params['w_i_diag:0'] * c0) * np.tanh(j))
  c = np.clip(c, -0.5, 0.5)
  m = _sigmoid(o + params['w_o_diag:0'] * c) * np.tanh(c)
  m = np.clip(m @ params['projection/kernel:0'], -0.3, 0.3)
  np.testing.assert_allclose(got_state.c, c, rtol=1e-12)
  np.testing.assert_allclose(got_out, m, rtol=1e-12)
  np.testing.assert_allclose(got_state.h, m, rtol=1e-12)


# --- DropoutWrapper on the training switch ---------------------------------------
def _dropout_outputs(training, feed_training):
  """A GRU with output dropout only: the state is not dropped, so every output
  is either 0 or the undropped output / keep_prob."""
  with tf.Graph().as_default():
    v1.set_random_seed(1)
    x = tf.constant(np.random.RandomState(2).randn(4, 3, 6), tf.float32)
    kwargs = {} if training == 'default' else {'training': training}
    cell = rc.DropoutWrapper(rc.GRUCell(5), output_keep_prob=0.5, seed=4, **kwargs)
    outputs, _ = v1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for var in v1.global_variables():
        var.load(np.random.RandomState(3).uniform(-1, 1, var.shape.as_list()), sess)
      feed = {}
      if feed_training is not None:
        feed[tf1_bn.training_placeholder()] = feed_training
      return sess.run(outputs, feed)


def _assert_dropped(dropped, plain):
  kept = dropped != 0
  assert 0.25 < kept.mean() < 0.75
  np.testing.assert_allclose(dropped[kept], plain[kept] / 0.5, rtol=1e-6)


def test_dropout_wrapper_default_always_drops_like_the_legacy():
  plain = _dropout_outputs(False, None)
  _assert_dropped(_dropout_outputs('default', None), plain)
  _assert_dropped(_dropout_outputs(True, None), plain)


def test_dropout_wrapper_on_the_training_placeholder():
  plain = _dropout_outputs(False, None)
  # Not fed: inference, exactly the cell without dropout.
  np.testing.assert_array_equal(_dropout_outputs(None, None), plain)
  np.testing.assert_array_equal(_dropout_outputs(None, False), plain)
  # Fed True: dropout as the always-on (legacy) wrapper does it.
  _assert_dropped(_dropout_outputs(None, True), plain)


# --- errors: named, with cause and fix, nothing half-built ----------------------------
@pytest.mark.parametrize('make,match', [
    (lambda: rc.LSTMCell(0), '`num_units` must be an int >= 1, received 0'),
    (lambda: rc.GRUCell(2.5), '`num_units` must be an int'),
    (lambda: rc.LSTMCell(3, num_proj=-1), '`num_proj`'),
    (lambda: rc.LSTMCell(3, cell_clip=-1.0), '`cell_clip`'),
    (lambda: rc.BasicRNNCell(3, activation='nope'), '`activation`'),
    (lambda: rc.LSTMCell(3, initializer='nope'), '`initializer`'),
    (lambda: rc.DropoutWrapper(rc.LSTMCell(3), output_keep_prob=0.0), '`output_keep_prob`'),
    (lambda: rc.DropoutWrapper(rc.LSTMCell(3), input_keep_prob=1.5), '`input_keep_prob`'),
    (lambda: rc.DropoutWrapper(rc.LSTMCell(3), state_keep_prob=tf.constant(-0.1)),
     '`state_keep_prob`'),
    (lambda: rc.DropoutWrapper(rc.LSTMCell(3), variational_recurrent=True), '`dtype`'),
    (lambda: rc.DropoutWrapper(rc.LSTMCell(3), input_keep_prob=0.5, variational_recurrent=True,
                               dtype=tf.float32), '`input_size`'),
    (lambda: rc.DropoutWrapper('cell'), '`cell` must be an RNN cell'),
    (lambda: rc.MultiRNNCell([]), 'at least one cell'),
    (lambda: rc.MultiRNNCell([rc.LSTMCell(2)], state_is_tuple=False), 'tuple states'),
    (lambda: rc.LSTMCell(3, bogus=1), 'unknown keyword arguments'),
])
def test_bad_arguments_are_named_and_build_nothing(graph, make, match):
  with pytest.raises((TypeError, ValueError), match=match):
    make()
  assert graph.get_operations() == [] or all(
      op.type == 'Const' for op in graph.get_operations())
  assert v1.global_variables() == []


def test_inputs_of_another_depth_name_the_cell_and_both_depths(graph):
  cell = rc.LSTMCell(4)
  v1.nn.dynamic_rnn(cell, v1.placeholder(tf.float32, [None, 3, 5]), dtype=tf.float32)
  count = len(graph.get_operations())
  with pytest.raises(ValueError, match=r"Dimensions must be equal, but are 11 and 9 .*"
                                       r"'rnn/lstm_cell': it was built for inputs of depth 5.*"
                                       r"received depth 7"):
    cell(v1.placeholder(tf.float32, [None, 7]), cell.zero_state(2, tf.float32))
  # Only the placeholder and the zero state were added; nothing of the cell.
  assert not any('lstm_cell' in op.name for op in graph.get_operations()[count:])


def test_undefined_depth_and_wrong_rank_explain_the_fix(graph):
  cell = rc.GRUCell(2)
  with pytest.raises(ValueError, match=r'Expected inputs.shape\[-1\] to be known.*set_shape'):
    cell(v1.placeholder(tf.float32, [None, None]), cell.zero_state(1, tf.float32))
  with pytest.raises(ValueError, match='expected ndim=2, found ndim=3.*dynamic_rnn'):
    cell(v1.placeholder(tf.float32, [None, 3, 2]), cell.zero_state(1, tf.float32))
  assert v1.global_variables() == []


def test_get_initial_state_takes_batch_and_dtype_from_inputs(graph):
  cell = rc.MultiRNNCell([rc.LSTMCell(3), rc.GRUCell(2)])
  x = v1.placeholder(tf.float64, [None, 5])
  state = cell.get_initial_state(inputs=x)
  assert [s.shape.as_list() for s in tf.nest.flatten(state)] == [[None, 3], [None, 3], [None, 2]]
  assert all(s.dtype == tf.float64 for s in tf.nest.flatten(state))
  with v1.Session() as sess:
    values = sess.run(tf.nest.flatten(state), {x: np.ones([4, 5])})
  assert all(np.array_equal(v, np.zeros_like(v)) and len(v) == 4 for v in values)
  with pytest.raises(ValueError, match='`batch_size` \\(2\\) differs'):
    cell.get_initial_state(inputs=tf.zeros([3, 5]), batch_size=2)
  with pytest.raises(ValueError, match='needs `batch_size` and `dtype`'):
    cell.get_initial_state(batch_size=2)


def test_eager_call_says_a_graph_is_needed():
  cell = rc.LSTMCell(2)
  with pytest.raises(RuntimeError, match='needs a graph'):
    cell(tf.ones([1, 3]), cell.zero_state(1, tf.float32))
  with pytest.raises(RuntimeError, match='needs a graph'):
    rc.DropoutWrapper(cell)(tf.ones([1, 3]), cell.zero_state(1, tf.float32))


# --- the protocol for subclasses (BNLSTMCell and user cells) ---------------------------
class ScaledCell(rc.RNNCell):
  """A minimal user cell: build + call + sizes."""

  def __init__(self, units, **kwargs):
    super().__init__(**kwargs)
    self._units = units

  @property
  def state_size(self):
    return self._units

  @property
  def output_size(self):
    return self._units

  def build(self, input_shape):
    self.kernel = self.add_weight('kernel', [input_shape[-1], self._units])

  def call(self, inputs, state, scale=1.0):
    out = scale * tf.tanh(tf.matmul(inputs, self.kernel) + state)
    return out, out


def test_a_subclass_builds_once_in_its_scope_and_gets_call_kwargs(graph):
  cell = ScaledCell(3)
  x = tf.ones([2, 4])
  out1, _ = cell(x, cell.zero_state(2, tf.float32), scale=2.0)
  out2, _ = cell(x, cell.zero_state(2, tf.float32))
  assert [v.name for v in v1.global_variables()] == ['scaled_cell/kernel:0']
  assert cell.variables == v1.global_variables()
  a, b = _run(graph, [out1, out2])
  np.testing.assert_allclose(a, 2 * b, rtol=1e-6)


def _run(graph, fetches):
  with v1.Session(graph=graph) as sess:
    sess.run(v1.global_variables_initializer())
    return sess.run(fetches)


class GetVariableCell(rc.LayerRNNCell):
  """A cell that creates a variable inside `call` (as a BN in the step does)."""

  state_size = output_size = 2

  def call(self, inputs, state):
    scale = v1.get_variable('scale', [2], initializer=v1.ones_initializer())
    return inputs * scale + state, inputs * scale + state


def test_variables_created_in_call_are_tracked_and_reused(graph):
  cell = GetVariableCell()
  x = v1.placeholder(tf.float32, [None, 3, 2])
  v1.nn.static_rnn(cell, tf.unstack(x, axis=1), dtype=tf.float32)
  v1.nn.dynamic_rnn(cell, x, dtype=tf.float32, scope='again')
  assert [v.name for v in v1.global_variables()] == ['rnn/get_variable_cell/scale:0']
  assert cell.variables == v1.global_variables() == cell.trainable_variables


def test_cells_are_tf_layers_layers_as_the_legacy_cells_were(graph):
  # The legacy RNNCell subclasses tf.compat.v1.layers.Layer (checked with
  # tf-keras 2.21: LSTMCell -> LayerRNNCell -> RNNCell -> Layer), so user code
  # may test isinstance(cell, tf.layers.Layer) or call cell.apply.
  for make in (lambda: rc.LSTMCell(3), lambda: rc.MultiRNNCell([rc.GRUCell(3)]),
               lambda: rc.DropoutWrapper(rc.BasicRNNCell(3))):
    assert isinstance(make(), tf1_bn.layers.Layer)
  cell = rc.BasicRNNCell(2, name='step')
  out, _ = cell.apply(tf.ones([1, 3]), tf.zeros([1, 2]))
  assert [v.name for v in cell.variables] == ['step/kernel:0', 'step/bias:0']
  assert cell.variables == cell.weights == cell.trainable_variables and cell.updates == []
  value, kernel, bias = _run(graph, [out] + cell.variables)
  step_input = np.concatenate([np.ones([1, 3]), np.zeros([1, 2])], axis=1)  # [x, h]
  np.testing.assert_allclose(value, np.tanh(step_input @ kernel + bias), rtol=1e-5)
