"""Folding inference-mode BN into the op before it, on a frozen GraphDef.

In inference a BN layer is a per-channel affine map,
`y = (x - mean) * s + beta` with `s = gamma / sqrt(var + eps)`, that is
`x * s + t` with `t = beta - mean * s`. When `x = op(input, W) [+ b]` for a
conv2d, conv2d_transpose, depthwise conv2d, conv3d, conv3d_transpose or
matmul whose output channels map onto the BN channels, and nothing else reads
`x` on the way:

    W' = W * s (per output channel),  b' = b * s + t  (b = 0 without a bias add)

computed in float64, and the BN disappears. Between the op (and its bias add)
and the BN there may be reshapes that keep the batch dimension and
transposes that keep it first (a dense layer reshaped to an image, as
DCGAN's generator does, or a conv whose output is transposed to channels
first): each op output channel k must land in a single BN channel c(k), and
then `s[c(k)]`, `t[c(k)]` fold into channel k.

A layer that does not fold becomes explicit `(x - mean) * s + beta` ops, in
that order: `x * s + t` loses the result to cancellation when the mean is
large against the spread (x and mean 60000, variance 1e-18: x * s and mean * s
are about 2e7, their float32 rounding is about 1). That is also why an
unfolded export uses these ops rather than FusedBatchNormV3: once its
parameters are constants, grappler's remapper rewrites a float32
FusedBatchNormV3 into the `x * s + t` form. float16 and bfloat16 layers that
do not fold keep the kernel: the remapper leaves them alone, the kernel
computes in float32, and the same ops in the input's dtype would round the
mean itself.

Each tf1_bn BN layer registers its input, inference output and parameters in
`core.INFERENCE_RECORDS_KEY`; only those layers are folded.
"""
import collections
import dataclasses
import json

import numpy as np
import tensorflow as tf

from tf1_bn.bn import core
from tf1_bn.common.validation import HALF_DTYPES

# op type: (its channels-last data_format, its channels-first one, the kernel
# axes that index the output channel, row-major); the kernel is input 1.
FOLDABLE_OPS = {
    'Conv2D': ('NHWC', 'NCHW', (3,)),
    'DepthwiseConv2dNative': ('NHWC', 'NCHW', (2, 3)),  # in_channels x multiplier
    'Conv3D': ('NDHWC', 'NCDHW', (4,)),
    'Conv2DBackpropInput': ('NHWC', 'NCHW', (2,)),  # conv2d_transpose
    'Conv3DBackpropInputV2': ('NDHWC', 'NCDHW', (3,)),  # conv3d_transpose
    'MatMul': (None, None, (1,)),  # (0,) with transpose_b
}
BIAS_OPS = ('BiasAdd', 'Add', 'AddV2')
# Ops between the op (or its bias add) and the BN through which channels are
# followed.
LAYOUT_OPS = ('Reshape', 'Transpose', 'Identity')


@dataclasses.dataclass
class Report:
  """What folding did: BN output tensor -> the op it folded into."""
  into_ops: dict = dataclasses.field(default_factory=dict)
  # Layers computed by explicit (x - mean) * s + beta ops.
  multiply_add: list = dataclasses.field(default_factory=list)
  # float16 / bfloat16 layers left as the session's inference kernel
  # (exact in float32, and grappler does not rewrite it).
  kept: list = dataclasses.field(default_factory=list)
  # Per-step layers whose step is a tensor (the row of their [T, C]
  # statistics is chosen at run time): left as the graph computes them.
  per_step_kept: list = dataclasses.field(default_factory=list)

  @property
  def folded(self):
    return len(self.into_ops)

  def summary(self):
    text = (f'{len(self.into_ops)} BN layer(s) folded into the conv/matmul before them, '
            f'{len(self.multiply_add)} turned into a multiply-add')
    if self.kept:
      text += f', {len(self.kept)} 16-bit layer(s) kept as the inference kernel'
    if self.per_step_kept:
      text += (f', {len(self.per_step_kept)} per-step layer(s) with a tensor step kept as '
               'they are (the row of their statistics is chosen at run time; folding needs a '
               'fixed step)')
    return text


def records(graph):
  return [json.loads(r) for r in graph.get_collection(core.INFERENCE_RECORDS_KEY)]


def parameter_values(sess, layer_records):
  """{variable name: value} of every parameter the records name."""
  variables = {v.name: v for v in sess.graph.get_collection(
      tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)}
  names = sorted({r[k] for r in layer_records for k in ('gamma', 'beta', 'mean', 'variance')
                  if r[k] is not None and r[k] in variables})
  return dict(zip(names, sess.run([variables[n] for n in names])))


def inference_parameters(record, values):
  """(mean, s, beta) of the layer's inference transform, float64, flat [C]."""
  mean = np.asarray(values[record['mean']], np.float64)
  variance = np.asarray(values[record['variance']], np.float64)
  if isinstance(record.get('step'), int):  # per-step statistics at a fixed step: its row
    mean, variance = mean[record['step']], variance[record['step']]
  mean, variance = mean.reshape(-1), variance.reshape(-1)
  gamma = np.asarray(values[record['gamma']], np.float64).reshape(-1) if record['gamma'] else 1.0
  beta = np.asarray(values[record['beta']], np.float64).reshape(-1) if record['beta'] else 0.0
  scale = gamma / np.sqrt(variance + record['epsilon']) * np.ones_like(mean)
  return mean, scale, beta * np.ones_like(mean)


def affine(record, values):
  """(s, t) in float64, flat [C]: the transform as x * s + t (for folding)."""
  mean, scale, beta = inference_parameters(record, values)
  return scale, beta - mean * scale


def node_name(tensor):
  """'^op', 'op:1', 'op' -> 'op'."""
  return tensor.lstrip('^').split(':')[0]


_name = node_name


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


@dataclasses.dataclass
class _Target:
  """Where a layer folds: the op, its bias tensor (or None), the layout ops
  after them, and for each op output channel the BN channel it lands in."""
  node: object
  bias: object
  chain: list
  bn_channel: np.ndarray


def _op_layout(node):
  """(rank of the op's output, its channel axis)."""
  if node.op == 'MatMul':
    return 2, 1
  channels_last, channels_first, _ = FOLDABLE_OPS[node.op]
  data_format = node.attr['data_format'].s.decode() or channels_last
  if data_format == channels_first:
    return len(channels_first), 1
  return len(channels_last), len(channels_last) - 1


def _kernel_axes(node):
  if node.op == 'MatMul' and node.attr['transpose_b'].b:
    return (0,)
  return FOLDABLE_OPS[node.op][2]


def _per_channel(values, shape, axis):
  """A [C] vector reshaped to broadcast along `axis` of an array of `shape`."""
  return np.reshape(values, [size if i == axis else 1 for i, size in enumerate(shape)])


def _layout_chain(graph, x_name):
  """(layout ops from the BN input back, in graph order; the node before them),
  or None when one of them is read by anything but the next."""
  chain, node = [], graph.nodes[x_name]
  while node.op in LAYOUT_OPS:
    data = graph.nodes.get(_name(node.input[0]))
    if data is None or graph.consumers[data.name] != {node.name}:
      return None
    chain.insert(0, node)
    node = data
  return chain, node


def _static_shape(graph_def, tensor):
  """The static shape of `tensor` in `graph_def` (TensorFlow's shape inference)."""
  with tf.Graph().as_default() as graph:
    tf.graph_util.import_graph_def(graph_def, name='')
    return graph.get_tensor_by_name(canonical_tensor_name(tensor)).shape


def _follow_channels(graph, node, channels, chain, record):
  """For each output channel of `node`, the BN channel it lands in through
  `chain`, or None when one lands in several or the layout ops are not ones
  this follows (reshapes keeping the batch dimension, transposes keeping it
  first, identities)."""
  rank, axis = _op_layout(node)
  if not chain:
    return np.arange(channels) if record['axes'] == [axis] else None
  shape = _static_shape(graph.graph_def, node.name + ':0').as_list()
  if len(shape) != rank or any(size is None for size in shape[1:]):
    return None
  batch = shape[0]
  # The channel of every element of one example, moved as the data moves.
  ids = np.broadcast_to(_per_channel(np.arange(channels), shape[1:], axis - 1), shape[1:])
  for layout in chain:
    if layout.op == 'Transpose':
      perm = graph.const_value(layout.input[1])
      if perm is None or perm[0] != 0:
        return None
      ids = np.transpose(ids, [p - 1 for p in perm[1:]])
    elif layout.op == 'Reshape':
      target = graph.const_value(layout.input[1])
      if target is None:
        return None
      target = [int(size) for size in target]
      keeps_batch = (target[0] == -1 and -1 not in target[1:]) or (
          batch is not None and target[0] == batch)
      if not keeps_batch:
        return None
      try:
        ids = np.reshape(ids, target[1:])
      except ValueError:  # one example does not fill a row: the batch is mixed in
        return None
  bn_axis = record['axes'][0]
  if ids.ndim != record['rank'] - 1 or bn_axis == 0:
    return None
  lands = np.broadcast_to(_per_channel(np.arange(ids.shape[bn_axis - 1]), ids.shape, bn_axis - 1),
                          ids.shape).reshape(-1)
  ids = ids.reshape(-1)
  bn_channel = np.zeros(channels, np.int64)
  bn_channel[ids] = lands
  return bn_channel if np.array_equal(bn_channel[ids], lands) else None


def _bias_is_per_channel(graph, node, bias_node, bias, channels):
  """Whether the bias add adds one value per output channel of `node`."""
  rank, axis = _op_layout(node)
  shape = graph.const_value(bias).shape
  if bias_node.op == 'BiasAdd':
    bias_axis = 1 if bias_node.attr['data_format'].s.decode() == 'NCHW' else rank - 1
    return shape == (channels,) and bias_axis == axis
  # Add broadcasts from the last axis: varying along the channel axis only.
  padded = (1,) * (rank - len(shape)) + tuple(shape)
  return len(padded) == rank and padded == tuple(channels if i == axis else 1
                                                 for i in range(rank))


def _foldable(graph, record):
  """A `_Target` when the layer can fold into the op before it, else None."""
  if len(record['axes']) != 1 or not record['input'].endswith(':0'):
    return None
  x_name = _name(record['input'])
  inside = graph.ancestors(_name(record['output'])) & graph.descendants(x_name)
  inside.discard(x_name)
  if not graph.consumers[x_name] <= inside:
    return None  # the unnormalized x is read elsewhere: the op must stay as it is
  found = _layout_chain(graph, x_name)
  if found is None:
    return None
  chain, node = found
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
  if node.op not in FOLDABLE_OPS:
    return None
  kernel = graph.const_value(node.input[1])
  if kernel is None:
    return None
  channels = int(np.prod([kernel.shape[a] for a in _kernel_axes(node)]))
  if bias is not None and not _bias_is_per_channel(graph, node, bias_node, bias, channels):
    return None
  bn_channel = _follow_channels(graph, node, channels, chain, record)
  if bn_channel is None:
    return None
  return _Target(node, bias, chain, bn_channel)


def _fold_into(graph, target, scale, shift):
  """Folds per-channel (scale, shift), indexed by op output channel, into the
  op; returns the tensor that replaces the op's (biased) output."""
  node = target.node
  kernel = graph.const_value(node.input[1])
  axes = _kernel_axes(node)
  factor = np.reshape(scale, [kernel.shape[a] if a in axes else 1 for a in range(kernel.ndim)])
  new_kernel = (kernel.astype(np.float64) * factor).astype(kernel.dtype)
  node.input[1] = graph.add_const(node.name + '/tf1_bn_folded_kernel', new_kernel)
  old_bias = 0.0 if target.bias is None else graph.const_value(target.bias).reshape(-1)
  new_bias = (np.asarray(old_bias, np.float64) * scale + shift).astype(kernel.dtype)
  rank, axis = _op_layout(node)
  if axis != rank - 1:  # channels first: [C, 1, ...] broadcasts on axis 1
    new_bias = new_bias.reshape([-1] + [1] * (rank - 1 - axis))
  bias_tensor = graph.add_const(node.name + '/tf1_bn_folded_bias', new_bias)
  return graph.add_op(node.name + '/tf1_bn_folded_bias_add', 'AddV2',
                      [node.name + ':0', bias_tensor], tf.as_dtype(kernel.dtype))


def _parameter_shape(record, values):
  """The broadcast shape of the layer's parameters against its input."""
  own = np.shape(values[record['mean']])
  if isinstance(record.get('step'), int):  # per-step statistics: one row
    own = own[1:]
  if len(own) == record['rank']:
    return list(own)  # tf.layers with several axes keeps them broadcast-shaped
  shape = [1] * record['rank']
  for axis, size in zip(record['axes'], own):
    shape[axis] = size
  return shape


def _affine_ops(graph, record, values):
  """The layer as explicit (x - mean) * s + beta ops; returns their output."""
  dtype = tf.as_dtype(record['dtype'])
  shape = _parameter_shape(record, values)
  base = _name(record['output']) + '/tf1_bn_affine'
  mean, scale, beta = (graph.add_const(f'{base}/{name}', value.reshape(shape).astype(
      dtype.as_numpy_dtype)) for name, value in zip(('mean', 'scale', 'beta'),
                                                    inference_parameters(record, values)))
  centered = graph.add_op(base + '/sub', 'Sub', [record['input'], mean], dtype)
  scaled = graph.add_op(base + '/mul', 'Mul', [centered, scale], dtype)
  return graph.add_op(base + '/add', 'AddV2', [scaled, beta], dtype)


def fold(graph_def, layer_records, values, output_nodes, into_ops=True):
  """Rewrites every recorded BN layer still in `graph_def` (frozen): folded
  into the op before it where it can (`into_ops`), else explicit
  `(x - mean) * s + beta` ops (16-bit layers keep the kernel). Returns (new
  graph_def keeping only what `output_nodes` need, Report)."""
  graph_def_copy = type(graph_def)()
  graph_def_copy.CopyFrom(graph_def)
  report = Report()
  replaced = {}  # a rewritten layer's output -> what now stands for it
  for record in layer_records:
    # A layer fed by one rewritten before it reads the replacement.
    source = canonical_tensor_name(record['input'])
    record = dict(record, input=replaced.get(source, source))
    graph = _Graph(graph_def_copy)
    if _name(record['output']) not in graph.nodes or _name(record['input']) not in graph.nodes:
      continue
    if record.get('step') == 'tensor':
      report.per_step_kept.append(record['output'])
      continue
    target = _foldable(graph, record) if into_ops else None
    if target is not None:
      scale, shift = (value[target.bn_channel] for value in affine(record, values))
      # A bias add is replaced as a whole: op(...) + b becomes op'(...) + b'.
      new_output = _fold_into(graph, target, scale, shift)
      if target.chain:  # the layout ops now read op'(...) + b' and end at the BN's input
        target.chain[0].input[0] = new_output
        new_output = record['input']
      report.into_ops[record['output']] = target.node.name
    elif tf.as_dtype(record['dtype']) in HALF_DTYPES:
      report.kept.append(record['output'])
      continue
    else:
      new_output = _affine_ops(graph, record, values)
      report.multiply_add.append(record['output'])
    graph.rewire(record['output'], new_output)
    replaced[canonical_tensor_name(record['output'])] = new_output
  pruned = tf.compat.v1.graph_util.extract_sub_graph(graph_def_copy, output_nodes)
  return pruned, report
