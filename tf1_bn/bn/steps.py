"""Per-time-step statistics: `step=t, max_steps=T` on the three front-ends.

In a recurrent network the activations' statistics change with the time
step (the first steps start from a zero state), so recurrent batch
normalization (Cooijmans et al., "Recurrent Batch Normalization", 2017)
keeps separate population statistics for each step while sharing gamma and
beta. With `step` and `max_steps`:

* the moving mean and variance have shape `[T] + the usual shape` (`[T, C]`
  for one channel axis) and keep their names; gamma and beta keep theirs;
* a call at step `t` normalizes a training batch with its own statistics,
  as always, and updates only row `min(t, T - 1)` of the moving statistics;
  inference uses that row. Steps past the last share the last row (the
  paper's choice: statistics settle after the first steps);
* `t` is a Python int or a scalar integer tensor (the loop counter in a
  `tf.while_loop`, the time carried in `tf1_bn.BNLSTMCell`'s state); a
  negative tensor fails when the op runs, with a message naming `step`.

Calls that share a row (steps past the last, or a layer called twice at
one step) are calls of one layer in one step, ordered as any such calls
(`tf1_bn.bn.call_order`): with the updates in a collection each reads and
writes after the one built before it, none lost; in place, calls in series
(an unrolled network, one step's input computed from the previous step's
output) are ordered by the data; inside a loop body iterations run in
order (`tf1_bn.bn.loops`).
"""
import numbers

import numpy as np
import tensorflow as tf

from tf1_bn.common import validation as v


def check_step(step, max_steps, unsupported=()):
  """Validates `step` / `max_steps` without adding ops.

  `unsupported` lists (flag, reason) pairs of the front-end's options that
  cannot keep per-step statistics. Returns (step, max_steps), None for both
  without per-step statistics.
  """
  if step is None and max_steps is None:
    return None, None
  if step is None or max_steps is None:
    given, missing = ('step', 'max_steps') if step is not None else ('max_steps', 'step')
    raise ValueError(f'`{given}` needs `{missing}`: per-step statistics take both (step=t, '
                     f'max_steps=T); received step={step!r}, max_steps={max_steps!r}.')
  max_steps = v.check_integer(max_steps, 'max_steps', low=1)
  if isinstance(step, (numbers.Integral, np.integer)) and not isinstance(step, (bool, np.bool_)):
    step = v.check_integer(step, 'step', low=0)
  elif isinstance(step, (tf.Tensor, tf.Variable)):
    v.check_graph_tensor(step, 'step')
    if not step.dtype.base_dtype.is_integer or step.shape.rank not in (None, 0):
      raise TypeError(f'`step` must be a Python int or a scalar integer tensor, received a '
                      f'{step.dtype.base_dtype.name} tensor of shape {step.shape}.')
  else:
    raise TypeError(f'`step` must be a Python int or a scalar integer tensor, received '
                    f'{step!r} ({type(step).__name__}).')
  for flag, reason in unsupported:
    if flag:
      raise ValueError(f'Per-step statistics (step, max_steps) cannot be combined with {reason}.')
  return step, int(max_steps)


def statistics_shape(param_shape, max_steps):
  """The moving statistics' shape: one row per step."""
  return list(param_shape) if max_steps is None else [max_steps] + list(param_shape)


def slot(step, max_steps):
  """The row a call at `step` uses: min(step, max_steps - 1), an int32
  scalar tensor (None without per-step statistics)."""
  if max_steps is None:
    return None
  if not tf.is_tensor(step):
    return tf.constant(min(step, max_steps - 1), tf.int32)
  step = tf.cast(step, tf.int64)
  check = tf.debugging.assert_non_negative(
      step, message='`step` of per-step batch-norm statistics must be >= 0')
  with tf.control_dependencies([check]):
    return tf.cast(tf.minimum(step, max_steps - 1), tf.int32)

