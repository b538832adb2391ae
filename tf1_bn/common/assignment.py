"""Writing numpy values into variables by feeding their initializers.

No op is added, so a finalized graph works too, and every copy of a
`tf.distribute` variable (one per replica) receives the value: a strategy's
copies must stay identical.
"""
import numpy as np
import tensorflow as tf


def copies(variable):
  """The variables holding `variable`'s value: itself, or each replica's copy
  of a distributed (mirrored) variable."""
  values = getattr(variable, 'values', None)
  if isinstance(values, tuple) and values and all(isinstance(c, tf.Variable) for c in values):
    return list(values)
  return [variable]


def assign_by_feeding(sess, values):
  """Sets each variable of `values` ({variable: array}) to its array,
  reshaped to the variable's shape and cast to its dtype."""
  feeds, initializers = {}, []
  for variable, value in values.items():
    value = np.asarray(value).astype(variable.dtype.base_dtype.as_numpy_dtype).reshape(
        variable.shape.as_list())
    for copy in copies(variable):
      feeds[copy.initializer.inputs[1]] = value
      initializers.append(copy.initializer)
  sess.run(initializers, feeds)
