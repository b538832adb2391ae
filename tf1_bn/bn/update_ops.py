"""Helpers that make the forgotten-UPDATE_OPS bug impossible or loud.

In collection mode a BN layer's moving statistics change only when its update
op runs. A train op built without a dependency on UPDATE_OPS trains gamma and
beta but leaves the moving mean at 0 and variance at 1, and evaluation with
training False collapses.
"""
import collections

import tensorflow as tf

from tf1_bn.bn import core
from tf1_bn.common import validation as v
from tf1_bn.common.errors import MissingUpdateOpsError

FIX = ('Build the train op with tf1_bn.minimize(optimizer, loss), or wrap it: '
       'with tf.control_dependencies(tf.compat.v1.get_collection('
       'tf.compat.v1.GraphKeys.UPDATE_OPS)): train_op = optimizer.minimize(loss). '
       'Or build the layers with updates="inline".')


def minimize(optimizer, loss, **kwargs):
  """`optimizer.minimize(loss, **kwargs)` that also runs every UPDATE_OPS op.

  The dependency covers the update ops present when this is called: build all
  BN layers first.

  Args:
    optimizer: a `tf.compat.v1.train.Optimizer` (any object with a
      `minimize(loss, **kwargs)` method).
    loss: a float tensor of a graph (not a callable: this is graph mode).
    **kwargs: passed on to `optimizer.minimize`.
  """
  v.check_graph_mode('minimize')
  if not callable(getattr(optimizer, 'minimize', None)):
    raise TypeError(f'`optimizer` must be a tf.compat.v1.train.Optimizer (an object with a '
                    f'minimize method), received {optimizer!r} ({type(optimizer).__name__}).')
  if not isinstance(loss, (tf.Tensor, tf.Variable)):
    raise TypeError(f'`loss` must be a float tf.Tensor of the graph being trained, received '
                    f'{loss!r} ({type(loss).__name__}).')
  v.check_float_dtype(loss.dtype.base_dtype, 'loss')
  graph = loss.graph
  _check_minimize_kwargs(kwargs, graph)
  update_ops = graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
  with graph.as_default(), tf.control_dependencies(update_ops):
    return optimizer.minimize(loss, **kwargs)


def _check_minimize_kwargs(kwargs, graph):
  """The arguments of tf.compat.v1.train.Optimizer.minimize that would fail
  inside it, some after building the gradients."""
  v.check_variable_list(kwargs.get('var_list'), 'var_list', graph)
  step = kwargs.get('global_step')
  if step is not None and not (isinstance(step, tf.Variable) and step.dtype.base_dtype.is_integer):
    raise TypeError(f'`global_step` must be None or an integer tf.Variable, received {step!r}.')
  if kwargs.get('name') is not None:
    v.check_name(kwargs['name'], 'name')


def _as_ops(fetches):
  ops = []
  if isinstance(fetches, (str, bytes)):
    raise TypeError(f'`fetches` must hold tensors or operations, received the string '
                    f'{fetches!r} (pass the op itself, not its name).')
  for fetch in tf.nest.flatten(fetches):
    if isinstance(fetch, tf.Operation):
      ops.append(fetch)
    elif isinstance(fetch, tf.Variable):
      ops.append(fetch.op)
    elif hasattr(fetch, 'op'):
      ops.append(fetch.op)
    else:
      raise TypeError(f'`fetches` must hold tensors or operations, received {fetch!r}.')
  return ops


def _ancestors(ops):
  seen = set()
  stack = list(ops)
  while stack:
    op = stack.pop()
    if op in seen:
      continue
    seen.add(op)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return seen


def layer_name(update_op):
  """The layer (its name scope) that built an update op."""
  return core.update_layer_name(update_op)


def check_update_ops(fetches, graph=None):
  """Raises MissingUpdateOpsError if `fetches` skip some BN layer's update.

  Checks every BN layer built in collection mode (bn_layer's
  updates='collection', tf.layers and slim's update collections): its update
  ops must be ancestors of `fetches` (usually the train op). Returns None when
  they all are.

  Update collections hold Operations (tf.layers, bn_layer) or what the
  assigns return (slim's own paths: tensor-like, with `.op`); both count.

  Args:
    fetches: a tensor, an operation, a variable, or a (nested) list or dict
      of them, as for `Session.run` (an update collection itself, too).
    graph: the graph whose layers are checked; None: the graph of `fetches`
      (the default graph when they hold nothing).
  """
  fetch_ops = _as_ops(fetches)
  if graph is None and fetch_ops:
    graph = fetch_ops[0].graph
  graph = v.check_graph(graph)
  elsewhere = [op.name for op in fetch_ops if op.graph is not graph]
  if elsewhere:
    raise ValueError(f'`fetches` hold ops of another graph than `graph`: {elsewhere}.')
  registered = graph.get_collection(core.COLLECTION_UPDATES_KEY)
  if not registered:
    return None
  reachable = _ancestors(fetch_ops)
  missing = collections.OrderedDict()
  for op in registered:
    op = op if isinstance(op, tf.Operation) else op.op
    if op not in reachable:
      missing.setdefault(layer_name(op), None)
  if missing:
    names = list(missing)
    raise MissingUpdateOpsError(
        f'{len(names)} batch-norm layer(s) would never update their moving statistics '
        f'with these fetches: {", ".join(names)}. Evaluation with training False would '
        f'use mean 0 / variance 1. {FIX}', layers=names)
  return None
