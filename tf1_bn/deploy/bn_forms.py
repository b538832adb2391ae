"""Finding the inference-mode BN layers of a frozen graph tf1_bn did not build.

Once the training switch is bound and the dead branches are gone, every BN of
a legacy graph reads constants for its statistics. The forms recognized, each
described as a `folding` record (input, output, axes, epsilon and the
parameters' values) so that folding and the exact form are the ones
`export_inference` uses:

* `FusedBatchNorm`, `FusedBatchNormV2`, `FusedBatchNormV3` with
  `is_training=False` (NHWC, NCHW, NDHWC, NCDHW): tf.layers and Keras 2 with
  fused=True, slim's fused path, `tf.nn.fused_batch_norm`;
* `BatchNormWithGlobalNormalization` (TensorFlow 1.0's
  `tf.nn.batch_norm_with_global_normalization`, channels last, gamma used only
  with `scale_after_normalization`);
* the unfused `tf.nn.batch_normalization` pattern:
  `inv = Rsqrt(variance + eps) [* gamma]`, `y = x * inv + (beta - mean * inv)`
  (or `+ (-mean) * inv` without beta), as tf.layers / Keras 2 with
  fused=False, slim's unfused path and the EMA + tf.cond recipe build it (the
  recipe's mean and variance are the EMA shadows, constants once frozen).

A FusedBatchNorm left with `is_training=True` normalizes by the batch: it is
not a layer in inference mode and is reported, not rewritten.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from tf1_bn.deploy import folding
from tf1_bn.deploy import pipeline

FUSED_OPS = ('FusedBatchNorm', 'FusedBatchNormV2', 'FusedBatchNormV3')
GLOBAL_NORMALIZATION_OP = 'BatchNormWithGlobalNormalization'
ADD_OPS = ('Add', 'AddV2')
# Ops whose output is not a function of their inputs: never constants.
_NOT_CONSTANT = ('Placeholder', 'PlaceholderWithDefault', 'VariableV2', 'VarHandleOp',
                 'ReadVariableOp', 'RandomUniform', 'RandomStandardNormal',
                 'TruncatedNormal', 'RandomUniformInt', 'Multinomial', 'RandomShuffle')
# data_format: (rank, channel axis)
_LAYOUTS = {'NHWC': (4, 3), 'NCHW': (4, 1), 'NDHWC': (5, 4), 'NCDHW': (5, 1)}

_name = folding.node_name


@dataclasses.dataclass
class Found:
  """The BN layers of a graph: `folding` records (in graph order), the values
  they name, the form of each, and training-mode FusedBatchNorms left."""
  records: list
  values: dict
  forms: dict  # output tensor -> form name
  training_mode: list


class Constants:
  """Which tensors of a frozen graph are constants, and their values."""

  def __init__(self, graph_def):
    self.nodes = {n.name: n for n in graph_def.node}
    self._constant = {}
    self._values = {}
    self._graph = tf.Graph()
    with self._graph.as_default():
      tf.graph_util.import_graph_def(graph_def, name='')
    self._sess = None

  def is_constant(self, tensor):
    name = _name(tensor)
    if name not in self._constant:
      self._constant[name] = None  # a cycle is not constant
      node = self.nodes.get(name)
      self._constant[name] = bool(
          node is not None and node.op not in _NOT_CONSTANT and
          not (node.op.startswith('Random') or node.op.startswith('Stateless')) and
          all(self.is_constant(i) for i in node.input))
    return bool(self._constant[name])

  def value(self, tensor):
    """The float64 value of a constant tensor."""
    tensor = folding.canonical_tensor_name(tensor)
    if tensor not in self._values:
      if self._sess is None:
        self._sess = tf.compat.v1.Session(graph=self._graph)
      value = self._sess.run(self._graph.get_tensor_by_name(tensor))
      self._values[tensor] = np.asarray(value)
    return self._values[tensor]

  def shape(self, tensor):
    return self._graph.get_tensor_by_name(folding.canonical_tensor_name(tensor)).shape

  def dtype(self, tensor):
    return self._graph.get_tensor_by_name(folding.canonical_tensor_name(tensor)).dtype

  def close(self):
    if self._sess is not None:
      self._sess.close()


def _consumers(graph_def):
  consumers = {}
  for node in graph_def.node:
    for tensor in node.input:
      if not tensor.startswith('^'):
        consumers.setdefault(_name(tensor), []).append((node, tensor))
  return consumers


def _record(output, x, rank, axes, epsilon, dtype, params, values, key_prefix):
  """A folding record; `params` {role: value or None}, stored in `values`."""
  record = {'input': folding.canonical_tensor_name(x), 'output': output, 'axes': axes,
            'rank': rank, 'dtype': dtype.name, 'epsilon': float(epsilon)}
  for role in ('gamma', 'beta', 'mean', 'variance'):
    if params.get(role) is None:
      record[role] = None
    else:
      record[role] = f'{key_prefix}/{role}'
      values[record[role]] = params[role]
  return record


def _fused(node, constants, values):
  """(record, form) for an inference-mode FusedBatchNorm*, or None."""
  x, scale, offset, mean, variance = node.input[:5]
  if not all(constants.is_constant(t) for t in (scale, offset, mean, variance)):
    return None
  data_format = node.attr['data_format'].s.decode() or 'NHWC'
  if data_format not in _LAYOUTS:
    return None
  rank, axis = _LAYOUTS[data_format]
  params = {'gamma': constants.value(scale), 'beta': constants.value(offset),
            'mean': constants.value(mean), 'variance': constants.value(variance)}
  epsilon = node.attr['epsilon'].f if 'epsilon' in node.attr else 1e-4
  return _record(node.name + ':0', x, rank, [axis], epsilon, constants.dtype(x), params, values,
                 node.name), node.op


def _global_normalization(node, constants, values):
  x, mean, variance, beta, gamma = node.input[:5]
  if not all(constants.is_constant(t) for t in (mean, variance, beta, gamma)):
    return None
  params = {'mean': constants.value(mean), 'variance': constants.value(variance),
            'beta': constants.value(beta),
            'gamma': (constants.value(gamma) if node.attr['scale_after_normalization'].b
                      else None)}
  return _record(node.name + ':0', x, 4, [3], node.attr['variance_epsilon'].f,
                 constants.dtype(x), params, values, node.name), node.op


def _mul_operands(node, constants):
  """(the non-constant operand, the constant one) of a Mul, or None."""
  if node.op != 'Mul' or len([i for i in node.input if not i.startswith('^')]) != 2:
    return None
  a, b = node.input[:2]
  if constants.is_constant(a) == constants.is_constant(b):
    return None
  return (b, a) if constants.is_constant(a) else (a, b)


def _unfused(rsqrt, constants, consumers, values):
  """(record, form) for the tf.nn.batch_normalization pattern around `rsqrt`."""
  nodes = constants.nodes
  plus_eps = nodes.get(_name(rsqrt.input[0]))
  if plus_eps is None or plus_eps.op not in ADD_OPS or not constants.is_constant(rsqrt.name):
    return None
  a, b = plus_eps.input[:2]
  sizes = (constants.value(a).size, constants.value(b).size)
  if 1 in sizes and sizes != (1, 1):  # variance + eps
    variance, epsilon = (b, a) if sizes[0] == 1 else (a, b)
    variance, epsilon = constants.value(variance), float(constants.value(epsilon).reshape(()))
  else:
    variance, epsilon = constants.value(plus_eps.name), 0.0
  inv, gamma = rsqrt, None
  users = consumers.get(inv.name, [])
  if len(users) == 1 and users[0][0].op == 'Mul':
    operands = [i for i in users[0][0].input if _name(i) != inv.name]
    if len(operands) == 1 and constants.is_constant(operands[0]):
      inv, gamma = users[0][0], constants.value(operands[0])
      users = consumers.get(inv.name, [])
  times_x = [u for u, _ in users if _mul_operands(u, constants) is not None]
  times_mean = [u for u, _ in users if u.op == 'Mul' and constants.is_constant(u.name)]
  if len(times_x) != 1 or len(times_mean) != 1 or len(users) != 2:
    return None
  x = _mul_operands(times_x[0], constants)[0]
  mean_tensor = [i for i in times_mean[0].input if _name(i) != inv.name][0]
  add_users = [u for u, _ in consumers.get(times_x[0].name, []) if u.op in ADD_OPS]
  if len(add_users) != 1 or len(consumers.get(times_x[0].name, [])) != 1:
    return None
  final = add_users[0]
  shift = nodes.get(_name([i for i in final.input if _name(i) != times_x[0].name][0]))
  if shift is None:
    return None
  if shift.name == times_mean[0].name:  # -mean * inv: no beta
    negated = nodes.get(_name(mean_tensor))
    if negated is None or negated.op != 'Neg':
      return None
    mean, beta = constants.value(negated.input[0]), None
  elif shift.op == 'Sub' and _name(shift.input[1]) == times_mean[0].name:
    mean, beta = constants.value(mean_tensor), constants.value(shift.input[0])
  else:
    return None
  shape = constants.shape(x)
  if shape.rank is None:
    return None
  rank = shape.rank
  params = {'gamma': gamma, 'beta': beta, 'mean': mean, 'variance': variance}
  params = _channels(params, rank)
  if params is None:
    return None
  params, axes = params
  return _record(final.name + ':0', x, rank, axes, epsilon, constants.dtype(x), params, values,
                 final.name), 'tf.nn.batch_normalization'


def _channels(params, rank):
  """Parameters broadcast to one shape, flat [C] on one axis (the last one for
  vectors), or kept broadcast-shaped over several axes; with the axes."""
  present = {k: np.asarray(p, np.float64) for k, p in params.items() if p is not None}
  try:
    shape = np.broadcast_shapes(*(p.shape for p in present.values()))
  except ValueError:
    return None
  if len(shape) > rank:
    return None
  full = (1,) * (rank - len(shape)) + tuple(shape)
  axes = [i for i, size in enumerate(full) if size != 1] or [rank - 1]
  if len(axes) == 1:
    out = {k: np.broadcast_to(p, shape).reshape(-1) for k, p in present.items()}
  else:
    out = {k: np.broadcast_to(p, shape).reshape(full) for k, p in present.items()}
  return {k: out.get(k) for k in params}, axes


def find(graph_def):
  """The inference-mode BN layers of a frozen `graph_def` (see the module
  docstring), in graph order; returns a `Found`."""
  constants = Constants(graph_def)
  consumers = _consumers(graph_def)
  values, found, forms, training_mode = {}, [], {}, []
  try:
    for name in pipeline.topological_order(graph_def):
      node = constants.nodes[name]
      match = None
      if node.op in FUSED_OPS:
        if node.attr['is_training'].b:
          training_mode.append(node.name)
          continue
        match = _fused(node, constants, values)
      elif node.op == GLOBAL_NORMALIZATION_OP:
        match = _global_normalization(node, constants, values)
      elif node.op == 'Rsqrt':
        match = _unfused(node, constants, consumers, values)
      if match is not None:
        record, form = match
        found.append(record)
        forms[record['output']] = form
  finally:
    constants.close()
  return Found(found, values, forms, training_mode)
