"""Folding inference-mode BN into the op before it, on a frozen GraphDef.

In inference a BN layer is a per-channel affine map,
`y = x * s + t` with `s = gamma / sqrt(var + eps)` and `t = beta - mean * s`.
When `x = op(input, W) [+ b]` for a conv2d, depthwise conv2d, conv3d or
matmul whose output channel is the BN channel, and nothing else reads `x`:

    W' = W * s (per output channel),  b' = b * s + t  (b = 0 without a bias add)

and the BN disappears. Otherwise the layer becomes one multiply and one add.
Each tf1_bn BN layer registers its input, inference output and parameters in
`core.INFERENCE_RECORDS_KEY`; only those layers are folded.
"""
import collections
import dataclasses
import json

import numpy as np
import tensorflow as tf

from tf1_bn import core

# op type: (its channels-last, channels-first data_format); the kernel is
# input 1 and its output channel is the BN channel.
FOLDABLE_OPS = {
    'Conv2D': ('NHWC', 'NCHW'),
    'DepthwiseConv2dNative': ('NHWC', 'NCHW'),
    'Conv3D': ('NDHWC', 'NCDHW'),
    'MatMul': (None, None),
}
BIAS_OPS = ('BiasAdd', 'Add', 'AddV2')


@dataclasses.dataclass
class Report:
  """What folding did: BN output tensor -> the op it folded into."""
  into_ops: dict = dataclasses.field(default_factory=dict)
  multiply_add: list = dataclasses.field(default_factory=list)

  @property
  def folded(self):
    return len(self.into_ops)

  def summary(self):
    return (f'{len(self.into_ops)} BN layer(s) folded into the conv/matmul before them, '
            f'{len(self.multiply_add)} turned into a multiply-add')


def records(graph):
  return [json.loads(r) for r in graph.get_collection(core.INFERENCE_RECORDS_KEY)]


def parameter_values(sess, layer_records):
  """{variable name: value} of every parameter the records name."""
  variables = {v.name: v for v in sess.graph.get_collection(
      tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
  names = sorted({r[k] for r in layer_records for k in ('gamma', 'beta', 'mean', 'variance')
                  if r[k] is not None and r[k] in variables})
  return dict(zip(names, sess.run([variables[n] for n in names])))


def affine(record, values):
  """(s, t) in float64, shaped like the layer's parameters."""
  mean = np.asarray(values[record['mean']], np.float64)
  variance = np.asarray(values[record['variance']], np.float64)
  gamma = np.asarray(values[record['gamma']], np.float64) if record['gamma'] else 1.0
  beta = np.asarray(values[record['beta']], np.float64) if record['beta'] else 0.0
  scale = gamma / np.sqrt(variance + record['epsilon']) * np.ones_like(mean)
  return scale, beta - mean * scale


def _name(tensor):
  return tensor.lstrip('^').split(':')[0]


def canonical_tensor_name(tensor):
  """'op' -> 'op:0'; 'op:1' unchanged."""
  return tensor if ':' in tensor else tensor + ':0'


class _Graph:
  """Index over a GraphDef: nodes by name, consumers by node name."""

  def __init__(self, graph_def):
    self.graph_def = graph_def
    self.nodes = {n.name: n for n in graph_def.node}
    self.consumers = collections.defaultdict(set)
    for node in graph_def.node:
      for name in node.input:
        self.consumers[_name(name)].add(node.name)

  def const_value(self, tensor):
    """The value of a Const reached through Identity nodes, or None."""
    node = self.nodes.get(_name(tensor))
    while node is not None and node.op == 'Identity':
      node = self.nodes.get(_name(node.input[0]))
    if node is None or node.op != 'Const':
      return None
    return tf.make_ndarray(node.attr['value'].tensor)

  def ancestors(self, name):
    seen, stack = set(), [name]
    while stack:
      node = self.nodes.get(stack.pop())
      if node is None or node.name in seen:
        continue
      seen.add(node.name)
      stack.extend(_name(i) for i in node.input)
    return seen

  def descendants(self, name):
    seen, stack = set(), [name]
    while stack:
      current = stack.pop()
      if current in seen:
        continue
      seen.add(current)
      stack.extend(self.consumers[current])
    return seen

  def add_const(self, name, value):
    node = self.graph_def.node.add()
    node.name, node.op = name, 'Const'
    node.attr['dtype'].type = tf.as_dtype(value.dtype).as_datatype_enum
    node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(value))
    return name + ':0'

  def add_op(self, name, op, inputs, dtype):
    node = self.graph_def.node.add()
    node.name, node.op = name, op
    node.input.extend(inputs)
    node.attr['T'].type = dtype.as_datatype_enum
    return name + ':0'

  def rewire(self, old_tensor, new_tensor):
    old = canonical_tensor_name(old_tensor)
    for node in self.graph_def.node:
      for i, name in enumerate(node.input):
        if not name.startswith('^') and canonical_tensor_name(name) == old:
          node.input[i] = new_tensor


def _channel_axis(op, data_format, rank):
  channels_last, channels_first = FOLDABLE_OPS[op]
  if op == 'MatMul':
    return 1
  if data_format == channels_first:
    return 1
  return rank - 1


def _foldable(graph, record):
  """(op node, bias tensor or None, bias add node or None) when the layer
  can fold into the op before it, else None."""
  if len(record['axes']) != 1 or not record['input'].endswith(':0'):
    return None
  x_name = _name(record['input'])
  inside = graph.ancestors(_name(record['output'])) & graph.descendants(x_name)
  inside.discard(x_name)

  if not graph.consumers[x_name] <= inside:
    return None  # the unnormalized x is read elsewhere: the op must stay as it is
  node = graph.nodes[x_name]
  bias, bias_node = None, None
  if node.op in BIAS_OPS and len(node.input) == 2:
    constant = [i for i in node.input if graph.const_value(i) is not None]
    data = [i for i in node.input if graph.const_value(i) is None]
    if len(constant) != 1 or len(data) != 1:
      return None
    bias, bias_node = constant[0], node
    node = graph.nodes.get(_name(data[0]))
    if node is None or graph.consumers[node.name] != {bias_node.name}:
      return None
  if node.op not in FOLDABLE_OPS or graph.const_value(node.input[1]) is None:
    return None
  data_format = node.attr['data_format'].s.decode() if 'data_format' in node.attr else None
  if bias_node is not None and bias_node.op == 'BiasAdd':
    bias_format = bias_node.attr['data_format'].s.decode() or 'NHWC'
    if (bias_format == 'NCHW') != (data_format in ('NCHW', 'NCDHW')):
      return None
  if [_channel_axis(node.op, data_format, record['rank'])] != record['axes']:
    return None
  channels = graph.const_value(node.input[1]).shape[-1]
  if node.op == 'DepthwiseConv2dNative':
    channels *= graph.const_value(node.input[1]).shape[2]
  elif node.op == 'MatMul' and node.attr['transpose_b'].b:
    channels = graph.const_value(node.input[1]).shape[0]
  if bias is not None and graph.const_value(bias).shape != (channels,):
    return None  # only a per-channel bias vector folds
  return node, bias


def _fold_into(graph, record, node, bias, scale, shift):
  kernel = graph.const_value(node.input[1])
  if node.op == 'DepthwiseConv2dNative':
    factor = scale.reshape(kernel.shape[2], kernel.shape[3])
  elif node.op == 'MatMul' and node.attr['transpose_b'].b:
    factor = scale[:, None]
  else:
    factor = scale
  new_kernel = (kernel.astype(np.float64) * factor).astype(kernel.dtype)
  node.input[1] = graph.add_const(node.name + '/tf1_bn_folded_kernel', new_kernel)
  old_bias = 0.0 if bias is None else graph.const_value(bias).astype(np.float64)
  new_bias = (old_bias * scale + shift).astype(kernel.dtype)
  channels_first = node.op != 'MatMul' and record['axes'] == [1]
  if channels_first:
    new_bias = new_bias.reshape([-1] + [1] * (record['rank'] - 2))
  bias_tensor = graph.add_const(node.name + '/tf1_bn_folded_bias', new_bias)
  return graph.add_op(node.name + '/tf1_bn_folded_bias_add', 'AddV2',
                      [node.name + ':0', bias_tensor], tf.as_dtype(kernel.dtype))


def _multiply_add(graph, record, scale, shift):
  dtype = tf.as_dtype(record['dtype'])
  shape = [1] * record['rank']
  for axis, size in zip(record['axes'], scale.shape):
    shape[axis] = size
  base = _name(record['output']) + '/tf1_bn_affine'
  s = graph.add_const(base + '/scale', scale.reshape(shape).astype(dtype.as_numpy_dtype))
  t = graph.add_const(base + '/shift', shift.reshape(shape).astype(dtype.as_numpy_dtype))
  product = graph.add_op(base + '/mul', 'Mul', [record['input'], s], dtype)
  return graph.add_op(base + '/add', 'AddV2', [product, t], dtype)


def fold(graph_def, layer_records, values, output_nodes):
  """Folds every recorded BN layer still in `graph_def` (frozen). Returns
  (new graph_def keeping only what `output_nodes` need, Report)."""
  graph_def_copy = type(graph_def)()
  graph_def_copy.CopyFrom(graph_def)
  report = Report()
  for record in layer_records:
    graph = _Graph(graph_def_copy)
    if _name(record['output']) not in graph.nodes or _name(record['input']) not in graph.nodes:
      continue
    scale, shift = affine(record, values)
    target = _foldable(graph, record)
    if target is not None:
      node, bias = target
      # A bias add is replaced as a whole: op(...) + b becomes op'(...) + b'.
      new_output = _fold_into(graph, record, node, bias, scale, shift)
      report.into_ops[record['output']] = node.name
    else:
      new_output = _multiply_add(graph, record, scale, shift)
      report.multiply_add.append(record['output'])
    graph.rewire(record['output'], new_output)
  pruned = tf.compat.v1.graph_util.extract_sub_graph(graph_def_copy, output_nodes)
  return pruned, report

