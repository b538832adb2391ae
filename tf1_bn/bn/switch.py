"""The train/inference switch shared by batch norm and dropout.

`training` is either a Python bool, which builds only that path, or a scalar
`tf.bool` tensor, which builds both paths under one `tf.cond`. When it is
None the layer uses the graph's training placeholder: a
`placeholder_with_default(False, [])`, so inference needs no feed and a
training step feeds `{tf1_bn.training_placeholder(): True}`.
"""
import numpy as np
import tensorflow as tf

from tf1_bn.bn import loops
from tf1_bn.common import validation as v

# Graph collection that holds the graph's training placeholder.
TRAINING_PLACEHOLDER_KEY = 'tf1_bn_training_placeholder'
# Graph collection of 'switched_tensor inference_tensor' name pairs (strings,
# so they survive a meta graph export).
INFERENCE_SHADOWS_KEY = 'tf1_bn_inference_shadows'


def training_placeholder(graph=None):
  """Returns the graph's training switch, creating it on first use.

  One `tf.compat.v1.placeholder_with_default(False, [], name='training')` per
  graph, created at the top level (outside any name scope or control flow), so
  every layer built with `training=None` shares it.

  Args:
    graph: the graph; the default graph when None.
  """
  with tf.init_scope():
    graph = v.check_graph(graph)
  existing = graph.get_collection(TRAINING_PLACEHOLDER_KEY)
  if existing:
    return existing[0]
  with graph.as_default(), graph.name_scope(None), graph.control_dependencies(None):
    placeholder = tf.compat.v1.placeholder_with_default(False, shape=[], name='training')
  graph.add_to_collection(TRAINING_PLACEHOLDER_KEY, placeholder)
  return placeholder


def check_training(training, arg_name='training', allow_int=False):
  """Validates `training` without adding ops. Returns a bool, a tensor or None."""
  if training is None:
    return None
  if isinstance(training, (bool, np.bool_)):
    return bool(training)
  if allow_int and isinstance(training, (int, np.integer)) and training in (0, 1):
    return bool(training)
  if isinstance(training, (tf.Tensor, tf.Variable)):
    v.check_graph_tensor(training, arg_name)
    dtype = training.dtype.base_dtype
    if dtype != tf.bool:
      raise TypeError(
          f'`{arg_name}` must be a Python bool or a scalar tf.bool tensor, received a '
          f'{dtype.name} tensor {training.name!r}. Feed a tf.bool placeholder, e.g. '
          "tf.compat.v1.placeholder(tf.bool, [], name='is_training').")
    if training.shape.rank not in (None, 0):
      raise ValueError(
          f'`{arg_name}` must be a scalar tf.bool tensor, received shape {training.shape} '
          f'({training.name!r}).')
    return training
  raise TypeError(
      f'`{arg_name}` must be a Python bool, a scalar tf.bool tensor or None, received '
      f'{training!r} ({type(training).__name__}).')


def resolve_training(training):
  """The checked `training`, with None replaced by the graph's placeholder."""
  if training is None:
    return training_placeholder()
  if isinstance(training, tf.Variable):
    return training.value() if hasattr(training, 'value') else tf.convert_to_tensor(training)
  return training


def static_value(training):
  """True or False when known while building, else None."""
  if isinstance(training, bool):
    return training
  return tf.get_static_value(training)


def switch(training, training_fn, inference_fn):
  """Builds `training_fn` or `inference_fn`, or both under one tf.cond.

  With a tensor `training` the inference path is also built once outside
  the cond. Nothing fetches it, so a session never runs it; it is what
  `tf1_bn.export_inference` wires in place of the cond (a registered pair of
  tensor names in INFERENCE_SHADOWS_KEY), which leaves no cond and no training
  path in an exported graph.
  """
  known = static_value(training)
  if known is not None:
    return training_fn() if known else inference_fn()
  outputs = tf.cond(training, training_fn, inference_fn)
  if loops.in_loop():  # a loop's tensors cannot be wired from outside it
    return outputs
  shadow = inference_fn()
  graph = tf.compat.v1.get_default_graph()
  for switched, inference in zip(tf.nest.flatten(outputs), tf.nest.flatten(shadow)):
    graph.add_to_collection(INFERENCE_SHADOWS_KEY, f'{switched.name} {inference.name}')
  return outputs
