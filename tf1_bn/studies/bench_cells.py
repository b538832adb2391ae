"""Benchmark case: an LSTM under dynamic_rnn, tf1_bn's cell against the legacy cell.

`lstm_case([batch, time, depth, units], steps, warmup, legacy_available)`
times one step of `tf.compat.v1.nn.dynamic_rnn` over an LSTMCell (training:
the forward pass and the gradients of every variable and the inputs;
inference: the forward pass), tf1_bn's `LSTMCell` and, when the process runs
the legacy Keras (tf-keras with TF_USE_LEGACY_KERAS=1, as `tf1-bn bench`
arranges by re-running itself), the legacy `tf.compat.v1.nn.rnn_cell.LSTMCell`,
alternated step by step in one run (bench.py's protocol); rows report the
median and the ratio to the legacy cell (to tf1_bn's when the legacy is absent).

Both cells compute the same ops (one matmul of [x, h] by the kernel, one
bias add, the gates), so a ratio near 1 is expected; what can differ is the
per-call Python overhead while building, not the step time.
"""
from tf1_bn.studies import bench

LSTM_CASE = 'lstm'
TF1_BN = 'tf1_bn LSTMCell'
LEGACY = 'legacy LSTMCell'


def _implementations(units, legacy_available):
  import tensorflow as tf
  from tf1_bn.legacy import rnn_cell

  def builder(make_cell):
    def build(x, training):
      del training  # the LSTM has no train/inference switch
      outputs, _ = tf.compat.v1.nn.dynamic_rnn(make_cell(units), x, dtype=x.dtype)
      return outputs
    return build
  impls = {TF1_BN: builder(rnn_cell.LSTMCell)}
  if legacy_available:
    impls[LEGACY] = builder(tf.compat.v1.nn.rnn_cell.LSTMCell)
  return impls


def lstm_case(dims, steps, warmup, legacy_available, modes=('train', 'inference'),
              dtype_name='float32'):
  """Rows (bench.py's format) for `dims` = [batch, time, depth, units]."""
  import tensorflow as tf
  if len(dims) != 4:
    raise ValueError(f'the {LSTM_CASE} case takes batch x time x depth x units, e.g. '
                     f'{LSTM_CASE}:32x20x64x128; received {"x".join(map(str, dims))}.')
  batch, time, depth, units = dims
  rows = []
  for mode in modes:
    runners = {name: bench._Runner(build, [batch, time, depth], tf.as_dtype(dtype_name), mode)
               for name, build in _implementations(units, legacy_available).items()}
    times = bench._alternate(runners, steps, warmup)
    reference = LEGACY if LEGACY in runners else TF1_BN
    rows.extend(bench._rows(f'{LSTM_CASE} {"x".join(map(str, dims))} {dtype_name} {mode}',
                            times, reference, 0, None))
  return rows
