"""One protocol for tf.compat.v1.layers cases, run by tf1_bn and by the legacy layers.

`run_cases(impl, cases)` builds every case in its own graph through
`tf.compat.v1.layers.<fn>`: with impl 'tf1_bn' after `tf1_bn.patch_layers()`,
with impl 'legacy' in a process started with TF_USE_LEGACY_KERAS=1 (tf-keras'
legacy layers). Every variable gets a value derived from its name only, so
both implementations compute with the same values; then it records, per case:

  meta: variable names, shapes, dtypes, trainability (TRAINABLE_VARIABLES),
    constraints, counts of REGULARIZATION_LOSSES and UPDATE_OPS, the output
    shape, the layer object's properties (class cases), or the error raised;
  out<i>: the outputs on a fixed input (for BN in training and inference);
  grad_x, grad<j>: gradients of a fixed weighted sum of the outputs w.r.t.
    the input and every trainable variable (sorted by name);
  reg: the sum of the regularization losses;
  init/<var>: the initial values (cases with 'init': true, for the
    statistical test of the initializers).

A case is a dict: id, fn (a name of tf.compat.v1.layers) or program (one
of PROGRAMS: a few layers built together), shape (of the
input placeholder; the first entry may be null for an unknown batch),
batch (the fed batch size), args, kwargs, call (kwargs of a class
instance's call), twice (call the layer twice: a class instance twice, a
function again with reuse=True), scope (an outer variable scope), and
kwargs values given by name: 'reg:l2:<scale>', 'constraint:clip',
'act:relu', 'init:glorot_uniform', 'init:const:<value>', 'training:ph' (a
placeholder fed True; BN and dropout).

Run as a script: impl, a JSON file of cases, an output .npz path.
"""
import json
import sys
import zlib

import numpy as np


def _values_for(name, shape, dtype):
  rng = np.random.RandomState(zlib.crc32(name.encode()) % (2 ** 31))
  if name.endswith('moving_variance') or name.endswith('gamma'):
    value = rng.uniform(0.5, 1.5, shape)
  else:
    value = rng.uniform(-0.5, 0.5, shape)
  return value.astype(dtype)


def _resolve(value, tf, training):
  if not isinstance(value, str) or ':' not in value:
    return value
  kind, _, rest = value.partition(':')
  if kind == 'reg':
    scale = float(rest.split(':')[1])
    return lambda w: scale * tf.nn.l2_loss(w)
  if kind == 'constraint':
    return lambda w: tf.clip_by_value(w, -0.1, 0.1)
  if kind == 'act':
    return {'relu': tf.nn.relu, 'tanh': tf.nn.tanh}[rest]
  if kind == 'init':
    if rest == 'glorot_uniform':
      return tf.compat.v1.glorot_uniform_initializer()
    if rest.startswith('const:'):
      return tf.compat.v1.constant_initializer(float(rest.split(':')[1]))
  if kind == 'training':
    return training
  raise ValueError(value)


def _layers(impl):
  import tensorflow as tf
  if impl == 'tf1_bn':
    import tf1_bn
    tf1_bn.patch_layers()
  return tf.compat.v1.layers


def _short(name):
  return name.split(':')[0]


def _build(layers, tf, case, x, training):
  if 'program' in case:
    return PROGRAMS[case['program']](layers, tf, x)
  kwargs = {k: _resolve(v, tf, training) for k, v in case.get('kwargs', {}).items()}
  call_kwargs = {k: _resolve(v, tf, training) for k, v in case.get('call', {}).items()}
  fn = getattr(layers, case['fn'])
  args = case.get('args', [])
  layer = None
  if case['fn'][0].isupper():
    layer = fn(*args, **kwargs)
    outputs = [layer(x, **call_kwargs)]
    if case.get('twice'):
      outputs.append(layer(x * 0.5, **call_kwargs))
  else:
    outputs = [fn(x, *args, **kwargs)]
    if case.get('twice'):
      outputs.append(fn(x * 0.5, *args, **dict(kwargs, reuse=True)))
  return layer, outputs


def _naming(layers, tf, x):
  """Default names made unique per variable scope, name= and reuse, AUTO_REUSE."""
  v1 = tf.compat.v1
  outputs = []
  # 'a' again with reuse: default names start over in a reopened scope, so
  # the same variables are found.
  for scope, reuse in (('a', None), ('b', None), ('a', True)):
    with v1.variable_scope(scope, reuse=reuse):
      h = layers.conv2d(x, 2, 1)
      h = layers.conv2d(h, 2, 1)
      outputs.append(layers.dense(layers.flatten(h), 3))
  for scope in ('a', 'b'):
    with v1.variable_scope(None, default_name=scope + '_head'):
      outputs.append(layers.dense(layers.flatten(x), 3, name='fc'))
  with v1.variable_scope('shared', reuse=v1.AUTO_REUSE):
    for _ in range(2):
      outputs.append(layers.conv2d(x, 2, 1, name='c'))
  layer = layers.Conv2D(2, 1, name='c')  # a class named like a scope: made unique
  outputs.append(layer(x))
  return None, outputs


def _custom_layer(layers, tf, x):
  """A TF1 custom layer: build / call / add_variable / add_weight, called twice."""

  class Scaled(layers.Layer):

    def __init__(self, units, **kwargs):
      super().__init__(**kwargs)
      self.units = units

    def build(self, input_shape):
      self.w = self.add_variable('w', [int(input_shape[-1]), self.units],
                                 regularizer=lambda w: 0.1 * tf.reduce_sum(w * w))
      self.s = self.add_weight('s', [self.units], initializer=tf.compat.v1.ones_initializer(),
                               trainable=False)
      super().build(input_shape)

    def call(self, inputs):
      return tf.matmul(inputs, self.w) * self.s

  flat = tf.reshape(x, [-1, 4])
  layer = Scaled(3)
  return layer, [layer(flat), layer(flat * 2.0)]


PROGRAMS = {'naming': _naming, 'custom_layer': _custom_layer}


def _layer_meta(layer):
  if layer is None:
    return None
  names = lambda vs: [_short(v.name) for v in vs]  # noqa: E731
  meta = {'name': layer.name, 'built': layer.built, 'weights': names(layer.weights),
          'trainable_weights': names(layer.trainable_weights),
          'non_trainable_weights': names(layer.non_trainable_weights),
          'variables': names(layer.variables), 'losses': len(layer.losses),
          'updates': len(layer.updates)}
  for attr in ('kernel', 'bias', 'depthwise_kernel', 'pointwise_kernel'):
    value = getattr(layer, attr, None)
    if value is not None:
      meta[attr] = _short(value.name)
  return meta


def run_case(layers, case):
  import tensorflow as tf
  v1 = tf.compat.v1
  result = {}
  dtype = case.get('dtype', 'float32')
  graph = tf.Graph()
  with graph.as_default():
    v1.set_random_seed(1)
    x = v1.placeholder(dtype, case['shape'], name='x')
    training = v1.placeholder(tf.bool, [], name='training')
    try:
      if case.get('scope'):
        with v1.variable_scope(case['scope']):
          layer, outputs = _build(layers, tf, case, x, training)
      else:
        layer, outputs = _build(layers, tf, case, x, training)
    except Exception as error:  # recorded: the test compares the error types
      result['meta'] = {'error': type(error).__name__, 'message': str(error)}
      return result
    variables = sorted(v1.global_variables(), key=lambda v: v.name)
    trainable = {id(v) for v in v1.trainable_variables()}
    batch = case.get('batch', case['shape'][0])
    feed_shape = [batch] + list(case['shape'][1:])
    rng = np.random.RandomState(7)
    x_value = rng.randn(*feed_shape).astype(dtype)
    weights = [np.random.RandomState(11 + i).randn(*[batch if d is None else d for d in
                                                     o.shape.as_list()]).astype(dtype)
               for i, o in enumerate(outputs)]
    loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(outputs, weights)])
    train_vars = [v for v in variables if id(v) in trainable]
    grads = tf.gradients(loss, [x] + train_vars)
    regs = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
    meta = {
        'variables': [[_short(v.name), v.shape.as_list(), v.dtype.base_dtype.name,
                       id(v) in trainable, getattr(v, 'constraint', None) is not None]
                      for v in variables],
        'regularization_losses': len(regs),
        'update_ops': len(v1.get_collection(v1.GraphKeys.UPDATE_OPS)),
        'output_shapes': [o.shape.as_list() for o in outputs],
        'output_dtypes': [o.dtype.name for o in outputs],
        'layer': _layer_meta(layer),
    }
    result['meta'] = meta
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      if case.get('init'):
        for v in variables:
          result['init/' + _short(v.name)] = sess.run(v)
      for v in variables:
        v.load(_values_for(_short(v.name), v.shape.as_list(), v.dtype.base_dtype.as_numpy_dtype),
               sess)
      feed = {x: x_value, training: bool(case.get('training_value', True))}
      values = sess.run(outputs + [g for g in grads if g is not None], feed)
      for i in range(len(outputs)):
        result[f'out{i}'] = values[i]
      present = [i for i, g in enumerate(grads) if g is not None]
      for index, value in zip(present, values[len(outputs):]):
        result['grad_x' if index == 0 else f'grad{index - 1}'] = value
      if regs:
        result['reg'] = sess.run(tf.add_n(regs), feed)
  return result


def run_cases(impl, cases):
  layers = _layers(impl)
  return {case['id']: run_case(layers, case) for case in cases}


def save(results, path):
  flat = {}
  for ident, result in results.items():
    for key, value in result.items():
      flat[f'{ident}|{key}'] = np.array(json.dumps(value)) if key == 'meta' else value
  np.savez(path, **flat)


def load(path):
  data = np.load(path)
  results = {}
  for key in data.files:
    ident, _, field = key.partition('|')
    value = data[key]
    results.setdefault(ident, {})[field] = json.loads(str(value)) if field == 'meta' else value
  return results


def main(argv):
  impl, cases_path, out_path = argv
  with open(cases_path) as f:
    cases = json.load(f)
  save(run_cases(impl, cases), out_path)
  print(f'ran {len(cases)} cases with {impl}')


if __name__ == '__main__':
  main(sys.argv[1:])
