"""Finding and binding the training switch of a graph tf1_bn did not build.

A TF1 model picks its training or inference path with a bool scalar: a
placeholder (`is_training`, `phase_train`), a `placeholder_with_default`
(Keras 2's `keras_learning_phase`) or a bool variable. It reaches each BN
through a `tf.cond` (a `Switch` per tensor the branches read, a `Merge` per
result), also when the BN is fused (one FusedBatchNorm per branch). Dropout
reads a keep-probability placeholder next to its random mask.

Candidates: the bool scalars that feed a Switch's predicate (also one in a
control flow v2 loop's body, reached through the loop's inputs), and the float
scalar placeholders that feed an op together with a random op (dropout's
keep_prob). `--training NAME[=false]` names the switches to bind; without it
the bool candidate is bound to False when there is exactly one, and more than
one is an error listing them (binding the wrong one would verify nothing).
Keep-probabilities are bound to 1.0 unless named.
"""
import collections
import dataclasses
import difflib

import tensorflow as tf

from tf1_bn.deploy import folding
from tf1_bn.deploy import pipeline

BOOL_SOURCES = pipeline.PLACEHOLDER_OPS + pipeline.VARIABLE_OPS
TRUE_WORDS = ('true', '1')
FALSE_WORDS = ('false', '0')
KEEP_PROB = 1.0
# TensorFlow 2's tf.cond in a graph (lowered to Switch / Merge before pruning).
IF_OPS = pipeline.FUNCTIONAL_CONDS
# TensorFlow 2's tf.while_loop in a graph (dynamic_rnn's too): the body is a function.
WHILE_OPS = ('While', 'StatelessWhile')

_name = folding.node_name


@dataclasses.dataclass
class Binding:
  name: str  # node name
  value: object
  why: str


def close_names(graph_def, name, count=5):
  """The node names of `graph_def` closest to `name` (for error messages)."""
  names = [n.name for n in graph_def.node]
  close = difflib.get_close_matches(name, names, n=count, cutoff=0.5)
  if not close:
    close = [n for n in names if name.split('/')[-1] in n][:count]
  return close


def not_found(graph_def, name, arg_name):
  close = close_names(graph_def, name)
  hint = f'; close names: {", ".join(close)}' if close else ''
  return ValueError(f'{arg_name} {name!r} is not in the graph{hint}.')


def parse_binding(text):
  """'NAME', 'NAME=false', 'NAME=1.0' -> (node name, value)."""
  name, _, value = text.partition('=')
  name = _name(name.strip())
  if not name:
    raise ValueError(f'--training expects NAME or NAME=VALUE, received {text!r}.')
  word = value.strip().lower()
  if not word or word in FALSE_WORDS:
    return name, False
  if word in TRUE_WORDS:
    raise ValueError(f'--training {text!r}: binding a switch to True exports the training '
                     f'graph; give NAME or NAME=false.')
  try:
    return name, float(word)
  except ValueError:
    raise ValueError(f'--training {text!r}: VALUE must be false or a number (a keep '
                     f'probability), received {value!r}.') from None


def _is_scalar(node):
  if 'shape' in node.attr and not node.attr['shape'].shape.unknown_rank:
    return len(node.attr['shape'].shape.dim) == 0
  return True


def _ancestors(nodes, tensors):
  seen, stack = set(), [_name(t) for t in tensors]
  while stack:
    name = stack.pop()
    if name in seen or name not in nodes:
      continue
    seen.add(name)
    stack.extend(_name(i) for i in nodes[name].input if not i.startswith('^'))
  return seen


def _loop_inputs_feeding_conds(graph_def):
  """The inputs of the graph's control flow v2 loops that reach a cond's
  predicate inside the loop body (a BN layer in `dynamic_rnn` reads the
  training switch there), as tensor names of the graph."""
  functions = {f.signature.name: f for f in graph_def.library.function}
  found = []
  for node in graph_def.node:
    if node.op not in WHILE_OPS or node.attr['body'].func.name not in functions:
      continue
    body = functions[node.attr['body'].func.name]
    inner = {n.name: n for n in body.node_def}
    predicates = [n.input[0] for n in body.node_def if n.op in IF_OPS]
    reached = _ancestors(inner, predicates) | {_name(p) for p in predicates}
    # An argument is named as itself in the body; what reads it, through it.
    reached |= {_name(i) for name in reached & set(inner) for i in inner[name].input}
    data_inputs = [i for i in node.input if not i.startswith('^')]
    for arg, tensor in zip(body.signature.input_arg, data_inputs):
      if arg.name in reached:
        found.append(tensor)
  return found


def candidates(graph_def):
  """(bool switch candidates, keep-probability candidates): node names."""
  nodes = {n.name: n for n in graph_def.node}
  predicates = [n.input[1] for n in graph_def.node if n.op in pipeline.SWITCH_OPS]
  predicates += [n.input[0] for n in graph_def.node if n.op in IF_OPS]
  predicates += _loop_inputs_feeding_conds(graph_def)
  feeding = _ancestors(nodes, predicates)
  switches = sorted(name for name in feeding
                    if nodes[name].op in BOOL_SOURCES and _is_scalar(nodes[name])
                    and pipeline.node_dtype(nodes[name]) == tf.bool)
  random = [n.name for n in graph_def.node if n.op.startswith('Random')]
  consumers = collections.defaultdict(set)
  for node in graph_def.node:
    for i in node.input:
      consumers[_name(i)].add(node.name)

  def descendants(name):
    seen, stack = set(), [name]
    while stack:
      current = stack.pop()
      if current not in seen:
        seen.add(current)
        stack.extend(consumers[current])
    return seen

  after_random = set().union(*(descendants(r) for r in random)) if random else set()
  keep = sorted(n.name for n in graph_def.node
                if n.op in pipeline.PLACEHOLDER_OPS and _is_scalar(n)
                and pipeline.node_dtype(n) in (tf.float32, tf.float64, tf.float16)
                and descendants(n.name) & after_random)
  return switches, keep


def bindings(graph_def, training=()):
  """The Bindings for `training` ('NAME[=VALUE]' strings) and the candidates.

  Raises ValueError naming close names for a name not in the graph, or
  listing the candidates when several bool switches are found and none named.
  """
  nodes = {n.name: n for n in graph_def.node}
  switches, keep = candidates(graph_def)
  bound = []
  for text in training:
    name, value = parse_binding(text)
    node = nodes.get(name)
    if node is None:
      raise not_found(graph_def, name, '--training')
    if node.op not in BOOL_SOURCES:
      raise ValueError(f'--training {name!r} is an op of type {node.op}, not a placeholder, '
                       f'placeholder_with_default or variable.')
    dtype = pipeline.node_dtype(node)
    if (dtype == tf.bool) != isinstance(value, bool):
      raise ValueError(f'--training {text!r}: {name!r} is a {dtype.name} tensor; a bool '
                       f'switch takes false, a float one a number.')
    bound.append(Binding(name, value, '--training'))
  named = {b.name for b in bound}
  unfed = [name for name in switches if name not in named and nodes[name].op == 'Placeholder']
  if training and unfed:
    raise ValueError(f'the training switch candidate(s) {", ".join(unfed)} (placeholders '
                     f'without a default) are not bound; add --training for each.')
  if not training:
    if len(switches) > 1:
      raise ValueError(f'several training switch candidates: {", ".join(switches)}; name the '
                       f'one(s) to bind to False with --training NAME.')
    bound += [Binding(name, False, 'candidate: the bool scalar feeding the conds')
              for name in switches]
  bound += [Binding(name, KEEP_PROB, 'candidate: a dropout keep probability')
            for name in keep if name not in named]
  return bound, switches, keep
