"""The moving-statistics update runs after everything the step reads of the
variables it writes.

Batch renorm's forward pass reads `renorm_mean` / `renorm_stddev` while the
same step's update writes them; unordered, a loaded machine sometimes read
the new values (one step-0 loss of 1.09999 instead of 1.16544). Every update
op now depends on the layer's output. Checked two ways: structurally on
every path (each assign op has the layer's output among its ancestors), and
by running renorm training repeatedly with several inter-op threads under
CPU load, bit for bit, against a numpy renorm reference.
"""
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from reference import max_relative_error, moments
from tf1_bn.bn import update_ops

v1 = tf.compat.v1
UPDATE_OPS = v1.GraphKeys.UPDATE_OPS
RENORM = dict(renorm=True, renorm_momentum=0.7, momentum=0.8, epsilon=1e-3,
              renorm_clipping={'rmax': 1.5, 'rmin': 0.6, 'dmax': 0.4})
LOAD_SECONDS = 60

PATHS = {
    'bn_layer fused': lambda x, t: tf1_bn.bn_layer(x, training=t),
    'bn_layer unfused inline': lambda x, t: tf1_bn.bn_layer(x, training=t, fused=False,
                                                           updates='inline'),
    'tf.layers fused': lambda x, t: tf1_bn.batch_normalization(x, training=t),
    'tf.layers renorm': lambda x, t: tf1_bn.batch_normalization(x, training=t, **RENORM),
    'slim zero-debias': lambda x, t: tf1_bn.batch_norm(x, is_training=t,
                                                       zero_debias_moving_mean=True),
    'slim in place': lambda x, t: tf1_bn.batch_norm(x, is_training=t, updates_collections=None),
    'slim weighted': lambda x, t: tf1_bn.batch_norm(x, is_training=t,
                                                    batch_weights=tf.ones([4])),
}


def _assign_ops(ops):
  return [op for op in ops if op.type in ('AssignSubVariableOp', 'AssignVariableOp',
                                          'AssignAddVariableOp')]


@pytest.mark.parametrize('path', sorted(PATHS))
def test_every_assign_runs_after_the_layer_output(path):
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [4, 3, 3, 5])
    training = v1.placeholder(tf.bool, [])
    before = set(graph.get_operations())
    y = PATHS[path](x, training)
    assigns = _assign_ops(set(graph.get_operations()) - before)
    assigns = [op for op in assigns if '/Initializer/' not in op.name and
               not op.name.endswith('/Assign')]
    assert assigns, 'no update built'
    # A data edge from the cond's statistics outputs orders an assign after
    # those outputs only (the cond is lowered to one Switch/Merge per
    # output); the layer's output must be a control input on its way.
    conds = [op for op in graph.get_operations() if op.type in ('If', 'StatelessIf')]
    layer_outputs = [op for op in graph.get_operations() if op.type == 'Identity'
                     and any(op.inputs[0] is cond.outputs[0] for cond in conds)]
    assert layer_outputs
    for op in assigns:
      ancestors = update_ops._ancestors([op])
      assert any(out in a.control_inputs for a in ancestors for out in layer_outputs), op.name
  del y


@pytest.mark.parametrize('path', sorted(PATHS))
def test_every_assign_runs_after_the_layer_output_with_a_python_bool(path):
  # No cond: the layer's output op itself must be a control input on the
  # way to every assign (for an inline update, the output the update
  # precedes is an identity of it); the fused training kernel instead
  # precedes every assign by data (they read its batch statistics), with no
  # control edge from it (which would stop grappler fusing it with a ReLU).
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [4, 3, 3, 5])
    before = set(graph.get_operations())
    y = PATHS[path](x, True)
    assigns = [op for op in _assign_ops(set(graph.get_operations()) - before)
               if '/Initializer/' not in op.name and not op.name.endswith('/Assign')]
    assert assigns, 'no update built'
    raw = y.op.inputs[0].op if y.op.type == 'Identity' else y.op
    fused_training = raw.type == 'FusedBatchNormV3' and raw.get_attr('is_training')
    for op in assigns:
      ancestors = update_ops._ancestors([op])
      if fused_training:
        assert raw in ancestors, op.name
      else:
        assert any(raw in a.control_inputs for a in ancestors), op.name
    if fused_training and y.op is raw:  # collected, not in place: nothing hangs on the kernel
      assert not any(raw in op.control_inputs for op in graph.get_operations()), path


def _renorm_reference(batches, momentum, renorm_momentum, epsilon, clipping):
  """tf.layers' batch renorm, step by step, in float64 (gamma 1, beta 0)."""
  channels = batches[0].shape[-1]
  state = dict(moving_mean=np.zeros(channels), moving_stddev=np.ones(channels),
               renorm_mean=np.zeros(channels), renorm_stddev=np.ones(channels))
  outputs = []
  for x in batches:
    mean, var = moments(x, -1)
    stddev = np.sqrt(var + epsilon)
    renorm_stddev = np.maximum(state['renorm_stddev'], np.sqrt(epsilon))
    r = np.clip(stddev / renorm_stddev, clipping['rmin'], clipping['rmax'])
    d = np.clip((mean - state['renorm_mean']) / renorm_stddev, -clipping['dmax'],
                clipping['dmax'])
    outputs.append((x - mean) / stddev * r + d)
    for name, value, decay in (('renorm_mean', mean, renorm_momentum),
                               ('renorm_stddev', stddev, renorm_momentum),
                               ('moving_mean', mean, momentum),
                               ('moving_stddev', stddev, momentum)):
      state[name] = state[name] - (1 - decay) * (state[name] - value)
  state['moving_variance'] = np.maximum(state['moving_stddev'] ** 2 - epsilon, 0)
  return outputs, state


def _train_renorm(batches, threads):
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None] + list(batches[0].shape[1:]))
    training = v1.placeholder(tf.bool, [])
    y = tf1_bn.batch_normalization(x, training=training, **RENORM)
    updates = v1.get_collection(UPDATE_OPS)
    state = {v.op.name.split('/')[-1]: v for v in v1.global_variables()
             if 'moving' in v.op.name or 'renorm' in v.op.name}
    config = v1.ConfigProto(inter_op_parallelism_threads=threads,
                            intra_op_parallelism_threads=threads)
    with v1.Session(config=config) as sess:
      sess.run(v1.global_variables_initializer())
      outputs = [sess.run([y, updates], {x: batch, training: True})[0] for batch in batches]
      return outputs, sess.run(state)


@pytest.fixture
def cpu_load():
  """Two busy processes for the duration of a test (bounded)."""
  spin = f'import time\nend = time.time() + {LOAD_SECONDS}\nwhile time.time() < end: pass'
  busy = [subprocess.Popen([sys.executable, '-c', spin]) for _ in range(2)]
  yield
  for process in busy:
    process.kill()
    process.wait(timeout=10)


def test_renorm_training_is_bit_identical_under_load_and_matches_numpy(cpu_load):
  rng = np.random.RandomState(0)
  batches = [(rng.randn(16, 3, 3, 6) * (1 + 0.3 * i) + 0.5 * i).astype(np.float32)
             for i in range(40)]
  runs = [_train_renorm(batches, threads=8) for _ in range(6)]
  first_outputs, first_state = runs[0]
  for outputs, state in runs[1:]:
    assert all(a.tobytes() == b.tobytes() for a, b in zip(outputs, first_outputs))
    assert all(state[k].tobytes() == first_state[k].tobytes() for k in state)
  want_outputs, want_state = _renorm_reference(
      batches, RENORM['momentum'], RENORM['renorm_momentum'], RENORM['epsilon'],
      RENORM['renorm_clipping'])
  for got, want in zip(first_outputs, want_outputs):
    assert max_relative_error(got, want) < 1e-5
  for name, want in want_state.items():
    assert max_relative_error(first_state[name], want) < 1e-5, name
