"""A layer called more than once per step: deterministic, in call order.

A DCGAN-style discriminator (conv, BN, leaky relu, twice) is applied to a
real batch, then with reuse to a fake one: every BN layer is called twice per
step. Checked structurally on every path: the second call's forward reads of
the moving variables are input-free reads that both calls' updates wait for
(the start-of-step values, as for one call); with the updates in a
collection the second call's update follows the first's; in place it does
not (that would make computing the fake batch's output compute the real
batch's), and a warning says so; each call still runs alone (a generator
step feeding only the noise). And by training repeatedly with several
inter-op threads while another thread loads the CPU: with the updates in a
collection, bit-identical across runs and equal to a float64 numpy replay of
the sequential updates, real then fake.
"""
import threading

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from reference import moments
from tf1_bn.bn import update_ops

v1 = tf.compat.v1
# The one-time in-place warning, checked by its own test.
pytestmark = pytest.mark.filterwarnings('ignore:tf1_bn. the layer of .* is called again')
DECAY = 0.9
STEPS = 16
RUNS = 3
BATCH = 8


def _layers(name, x, t, **kw):
  return tf1_bn.batch_normalization(x, training=t, momentum=DECAY, name=name, **kw)


def _slim(name, x, t, **kw):
  return tf1_bn.batch_norm(x, is_training=t, decay=DECAY, scope=name, **kw)


def _bn_layer(name, x, t, **kw):
  return tf1_bn.bn_layer(x, training=t, name=name, moving_decay=DECAY, **kw)


UPDATES = 'discriminator_updates'
# Updates in a collection, chained in call order: path -> (layer builder
# (name, x, training) -> y, the variance the moving variance averages, or
# None where the replay is not numpy moments: renorm).
COLLECTION_PATHS = {
    'bn_layer': (_bn_layer, 'population'),
    'bn_layer unfused': (lambda n, x, t: _bn_layer(n, x, t, fused=False), 'population'),
    'batch_normalization': (_layers, 'sample'),
    'batch_normalization unfused': (lambda n, x, t: _layers(n, x, t, fused=False),
                                    'population'),
    'batch_normalization renorm': (lambda n, x, t: _layers(n, x, t, renorm=True), None),
    'batch_norm': (_slim, 'sample'),  # slim's tf.layers path
    'batch_norm fused': (lambda n, x, t: _slim(n, x, t, updates_collections=UPDATES),
                         'sample'),
    'batch_norm general': (
        lambda n, x, t: _slim(n, x, t, batch_weights=tf.ones([BATCH])), 'population'),
}
IN_PLACE_PATHS = {
    'bn_layer inline': lambda n, x, t: _bn_layer(n, x, t, updates='inline'),
    'batch_norm in place': lambda n, x, t: _slim(n, x, t, updates_collections=None),
    'batch_norm general in place': lambda n, x, t: _slim(n, x, t, updates_collections=None,
                                                         fused=False),
}
ALL_PATHS = dict({k: v[0] for k, v in COLLECTION_PATHS.items()}, **IN_PLACE_PATHS)
BN_INPUTS = 'test_bn_inputs'


def _weights(seed, shape):
  return np.random.RandomState(seed).uniform(-0.5, 0.5, shape).astype(np.float32)


def _discriminator(images, bn, training, reuse):
  """conv(stride 2) -> BN -> leaky relu, twice, then a mean logit."""
  h = images
  with v1.variable_scope('discriminator', reuse=reuse):
    for i, channels in enumerate((6, 8)):
      # Constant initial values: a re-run initializer gives the same weights.
      kernel = v1.get_variable(f'conv{i}', initializer=_weights(i, [3, 3, h.shape[-1], channels]))
      h = tf.nn.conv2d(h, kernel, 2, 'SAME')
      v1.add_to_collection(BN_INPUTS, h)
      h = tf.nn.leaky_relu(bn(f'bn{i}', h, training), 0.2)
  return tf.reduce_mean(h, [1, 2, 3])


def _gan(bn):
  """Real then fake batch through one discriminator; the step's fetches."""
  real = v1.placeholder(tf.float32, [BATCH, 8, 8, 3], name='real')
  noise = v1.placeholder(tf.float32, [BATCH, 16], name='noise')
  training = v1.placeholder(tf.bool, [], name='is_training')
  generator = v1.get_variable('generator', initializer=_weights(2, [16, 8 * 8 * 3]))
  fake = tf.reshape(tf.tanh(noise @ generator), [BATCH, 8, 8, 3])
  d_real = _discriminator(real, bn, training, reuse=False)
  d_fake = _discriminator(fake, bn, training, reuse=True)
  updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS) + v1.get_collection(UPDATES)
  return (real, noise, training), (d_real, d_fake, updates)


def _ops(graph, prefix, types):
  return sorted((op for op in graph.get_operations() if op.type in types and
                 op.name.startswith(prefix) and '/Initializer/' not in op.name and
                 not op.name.endswith('/Assign')),
                key=lambda op: op._id)  # pylint: disable=protected-access


ASSIGNS = ('AssignSubVariableOp', 'AssignVariableOp', 'AssignAddVariableOp')
LAYERS = ('bn0', 'bn1')


def _calls(graph, layer):
  """The assign ops of the layer's first and second call, and the second
  call's reads of the layer's variables outside its update."""
  first = _ops(graph, f'discriminator/{layer}/', ASSIGNS)
  second = _ops(graph, f'discriminator_1/{layer}/', ASSIGNS)
  assert first and len(second) == len(first), (first, second)
  variables = {op.inputs[0].op for op in first}
  reads = [op for op in _ops(graph, f'discriminator_1/{layer}/', ('ReadVariableOp',))
           if op.inputs[0].op in variables and '/AssignMovingAvg' not in op.name and
           '/AssignNewValue' not in op.name]
  return first, second, reads


@pytest.mark.parametrize('path', sorted(ALL_PATHS))
def test_a_later_calls_forward_reads_come_before_every_update(graph, path):
  _gan(ALL_PATHS[path])
  for layer in LAYERS:
    first, second, reads = _calls(graph, layer)
    assert reads
    for op in reads:  # no input to wait for, and both calls' updates wait
      assert not op.control_inputs and len(op.inputs) == 1
      for assign in first + second:
        assert op in update_ops._ancestors([assign]), (op.name, assign.name)


@pytest.mark.parametrize('path', sorted(COLLECTION_PATHS))
def test_a_later_calls_update_follows_the_earlier_calls(graph, path):
  _gan(COLLECTION_PATHS[path][0])
  for layer in LAYERS:
    first, second, _ = _calls(graph, layer)
    update_reads = [op for op in _ops(graph, f'discriminator_1/{layer}/', ('ReadVariableOp',))
                    if '/AssignMovingAvg' in op.name or '/AssignNewValue' in op.name]
    assert update_reads
    for op in second + update_reads:
      ancestors = update_ops._ancestors([op])
      assert all(earlier in ancestors for earlier in first), op.name
    for op in first:  # and never the other way round
      assert not any(later in update_ops._ancestors([op]) for later in second)


@pytest.mark.parametrize('path', sorted(ALL_PATHS))
def test_each_call_still_runs_alone(path):
  """A generator step feeds only the noise; evaluating one call feeds only
  its input: nothing makes a step run the other call."""
  rng = np.random.RandomState(0)
  with tf.Graph().as_default():
    (real, noise, training), (d_real, d_fake, updates) = _gan(ALL_PATHS[path])
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      feed_noise = {noise: rng.randn(BATCH, 16), training: True}
      feed_real = {real: rng.rand(BATCH, 8, 8, 3), training: True}
      assert np.isfinite(sess.run(d_fake, feed_noise)).all()
      assert np.isfinite(sess.run(d_real, feed_real)).all()
      assert np.isfinite(sess.run(d_fake, {**feed_noise, training: False})).all()


@pytest.mark.parametrize('path', sorted(IN_PLACE_PATHS))
def test_in_place_calls_are_not_chained_and_say_so(graph, path):
  from tf1_bn.common import log
  log._warned.discard(('in_place_calls',))  # pylint: disable=protected-access
  with pytest.warns(UserWarning, match='in place; in-place updates of independent calls'):
    _gan(IN_PLACE_PATHS[path])
  for layer in LAYERS:
    first, second, _ = _calls(graph, layer)
    for op in second:
      assert not any(earlier in update_ops._ancestors([op]) for earlier in first)


def _replay(bn_inputs, kind):
  """The moving statistics after each step: every call's update applied in
  order (real, then fake), in float64."""
  layers = len(bn_inputs[0]) // 2
  state = [[np.zeros(6 if i == 0 else 8), np.ones(6 if i == 0 else 8)] for i in range(layers)]
  history = []
  for step in bn_inputs:
    for call in range(2):
      for i in range(layers):
        x = step[call * layers + i].astype(np.float64)
        mean, var = moments(x, -1)
        if kind == 'sample':
          n = x.size // x.shape[-1]
          var = var * n / (n - 1)
        factor = 1 - DECAY
        state[i][0] = state[i][0] - (state[i][0] - mean) * factor
        state[i][1] = state[i][1] - (state[i][1] - var) * factor
    history.append([s.copy() for layer_state in state for s in layer_state])
  return history


def _train(path, data):
  with tf.Graph().as_default():
    (real, noise, training), fetches = _gan(COLLECTION_PATHS[path][0])
    bn_inputs = v1.get_collection(BN_INPUTS)
    # The moving mean and variance of both layers (what the replay gives),
    # then renorm's statistics (compared run against run only).
    leaves = ('moving_mean', 'moving_variance')
    moving = [v for v in v1.global_variables() if v.op.name.split('/')[-1] in leaves]
    assert [v.op.name.split('/')[-1] for v in moving] == list(leaves) * 2
    moving += [v for v in v1.global_variables() if v.op.name.split('/')[-1] in (
        'moving_stddev', 'renorm_mean', 'renorm_stddev')]
    config = v1.ConfigProto(inter_op_parallelism_threads=4, intra_op_parallelism_threads=2)
    runs = []
    with v1.Session(config=config) as sess:
      for _ in range(RUNS):
        sess.run(v1.global_variables_initializer())
        states, inputs = [], []
        for real_batch, noise_batch in data:
          _, step_inputs = sess.run([fetches, bn_inputs], {
              real: real_batch, noise: noise_batch, training: True})
          inputs.append(step_inputs)
          states.append(sess.run(moving))
        runs.append((states, inputs))
  return runs


@pytest.fixture(scope='module')
def cpu_load():
  """A second thread keeping the CPU busy (numpy releases the GIL)."""
  stop = threading.Event()

  def spin():
    a = np.random.RandomState(0).rand(300, 300)
    while not stop.is_set():
      a = np.tanh(a @ a.T / 300)

  thread = threading.Thread(target=spin, daemon=True)
  thread.start()
  yield
  stop.set()
  thread.join(timeout=30)


# The unfused kernels' update arithmetic is the fused ones' (the structure
# tests cover their order); run the rest.
DETERMINISM_PATHS = sorted(p for p in COLLECTION_PATHS if 'unfused' not in p)


@pytest.mark.parametrize('path', DETERMINISM_PATHS)
def test_two_calls_per_step_are_deterministic_and_sequential(cpu_load, path):
  rng = np.random.RandomState(7)
  data = [((rng.rand(BATCH, 8, 8, 3) * 2 - 1 + 0.3 * (step % 3)).astype(np.float32),
           rng.randn(BATCH, 16).astype(np.float32)) for step in range(STEPS)]
  runs = _train(path, data)
  first_states, first_inputs = runs[0]
  for states, inputs in runs[1:]:
    for step, (a, b) in enumerate(zip(states, first_states)):
      assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b)), f'step {step} differs'
    assert all(x.tobytes() == y.tobytes() for s, t in zip(inputs, first_inputs)
               for x, y in zip(s, t))
  kind = COLLECTION_PATHS[path][1]
  if kind is None:
    return
  want = _replay(first_inputs, kind)
  for step, (got, expected) in enumerate(zip(first_states, want)):
    for g, e in zip(got, expected):
      np.testing.assert_allclose(g, e, rtol=2e-5, atol=1e-6, err_msg=f'step {step}')


# Synchronized layers on two towers (tests/call_order_towers_child.py, a
# child process: the logical CPUs must be configured before TensorFlow
# starts): the global batch's statistics, in call order, on tower 0's
# updates; the variance the moving variance averages, per front-end.
TOWER_KINDS = {'bn_layer': 'population', 'batch_normalization': 'sample',
               'batch_norm': 'sample'}


def test_synchronized_towers_are_deterministic_and_sequential(tmp_path):
  import json
  import os
  import subprocess
  import sys
  here = os.path.dirname(os.path.abspath(__file__))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join([os.path.dirname(here)] + [
      p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
  out = tmp_path / 'towers.json'
  done = subprocess.run([sys.executable, os.path.join(here, 'call_order_towers_child.py'),
                         str(out)], env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  report = json.loads(out.read_text())
  assert sorted(report) == sorted(TOWER_KINDS)
  for front_end, kind in TOWER_KINDS.items():
    runs = [[[np.asarray(m, np.float32) for m in step] for step in run]
            for run in report[front_end]['runs']]
    for run in runs[1:]:
      for step, (a, b) in enumerate(zip(run, runs[0])):
        assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b)), (front_end, step)
    # [step][tower][bn0 real, bn1 real, bn0 fake, bn1 fake] -> the global
    # batch of each call and layer, in call order.
    global_inputs = [[np.concatenate([np.asarray(tower[k]) for tower in step], 0)
                      for k in range(4)] for step in report[front_end]['inputs']]
    want = _replay(global_inputs, kind)
    for step, (got, expected) in enumerate(zip(runs[0], want)):
      for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=1e-6,
                                   err_msg=f'{front_end} step {step}')
