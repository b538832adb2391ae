"""One protocol for the rnn cells, run by tf1_bn (patched in) and by the legacy cells.

Both implementations are reached through `tf.compat.v1.nn.rnn_cell` only:
tf1_bn's after `rnn_cell_patch.patch()`, tf-keras's legacy cells in a child
process started with TF_USE_LEGACY_KERAS=1. A case names a cell (a nested
spec), the rnn function that runs it and the input shape; `run_case` records:

  meta: the variables (name, shape, dtype, class, trainable), the variable
    collections, the cell's state_size / output_size and its variables;
  arrays: with every variable set to values derived from its name (so both
    implementations get the same values), the outputs, the flattened final
    state and the gradients of a fixed weighted sum of both with respect to
    the inputs and every trainable variable; and, with `init`, the initial
    values of every variable (compared statistically).

Run as a script: `python rnn_harness.py IMPL CASES.json OUT_PREFIX` writes
OUT_PREFIX.json (meta per case) and OUT_PREFIX.npz (arrays, keyed
"<case id>/<name>").
"""
import json
import pathlib
import sys
import zlib

import numpy as np

import legacy_harness

HERE = pathlib.Path(__file__).resolve().parent


legacy_env = legacy_harness.legacy_env  # the legacy child's environment (one helper)


def legacy_env_or_skip():
  """`legacy_env()` for a pytest fixture: skips the tests when tf-keras is absent."""
  return legacy_harness.legacy_env_or_skip('the legacy cells')


def start_session(sess, saver, checkpoint, save):
  """Initializes `sess` and saves `checkpoint` (a default Saver, no meta graph)
  when `save`, else restores it: how the legacy run and the ported one start
  from the same variables."""
  import tensorflow as tf
  if save:
    sess.run(tf.compat.v1.global_variables_initializer())
    saver.save(sess, checkpoint, write_meta_graph=False)
  else:
    saver.restore(sess, checkpoint)


def _rnn_cell():
  import tensorflow as tf
  return tf.compat.v1.nn.rnn_cell


def build_cell(spec):
  """["LSTMCell", {kwargs}], ["MultiRNNCell", [specs], {kwargs}] or
  [<wrapper>, spec, {kwargs}] -> a cell of the current rnn_cell namespace."""
  rc = _rnn_cell()
  kind = spec[0]
  if kind == 'MultiRNNCell':
    return rc.MultiRNNCell([build_cell(s) for s in spec[1]], **(spec[2] if len(spec) > 2 else {}))
  if kind.endswith('Wrapper'):
    return getattr(rc, kind)(build_cell(spec[1]), **(spec[2] if len(spec) > 2 else {}))
  return getattr(rc, kind)(**spec[1])


def _structure(size):
  if isinstance(size, (tuple, list)):
    return [_structure(s) for s in size]
  return int(size) if not hasattr(size, 'as_list') else size.as_list()


def _values_for(name, shape):
  rng = np.random.RandomState(zlib.crc32(name.encode()) % (2 ** 31))
  return rng.uniform(-0.6, 0.6, shape)


def build_graph(case):
  """The graph of one case; returns (x, seq_len, outputs, final_state, cells)."""
  import tensorflow as tf
  v1 = tf.compat.v1
  dtype = tf.as_dtype(case.get('dtype', 'float32'))
  batch, time, depth = case['shape']
  time_major = case.get('time_major', False)
  shape = [time, None, depth] if time_major else [None, time, depth]
  x = v1.placeholder(dtype, shape, name='x')
  seq_len = v1.placeholder(tf.int32, [None], name='seq_len') if case.get('seq') else None
  runner = case.get('rnn', 'dynamic')
  scope = case.get('scope')
  if runner == 'dynamic':
    cell = build_cell(case['cell'])
    outputs, state = v1.nn.dynamic_rnn(cell, x, sequence_length=seq_len, dtype=dtype,
                                       time_major=time_major, scope=scope)
    cells = [cell]
    if case.get('again'):
      # The same cell instance in a second rnn: it must reuse its variables.
      outputs2, _ = v1.nn.dynamic_rnn(cell, x, dtype=dtype, time_major=time_major, scope='again')
      outputs = outputs + outputs2
  elif runner == 'static':
    cell = build_cell(case['cell'])
    steps = tf.unstack(x, axis=0 if time_major else 1)
    outputs, state = v1.nn.static_rnn(cell, steps, sequence_length=seq_len, dtype=dtype,
                                      scope=scope)
    outputs = tf.stack(outputs, axis=0 if time_major else 1)
    cells = [cell]
  elif runner == 'bidi':
    fw, bw = build_cell(case['cell']), build_cell(case['cell'])
    (out_fw, out_bw), state = v1.nn.bidirectional_dynamic_rnn(
        fw, bw, x, sequence_length=seq_len, dtype=dtype, time_major=time_major, scope=scope)
    outputs = tf.concat([out_fw, out_bw], -1)
    cells = [fw, bw]
  elif runner == 'static_bidi':
    fw, bw = build_cell(case['cell']), build_cell(case['cell'])
    steps = tf.unstack(x, axis=0 if time_major else 1)
    outs, state_fw, state_bw = v1.nn.static_bidirectional_rnn(
        fw, bw, steps, sequence_length=seq_len, dtype=dtype, scope=scope)
    outputs = tf.stack(outs, axis=0 if time_major else 1)
    state = (state_fw, state_bw)
    cells = [fw, bw]
  elif runner == 'manual':
    # Cells called by hand in one variable scope: names made unique per scope.
    xs = tf.unstack(x, axis=1)
    cells, outs = [], []
    with v1.variable_scope('manual'):
      for _ in range(case.get('count', 2)):
        cell = build_cell(case['cell'])
        state = cell.zero_state(tf.shape(x)[0], dtype)
        for step in xs:
          out, state = cell(step, state)
        cells.append(cell)
        outs.append(out)
    outputs = tf.stack(outs, 1)
  else:
    raise ValueError(runner)
  return x, seq_len, outputs, state, cells


def run_case(case):
  import tensorflow as tf
  v1 = tf.compat.v1
  meta, arrays = {}, {}
  with tf.Graph().as_default() as graph:
    v1.set_random_seed(case.get('graph_seed', 7))
    x, seq_len, outputs, state, cells = build_graph(case)
    flat_state = tf.nest.flatten(state)
    rng = np.random.RandomState(case.get('seed', 0))
    dtype = x.dtype.as_numpy_dtype
    out_w = rng.uniform(-1, 1, [int(d) for d in outputs.shape[2:]]).astype(dtype)
    loss = tf.reduce_sum(outputs * out_w)
    for s in flat_state:
      loss += tf.reduce_sum(s * rng.uniform(-1, 1, [int(s.shape[-1])]).astype(dtype))
    variables = sorted(v1.global_variables(), key=lambda var: var.name)
    trainable = sorted(v1.trainable_variables(), key=lambda var: var.name)
    grads = tf.gradients(loss, [x] + trainable)
    meta['variables'] = [[var.name, var.shape.as_list(), var.dtype.base_dtype.name,
                          type(var).__name__, var in trainable] for var in variables]
    meta['collections'] = {
        key: sorted(item.name for item in graph.get_collection(key))
        for key in graph.get_all_collection_keys()
        if any(isinstance(item, tf.Variable) for item in graph.get_collection(key))}
    meta['cells'] = [{
        'state_size': _structure(cell.state_size),
        'output_size': _structure(cell.output_size),
        'variables': [var.name for var in cell.variables],
        'trainable_weights': [var.name for var in cell.trainable_weights],
    } for cell in cells]
    meta['state_types'] = [type(s).__name__ for s in tf.nest.flatten(
        state, expand_composites=False)]
    meta['state_structure'] = str(tf.nest.map_structure(lambda _: 0, state))
    feed = _inputs(case, x, seq_len)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      if case.get('init'):
        for var, value in zip(variables, sess.run(variables)):
          arrays['init/' + var.name] = value
      for var in variables:
        var.load(_values_for(var.name, var.shape.as_list()).astype(
            var.dtype.base_dtype.as_numpy_dtype), sess)
      values = sess.run([outputs, flat_state, grads], feed)
    arrays['outputs'] = values[0]
    for i, s in enumerate(values[1]):
      arrays[f'state_{i}'] = s
    arrays['grad_x'] = values[2][0]
    for var, g in zip(trainable, values[2][1:]):
      arrays['grad/' + var.name] = g
  return meta, arrays


def _inputs(case, x, seq_len):
  batch, time, depth = case['shape']
  xs = np.random.RandomState(case.get('seed', 0) + 1).randn(batch, time, depth).astype(
      x.dtype.as_numpy_dtype)
  if case.get('time_major'):
    xs = xs.transpose(1, 0, 2)
  feed = {x: xs}
  if seq_len is not None:
    feed[seq_len] = np.array([time - (i % time) for i in range(batch)], np.int32)
  return feed


def checkpoint_run(case, checkpoint, save):
  """Builds the case; with `save`, initializes and saves `checkpoint` (a
  default Saver, no meta graph), else restores it; returns the outputs and
  the flattened final state for the case's inputs."""
  import tensorflow as tf
  v1 = tf.compat.v1
  with tf.Graph().as_default():
    v1.set_random_seed(case.get('graph_seed', 7))
    x, seq_len, outputs, state, _ = build_graph(case)
    saver = v1.train.Saver()
    with v1.Session() as sess:
      start_session(sess, saver, checkpoint, save)
      values = sess.run([outputs, tf.nest.flatten(state)], _inputs(case, x, seq_len))
  arrays = {'outputs': values[0]}
  for i, s in enumerate(values[1]):
    arrays[f'state_{i}'] = s
  return arrays


def run_all(cases, out_prefix):
  metas, arrays = {}, {}
  for case in cases:
    meta, case_arrays = run_case(case)
    metas[case['id']] = meta
    for key, value in case_arrays.items():
      arrays[f"{case['id']}/{key}"] = value
  with open(out_prefix + '.json', 'w') as f:
    json.dump(metas, f)
  np.savez(out_prefix + '.npz', **arrays)


def main(argv):
  impl, cases_path, out_prefix = argv
  if impl == 'tf1_bn':
    from tf1_bn.legacy import rnn_cell_patch
    rnn_cell_patch.patch()
  with open(cases_path) as f:
    cases = json.load(f)
  run_all(cases, out_prefix)
  print(f'ran {len(cases)} cases with {impl}')


if __name__ == '__main__':
  main(sys.argv[1:])
