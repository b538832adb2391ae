"""The export pipeline's stages, shared by `export_inference` (graphs tf1_bn
built) and `export_graph` (any TF1 graph), on GraphDefs:

1. `add_output_identities`: one Identity per output, so that rewriting also
   reaches an output that is itself a BN output; `lower_functional_conds`:
   TensorFlow 2's functional conds become Switch / Merge;
2. `bind_constants`: training switches (bool placeholders,
   placeholder_with_defaults, bool variables) become the constant False, a
   dropout keep-probability the constant 1.0;
3. `prune_dead_branches`: every `Switch` whose predicate is now a constant
   forwards its live output and the ops of the dead branch go, then each
   `Merge` left with one live input becomes that input. This must run before
   freezing: an in-place update inside the training branch (slim's
   `updates_collections=None`, the recipe's `ema.apply` inside the cond)
   reads its variable as a reference through a `Switch`; freezing turns the
   variable into a constant and the graph no longer imports ("...
   AssignMovingAvg/Switch was passed float ... expected float_ref");
4. `drop_update_dependencies`: control dependencies on assignments (moving
   statistics, EMA updates) go; `drop_function_updates`: so do the
   assignments in functions' bodies (a loop body's in-place updates);
5. `freeze`: the variables become constants, keeping what the outputs need;
6. `rewrite_bn`: each BN (described by records, see `tf1_bn.deploy.folding`)
   folds into the conv / matmul before it, else becomes the exact
   `(x - mean) * s + beta`; uncalled functions and XLA marks go;
7. `write_saved_model`: a SavedModel with one `serving_default` signature.
"""
import collections
import os

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.framework import op_def_registry
from tensorflow.python.grappler import tf_optimizer

from tf1_bn.deploy import folding

v1 = tf.compat.v1

PLACEHOLDER_OPS = ('Placeholder', 'PlaceholderWithDefault')
VARIABLE_OPS = ('VariableV2', 'Variable', 'VarHandleOp')
SWITCH_OPS = ('Switch', 'RefSwitch')
MERGE_OPS = ('Merge', 'RefMerge')
ASSIGN_OPS = ('Assign', 'AssignAdd', 'AssignSub', 'AssignVariableOp', 'AssignAddVariableOp',
              'AssignSubVariableOp', 'ScatterUpdate', 'ScatterAdd', 'ScatterSub',
              # per-step statistics update one row
              'ResourceScatterUpdate', 'ResourceScatterAdd', 'ResourceScatterSub')
# TensorFlow 2's tf.cond / tf.case in a graph: branches are functions.
FUNCTIONAL_CONDS = ('If', 'StatelessIf', 'Case', 'StatelessCase')
OUTPUT_SCOPE = 'tf1_bn_output'
XLA_MUST_COMPILE = '_XlaMustCompile'
COLOCATION_ATTR = '_class'
# Predicates a bound switch reaches a Switch through (tf.cond's pred_id, the
# recipe's tf.equal(training, True), a negation).
_BOOL_OPS = ('Identity', 'LogicalNot', 'LogicalAnd', 'LogicalOr', 'Equal', 'NotEqual')

_name = folding.node_name
_canonical = folding.canonical_tensor_name


def copy(graph_def):
  result = type(graph_def)()
  result.CopyFrom(graph_def)
  return result


def add_output_identities(graph_def, tensors):
  """Adds `tf1_bn_output/<i>` = Identity(tensor) per (name, dtype) in
  `tensors`; returns their node names."""
  names = []
  for index, (tensor, dtype) in enumerate(tensors):
    node = graph_def.node.add()
    node.name, node.op = f'{OUTPUT_SCOPE}/{index}', 'Identity'
    node.input.append(tensor)
    node.attr['T'].type = tf.as_dtype(dtype).as_datatype_enum
    names.append(node.name)
  return names


def lower_functional_conds(graph_def, output_nodes):
  """`graph_def` with its functional conds (If / StatelessIf / Case, what
  tf.cond builds in a TensorFlow 2 graph) lowered to Switch / Merge and their
  branches inlined, by grappler's function optimizer alone; unchanged
  without them. Returns (graph_def, how many were lowered)."""
  count = sum(n.op in FUNCTIONAL_CONDS for n in graph_def.node)
  if not count:
    return graph_def, 0
  with tf.Graph().as_default():
    meta_graph = v1.train.export_meta_graph(graph_def=graph_def)
  meta_graph.collection_def['train_op'].node_list.value.extend(output_nodes)  # the fetches
  config = config_pb2.ConfigProto()
  rewrite = config.graph_options.rewrite_options
  rewrite.optimizers.extend(['function'])
  rewrite.min_graph_nodes = -1
  rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
  return tf_optimizer.OptimizeGraph(config, meta_graph), count


def _make_const(node, value, dtype):
  node.op = 'Const'
  del node.input[:]
  for key in list(node.attr):
    del node.attr[key]
  node.attr['dtype'].type = dtype.as_datatype_enum
  node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(value, dtype))


def node_dtype(node):
  for key in ('dtype', 'T'):
    if key in node.attr and node.attr[key].type:
      return tf.as_dtype(node.attr[key].type)
  return None


def bind_constants(graph_def, bindings):
  """Turns each named placeholder or variable into a scalar constant.

  `bindings`: {node name: Python value}. A resource variable's reads
  (ReadVariableOp) become Identity ops of the constant.
  """
  for node in graph_def.node:
    if node.name in bindings and (node.op in PLACEHOLDER_OPS or node.op in VARIABLE_OPS):
      _make_const(node, bindings[node.name], node_dtype(node))
  for node in graph_def.node:
    if node.op == 'ReadVariableOp' and _name(node.input[0]) in bindings:
      dtype = node.attr['dtype'].type
      node.op = 'Identity'
      del node.attr['dtype']
      node.attr['T'].type = dtype


def _topological(nodes):
  """Node names in an order where inputs come first (a cycle's rest at the end)."""
  pending = {name: {_name(i) for i in node.input} & nodes.keys() for name, node in nodes.items()}
  consumers = collections.defaultdict(list)
  for name, inputs in pending.items():
    for i in inputs:
      consumers[i].append(name)
  ready = [name for name, inputs in pending.items() if not inputs]
  order = []
  while ready:
    name = ready.pop()
    order.append(name)
    for consumer in consumers[name]:
      pending[consumer].discard(name)
      if not pending[consumer]:
        ready.append(consumer)
  seen = set(order)
  return order + [name for name in nodes if name not in seen]


def topological_order(graph_def):
  return _topological({n.name: n for n in graph_def.node})


def constant_bool(nodes, tensor, depth=0):
  """The value of a bool tensor computed from constants by `_BOOL_OPS`, or None."""
  node = nodes.get(_name(tensor))
  if node is None or depth > 64:
    return None
  if node.op == 'Const':
    value = tf.make_ndarray(node.attr['value'].tensor)
    return bool(value) if value.size == 1 else None
  if node.op not in _BOOL_OPS:
    return None
  values = [constant_bool(nodes, i, depth + 1) for i in node.input if not i.startswith('^')]
  if None in values:
    return None
  if node.op == 'Identity':
    return values[0]
  if node.op == 'LogicalNot':
    return not values[0]
  if node.op == 'LogicalAnd':
    return values[0] and values[1]
  if node.op == 'LogicalOr':
    return values[0] or values[1]
  return (values[0] == values[1]) == (node.op == 'Equal')


def _prune_once(graph_def):
  """One pass of `prune_dead_branches`; returns how many Switch / Merge went."""
  nodes = {n.name: n for n in graph_def.node}
  live_port = {}
  for node in graph_def.node:
    if node.op in SWITCH_OPS:
      value = constant_bool(nodes, node.input[1])
      if value is not None:
        live_port[node.name] = int(value)
  if not live_port:
    return 0
  dead = set()

  def is_dead(tensor):
    name = _name(tensor)
    if name in dead:
      return True
    if name in live_port and not tensor.startswith('^'):
      port = int(tensor.split(':')[1]) if ':' in tensor else 0
      return port != live_port[name]
    return False

  for name in _topological(nodes):
    node = nodes[name]
    if node.op in MERGE_OPS:
      data = [i for i in node.input if not i.startswith('^')]
      if all(is_dead(i) for i in data):
        dead.add(name)
    elif any(is_dead(i) for i in node.input):
      dead.add(name)
  # What replaces a forwarded tensor: a Switch's live output is its data input,
  # a Merge with one live input is that input.
  replace = {}
  merges = set()
  for name, port in live_port.items():
    if name not in dead:
      replace[f'{name}:{port}'] = _canonical(nodes[name].input[0])
  for node in graph_def.node:
    if node.op in MERGE_OPS and node.name not in dead:
      live = [i for i in node.input if not i.startswith('^') and not is_dead(i)]
      if len(live) == 1:
        replace[node.name + ':0'] = _canonical(live[0])
        merges.add(node.name)
        index = [i for i in node.input if not i.startswith('^')].index(live[0])
        replace[node.name + ':1'] = node.name + '/tf1_bn_value_index:0'
        const = graph_def.node.add()
        const.name = node.name + '/tf1_bn_value_index'
        _make_const(const, index, tf.int32)

  def resolve(tensor):
    seen = set()
    while tensor in replace and tensor not in seen:
      seen.add(tensor)
      tensor = replace[tensor]
    return tensor

  removed = set(live_port) | merges
  kept = []
  for node in graph_def.node:
    if node.name in dead or node.name in removed:
      continue
    inputs = []
    for tensor in node.input:
      if tensor.startswith('^'):
        source = _name(tensor)
        if source in dead:
          continue
        if source in removed:  # now ordered by the data it forwarded, if anything
          source = _name(resolve(_canonical(nodes[source].input[0]))) if nodes[
              source].input else None
          if source is None or source in removed:
            continue
        tensor = '^' + source
      else:
        tensor = resolve(_canonical(tensor))
      if tensor not in inputs:
        inputs.append(tensor)
    del node.input[:]
    node.input.extend(inputs)
    kept.append(node)
  del graph_def.node[:]
  graph_def.node.extend(kept)
  return len(removed)


def prune_dead_branches(graph_def):
  """Removes the branches a constant predicate rules out, in place.

  Repeats until no Switch has a constant predicate (a cond nested in another
  one sees its constant only once the outer Switch is gone). Returns how many
  Switch / Merge ops went. A while loop's Switch (its predicate is a
  LoopCond) stays.
  """
  total = 0
  while True:
    removed = _prune_once(graph_def)
    if not removed:
      return total
    total += removed


def drop_update_dependencies(graph_def):
  """Removes control dependencies on assignments (and on ops that wait for
  one, such as a group of updates), in place; returns how many went."""
  nodes = {n.name: n for n in graph_def.node}
  consumers = collections.defaultdict(set)
  for node in graph_def.node:
    for tensor in node.input:
      consumers[_name(tensor)].add(node.name)
  updating, stack = set(), [n.name for n in graph_def.node if n.op in ASSIGN_OPS]
  while stack:
    name = stack.pop()
    if name not in updating:
      updating.add(name)
      stack.extend(consumers[name])
  return _drop_control_inputs(nodes.values(), updating)


def _drop_control_inputs(nodes, names):
  """Removes the control inputs on `names` from `nodes` (NodeDefs of a graph
  or of a function body), in place; returns how many went."""
  dropped = 0
  for node in nodes:
    inputs = [t for t in node.input if not (t.startswith('^') and _name(t) in names)]
    if len(inputs) != len(node.input):
      dropped += len(node.input) - len(inputs)
      del node.input[:]
      node.input.extend(inputs)
  return dropped


def drop_function_updates(graph_def):
  """Removes the assignments from the function library's bodies, in place;
  returns how many went.

  A layer inside a control flow v2 loop (`dynamic_rnn`, `tf.while_loop`)
  updates its moving statistics in place in the loop's body function (kept
  there as one of the body's control outputs, see `tf1_bn.bn.loops`), and
  the training switch bound to False does not reach into the body's ops.
  Freezing turns the variables the body receives into constants, and an
  assignment to one no longer imports ("... was passed float ... expected
  resource"): an inference graph writes no variable, so they go, with the
  control edges and control outputs that name them.
  """
  dropped = 0
  for function in graph_def.library.function:
    gone = {n.name for n in function.node_def if n.op in ASSIGN_OPS}
    if not gone:
      continue
    kept = [n for n in function.node_def if n.name not in gone]
    _drop_control_inputs(kept, gone)
    del function.node_def[:]
    function.node_def.extend(kept)
    for key in [k for k, target in function.control_ret.items() if target in gone]:
      del function.control_ret[key]
    outputs = [o for o in function.signature.control_output if o in function.control_ret]
    del function.signature.control_output[:]
    function.signature.control_output.extend(outputs)
    dropped += len(gone)
  return dropped


def freeze(sess, graph_def, output_nodes):
  """The variables of `graph_def` (read from `sess`) as constants, keeping only
  what `output_nodes` need."""
  return v1.graph_util.convert_variables_to_constants(sess, graph_def, output_nodes)


def prune_function_library(graph_def):
  """Drops the functions no node calls (the conds' branches once rewired)."""
  functions = {f.signature.name: f for f in graph_def.library.function}

  def called(nodes):
    for node in nodes:
      if node.op in functions:
        yield node.op
      for attr in node.attr.values():
        if attr.HasField('func'):
          yield attr.func.name
        for func in attr.list.func:
          yield func.name

  keep, stack = set(), list(called(graph_def.node))
  while stack:
    name = stack.pop()
    if name in keep or name not in functions:
      continue
    keep.add(name)
    stack.extend(called(functions[name].node_def))
  kept = [f for name, f in functions.items() if name in keep]
  del graph_def.library.function[:]
  graph_def.library.function.extend(kept)
  gradients = [g for g in graph_def.library.gradient if g.function_name in keep]
  del graph_def.library.gradient[:]
  graph_def.library.gradient.extend(gradients)


def turn_off_xla(graph_def):
  """Clears the compile-with-XLA marks on call nodes and functions, and lets
  those functions be inlined (as plain ops they need no call of their own)."""
  for node in list(graph_def.node) + [n for f in graph_def.library.function
                                      for n in f.node_def]:
    if XLA_MUST_COMPILE in node.attr:
      node.attr[XLA_MUST_COMPILE].b = False
  for function in graph_def.library.function:
    if XLA_MUST_COMPILE in function.attr and function.attr[XLA_MUST_COMPILE].b:
      function.attr[XLA_MUST_COMPILE].b = False
      function.attr['_noinline'].b = False


def drop_ordering_constraints(graph_def):
  """Removes, in place, control dependencies on stateless ops (once frozen
  they order nothing; an inlined function's control outputs would keep a
  folded BN op alive through them; those on stateful ops, asserts, stay) and
  colocation constraints (`_class`: extracting the subgraph the outputs need
  keeps every node another is colocated with, such as a folded BN inlined
  from a cond's branch)."""
  nodes = {n.name: n for n in graph_def.node}

  def keeps_order(name):
    """A stateful op, or a cond / loop context a Switch left (it carries
    deadness: dropping it would let a dead branch's constant into a Merge)."""
    node = nodes.get(name)
    op_def = op_def_registry.get(node.op) if node is not None else None
    if op_def is None or op_def.is_stateful or node.op in SWITCH_OPS:
      return True
    return node.op == 'Identity' and bool(node.input) and getattr(
        nodes.get(_name(node.input[0])), 'op', None) in SWITCH_OPS

  for node in graph_def.node:
    if COLOCATION_ATTR in node.attr:
      del node.attr[COLOCATION_ATTR]
    inputs = [t for t in node.input if not t.startswith('^') or keeps_order(_name(t))]
    if len(inputs) != len(node.input):
      del node.input[:]
      node.input.extend(inputs)


def rewrite_bn(frozen, records, values, output_nodes, fold=True):
  """Folds or rewrites the BN layers `records` describe (see
  `folding.fold`), then drops uncalled functions and XLA marks. Returns
  (graph_def, folding.Report)."""
  frozen = copy(frozen)
  drop_ordering_constraints(frozen)
  graph_def, report = folding.fold(frozen, records, values, output_nodes, into_ops=fold)
  prune_function_library(graph_def)
  turn_off_xla(graph_def)
  return graph_def, report


def op_counts(graph_def):
  """{op type: count} of the graph's nodes and of the functions they call
  (a TensorFlow 2 cond's branches)."""
  called = copy(graph_def)
  prune_function_library(called)
  ops = [n.op for n in called.node] + [n.op for f in called.library.function
                                        for n in f.node_def]
  return dict(sorted(collections.Counter(ops).items()))


def reachable(graph_def, output_nodes):
  """The part of `graph_def` the outputs depend on."""
  return v1.graph_util.extract_sub_graph(graph_def, list(output_nodes))


def write_saved_model(graph_def, inputs, outputs, export_dir):
  """Writes `graph_def` as a SavedModel with one `serving_default` signature.

  `inputs` / `outputs`: {signature key: tensor name in graph_def}.
  """
  with tf.Graph().as_default() as graph:
    tf.graph_util.import_graph_def(graph_def, name='')
    signature = v1.saved_model.signature_def_utils.predict_signature_def(
        inputs={k: graph.get_tensor_by_name(t) for k, t in inputs.items()},
        outputs={k: graph.get_tensor_by_name(t) for k, t in outputs.items()})
    with v1.Session(graph=graph) as export_sess:
      builder = v1.saved_model.Builder(export_dir)
      builder.add_meta_graph_and_variables(
          export_sess, [v1.saved_model.tag_constants.SERVING],
          signature_def_map={'serving_default': signature}, strip_default_attrs=True)
      builder.save()


def directory_size(export_dir):
  """Bytes of every file under `export_dir`."""
  return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(export_dir)
             for f in files)

