"""A layer called more than once per step updates in call order.

A DCGAN-style discriminator (conv, BN, leaky relu, twice) is applied to a
real batch, then with reuse to a fake one: every BN layer is called twice per
step. Each call's update must read what the previous call's update wrote, so
after every step the moving statistics are those of the two updates applied
one after the other, real then fake. Checked two ways: structurally on every
path (each later call's assigns have the earlier call's among their
ancestors, and so do its forward reads of the moving variables), and by
training repeatedly with several inter-op threads while another thread loads
the CPU: bit-identical across runs and equal to a float64 numpy replay of the
sequential updates.
"""
import threading

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from reference import moments
from tf1_bn.bn import update_ops

v1 = tf.compat.v1
DECAY = 0.9
STEPS = 16
RUNS = 3
BATCH = 8


def _layers(name, x, t, **kw):
  return tf1_bn.batch_normalization(x, training=t, momentum=DECAY, name=name, **kw)


def _slim(name, x, t, **kw):
  return tf1_bn.batch_norm(x, is_training=t, decay=DECAY, scope=name, **kw)


# path: (layer builder (name, x, training) -> y, variance the moving variance
# averages). The reuse comes from the enclosing variable scope.
PATHS = {
    'bn_layer collection': (
        lambda n, x, t: tf1_bn.bn_layer(x, training=t, name=n, moving_decay=DECAY),
        'population'),
    'bn_layer inline': (
        lambda n, x, t: tf1_bn.bn_layer(x, training=t, name=n, moving_decay=DECAY,
                                        updates='inline'), 'population'),
    'bn_layer unfused': (
        lambda n, x, t: tf1_bn.bn_layer(x, training=t, name=n, moving_decay=DECAY,
                                        fused=False), 'population'),
    'batch_normalization': (_layers, 'sample'),
    'batch_normalization unfused': (lambda n, x, t: _layers(n, x, t, fused=False),
                                    'population'),
    'batch_norm in place': (lambda n, x, t: _slim(n, x, t, updates_collections=None),
                            'sample'),
    'batch_norm collection': (_slim, 'sample'),
    'batch_norm general in place': (
        lambda n, x, t: _slim(n, x, t, updates_collections=None, fused=False), 'population'),
}
# Paths whose forward pass reads moving variables in training: renorm's
# statistics, a zero-debiased mean's helpers.
STRUCTURE_ONLY = {
    'batch_normalization renorm': lambda n, x, t: _layers(n, x, t, renorm=True),
    'batch_norm zero-debias': lambda n, x, t: _slim(n, x, t, zero_debias_moving_mean=True),
    'bn_layer synchronized (one device)': lambda n, x, t: tf1_bn.bn_layer(
        x, training=t, name=n, synchronized=True),
}
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
  fetches = [d_real, d_fake, v1.get_collection(v1.GraphKeys.UPDATE_OPS)]
  return (real, noise, training), fetches


def _assigns(graph, layer):
  return sorted((op for op in graph.get_operations()
                 if op.type in ('AssignSubVariableOp', 'AssignVariableOp') and
                 '/Initializer/' not in op.name and not op.name.endswith('/Assign') and
                 op.name.startswith(layer)),
                key=lambda op: op._id)  # pylint: disable=protected-access


@pytest.mark.parametrize('path', sorted(list(PATHS) + list(STRUCTURE_ONLY)))
def test_a_later_call_reads_and_updates_after_the_earlier_calls_update(graph, path):
  bn = PATHS[path][0] if path in PATHS else STRUCTURE_ONLY[path]
  _gan(bn)
  for layer in ('discriminator/bn0', 'discriminator/bn1'):
    first = [op for op in _assigns(graph, layer + '/')]
    second = [op for op in _assigns(graph, layer.replace('discriminator', 'discriminator_1'))]
    assert first and len(second) == len(first), (layer, first, second)
    for op in second:
      ancestors = update_ops._ancestors([op])
      assert all(earlier in ancestors for earlier in first), op.name
    for op in first:  # and never the other way round
      assert not any(later in update_ops._ancestors([op]) for later in second)
    # Every read of the layer's moving variables in the second call (its
    # forward pass included) follows the first call's update.
    variables = {op.inputs[0].op for op in first}
    reads = [op for op in graph.get_operations() if op.type == 'ReadVariableOp' and
             op.inputs[0].op in variables and op.name.startswith('discriminator_1/')]
    assert reads
    for op in reads:
      assert all(earlier in update_ops._ancestors([op]) for earlier in first), op.name


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
    (real, noise, training), fetches = _gan(PATHS[path][0])
    bn_inputs = v1.get_collection(BN_INPUTS)
    moving = [v for v in v1.global_variables() if 'moving_' in v.op.name]
    assert [v.op.name.split('/')[-1] for v in moving] == ['moving_mean', 'moving_variance'] * 2
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


@pytest.mark.parametrize('path', sorted(PATHS))
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
  want = _replay(first_inputs, PATHS[path][1])
  for step, (got, expected) in enumerate(zip(first_states, want)):
    for g, e in zip(got, expected):
      np.testing.assert_allclose(g, e, rtol=2e-5, atol=1e-6, err_msg=f'step {step}')
