"""Synchronized BN on 4 logical CPUs: run by tests/test_synchronized.py in a
process of its own (the devices must be configured before TensorFlow
starts, so these cannot share the main test process).

References: numpy over the concatenated global batch (outputs, gradients of
x, gamma and beta, moving statistics), and the same front-end run locally
on one device with the concatenated batch (moving statistics in each
front-end's own convention; a short SGD run).
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import replicated
import tf1_bn
from reference import batch_norm_gradients, batch_norm_train, max_relative_error, moments

replicated.configure_cpus(4)
tf1_bn.set_collective_timeout(60)

v1 = tf.compat.v1
FRONT_ENDS = ['bn_layer', 'batch_normalization', 'batch_norm']
EPSILON = {'bn_layer': 1e-5, 'batch_normalization': 1e-3, 'batch_norm': 1e-3}
COLLECTIVE_OPS = ('CollectiveReduceV2', 'CollectiveReduce')
HERE = os.path.dirname(os.path.abspath(__file__))


def _batches(rng, sizes, inner, mean=1.5, spread=3.0, dtype=np.float32):
  return [(rng.randn(size, *inner) * spread + mean).astype(dtype) for size in sizes]


def _gradients_of(batches, rng):
  return [rng.randn(*b.shape).astype(b.dtype) for b in batches]


def _check_against_numpy(result, batches, dys, axis, eps, tol=2e-5, grad_tol=5e-5):
  """Outputs and gradients of every replica against BN over the global batch
  (gamma 1, beta 0 at the first step)."""
  x = np.concatenate(batches)
  dy = np.concatenate(dys)
  want_y, _, _ = batch_norm_train(x, None, None, eps, axis)
  want_dx, want_dgamma, want_dbeta = batch_norm_gradients(x, dy, None, eps, axis)
  replicas = result['replicas']
  got_y = np.concatenate([r['y'] for r in replicas])
  got_dx = np.concatenate([r['dx'] for r in replicas])
  assert got_y.dtype == batches[0].dtype
  assert max_relative_error(got_y, want_y) < tol
  assert max_relative_error(got_dx, want_dx) < grad_tol
  # Each replica's dgamma / dbeta is its own part; the optimizer adds them.
  assert max_relative_error(sum(r['dgamma'] for r in replicas), want_dgamma) < grad_tol
  assert max_relative_error(sum(r['dbeta'] for r in replicas), want_dbeta) < grad_tol


def _check_moving_like_single_device(result, front_end, batches, dys, axis, tol=1e-5, steps=1,
                                     **kw):
  """Every copy of every moving variable equals the single-device layer's
  after the same steps on the concatenated batch."""
  single = replicated.run('single', front_end, [np.concatenate(batches)], [np.concatenate(dys)],
                          synchronized=False, steps=steps, layer_kwargs=dict(axis=axis, **kw))
  for name, copies in result['moving'].items():
    want = single['moving'][name][0]
    for copy in copies:
      assert copy.tobytes() == copies[0].tobytes(), f'{name}: replica copies differ'
      assert max_relative_error(copy, want) < tol, name


def _collectives(graph):
  graph_def = graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  return [n.name for n in nodes if n.op in COLLECTIVE_OPS]


# --- outputs, gradients and moving statistics against the global batch --------

def _check_layer(kind, front_end, training_kind, shape=(3, 4, 4, 5), axis=-1, fused=None,
                 sizes=(3, 2), dtype=np.float32, tol=2e-5):
  rng = np.random.RandomState(7)
  batches = _batches(rng, sizes, shape[1:], dtype=dtype)
  dys = _gradients_of(batches, rng)
  kwargs = dict(axis=axis, fused=fused)
  result = replicated.run(kind, front_end, batches, dys, training_kind,
                          layer_kwargs=kwargs)
  assert _collectives(result['graph']), 'a synchronized layer on replicas all-sums'
  _check_against_numpy(result, batches, dys, axis, EPSILON[front_end], tol, 2.5 * tol)
  _check_moving_like_single_device(result, front_end, batches, dys, **kwargs)


@pytest.mark.parametrize('training_kind', ['placeholder', 'bool'])
@pytest.mark.parametrize('front_end', FRONT_ENDS)
@pytest.mark.parametrize('kind', ['mirrored', 'towers'])
def test_matches_global_batch(kind, front_end, training_kind):
  _check_layer(kind, front_end, training_kind)


@pytest.mark.parametrize('fused', [None, False])
@pytest.mark.parametrize('shape,axis', [((4, 3, 5, 5), 1), ((6, 7), -1), ((2, 3, 4, 2, 3), -1),
                                        ((3, 4, 5, 3), [1, 3])])
def test_layouts_and_paths_match_global_batch(shape, axis, fused):
  _check_layer('towers', 'bn_layer', 'placeholder', shape, axis, fused)


@pytest.mark.parametrize('front_end', ['batch_normalization', 'batch_norm'])
def test_drop_in_layouts_match_global_batch(front_end):
  _check_layer('mirrored', front_end, 'placeholder', (4, 3, 5, 5), 1)
  _check_layer('mirrored', front_end, 'placeholder', (6, 7), -1)


def test_graph_switch_default_placeholder():
  _check_layer('mirrored', 'bn_layer', 'default')


@pytest.mark.parametrize('fused', [None, False])
@pytest.mark.parametrize('kind', ['mirrored', 'towers'])
def test_unequal_and_empty_replica_batches(kind, fused):
  _check_layer(kind, 'bn_layer', 'placeholder', fused=fused, sizes=(5, 1, 0, 2))


@pytest.mark.parametrize('fused', [None, False])
def test_all_empty_global_batch_leaves_moving_statistics(fused):
  rng = np.random.RandomState(0)
  batches = _batches(rng, (0, 0), (4, 4, 5))
  result = replicated.run('mirrored', 'bn_layer', batches, _gradients_of(batches, rng),
                          layer_kwargs=dict(fused=fused))
  assert all(r['y'].shape == (0, 4, 4, 5) for r in result['replicas'])
  for name in ('bn/moving_mean', 'bn/moving_variance'):
    initial = np.zeros(5, np.float32) if name.endswith('mean') else np.ones(5, np.float32)
    for copy in result['moving'][name]:
      assert copy.tobytes() == initial.tobytes()


@pytest.mark.parametrize('fused', [None, False])
def test_mean_1000_spread_1_statistics_are_exact(fused):
  # The moving mean (the shift) is still 0: E[x^2] - E[x]^2 in float32 would
  # lose about a quarter of the variance.
  rng = np.random.RandomState(3)
  batches = _batches(rng, (32, 16, 8, 8), (2, 2, 4), mean=1000.0, spread=1.0)
  dys = _gradients_of(batches, rng)
  result = replicated.run('towers', 'bn_layer', batches, dys, layer_kwargs=dict(
      fused=fused, moving_decay=0.0))
  mean, var = moments(np.concatenate(batches), -1)
  for copy in result['moving']['bn/moving_mean']:
    assert max_relative_error(copy, mean) < 1e-6
  for copy in result['moving']['bn/moving_variance']:
    assert max_relative_error(copy, var) < 1e-5
  # float32 inputs at 1000 carry 6e-5 of rounding into x - mean.
  _check_against_numpy(result, batches, dys, -1, 1e-5, tol=1e-4, grad_tol=2e-4)


@pytest.mark.parametrize('front_end', ['bn_layer', 'batch_normalization'])
def test_float16(front_end):
  rng = np.random.RandomState(5)
  batches = _batches(rng, (4, 2), (3, 3, 6), dtype=np.float16)
  dys = _gradients_of(batches, rng)
  result = replicated.run('mirrored', front_end, batches, dys)
  _check_against_numpy(result, batches, dys, -1, EPSILON[front_end], tol=2e-3, grad_tol=1e-2)
  _check_moving_like_single_device(result, front_end, batches, dys, -1, tol=1e-5)


def _adjustment(shape):
  """A fixed per-channel scale and bias (tf.layers' adjustment)."""
  channels = shape[-1]
  ramp = tf.cast(tf.range(channels), tf.float32) / tf.cast(channels, tf.float32)
  return 0.9 + 0.2 * ramp, 0.1 - 0.2 * ramp


@pytest.mark.parametrize('extra', ['renorm', 'adjustment'])
def test_renorm_and_adjustment_match_single_device(extra):
  rng = np.random.RandomState(8)
  batches = _batches(rng, (4, 2), (3, 3, 4))
  dys = _gradients_of(batches, rng)
  kwargs = dict(axis=-1, momentum=0.9)
  if extra == 'renorm':
    kwargs.update(renorm=True, renorm_clipping={'rmax': 2.0, 'rmin': 0.5, 'dmax': 1.0},
                  renorm_momentum=0.9)
  else:
    kwargs.update(adjustment=_adjustment)
  result = replicated.run('towers', 'batch_normalization', batches, dys, steps=3,
                          layer_kwargs=kwargs)
  single = replicated.run('single', 'batch_normalization', [np.concatenate(batches)],
                          [np.concatenate(dys)], synchronized=False, steps=3,
                          layer_kwargs=kwargs)
  # The last step's outputs and gradients, and the moving statistics.
  for key in ('y', 'dx'):
    got = np.concatenate([r[key] for r in result['replicas']])
    assert max_relative_error(got, single['replicas'][0][key]) < 1e-5, key
  for key in ('dgamma', 'dbeta'):
    got = sum(r[key] for r in result['replicas'])
    assert max_relative_error(got, single['replicas'][0][key]) < 1e-5, key
  _check_moving_like_single_device(result, 'batch_normalization', batches, dys, steps=3,
                                   **kwargs)


def test_slim_batch_weights_are_weighted_over_the_global_batch():
  rng = np.random.RandomState(9)
  batches = _batches(rng, (4, 3), (6,))
  dys = _gradients_of(batches, rng)
  weights = [rng.uniform(0.2, 2.0, len(b)).astype(np.float32) for b in batches]
  # batch_weights is per replica: towers built by hand.
  graph = tf.Graph()
  with graph.as_default():
    xs = [v1.placeholder(tf.float32, [None, 6]) for _ in batches]
    ws = [v1.placeholder(tf.float32, [None]) for _ in batches]
    outputs = []
    for i in range(2):
      with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, 2), v1.variable_scope('', reuse=i > 0):
        outputs.append(tf1_bn.batch_norm(xs[i], batch_weights=ws[i], scope='bn', decay=0.5,
                                         synchronized=True))
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    moving = {v.op.name: v for v in v1.global_variables() if 'moving' in v.op.name}
    with v1.Session(config=replicated.session_config()) as sess:
      sess.run(v1.global_variables_initializer())
      feed = {**dict(zip(xs, batches)), **dict(zip(ws, weights))}
      sess.run([updates, outputs], feed)
      got = sess.run(moving)
  x = np.concatenate(batches).astype(np.float64)
  w = np.concatenate(weights).astype(np.float64)[:, None]
  mean = (w * x).sum(0) / w.sum()
  var = (w * (x - mean) ** 2).sum(0) / w.sum()
  assert max_relative_error(got['bn/moving_mean'], 0.5 * mean) < 1e-5
  assert max_relative_error(got['bn/moving_variance'], 0.5 + 0.5 * var) < 1e-5


@pytest.mark.parametrize('front_end', FRONT_ENDS)
def test_masks_count_over_the_global_batch(front_end):
  # Towers with padded sequences of different lengths, one all padding:
  # statistics of the unmasked positions of the global batch.
  rng = np.random.RandomState(10)
  batches = _batches(rng, (3, 2), (4, 3))
  masks = [np.arange(4)[None, :] < np.array(lengths)[:, None] for lengths in ([4, 1, 2], [0, 0])]
  graph = tf.Graph()
  with graph.as_default():
    xs = [v1.placeholder(tf.float32, [None, 4, 3]) for _ in batches]
    ms = [v1.placeholder(tf.bool, [None, 4]) for _ in batches]
    outputs = []
    for i in range(2):
      with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, 2), v1.variable_scope('', reuse=i > 0):
        outputs.append(replicated.build_layer(front_end, xs[i], True, True, mask=ms[i]))
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    moving = {v.op.name: v for v in v1.global_variables() if 'moving' in v.op.name}
    with v1.Session(config=replicated.session_config()) as sess:
      sess.run(v1.global_variables_initializer())
      feed = {**dict(zip(xs, batches)), **dict(zip(ms, masks))}
      got_y, _ = sess.run([outputs, updates], feed)
      got = sess.run(moving)
  x = np.concatenate(batches).astype(np.float64)
  selected = x[np.concatenate(masks)]
  mean, var = selected.mean(0), selected.var(0)
  eps = EPSILON[front_end]
  assert max_relative_error(np.concatenate(got_y), (x - mean) / np.sqrt(var + eps)) < 2e-5
  decay = {'bn_layer': 0.9, 'batch_normalization': 0.99, 'batch_norm': 0.999}[front_end]
  assert max_relative_error(got['bn/moving_mean'], (1 - decay) * mean) < 1e-5
  assert max_relative_error(got['bn/moving_variance'], decay + (1 - decay) * var) < 1e-5


# --- copies of the moving statistics ------------------------------------------------

@pytest.mark.parametrize('synchronized', [True, False])
def test_moving_statistics_copies_stay_identical(synchronized):
  rng = np.random.RandomState(11)
  batches = _batches(rng, (3, 3, 3, 3), (2, 2, 4))
  batches = [b * (i + 1) + i for i, b in enumerate(batches)]  # replicas differ
  dys = _gradients_of(batches, rng)
  steps, decay = 4, 0.7
  result = replicated.run('mirrored', 'bn_layer', batches, dys, synchronized=synchronized,
                          steps=steps, layer_kwargs=dict(moving_decay=decay))
  if synchronized:
    mean, var = moments(np.concatenate(batches), -1)
  else:
    # Local statistics: every copy follows the average of the replicas'.
    stats = [moments(b, -1) for b in batches]
    mean = np.mean([m for m, _ in stats], axis=0)
    var = np.mean([s for _, s in stats], axis=0)
  keep = np.float32(decay) ** steps
  want = {'bn/moving_mean': (1 - keep) * mean, 'bn/moving_variance': keep + (1 - keep) * var}
  for name, copies in result['moving'].items():
    if name in want:
      assert len(copies) == 4
      assert all(c.tobytes() == copies[0].tobytes() for c in copies), name
      assert max_relative_error(copies[0], want[name]) < 1e-5, name


# --- a short training run ----------------------------------------------------

def _mlp(x, synchronized):
  h = tf.matmul(x, v1.get_variable('w1', [6, 8], initializer=v1.glorot_uniform_initializer(
      seed=1)))
  h = tf.nn.relu(tf1_bn.bn_layer(h, name='bn1', synchronized=synchronized))
  h = tf.matmul(h, v1.get_variable('w2', [8, 3], initializer=v1.glorot_uniform_initializer(
      seed=2)))
  return tf1_bn.batch_normalization(h, training=tf1_bn.training_placeholder(), name='bn2',
                                    synchronized=synchronized)


def _train(kind, batches, targets, steps=5):
  """SGD on the mean squared error of the global batch; returns variables."""
  graph = tf.Graph()
  with graph.as_default():
    count = len(batches)
    xs = [v1.placeholder(tf.float32, [None, 6]) for _ in batches]
    ts = [v1.placeholder(tf.float32, [None, 3]) for _ in batches]
    total = float(sum(len(b) for b in batches))
    optimizer = v1.train.GradientDescentOptimizer(0.1)

    def replica_loss(i, synchronized):
      # Scaled by the global batch, so the replicas' sum is the global mean.
      return tf.reduce_sum(tf.square(_mlp(xs[i], synchronized) - ts[i])) / total

    if kind == 'single':
      train_ops = [tf1_bn.minimize(optimizer, replica_loss(0, False))]
    elif kind == 'mirrored':
      strategy = tf.distribute.MirroredStrategy(devices=[f'/cpu:{i}' for i in range(count)])
      with strategy.scope():
        def step():
          context = tf.distribute.get_replica_context()
          # The strategy sums the replicas' gradients: each replica's loss
          # is its part of the global batch's mean.
          return tf1_bn.minimize(optimizer, replica_loss(context._replica_id_in_sync_group, True))
        train_ops = strategy.experimental_local_results(
            strategy.extended.call_for_each_replica(step))
    else:
      tower_grads = []
      for i in range(count):
        with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, count), \
            v1.variable_scope(v1.get_variable_scope(), reuse=i > 0):
          loss = replica_loss(i, True)
          tower_grads.append(optimizer.compute_gradients(loss))
      summed = [(tf.add_n([g[k][0] for g in tower_grads]), tower_grads[0][k][1])
                for k in range(len(tower_grads[0]))]
      with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        train_ops = [optimizer.apply_gradients(summed)]
    feed = {tf1_bn.training_placeholder(): True}
    if kind == 'single':
      feed.update({xs[0]: np.concatenate(batches), ts[0]: np.concatenate(targets)})
    else:
      feed.update({**dict(zip(xs, batches)), **dict(zip(ts, targets))})
    with v1.Session(config=replicated.session_config()) as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(steps):
        sess.run(train_ops, feed)
      return sess.run({v.op.name: v for v in v1.global_variables()})


@pytest.mark.parametrize('kind', ['mirrored', 'towers'])
def test_short_sgd_run_equals_single_device_global_batch(kind):
  rng = np.random.RandomState(2)
  sizes = (4, 4) if kind == 'mirrored' else (5, 3)
  batches = _batches(rng, sizes, (6,))
  targets = [rng.randn(len(b), 3).astype(np.float32) for b in batches]
  want = _train('single', [np.concatenate(batches)], [np.concatenate(targets)])
  got = _train(kind, batches, targets)
  assert sorted(got) == sorted(want)
  for name, value in want.items():
    assert max_relative_error(got[name], value) < 1e-5, name


# --- guards -------------------------------------------------------------------

def _two_towers(layers_of_tower):
  for i in range(2):
    with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, 2), v1.variable_scope('', reuse=v1.AUTO_REUSE):
      layers_of_tower(i)


def test_towers_building_layers_in_another_order_raise_naming_both():
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [None, 4])

    def tower(i):
      names = ['first', 'second'] if i == 0 else ['second', 'first']
      for name in names:
        if i == 1 and name == 'second':
          before = len(graph.get_operations()), len(v1.global_variables())
          with pytest.raises(ValueError, match=r"call 0.*'first'.*'second'"):
            tf1_bn.bn_layer(x, name=name, synchronized=True)
          assert (len(graph.get_operations()), len(v1.global_variables())) == before
          return
        tf1_bn.bn_layer(x, name=name, synchronized=True)

    _two_towers(tower)


def test_towers_with_different_channels_raise():
  with tf.Graph().as_default():
    def tower(i):
      x = v1.placeholder(tf.float32, [None, 4 + i])
      if i == 0:
        tf1_bn.bn_layer(x, name='bn', synchronized=True)
      else:
        with pytest.raises(ValueError, match='4 channels.*5 channels'):
          tf1_bn.bn_layer(x, name='bn2', synchronized=True)
    _two_towers(tower)


def test_only_tower_zero_updates():
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4])
    _two_towers(lambda i: tf1_bn.batch_normalization(x, name='bn', synchronized=True,
                                                     training=True))
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    # tf.layers' own names.
    assert [op.name for op in updates] == ['bn/AssignMovingAvg/AssignSubVariableOp',
                                           'bn/AssignMovingAvg_1/AssignSubVariableOp']


def test_a_missing_peer_times_out_naming_the_layer():
  # Fetching one tower's output leaves the other's half of the all-sum
  # unrun: an error within the timeout, not a hang. In a process of its
  # own: a timed-out collective aborts the process's collective executor.
  script = textwrap.dedent('''
      import sys
      sys.path.insert(0, %r)
      import numpy as np, tensorflow as tf
      import replicated, tf1_bn
      replicated.configure_cpus(2)
      tf1_bn.set_collective_timeout(2)
      v1 = tf.compat.v1
      with tf.Graph().as_default():
        x = [v1.placeholder(tf.float32, [None, 3]) for _ in range(2)]
        ys = []
        for i in range(2):
          with tf.device('/cpu:%%d' %% i), tf1_bn.tower(i, 2), \\
              v1.variable_scope('model', reuse=i > 0):
            ys.append(tf1_bn.bn_layer(x[i], name='layer7', training=True, synchronized=True))
        with v1.Session(config=replicated.session_config()) as sess:
          sess.run(v1.global_variables_initializer())
          try:
            sess.run(ys[0], {x[0]: np.ones([2, 3], np.float32)})
          except tf.errors.DeadlineExceededError as error:
            print('TIMEOUT', 'model/layer7/cross_replica_sum' in str(error))
      ''' % HERE)
  done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                        timeout=120)
  assert 'TIMEOUT True' in done.stdout, done.stdout + done.stderr[-3000:]


# --- deployment ------------------------------------------------------------

def test_export_has_no_collective_and_checkpoint_restores_locally(tmp_path):
  rng = np.random.RandomState(4)
  batches = _batches(rng, (4, 4), (3, 3, 5))
  graph = tf.Graph()
  with graph.as_default():
    xs = [v1.placeholder(tf.float32, [None, 3, 3, 5]) for _ in batches]
    ys = []
    for i in range(2):
      with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, 2), v1.variable_scope('m', reuse=i > 0):
        ys.append(tf1_bn.batch_norm(xs[i], scope='bn', synchronized=True,
                                    is_training=tf1_bn.training_placeholder()))
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    with v1.Session(config=replicated.session_config()) as sess:
      sess.run(v1.global_variables_initializer())
      # Every tower's output: tower 1's half of the all-sum runs only then.
      sess.run([updates, ys], {**dict(zip(xs, batches)), tf1_bn.training_placeholder(): True})
      inference = sess.run(ys[0], {xs[0]: batches[0]})
      tf1_bn.export_inference(sess, {'x': xs[0]}, {'y': ys[0]}, str(tmp_path / 'export'))
      v1.train.Saver().save(sess, str(tmp_path / 'ckpt' / 'model'))
  loaded = tf.saved_model.load(str(tmp_path / 'export'))
  function = loaded.signatures['serving_default']
  exported = function(x=tf.constant(batches[0]))['y'].numpy()
  assert max_relative_error(exported, inference) < 1e-6
  ops = {n.op for n in function.graph.as_graph_def().node}
  ops |= {n.op for f in function.graph.as_graph_def().library.function for n in f.node_def}
  assert not ops & set(COLLECTIVE_OPS)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 3, 3, 5])
    with v1.variable_scope('m'):
      y = tf1_bn.batch_norm(x, scope='bn', is_training=False)  # local: the same names
    with v1.Session() as sess:
      v1.train.Saver().restore(sess, str(tmp_path / 'ckpt' / 'model'))
      np.testing.assert_array_equal(sess.run(y, {x: batches[0]}), inference)


# --- across processes ----------------------------------------------------------------

def test_multi_worker_two_processes_on_loopback(tmp_path):
  done = subprocess.run([sys.executable, os.path.join(HERE, 'multiworker_run.py'),
                         str(tmp_path)], capture_output=True, text=True, timeout=240)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
  rng = np.random.RandomState(6)
  batches = _batches(rng, (3, 2), (4, 4, 5))
  dys = _gradients_of(batches, rng)
  results = [np.load(tmp_path / f'worker{task}.npz') for task in range(2)]
  result = {'replicas': [{k: r[k] for k in ('y', 'dx', 'dgamma', 'dbeta')} for r in results],
            'moving': {name: [r[name.replace('/', '__')] for r in results]
                       for name in ('bn/moving_mean', 'bn/moving_variance')}}
  _check_against_numpy(result, batches, dys, -1, 1e-5)
  _check_moving_like_single_device(result, 'bn_layer', batches, dys, -1)


# --- real TF1 code: tf-slim's ResNet v1, unmodified, on towers ----------------------

def _slim_resnet(images):
  """tf_slim.nets.resnet_v1 with thin blocks under its own arg scope, every
  slim.batch_norm synchronized through one more arg scope."""
  import tf_slim
  from tf_slim.nets import resnet_v1
  blocks = [resnet_v1.resnet_v1_block('block1', base_depth=2, num_units=1, stride=2),
            resnet_v1.resnet_v1_block('block2', base_depth=4, num_units=1, stride=1)]
  with tf_slim.arg_scope(resnet_v1.resnet_arg_scope()), \
      tf_slim.arg_scope([tf_slim.batch_norm], synchronized=True):
    logits, _ = resnet_v1.resnet_v1(images, blocks, num_classes=5, is_training=True,
                                    global_pool=True, scope='resnet')
  return tf.reshape(logits, [-1, 5])


def test_slim_resnet_on_towers_equals_one_device(tmp_path):
  pytest.importorskip('tf_slim')
  rng = np.random.RandomState(12)
  images = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  weights = rng.randn(4, 5).astype(np.float32)
  with tf1_bn.patch_slim():
    with tf.Graph().as_default():
      x = v1.placeholder(tf.float32, [None, 32, 32, 3])
      logits = _slim_resnet(x)
      kernels = [v for v in v1.trainable_variables() if 'weights' in v.op.name]
      grads = tf.gradients(tf.reduce_sum(logits * weights), kernels)
      with v1.Session(config=replicated.session_config()) as sess:
        sess.run(v1.global_variables_initializer())
        want_logits, want_grads = sess.run([logits, grads], {x: images})
        v1.train.Saver().save(sess, str(tmp_path / 'model'))
    with tf.Graph().as_default():
      xs = [v1.placeholder(tf.float32, [None, 32, 32, 3]) for _ in range(2)]
      tower_logits, tower_grads = [], []
      for i in range(2):
        with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, 2), \
            v1.variable_scope(v1.get_variable_scope(), reuse=i > 0):
          tower_logits.append(_slim_resnet(xs[i]))
          kernels = [v for v in v1.trainable_variables() if 'weights' in v.op.name]
          tower_grads.append(tf.gradients(
              tf.reduce_sum(tower_logits[-1] * weights[2 * i:2 * i + 2]), kernels))
      with v1.Session(config=replicated.session_config()) as sess:
        v1.train.Saver().restore(sess, str(tmp_path / 'model'))
        got_logits, got_grads = sess.run([tower_logits, tower_grads],
                                         {xs[0]: images[:2], xs[1]: images[2:]})
  assert max_relative_error(np.concatenate(got_logits), want_logits) < 1e-4
  for got_a, got_b, want in zip(*got_grads, want_grads):
    assert max_relative_error(got_a + got_b, want) < 1e-4


# --- restore and recompute under a strategy ---------------------------------------------

def test_restore_and_recompute_write_every_copy_under_a_strategy(tmp_path):
  rng = np.random.RandomState(13)
  batches = _batches(rng, (4, 3), (5,))
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 5])
    tf1_bn.bn_layer(x, name='bn')  # local, one device: the checkpoint
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      saved = {}
      for variable in v1.global_variables():
        saved[variable.op.name] = rng.uniform(0.5, 2.0, 5).astype(np.float32)
        variable.load(saved[variable.op.name], sess)
      v1.train.Saver().save(sess, str(tmp_path / 'model'))
  with tf.Graph().as_default():
    built = replicated.build('mirrored', 'bn_layer', [b.shape for b in batches])
    strategy = built['strategy']
    variables = {v.name.split(':')[0]: v for v in v1.global_variables()}
    with v1.Session(config=replicated.session_config()) as sess:
      sess.run(v1.global_variables_initializer())
      tf1_bn.restore(sess, str(tmp_path / 'model'))
      for name, value in saved.items():
        for copy in strategy.experimental_local_results(variables[name]):
          np.testing.assert_array_equal(sess.run(copy), value)
      feed = {built['training']: True, **dict(zip(built['x'], batches))}
      tf1_bn.recompute_statistics(sess, [feed])
      mean, var = moments(np.concatenate(batches), -1)
      for name, want in (('bn/moving_mean', mean), ('bn/moving_variance', var)):
        copies = [sess.run(c) for c in strategy.experimental_local_results(variables[name])]
        assert copies[0].tobytes() == copies[1].tobytes()
        assert max_relative_error(copies[0], want) < 1e-6
