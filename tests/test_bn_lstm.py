"""tf1_bn.BNLSTMCell against a numpy implementation of Cooijmans et al.'s
equations: outputs, moving statistics (per step, population variance),
inference from them, and gradients (central finite differences of the numpy
model in float64) under dynamic_rnn, static_rnn and bidirectional_dynamic_rnn.
"""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tests import reference

v1 = tf.compat.v1
B, T, D, H, MAX_STEPS = 5, 3, 2, 3, 2
EPS, MOMENTUM, FORGET_BIAS = 1e-3, 0.9, 1.0
RTOL = 1e-5


def _sigmoid(z):
  return 1 / (1 + np.exp(-z))


def numpy_bn_lstm(p, x, moving, training, lengths=None):
  """The paper's equations; gates (f, i, o, g). Returns (outputs [B, T, H],
  the moving statistics after the pass). With `lengths`, as dynamic_rnn's
  sequence_length: a finished sequence keeps its state, outputs zeros and
  is left out of the batch statistics."""
  moving = {k: [a.copy() for a in v] for k, v in moving.items()}
  c = h = np.zeros((x.shape[0], H))
  lengths = np.full(x.shape[0], x.shape[1]) if lengths is None else np.asarray(lengths)
  outputs = []
  for t in range(x.shape[1]):
    row = min(t, MAX_STEPS - 1)
    active = lengths > t

    def bn(z, name, gamma, beta=0.0):
      if training:
        mean, var = z[active].mean(0), z[active].var(0)
        moving[name][0][row] = MOMENTUM * moving[name][0][row] + (1 - MOMENTUM) * mean
        moving[name][1][row] = MOMENTUM * moving[name][1][row] + (1 - MOMENTUM) * var
      else:
        mean, var = moving[name][0][row], moving[name][1][row]
      return gamma * (z - mean) / np.sqrt(var + EPS) + beta

    gates = (bn(x[:, t] @ p['kernel_x'], 'bn_x', p['bn_x/gamma']) +
             bn(h @ p['kernel_h'], 'bn_h', p['bn_h/gamma']) + p['bias'])
    f, i, o, g = np.split(gates, 4, axis=1)
    new_c = _sigmoid(f + FORGET_BIAS) * c + _sigmoid(i) * np.tanh(g)
    new_h = _sigmoid(o) * np.tanh(bn(new_c, 'bn_c', p['bn_c/gamma'], p['bn_c/beta']))
    c = np.where(active[:, None], new_c, c)
    h = np.where(active[:, None], new_h, h)
    outputs.append(np.where(active[:, None], new_h, 0.0))
  return np.stack(outputs, 1), moving


def _fresh_moving():
  return {name: [np.zeros((MAX_STEPS, size)), np.ones((MAX_STEPS, size))]
          for name, size in (('bn_x', 4 * H), ('bn_h', 4 * H), ('bn_c', H))}


def _short(name):
  return name.split('bn_lstm_cell/')[-1].split(':')[0]


LENGTHS = [3, 1, 2, 3, 2]


def _build(construct, x, dtype):
  cell = tf1_bn.BNLSTMCell(H, MAX_STEPS, momentum=MOMENTUM, epsilon=EPS)
  if construct == 'dynamic_rnn':
    outputs, _ = v1.nn.dynamic_rnn(cell, x, dtype=dtype)
  elif construct == 'sequence_length':
    cell = tf1_bn.BNLSTMCell(H, MAX_STEPS, momentum=MOMENTUM, epsilon=EPS,
                             sequence_length=LENGTHS)
    outputs, _ = v1.nn.dynamic_rnn(cell, x, dtype=dtype, sequence_length=LENGTHS)
  elif construct == 'static_rnn':
    outputs, _ = v1.nn.static_rnn(cell, tf.unstack(x, axis=1), dtype=dtype)
    outputs = tf.stack(outputs, 1)
  else:  # the forward direction of a bidirectional RNN (a second cell, backwards)
    backward = tf1_bn.BNLSTMCell(H, MAX_STEPS, momentum=MOMENTUM, epsilon=EPS,
                                 name='backward_cell')
    (outputs, _), _ = v1.nn.bidirectional_dynamic_rnn(cell, backward, x, dtype=dtype)
  return outputs


def _run(construct, dtype, seed=0):
  rng = np.random.RandomState(seed)
  x_value = rng.randn(B, T, D) * 2 + 0.5
  upstream = rng.randn(B, T, H)
  with tf.Graph().as_default():
    x = v1.placeholder(dtype, [B, T, D])
    outputs = _build(construct, x, dtype)
    loss = tf.reduce_sum(outputs * tf.cast(upstream, dtype))
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.0), loss)
    params = [var for var in v1.trainable_variables() if 'backward_cell' not in var.name]
    grads = tf.gradients(loss, [x] + params)
    moving_vars = {var.name: var for var in v1.global_variables() if 'moving' in var.name
                   and 'backward_cell' not in var.name}
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      values = {_short(var.name): rng.randn(*var.shape.as_list()) * 0.5 for var in params}
      values.update({k: 0.1 + 0.5 * rng.rand(*values[k].shape) for k in values if 'gamma' in k})
      for var in params:
        var.load(values[_short(var.name)], sess)
      feed = {x: x_value, tf1_bn.training_placeholder(): True}
      _, y, *gradients = sess.run([train, outputs] + grads, feed)
      moving = sess.run(moving_vars)
      inferred = sess.run(outputs, {x: x_value})
  return x_value, upstream, values, [_short(p.name) for p in params], y, gradients, moving, \
      inferred


# bidirectional_dynamic_rnn runs the forward cell under dynamic_rnn; the
# gradient test below uses dynamic_rnn itself.
@pytest.mark.parametrize('construct', ['static_rnn', 'bidirectional', 'sequence_length'])
def test_outputs_moving_statistics_and_inference(construct):
  x, _, values, _, y, _, moving, inferred = _run(construct, tf.float32)
  lengths = LENGTHS if construct == 'sequence_length' else None
  expected, expected_moving = numpy_bn_lstm(values, x, _fresh_moving(), training=True,
                                            lengths=lengths)
  assert reference.max_relative_error(y, expected) < RTOL
  for name, (mean, var) in expected_moving.items():
    [got_mean] = [m for k, m in moving.items() if f'{name}/moving_mean' in k]
    [got_var] = [m for k, m in moving.items() if f'{name}/moving_variance' in k]
    assert reference.max_relative_error(got_mean, mean) < RTOL, name
    assert reference.max_relative_error(got_var, var) < RTOL, name
  expected_inference, _ = numpy_bn_lstm(values, x, expected_moving, training=False,
                                        lengths=lengths)
  assert reference.max_relative_error(inferred, expected_inference) < RTOL


def test_gradients_match_finite_differences():
  # dynamic_rnn with sequence_length: the masked statistics' gradients too.
  x, upstream, values, names, _, gradients, _, _ = _run('sequence_length', tf.float64, seed=1)

  def loss(p, inputs):
    outputs = numpy_bn_lstm(p, inputs, _fresh_moving(), training=True, lengths=LENGTHS)[0]
    return float((outputs * upstream).sum())

  def numeric(array, evaluate, h=1e-6):
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
      saved = array[index]
      array[index] = saved + h
      up = evaluate()
      array[index] = saved - h
      down = evaluate()
      array[index] = saved
      grad[index] = (up - down) / (2 * h)
    return grad

  x = x.copy()
  assert reference.max_relative_error(gradients[0], numeric(x, lambda: loss(values, x))) < RTOL
  for name, grad in zip(names, gradients[1:]):
    expected = numeric(values[name], lambda: loss(values, x))
    assert reference.max_relative_error(grad, expected) < RTOL, name


def test_defaults_and_state():
  cell = tf1_bn.BNLSTMCell(4, 3)
  assert cell.output_size == 4 and cell.state_size == tf1_bn.BNLSTMState(4, 4, 1)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [2, 5, 3])
    _, state = v1.nn.dynamic_rnn(cell, x, dtype=tf.float32)
    variables = {_short(var.name): var for var in v1.global_variables()}
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for name in ('bn_x/gamma', 'bn_h/gamma', 'bn_c/gamma'):
        np.testing.assert_array_equal(sess.run(variables[name]), np.full(
            variables[name].shape, 0.1, np.float32))
      assert 'bn_x/beta' not in variables and 'bn_h/beta' not in variables
      assert variables['bn_x/moving_mean'].shape == (3, 16)
      step = sess.run(state.step, {x: np.zeros([2, 5, 3])})
  np.testing.assert_array_equal(step, [[5], [5]])


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_units=0, max_steps=2), 'num_units'),
    (dict(num_units=2, max_steps=0), 'max_steps'),
    (dict(num_units=2, max_steps=2, training='yes'), 'training'),
    (dict(num_units=2, max_steps=2, sequence_length=[1.5, 2.0]), 'sequence_length'),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises((ValueError, TypeError), match=message):
    tf1_bn.BNLSTMCell(**kwargs)


@pytest.mark.parametrize('fold', [True, False], ids=['folded', 'unfolded'])
def test_export_of_a_trained_cell_under_dynamic_rnn(tmp_path, fold):
  # The cell's BN layers live in dynamic_rnn's loop body, with per-step
  # statistics chosen by the step carried in the state: the export keeps
  # them as the graph computes them, and the SavedModel, loaded in eager
  # TensorFlow 2, gives the session's inference outputs.
  rng = np.random.RandomState(4)
  x_value = rng.randn(B, T, D).astype(np.float32)
  with tf.Graph().as_default():
    v1.set_random_seed(0)
    x = v1.placeholder(tf.float32, [None, T, D], name='x')
    outputs, _ = v1.nn.dynamic_rnn(tf1_bn.BNLSTMCell(H, MAX_STEPS, momentum=MOMENTUM), x,
                                   dtype=tf.float32)
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.1), tf.reduce_sum(outputs))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(3):
        sess.run(train, {x: rng.randn(B, T, D) * 2 + 1, tf1_bn.training_placeholder(): True})
      expected = sess.run(outputs, {x: x_value})
      tf1_bn.export_inference(sess, {'x': x}, {'y': outputs}, str(tmp_path / 'model'),
                              fold=fold)
  serve = tf.saved_model.load(str(tmp_path / 'model')).signatures['serving_default']
  actual = serve(x=tf.constant(x_value))['y'].numpy()
  assert reference.max_relative_error(actual, expected) < RTOL


def test_is_an_rnn_cell_of_the_layers_protocol():
  # A tf1_bn rnn cell: isinstance of the patched RNNCell, its variables
  # tracked (BN ones included), legacy scope rules (a second cell in one scope
  # is bn_lstm_cell_1), and it stacks in MultiRNNCell under dynamic_rnn.
  from tf1_bn.legacy import rnn_cell
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [B, T, D])
    first, second = tf1_bn.BNLSTMCell(H, MAX_STEPS), tf1_bn.BNLSTMCell(H, MAX_STEPS)
    assert isinstance(first, rnn_cell.RNNCell)
    stacked = rnn_cell.MultiRNNCell([first, second])
    outputs, _ = v1.nn.dynamic_rnn(stacked, x, dtype=tf.float32)
    h0 = first.zero_state(B, tf.float32)
    with v1.variable_scope('pair'):
      one, _ = tf1_bn.BNLSTMCell(H, MAX_STEPS)(x[:, 0], h0)
      two, _ = tf1_bn.BNLSTMCell(H, MAX_STEPS)(x[:, 0], h0)
    names = [var.op.name for var in first.variables]
    assert names == [f'rnn/multi_rnn_cell/cell_0/bn_lstm_cell/{n}' for n in (
        'kernel_x', 'kernel_h', 'bias', 'bn_x/gamma', 'bn_h/gamma', 'bn_c/gamma', 'bn_c/beta',
        'bn_x/moving_mean', 'bn_x/moving_variance', 'bn_h/moving_mean', 'bn_h/moving_variance',
        'bn_c/moving_mean', 'bn_c/moving_variance')]
    assert len(first.trainable_variables) == 7
    assert {var.op.name.split('/')[1] for var in v1.global_variables()
            if var.op.name.startswith('pair/')} == {'bn_lstm_cell', 'bn_lstm_cell_1'}
    assert outputs.shape.as_list() == [B, T, H]
    del one, two
