"""Synchronized BN: the replicated cases in a process of their own, and what
holds on one device.

The cases (tests/synchronized_cases.py) need 4 logical CPUs, which must be
configured before TensorFlow starts; this process has started it, so they
run in a child pytest (bounded by a timeout, as is every collective in them).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tf1_bn.bn import replicas

v1 = tf.compat.v1
HERE = os.path.dirname(os.path.abspath(__file__))
CHILD_TIMEOUT_S = 900
FRONT_ENDS = {
    'bn_layer': lambda x, **kw: tf1_bn.bn_layer(x, **kw),
    'batch_normalization': lambda x, **kw: tf1_bn.batch_normalization(x, training=True, **kw),
    'batch_norm': lambda x, **kw: tf1_bn.batch_norm(x, **kw),
}


def test_replicated_cases_in_their_own_process():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  done = subprocess.run(
      [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-W',
       'ignore::DeprecationWarning', 'synchronized_cases.py'], cwd=HERE, env=env,
      capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
  summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ''
  assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-3000:]
  assert ' passed' in summary and 'failed' not in summary, summary


def _collectives(graph):
  graph_def = graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  return [n for n in nodes if n.op.startswith('Collective')]


@pytest.mark.parametrize('front_end', sorted(FRONT_ENDS))
@pytest.mark.parametrize('context', ['none', 'one_tower'])
def test_one_device_is_local_batch_norm(front_end, context):
  # No replicas: synchronized=True is local BN, bit for bit, with no collective.
  data = np.random.RandomState(0).randn(6, 3, 3, 4).astype(np.float32) * 2 + 1
  outputs = {}
  for synchronized in (False, True):
    with tf.Graph().as_default() as graph:
      x = v1.placeholder(tf.float32, [None, 3, 3, 4])
      if context == 'one_tower':
        with tf1_bn.tower(0, 1):
          y = FRONT_ENDS[front_end](x, synchronized=synchronized)
      else:
        y = FRONT_ENDS[front_end](x, synchronized=synchronized)
      updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
      assert not _collectives(graph)
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        out, _ = sess.run([y, updates], {x: data, tf1_bn.training_placeholder(): True})
        moving = sess.run([v for v in v1.global_variables() if 'moving' in v.op.name])
    outputs[synchronized] = [out] + moving
  for local, synced in zip(outputs[False], outputs[True]):
    assert local.tobytes() == synced.tobytes()


def test_local_layers_in_towers_add_no_collective_and_tower_zero_updates():
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [None, 4])
    for i in range(2):
      with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, 2), v1.variable_scope('m', reuse=i > 0):
        tf1_bn.bn_layer(x)
    assert not _collectives(graph)
    assert [op.name for op in v1.get_collection(v1.GraphKeys.UPDATE_OPS)] == [
        'm/bn/moving_statistics_update/group']


@pytest.mark.parametrize('args,error,match', [
    ((1.0, 2), TypeError, '`index` must be an int'),
    ((0, '2'), TypeError, '`count` must be an int'),
    ((True, 2), TypeError, '`index` must be an int'),
    ((0, 0), ValueError, '`count` must be an int >= 1, received 0'),
    ((2, 2), ValueError, r'`index` must be an int in \[0, 1\], received 2'),
    ((-1, 2), ValueError, r'`index` must be an int in \[0, 1\]'),
])
def test_tower_arguments(args, error, match):
  with pytest.raises(error, match=match):
    with tf1_bn.tower(*args):
      pass


def test_towers_do_not_nest():
  with tf1_bn.tower(0, 2):
    with pytest.raises(ValueError, match='towers do not nest'):
      with tf1_bn.tower(1, 2):
        pass
  assert replicas.current() is None


@pytest.mark.parametrize('seconds,error,match', [
    (0, ValueError, '`seconds` must be > 0, received 0'),
    (-1, ValueError, '`seconds` must be > 0'),
    (float('inf'), ValueError, '`seconds` must be a finite number'),
    (float('nan'), ValueError, '`seconds` must be a finite number'),
    ('ten', TypeError, "`seconds` must be a float, received 'ten'"),
    (True, TypeError, '`seconds` must be a float, received True'),
])
def test_collective_timeout_must_be_positive_and_finite(seconds, error, match):
  before = tf1_bn.collective_timeout()
  with pytest.raises(error, match=match):
    tf1_bn.set_collective_timeout(seconds)
  assert tf1_bn.collective_timeout() == before


@pytest.mark.parametrize('seconds,attribute', [(7.5, 7.5), (None, 0.0)])
def test_collective_timeout_is_baked_into_the_ops(seconds, attribute):
  # None: no timeout, CollectiveReduceV2's timeout_seconds 0.
  previous = tf1_bn.set_collective_timeout(seconds)
  try:
    assert tf1_bn.collective_timeout() == seconds
    with tf.Graph().as_default() as graph:
      x = v1.placeholder(tf.float32, [None, 4])
      for i in range(2):
        with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, 2), v1.variable_scope('m', reuse=i > 0):
          tf1_bn.bn_layer(x, training=True, synchronized=True)
      timeouts = {n.attr['timeout_seconds'].f for n in _collectives(graph)}
    assert timeouts == {attribute}
  finally:
    tf1_bn.set_collective_timeout(previous)


def test_no_collective_timeout_by_default():
  assert replicas.DEFAULT_TIMEOUT_SECONDS is None


@pytest.mark.parametrize('front_end,kwargs,error,match', [
    ('bn_layer', {'synchronized': 1}, TypeError, '`synchronized` must be a bool'),
    ('batch_normalization', {'synchronized': 'yes'}, TypeError, '`synchronized` must be a bool'),
    ('batch_norm', {'synchronized': None}, TypeError, '`synchronized` must be a bool'),
    ('batch_normalization', {'synchronized': True, 'virtual_batch_size': 2}, ValueError,
     'cannot be combined with `virtual_batch_size`'),
])
def test_bad_synchronized_arguments_build_nothing(front_end, kwargs, error, match):
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [4, 3, 3, 2])
    before = len(graph.get_operations())
    with tf1_bn.tower(0, 2):
      with pytest.raises(error, match=match):
        FRONT_ENDS[front_end](x, **kwargs)
    assert len(graph.get_operations()) == before
    assert not v1.global_variables()


@pytest.mark.parametrize('devices', [(None, None), ('/cpu:1', '/device:CPU:1')])
def test_two_towers_on_one_device_are_refused(devices):
  # They would wait for each other's half of the all-sum until the timeout.
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4])
    for i, device in enumerate(devices):
      with tf.device(device), tf1_bn.tower(i, 2), v1.variable_scope('m', reuse=i > 0):
        if i == 0:
          tf1_bn.bn_layer(x, training=True, synchronized=True)
        else:
          with pytest.raises(ValueError, match=r"Replicas 0 and 1 of 2 .*'m/bn' on the same "
                                               r'device.*tf\.device'):
            tf1_bn.bn_layer(x, training=True, synchronized=True)


def _os_threads():
  return len(os.listdir('/proc/self/task'))


@pytest.mark.skipif(not os.path.isdir('/proc/self/task'), reason='counts threads through /proc')
def test_training_steps_hold_no_threads_per_step():
  # A collective with a timeout keeps one sleeping OS thread per call for the
  # whole timeout (TensorFlow's Env::SchedClosureAfter): with the old default of
  # 600 s, 50 steps of 8 towers held 800 more threads. Without a timeout the
  # count stays flat.
  towers = 8
  with tf.Graph().as_default() as graph:
    outputs = []
    for i in range(towers):
      with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, towers), \
          v1.variable_scope('m', reuse=v1.AUTO_REUSE):
        outputs.append(tf1_bn.bn_layer(tf.random.normal([4, 3], seed=i), training=True,
                                       synchronized=True))
    total = tf.add_n(outputs)
    init = v1.global_variables_initializer()
  config = v1.ConfigProto(device_count={'CPU': towers}, inter_op_parallelism_threads=towers + 1)
  with v1.Session(graph=graph, config=config) as sess:
    sess.run(init)
    for _ in range(5):
      sess.run(total)
    before = _os_threads()
    for _ in range(50):
      sess.run(total)
    assert _os_threads() - before < 20
