"""One protocol for a BN layer on several replicas, for the synchronized tests.

`run(kind, front_end, batches, ...)` builds the layer once per replica (one
batch each) and runs `steps` training steps, then returns every replica's
outputs, the gradients of `sum(y * dy)` and the moving statistics of every
copy. `kind` is where the replicas come from:

* 'mirrored': `tf.distribute.MirroredStrategy` on /cpu:0.. (needs logical
  CPUs, configured before TensorFlow starts: see `configure_cpus`);
* 'towers': `tf.device` + `tf1_bn.tower(i, n)`, variables shared by reuse;
* 'multiworker': `MultiWorkerMirroredStrategy`, one replica per process
  (TF_CONFIG set, this process's task given);
* 'single': one device, the batches concatenated: the reference.

Nothing here asserts: the test modules compare.
"""
import json
import os

import numpy as np
import tensorflow as tf

import tf1_bn

v1 = tf.compat.v1
LAYER = 'bn'
# Threads for sessions and servers: collectives must not starve the
# inter-op pool (TensorFlow's own multi-worker tests give it workers + 1).
INTER_OP_THREADS = 8
# A session given an explicit ConfigProto sees only CPU:0 unless told more.
CPU_COUNT = 4


def configure_cpus(count):
  """`count` logical CPU devices; must run before TensorFlow initializes."""
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
  tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)


def build_layer(front_end, x, training, synchronized, axis=-1, **kwargs):
  """The front-end's layer, named `bn`, with gamma and beta."""
  if front_end == 'bn_layer':
    return tf1_bn.bn_layer(x, training=training, name=LAYER, axis=axis,
                           synchronized=synchronized, **kwargs)
  if front_end == 'batch_normalization':
    return tf1_bn.batch_normalization(x, axis=axis, training=training, name=LAYER,
                                      synchronized=synchronized, **kwargs)
  data_format = 'NCHW' if axis == 1 else 'NHWC'
  return tf1_bn.batch_norm(x, is_training=training, scope=LAYER, scale=True,
                           data_format=data_format, synchronized=synchronized, **kwargs)


def _variables(prefix=LAYER + '/'):
  # v.name: a MirroredVariable's op.name is its local copy's in a replica.
  names = {v.name.split(':')[0]: v for v in v1.global_variables()}
  return {name: v for name, v in names.items() if name.startswith(prefix)}


def _replica_fn(front_end, xs, dys, training, synchronized, layer_kwargs, extra):
  def fn(index):
    y = build_layer(front_end, xs[index], training, synchronized, **layer_kwargs)
    params = _variables()
    gamma, beta = params[LAYER + '/gamma'], params[LAYER + '/beta']
    dx, dgamma, dbeta = tf.gradients(y, [xs[index], gamma.handle, beta.handle], dys[index])
    outputs = {'y': y, 'dx': dx, 'dgamma': dgamma, 'dbeta': dbeta}
    if extra is not None:
      outputs.update(extra(index, y))
    return outputs
  return fn


def _copies(strategy, variable):
  if strategy is None:
    return [variable]
  return list(strategy.experimental_local_results(variable))


def build(kind, front_end, shapes, dtype=tf.float32, training_kind='placeholder',
          synchronized=True, layer_kwargs=None, extra=None, devices=None):
  """The graph: per-replica placeholders and fetches.

  Returns a dict: x, dy (placeholder lists), training (a placeholder or None),
  per_replica (list of output dicts), updates, strategy.
  """
  layer_kwargs = dict(layer_kwargs or {})
  count = len(shapes)
  if training_kind == 'placeholder':
    training = v1.placeholder(tf.bool, [], name='is_training')
  elif training_kind == 'default':
    training = None
  else:
    training = True
  xs = [v1.placeholder(dtype, [None] + list(shape[1:]), name=f'x{i}') for i, shape in
        enumerate(shapes)]
  dys = [v1.placeholder(dtype, [None] + list(shape[1:]), name=f'dy{i}') for i, shape in
         enumerate(shapes)]
  fn = _replica_fn(front_end, xs, dys, training, synchronized, layer_kwargs, extra)
  strategy = None
  if kind in ('mirrored', 'multiworker'):
    if kind == 'mirrored':
      strategy = tf.distribute.MirroredStrategy(
          devices=devices or [f'/cpu:{i}' for i in range(count)])
    else:
      strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
      if kind == 'multiworker':
        # One replica per worker: this process builds only its own.
        task = json.loads(os.environ['TF_CONFIG'])['task']['index']
        result = strategy.extended.call_for_each_replica(lambda: fn(task))
      else:
        result = strategy.extended.call_for_each_replica(
            lambda: fn(tf.distribute.get_replica_context()._replica_id_in_sync_group))
      per_replica = [{k: v for k, v in zip(result, values)} for values in
                     zip(*(strategy.experimental_local_results(result[k]) for k in result))]
  elif kind == 'towers':
    per_replica = []
    for i in range(count):
      with tf.device((devices or [f'/cpu:{j}' for j in range(count)])[i]), \
          tf1_bn.tower(i, count), v1.variable_scope(v1.get_variable_scope(), reuse=i > 0):
        per_replica.append(fn(i))
  else:
    assert count == 1
    per_replica = [fn(0)]
  return {'x': xs, 'dy': dys, 'training': training, 'per_replica': per_replica,
          'updates': v1.get_collection(v1.GraphKeys.UPDATE_OPS), 'strategy': strategy}


def session_config():
  return v1.ConfigProto(inter_op_parallelism_threads=INTER_OP_THREADS,
                        device_count={'CPU': CPU_COUNT})


def run(kind, front_end, batches, dys, training_kind='placeholder', synchronized=True, steps=1,
        layer_kwargs=None, feeds=None, target='', config=None, fetch_replicas=None):
  """Builds and runs; returns numpy results (see the module doc).

  `batches`/`dys` are per replica (for 'multiworker', only this task's
  entries are fed). `fetch_replicas` limits the fetches (to reproduce a
  partial fetch).
  """
  graph = tf.Graph()
  with graph.as_default():
    dtype = tf.as_dtype(batches[0].dtype)
    built = build(kind, front_end, [b.shape for b in batches], dtype, training_kind,
                  synchronized, layer_kwargs)
    strategy = built['strategy']
    variables = _variables()
    feed = dict(feeds or {})
    if built['training'] is not None and training_kind == 'placeholder':
      feed[built['training']] = True
    elif training_kind == 'default':
      feed[tf1_bn.training_placeholder()] = True
    local = range(len(batches))
    if kind == 'multiworker':
      local = [json.loads(os.environ['TF_CONFIG'])['task']['index']]
    for i in local:
      feed[built['x'][i]] = batches[i]
      feed[built['dy'][i]] = dys[i]
    replicas = built['per_replica']
    chosen = list(range(len(replicas))) if fetch_replicas is None else fetch_replicas
    fetches = [replicas[i] for i in chosen]
    if config is None and kind != 'multiworker':
      config = session_config()
    with v1.Session(target, config=config) as sess:
      sess.run(v1.global_variables_initializer())
      results = None
      for _ in range(steps):
        results, _ = sess.run([fetches, built['updates']], feed)
      moving = {name: [sess.run(c) for c in _copies(strategy, var)]
                for name, var in variables.items()}
  return {'replicas': results, 'moving': moving, 'graph': graph}
