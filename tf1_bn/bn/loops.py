"""Batch norm inside a loop body: `tf.while_loop`, `dynamic_rnn`, `map_fn`, `scan`.

A layer built inside a loop body builds ops of the loop's frame. An update op
put into `UPDATE_OPS` from there cannot be fetched from outside the loop
(control flow v2: "... is not an element of this graph"; v1: an op of
another frame), so the collection idiom that works everywhere else fails on
the first training step. Inside a loop every front-end therefore:

* updates in place: the layer's output in training mode depends on its
  update, whatever `updates` / `updates_collections` say, and nothing from
  the loop's frame goes into a collection (`check_update_ops` has nothing to
  report for the layer: a fetch of the output runs the update). Each
  iteration's update uses that iteration's batch statistics, as if each time
  step were a batch;
* keeps iteration order: an iteration reads the moving statistics the
  previous one wrote. The enclosing loops run one iteration at a time (their
  `parallel_iterations` is set to 1: v1 on the frame's Enter ops, v2 on the
  While op when it is built), so iteration i + 1's read-modify-write starts
  after iteration i's has finished;
* reads the moving statistics through the variable's handle
  (`ReadVariableOp`): `map_fn`, `scan` and `dynamic_rnn` give variables a
  caching device, and a read through the variable itself returns the value
  cached at the start of the step, not the previous iteration's;
* uses the unfused kernels: the fused kernel's gradient fails in a loop
  (a cond_v2 gradient assertion; "Mismatched parent frames" under v1).

Inference (training False) normalizes with the moving statistics, as
outside a loop.
"""
import tensorflow as tf

# Attribute set on a while_v2 body graph whose loop must run one iteration at a time.
SERIAL_ATTRIBUTE = '_tf1_bn_serial_iterations'


def _is_v2_loop_body(graph):
  return type(graph).__name__ in ('WhileBodyFuncGraph', 'WhileCondFuncGraph')


def _v1_while_contexts(graph):
  """The v1 WhileContexts enclosing the current point of `graph`, innermost
  first, as (graph, context) pairs."""
  getter = getattr(graph, '_get_control_flow_context', None)
  context = getter() if getter is not None else None
  found = []
  while context is not None:
    if context.IsWhileContext():
      found.append((graph, context))
    context = context.outer_context
  return found


def enclosing_loops(graph=None):
  """The loops the current point of `graph` (default graph) is inside,
  innermost first: (graph, v1 WhileContext) pairs and v2 while-body graphs."""
  graph = graph or tf.compat.v1.get_default_graph()
  loops = []
  while graph is not None:
    loops.extend(_v1_while_contexts(graph))
    if _is_v2_loop_body(graph):
      loops.append(graph)
    graph = getattr(graph, 'outer_graph', None)
  return loops


def in_loop(graph=None):
  """Whether ops built now are inside a while loop's body (v1 or v2)."""
  return bool(enclosing_loops(graph))


def outside_graph(graph=None):
  """The graph the outermost enclosing v2 loop is built in (`graph` itself
  outside v2 loops): a v2 body's own collections do not reach it."""
  graph = graph or tf.compat.v1.get_default_graph()
  while _is_v2_loop_body(graph) and getattr(graph, 'outer_graph', None) is not None:
    graph = graph.outer_graph
  return graph


def read(variable):
  """The variable's current value, read through its handle: not a cached
  copy (map_fn, scan and dynamic_rnn set a caching device)."""
  return tf.raw_ops.ReadVariableOp(resource=variable.handle,
                                   dtype=variable.dtype.base_dtype)


_WRITE_OPS = {'assign': tf.raw_ops.AssignVariableOp, 'assign_sub': tf.raw_ops.AssignSubVariableOp,
              'assign_add': tf.raw_ops.AssignAddVariableOp}


def write(kind, variable, value, name=None):
  """'assign', 'assign_sub' or 'assign_add' through the variable's handle;
  returns the value read after the write.

  `variable.assign_sub` gives the assign a control input on the variable's
  cached value where a caching device is set; in a while_v2 body that
  becomes a control input of the While op, which the op's gradient then
  makes invalid ("Control dependencies must come after regular
  dependencies") by adding regular inputs after it.
  """
  value = tf.cast(value, variable.dtype.base_dtype)
  op = _WRITE_OPS[kind](resource=variable.handle, value=value, name=name)
  with tf.control_dependencies([op]):
    return read(variable)


def keep(op):
  """Makes a loop body run `op` in every iteration, whatever is fetched.

  A v2 body is a function: an op that no fetched output needs is pruned
  when the While op is lowered (a train op fetches only the gradient loop,
  which reads the forward loop's accumulators, not its outputs), unless it
  is one of the function's control outputs. A v1 body runs every op its
  NextIteration and Exit ops need, and `op` is one of the output's inputs.
  """
  graph = op.graph
  if _is_v2_loop_body(graph) and op not in graph.control_outputs:
    graph.control_outputs.append(op)


def serialize_iterations(graph=None):
  """Makes every loop enclosing the current point run one iteration at a time."""
  _install_while_v2_hook()
  for loop in enclosing_loops(graph):
    if isinstance(loop, tuple):
      _serialize_v1(*loop)
    else:
      setattr(loop, SERIAL_ATTRIBUTE, True)


def _serialize_v1(graph, context):
  """parallel_iterations=1 on a v1 loop: its Enter ops carry the frame's
  setting (those built later take it from the context)."""
  from tensorflow.core.framework import attr_value_pb2  # pylint: disable=g-import-not-at-top
  context._parallel_iterations = 1  # pylint: disable=protected-access
  one = attr_value_pb2.AttrValue(i=1)
  for op in graph.get_operations():
    if op.type in ('Enter', 'RefEnter') and \
        op.get_attr('frame_name').decode() == context.name:
      if op.get_attr('parallel_iterations') != 1:
        op._set_attr('parallel_iterations', one)  # pylint: disable=protected-access


_HOOK = {}


def _install_while_v2_hook():
  """Wraps while_v2's While-op builder once so that a body marked by
  `serialize_iterations` gets parallel_iterations=1 (the attribute the
  lowering to Enter/Exit gives the frame)."""
  if _HOOK:
    return
  from tensorflow.python.ops import while_v2  # pylint: disable=g-import-not-at-top
  original = while_v2._build_while_op  # pylint: disable=protected-access

  def build_while_op(loop_vars, cond_graph, body_graph, output_shapes, parallel_iterations,
                     *args, **kwargs):
    if getattr(body_graph, SERIAL_ATTRIBUTE, False):
      parallel_iterations = 1
    return original(loop_vars, cond_graph, body_graph, output_shapes, parallel_iterations,
                    *args, **kwargs)

  while_v2._build_while_op = build_while_op  # pylint: disable=protected-access
  _HOOK['original'] = original
