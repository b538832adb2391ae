"""Helpers that make the forgotten-UPDATE_OPS bug impossible or loud.

In collection mode a BN layer's moving statistics change only when its update
op runs. A train op built without a dependency on UPDATE_OPS trains gamma and
beta but leaves the moving mean at 0 and variance at 1, and evaluation with
training False collapses.
"""
import collections

import tensorflow as tf

from tf1_bn import core
from tf1_bn.errors import MissingUpdateOpsError

FIX = ('Build the train op with tf1_bn.minimize(optimizer, loss), or wrap it: '
       'with tf.control_dependencies(tf.compat.v1.get_collection('
       'tf.compat.v1.GraphKeys.UPDATE_OPS)): train_op = optimizer.minimize(loss). '
       'Or build the layers with updates="inline".')


def minimize(optimizer, loss, **kwargs):
  """`optimizer.minimize(loss, **kwargs)` that also runs every UPDATE_OPS op.

  The dependency covers the update ops present when this is called: build all
  BN layers first.
  """
  graph = getattr(loss, 'graph', None) or tf.compat.v1.get_default_graph()
  update_ops = graph.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
  with graph.as_default(), tf.control_dependencies(update_ops):
    return optimizer.minimize(loss, **kwargs)


def _as_ops(fetches):
  ops = []
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
  """
  graph = graph or tf.compat.v1.get_default_graph()
  registered = graph.get_collection(core.COLLECTION_UPDATES_KEY)
  if not registered:
    return None
  reachable = _ancestors(_as_ops(fetches))
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
