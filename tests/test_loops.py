"""Every front-end inside a loop body: tf.while_loop, map_fn, scan, dynamic_rnn.

Reference: numpy float64 of the same recurrence, each iteration a batch of
its own (outputs; gradients of inputs, gamma and beta; moving statistics
updated once per iteration in iteration order). Control flow v2 here;
control flow v1 (process-global) in a child process running the same cases.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tests import reference

v1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-5
T, B, C = 5, 4, 3
EPS = 1e-3
CONSTRUCTS = ('while_loop', 'map_fn', 'scan', 'dynamic_rnn')
# front-end -> (builder(x, training), decay, variance kind on [B, C] inputs)
FRONT_ENDS = {
    'bn_layer': (lambda x, tr: tf1_bn.bn_layer(x, training=tr, eps=EPS, name='bn'), 0.9,
                 'population'),
    'batch_normalization': (lambda x, tr: tf1_bn.batch_normalization(
        x, training=tr, epsilon=EPS, momentum=0.8, name='bn'), 0.8, 'population'),
    # slim's fused path on 2-D inputs: Bessel-corrected variance.
    'batch_norm': (lambda x, tr: tf1_bn.batch_norm(
        x, is_training=tr, epsilon=EPS, decay=0.8, scale=True, scope='bn'), 0.8, 'sample'),
}
# Every construct with bn_layer, every front-end in while_loop and dynamic_rnn.
CASES = ([(construct, 'bn_layer') for construct in CONSTRUCTS] +
         [(construct, front_end) for construct in ('while_loop', 'dynamic_rnn')
          for front_end in ('batch_normalization', 'batch_norm')])
# Control flow v1 (a child process): each front-end once, every construct
# (with the UPDATE_OPS idiom case on while_loop).
V1_CASES = [('map_fn', 'batch_norm'), ('scan', 'batch_normalization'),
            ('dynamic_rnn', 'bn_layer')]


class _Cell:
  """A minimal rnn cell: output BN(x_t), state the running sum of outputs."""

  def __init__(self, layer):
    self.layer = layer
    self.state_size = C
    self.output_size = C

  def zero_state(self, batch_size, dtype):
    return tf.zeros([batch_size, C], dtype)

  def __call__(self, inputs, state, scope=None):
    y = self.layer(inputs)
    return y, state + y


def _loop(construct, x, layer):
  if construct == 'while_loop':
    def body(i, outputs):
      return i + 1, outputs.write(i, layer(x[i]))
    _, outputs = tf.while_loop(lambda i, _: i < T, body,
                               [0, tf.TensorArray(tf.float32, T)], parallel_iterations=10)
    return outputs.stack()
  if construct == 'map_fn':
    return tf.map_fn(layer, x, parallel_iterations=10)
  if construct == 'scan':
    return tf.scan(lambda _, e: layer(e), x, initializer=tf.zeros([B, C]),
                   parallel_iterations=10)
  outputs, _ = v1.nn.dynamic_rnn(_Cell(layer), x, dtype=tf.float32, time_major=True)
  return outputs


def _data(seed):
  rng = np.random.RandomState(seed)
  # Each step its own mean and spread, so an update from the wrong step shows.
  x = (rng.randn(T, B, C) * rng.uniform(0.5, 3, (T, 1, C)) + rng.randn(T, 1, C) * 3)
  return (x.astype(np.float32), rng.randn(T, B, C).astype(np.float32),
          rng.uniform(0.5, 1.5, C).astype(np.float32), rng.randn(C).astype(np.float32))


def run_case(construct, front_end, idiom='minimize', seed=0):
  """Builds the loop, takes one training step, then infers; returns the
  largest relative error of each quantity against numpy."""
  build, decay, kind = FRONT_ENDS[front_end]
  x_value, upstream, gamma_value, beta_value = _data(seed)
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [T, B, C])
    training = v1.placeholder(tf.bool, [])
    ys = _loop(construct, x, lambda e: build(e, training))
    loss = tf.reduce_sum(ys * upstream)
    optimizer = v1.train.GradientDescentOptimizer(0.0)
    if idiom == 'minimize':
      train = tf1_bn.minimize(optimizer, loss)
    else:
      with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        train = optimizer.minimize(loss)
    tf1_bn.check_update_ops(train)
    assert not graph.get_collection(v1.GraphKeys.UPDATE_OPS)
    variables = {var.op.name.split('/')[-1]: var for var in v1.global_variables()}
    grads = tf.gradients(loss, [x, variables['gamma'], variables['beta']])
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      variables['gamma'].load(gamma_value, sess)
      variables['beta'].load(beta_value, sess)
      _, y, dx, dgamma, dbeta = sess.run([train, ys] + grads, {x: x_value, training: True})
      moving = sess.run([variables['moving_mean'], variables['moving_variance']])
      inferred = sess.run(ys, {x: x_value, training: False})
  mean, var = np.zeros(C), np.ones(C)
  ry, rdx = np.zeros_like(y, np.float64), np.zeros_like(y, np.float64)
  rdgamma, rdbeta = np.zeros(C), np.zeros(C)
  for t in range(T):
    out, bmean, bvar = reference.batch_norm_train(x_value[t], gamma_value, beta_value, EPS, -1)
    ry[t] = out
    dx_t, dg, db = reference.batch_norm_gradients(x_value[t], upstream[t], gamma_value, EPS, -1)
    rdx[t], rdgamma, rdbeta = dx_t, rdgamma + dg, rdbeta + db
    if kind == 'sample':
      bvar = bvar * reference.bessel(B)
    mean, var = decay * mean + (1 - decay) * bmean, decay * var + (1 - decay) * bvar
  rinferred = reference.normalize(x_value, mean, var, gamma_value, beta_value, EPS, -1)
  pairs = {'y': (y, ry), 'dx': (dx, rdx), 'dgamma': (dgamma, rdgamma), 'dbeta': (dbeta, rdbeta),
           'moving_mean': (moving[0], mean), 'moving_variance': (moving[1], var),
           'inference': (inferred, rinferred)}
  return {name: reference.max_relative_error(*pair) for name, pair in pairs.items()}


def _assert_close(errors):
  bad = {name: error for name, error in errors.items() if not error < RTOL}
  assert not bad, bad


@pytest.mark.parametrize('construct, front_end', CASES)
def test_matches_numpy_recurrence(construct, front_end):
  _assert_close(run_case(construct, front_end))


def test_update_ops_idiom():
  _assert_close(run_case('map_fn', 'batch_normalization', idiom='control_dependencies', seed=1))


def test_loops_run_one_iteration_at_a_time():
  # Iteration order with parallel_iterations > 1: the enclosing loop (and
  # only it) is made to run one iteration at a time.
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [T, B, C])
    tf.map_fn(lambda e: tf1_bn.bn_layer(e, training=True), x, parallel_iterations=10)
    tf.map_fn(tf.nn.relu, x, parallel_iterations=10)
    loops = [op for op in graph.get_operations() if op.type in ('While', 'StatelessWhile')]
    assert sorted(op.get_attr('parallel_iterations') for op in loops) == [1, 10]


def test_dropout_in_a_loop():
  with tf.Graph().as_default():
    x = tf.ones([T, B, C])
    training = v1.placeholder(tf.bool, [])
    ys = tf.map_fn(lambda e: tf1_bn.dropout(e, 0.5, training=training), x)
    with v1.Session() as sess:
      trained = sess.run(ys, {training: True})
      inferred = sess.run(ys, {training: False})
  assert set(np.unique(trained)) <= {0.0, 2.0} and 0 < np.mean(trained) < 2
  np.testing.assert_array_equal(inferred, np.ones([T, B, C]))


def test_control_flow_v1_in_a_child_process():
  code = ('import tensorflow as tf; tf.compat.v1.disable_control_flow_v2(); '
          'from tests import test_loops as t; '
          '[t._assert_close(t.run_case(c, f)) for c, f in t.V1_CASES]; '
          "t._assert_close(t.run_case('while_loop', 'batch_norm', 'control_dependencies', 1)); "
          "print('cases', len(t.V1_CASES) + 1)")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-5000:]
  assert 'cases 4' in done.stdout



def _step_by_step(build, x_value, masks):
  """The same layer outside any loop, one Session.run per time step: each
  step a batch (the reference for a loop over the steps)."""
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, x_value.shape[1:])
    m = v1.placeholder(tf.bool, masks.shape[1:])
    y = build(x, m)
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.0), tf.reduce_sum(y))
    moving = _statistics_variables()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      outputs = [sess.run([y, train], {x: x_t, m: m_t})[0] for x_t, m_t in zip(x_value, masks)]
      return np.stack(outputs), sess.run(moving)


def _statistics_variables():
  return sorted((var for var in v1.global_variables()
                 if var.op.name.split('/')[-1] not in ('gamma', 'beta')), key=lambda var: var.name)


LOOP_VARIANTS = {
    'renorm': lambda x, mask: tf1_bn.batch_normalization(
        x, training=True, momentum=0.5, renorm=True, renorm_momentum=0.5, name='bn'),
    'mask': lambda x, mask: tf1_bn.bn_layer(x, training=True, moving_decay=0.5, mask=mask,
                                            name='bn'),
}


@pytest.mark.parametrize('variant', sorted(LOOP_VARIANTS))
def test_loop_equals_one_run_per_step(variant):
  # map_fn's caching device: renorm's own averages and the masked moving
  # statistics must be read as the previous iteration left them.
  build = LOOP_VARIANTS[variant]
  x_value, _, _, _ = _data(2)
  masks = np.random.RandomState(3).rand(T, B) > 0.3
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, x_value.shape)
    m = v1.placeholder(tf.bool, masks.shape)
    ys = tf.map_fn(lambda pair: build(*pair), (x, m), fn_output_signature=tf.float32)
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.0), tf.reduce_sum(ys))
    moving = _statistics_variables()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      looped, _ = sess.run([ys, train], {x: x_value, m: masks})
      looped_moving = sess.run(moving)
  expected, expected_moving = _step_by_step(build, x_value, masks)
  assert reference.max_relative_error(looped, expected) < RTOL
  for got, want in zip(looped_moving, expected_moving):
    assert reference.max_relative_error(got, want) < RTOL


@pytest.mark.parametrize('front_end', ['bn_layer', 'batch_norm'])
def test_fetching_the_output_updates(front_end):
  # In place whatever updates / updates_collections say: a training-mode
  # fetch of the loop's output alone updates the statistics.
  x_value, _, _, _ = _data(4)
  layers = {'bn_layer': lambda e: tf1_bn.bn_layer(e, training=True, updates='collection'),
            'batch_norm': lambda e: tf1_bn.batch_norm(e, is_training=True, decay=0.9,
                                                      updates_collections=['my_updates'])}
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, x_value.shape)
    ys = tf.map_fn(layers[front_end], x)
    assert not graph.get_collection('my_updates')
    assert not graph.get_collection(v1.GraphKeys.UPDATE_OPS)
    moving_mean = [var for var in v1.global_variables() if 'moving_mean' in var.name][0]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(ys, {x: x_value})
      got = sess.run(moving_mean)
  expected = np.zeros(C)
  for step in x_value.astype(np.float64):
    expected = 0.9 * expected + 0.1 * step.mean(0)
  assert reference.max_relative_error(got, expected) < RTOL


@pytest.mark.parametrize('construct', ['while_loop', 'dynamic_rnn'])
def test_recompute_statistics_keeps_a_layer_in_a_loop(construct):
  # The pass runs the loop in training mode (the layer after it needs the
  # loop's output), whose in-place updates fire; the loop layer is named in
  # report.skipped and its statistics are left exactly as they were.
  x_value = _data(3)[0]
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [T, B, C])
    ys = _loop(construct, x, lambda e: tf1_bn.bn_layer(e, name='looped'))
    tf1_bn.bn_layer(tf.reshape(ys, [T * B, C]), name='after')
    tf1_bn.bn_layer(tf.reshape(x, [T * B, C]), name='outside')
    variables = {var.op.name: var for var in v1.global_variables()}
    scope = 'rnn/looped' if construct == 'dynamic_rnn' else 'looped'
    looped = [variables[f'{scope}/moving_mean'], variables[f'{scope}/moving_variance']]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      before = sess.run(looped)
      report = tf1_bn.recompute_statistics(sess, [{x: x_value}, {x: x_value[::-1]}])
      after, outside = sess.run([looped, variables['outside/moving_mean']])
  assert [layer.scope for layer in report.layers] == ['after', 'outside']
  assert list(report.skipped) == [scope]
  assert 'inside a loop body' in report.skipped[scope]
  assert f'not recomputed: {scope} is called inside a loop body' in str(report)
  for kept, start in zip(after, before):
    np.testing.assert_array_equal(kept, start)
  expected = reference.moments(x_value.reshape(T * B, C), -1)[0]
  assert reference.max_relative_error(outside, expected) < RTOL


def test_recompute_statistics_refuses_a_graph_of_loop_layers():
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [T, B, C])
    _loop('while_loop', x, lambda e: tf1_bn.bn_layer(e, name='looped'))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      with pytest.raises(ValueError, match='looped is called inside a loop body'):
        tf1_bn.recompute_statistics(sess, [{x: _data(0)[0]}])


@pytest.mark.parametrize('construct', ['while_loop', 'map_fn'])
def test_export_of_a_layer_in_a_loop(tmp_path, construct):
  # The loop body's in-place updates do not reach the SavedModel; it gives
  # the session's inference outputs (numpy: the moving statistics).
  x_value = _data(5)[0]
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [T, B, C], name='x')
    ys = _loop(construct, x, lambda e: tf1_bn.bn_layer(e, name='looped'))
    train = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.0), tf.reduce_sum(ys))
    variables = {var.op.name: var for var in v1.global_variables()}
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(train, {x: x_value * 2 + 1, tf1_bn.training_placeholder(): True})
      mean, variance, gamma, beta = sess.run([variables[f'looped/{name}'] for name in (
          'moving_mean', 'moving_variance', 'gamma', 'beta')])
      tf1_bn.export_inference(sess, {'x': x}, {'y': ys}, str(tmp_path / 'model'))
  serve = tf.saved_model.load(str(tmp_path / 'model')).signatures['serving_default']
  actual = serve(x=tf.constant(x_value))['y'].numpy()
  expected = reference.normalize(x_value, mean, variance, gamma, beta, 1e-5, -1)
  assert reference.max_relative_error(actual, expected) < RTOL


@pytest.mark.parametrize('front_end', sorted(FRONT_ENDS))
def test_synchronized_inside_a_loop_is_refused_before_building(front_end):
  # Collectives cannot be matched per iteration across replicas' loops (a
  # step hung in a tried 2-tower run): refused, naming the remedy, with
  # nothing added to the graph.
  build = {'bn_layer': lambda e: tf1_bn.bn_layer(e, synchronized=True),
           'batch_normalization': lambda e: tf1_bn.batch_normalization(
               e, training=True, synchronized=True),
           'batch_norm': lambda e: tf1_bn.batch_norm(e, is_training=True,
                                                     synchronized=True)}[front_end]
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [T, B, C])

    def body(i, outputs):
      row = x[i]
      body_graph = v1.get_default_graph()  # the loop body's own graph
      before = len(body_graph.get_operations()), len(v1.global_variables())
      with pytest.raises(ValueError, match='synchronized=True. inside a loop body'):
        build(row)
      assert (len(body_graph.get_operations()), len(v1.global_variables())) == before
      return i + 1, outputs

    v1.while_loop(lambda i, _: i < T, body, [0, tf.zeros([])])
