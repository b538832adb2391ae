"""The model of the bench's `lstm` case: one LSTM layer under dynamic_rnn.

The bench (`tf1-bn bench --cases lstm:BxTxDxU`, see `tf1_bn.studies.bench`)
builds this same recurrent step twice, once on tf1_bn's `LSTMCell` (what
`tf1_bn.patch_layers()` installs as `tf.compat.v1.nn.rnn_cell.LSTMCell`) and,
when the legacy cells are active in the process (tf-keras installed and
TF_USE_LEGACY_KERAS=1 set before TensorFlow's import; the bench re-runs
itself so), once on the legacy `tf.compat.v1.nn.rnn_cell.LSTMCell`; it times
a training step and an inference step of each side by side. This module only
builds the graphs: the timing (warm-up, alternation, medians, runs) is the
bench's.

The model: a batch of B sequences of T steps of depth D (float32), one
`LSTMCell(U)` unrolled by `tf.compat.v1.nn.dynamic_rnn`. The training step is
a gradient-descent `minimize` of the mean square of every output (forward,
backward through time, the update); the inference step fetches the outputs.
Both builds draw their variables from the same graph seed and see the same
batch. Both cells compute the same ops (one matmul of [x, h] by the kernel,
one bias add, the gates), so a ratio near 1 is expected: the graphs are the
same, only how they were built differs.
"""
import numpy as np

OURS = 'tf1_bn LSTMCell'
LEGACY = 'legacy LSTMCell'
LEARNING_RATE = 0.01


def implementations(legacy_available):
  """{row name: LSTMCell class}: tf1_bn's, and the legacy's when it is active
  in this process."""
  import tensorflow as tf
  from tf1_bn.legacy import rnn_cell
  found = {OURS: rnn_cell.LSTMCell}
  if legacy_available:
    found[LEGACY] = tf.compat.v1.nn.rnn_cell.LSTMCell
  return found


def build_step(cell_class, dims, mode):
  """In the default graph: `cell_class(units)` under dynamic_rnn for `dims` =
  [batch, time, depth, units]; returns (fetch, feed) of one `mode` step
  ('train' or 'inference') and the variables' initializer op."""
  import tensorflow as tf
  v1 = tf.compat.v1
  batch, time, depth, units = dims
  v1.set_random_seed(0)
  x = v1.placeholder(tf.float32, [batch, time, depth], name='x')
  outputs, _ = v1.nn.dynamic_rnn(cell_class(units), x, dtype=tf.float32)
  if mode == 'train':
    fetch = v1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(
        tf.reduce_mean(tf.square(outputs)))
  else:
    fetch = outputs
  feed = {x: np.random.RandomState(0).randn(batch, time, depth).astype(np.float32)}
  return fetch, feed, v1.global_variables_initializer()
