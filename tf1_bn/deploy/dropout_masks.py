"""Removing dropout's random mask once its keep probability is bound to 1.0.

Dropout draws `u = RandomUniform(shape(x))` in [0, 1) and keeps an element
where `u >= rate` (TensorFlow 2's `dropout`: `SelectV2(mask, x * scale, 0)`)
or multiplies by `floor(keep_prob + u)` (TensorFlow 1's). With the keep
probability a constant 1.0 the mask is all True / all ones whatever `u` is,
but no converter can tell: the random op stays in the serving graph (and in
TFLite as RANDOM_UNIFORM). Here the interval of each tensor computed from `u`
and constants is followed (`u + c`, `u - c`, `u * c`, floor, comparisons
with a constant); a tensor whose interval holds a single value is that
value, and the select / multiply that applies it becomes its other operand.
Nothing else is touched: a mask that can drop an element stays.
"""
import math

from tf1_bn.deploy import bn_forms
from tf1_bn.deploy import folding
from tf1_bn.deploy import pipeline

_name = folding.node_name
_COMPARISONS = ('GreaterEqual', 'Greater', 'Less', 'LessEqual')


def _scalar(constants, tensor):
  if not constants.is_constant(tensor):
    return None
  value = constants.value(tensor)
  return float(value.reshape(())) if value.size == 1 else None


def _interval(node, known, constants):
  """(low, high, high_open) of `node`'s values, a Python value when it holds
  one value only, or None when unknown."""
  if node.op == 'RandomUniform':
    return (0.0, 1.0, True)
  data = [i for i in node.input if not i.startswith('^')]
  moving = [i for i in data if _name(i) in known]
  if len(moving) != 1:
    return None
  inner = known[_name(moving[0])]
  if node.op == 'Cast' and not isinstance(inner, tuple):
    return float(inner)
  if not isinstance(inner, tuple):
    return None
  low, high, high_open = inner
  others = [i for i in data if i != moving[0]]
  if node.op == 'Floor':
    if math.floor(low) == math.floor(high) or (high_open and high == math.floor(low) + 1):
      return float(math.floor(low))
    return None
  if len(others) != 1:
    return None
  c = _scalar(constants, others[0])
  if c is None:
    return None
  first = data[0] == moving[0]
  if node.op in ('Add', 'AddV2'):
    return (low + c, high + c, high_open)
  if node.op == 'Sub' and first:
    return (low - c, high - c, high_open)
  if node.op == 'Mul' and c > 0:
    return (low * c, high * c, high_open)
  if node.op in _COMPARISONS and first:
    below = high < c or (high_open and high <= c)  # every value < c
    at_most = high <= c  # every value <= c
    if node.op == 'GreaterEqual':
      return True if low >= c else (False if below else None)
    if node.op == 'Greater':
      return True if low > c else (False if at_most else None)
    if node.op == 'Less':
      return True if below else (False if low >= c else None)
    return True if at_most else (False if low > c else None)
  return None


def remove(graph_def, output_nodes):
  """Rewrites, in place of `graph_def`'s nodes, every select / multiply by a
  dropout mask that keeps everything; returns (graph_def keeping what the
  outputs need, how many masks went)."""
  constants = bn_forms.Constants(graph_def)
  try:
    known, shape_of = {}, {}
    for name in pipeline.topological_order(graph_def):
      node = constants.nodes[name]
      if node.op == 'RandomUniform' or any(_name(i) in known for i in node.input):
        value = _interval(node, known, constants)
        if value is not None:
          known[name] = value
          shape_of[name] = constants.shape(name).as_list()
    replaced = {}
    for node in graph_def.node:
      data = [i for i in node.input if not i.startswith('^')]
      masks = [i for i in data if _name(i) in known and known[_name(i)] in (True, 1.0)
               and not isinstance(known[_name(i)], tuple)]
      if len(masks) != 1:
        continue
      mask = masks[0]
      if node.op == 'SelectV2' and data[0] == mask:
        kept = data[1]
      elif node.op == 'Mul' and len(data) == 2 and known[_name(mask)] is not True:
        kept = data[1] if data[0] == mask else data[0]
      else:
        continue
      if constants.shape(kept).as_list() == shape_of[_name(mask)] == constants.shape(
          node.name).as_list():
        replaced[node.name + ':0'] = folding.canonical_tensor_name(kept)
  finally:
    constants.close()
  if not replaced:
    return graph_def, 0
  for node in graph_def.node:
    for index, tensor in enumerate(node.input):
      if not tensor.startswith('^') and folding.canonical_tensor_name(tensor) in replaced:
        node.input[index] = replaced[folding.canonical_tensor_name(tensor)]
  return pipeline.reachable(graph_def, output_nodes), len(replaced)
