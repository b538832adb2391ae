"""Batch statistics: the one place the core asks for a batch's moments.

`moments` returns the mean, the population variance and the number of
values behind them, for every training path except the local fused kernel
(which computes its moments inside). Given a `replicas.LayerCall` it
returns the statistics of the global batch, from one packed all-sum per
layer call of each replica's per-channel `[sum(x - K), sum((x - K)^2),
count]`, where K is a shift every replica holds (the moving mean).

Each replica computes those sums from its own two-pass moments,
`n (m - K)` and `n (v + (m - K)^2)`, and they are packed, summed and
combined in float64: summing `x` and `x^2` in float32 and taking
`E[x^2] - E[x]^2` loses a quarter of the variance of a channel at mean 1000
and spread 1, and a shift alone does not help while K is still far from the
mean (the moving mean starts at 0). Counts are summed too, so replicas with
unequal or empty batches are exact.
"""
import tensorflow as tf

from tf1_bn.bn import kernels
from tf1_bn.bn import replicas as replicas_lib

VARIANCE_KINDS = ('population', 'sample')


def batch_moments(x, reduction_axes, weights=None, keepdims=False):
  """Mean and population (biased) variance of `x` over `reduction_axes`.

  Args:
    x: the input, already in the statistics dtype.
    reduction_axes: the axes to reduce (every axis but the normalized ones).
    weights: optional per-example weights, broadcastable to `x`
      (slim's `batch_weights`); `tf.nn.weighted_moments` then weighs each
      example.
    keepdims: keep the reduced axes with size 1.
  """
  if weights is None:
    return tf.nn.moments(x, reduction_axes, keepdims=keepdims)
  if weights.shape.rank == x.shape.rank:
    return _position_weighted_moments(x, reduction_axes, weights, keepdims)
  return tf.nn.weighted_moments(x, reduction_axes, weights, keepdims=keepdims)


def _position_weighted_moments(x, reduction_axes, weights, keepdims):
  """tf.nn.weighted_moments for per-position weights (a mask's), with their
  total from `_total_weight` rather than from the weights broadcast to `x`
  (one pass over `x` fewer). Mean 0 and variance 0 for a zero total."""
  weights = tf.cast(weights, x.dtype)
  total = _total_weight(weights, x, reduction_axes)
  divisor = tf.where(total > 0, total, tf.ones_like(total))
  if _channels_last_positions(x, reduction_axes, weights):
    return _matmul_weighted_moments(x, weights, divisor, keepdims)
  mean = tf.reduce_sum(weights * x, reduction_axes, keepdims=True) / divisor
  variance = tf.reduce_sum(weights * tf.math.squared_difference(x, tf.stop_gradient(mean)),
                           reduction_axes, keepdims=True) / divisor
  if not keepdims:
    mean, variance = (tf.squeeze(t, reduction_axes) for t in (mean, variance))
  return mean, variance


def _channels_last_positions(x, reduction_axes, weights):
  """Whether the weights are per position of an input normalized over its
  last axis only (a mask on [B, T, ..., C])."""
  rank = x.shape.rank
  return (list(reduction_axes) == list(range(rank - 1)) and rank >= 2 and
          x.shape[-1] is not None and weights.shape[-1] == 1)


def _matmul_weighted_moments(x, weights, divisor, keepdims):
  """The weighted mean and variance of `x` [..., C] as two matrix products
  of the weights' row [1, N] with `x` as [N, C]: each reads `x` once, where
  `reduce_sum(weights * x)` writes and reads the product first. The sums run
  over the positions per channel, as the column reductions of
  `reduce_sum` and the fused kernel do."""
  channels = x.shape[-1]
  rows = tf.reshape(x, [-1, channels])
  leading = tf.concat([tf.shape(x)[:-1], [1]], 0)
  row = tf.reshape(tf.broadcast_to(weights, leading), [1, -1])
  mean = tf.matmul(row, rows) / divisor
  variance = tf.matmul(row, tf.math.squared_difference(rows, tf.stop_gradient(mean))) / divisor
  shape = [1] * (x.shape.rank - 1) + [channels] if keepdims else [channels]
  return tf.reshape(mean, shape), tf.reshape(variance, shape)


def count_per_channel(x, reduction_axes, dtype):
  """The number of values each channel's statistics are computed from."""
  shape = tf.shape(x)
  return tf.cast(tf.reduce_prod(tf.gather(shape, reduction_axes)), dtype)


def _total_weight(weights, x, reduction_axes):
  """The total weight behind each channel (the same for all): the count of
  weighted statistics. A zero total is an empty batch.

  The sum of `weights` broadcast to `x`, without broadcasting them: the sum
  over their own reduced axes times the sizes of the axes they broadcast
  along (statically 1 in `weights`)."""
  rank = x.shape.rank
  if weights.shape.rank != rank:
    full = tf.broadcast_to(weights, tf.shape(x))
    return tf.reshape(tf.reduce_sum(full, reduction_axes), [-1])[0]
  broadcast = [a for a in reduction_axes if weights.shape[a] == 1]
  summed = [a for a in reduction_axes if a not in broadcast]
  total = tf.reduce_sum(weights, summed) if summed else weights
  total = tf.reshape(total, [-1])[0]
  if broadcast:
    total = total * tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), broadcast)), weights.dtype)
  return total


def moments(x, reduction_axes, weights=None, shift=None, call=None, fused_axis=None):
  """Mean, population variance and count of `x` per channel.

  Args:
    x: the input, in the statistics dtype (float32 for 16-bit inputs); for
      `fused_axis`, the layer's input itself.
    reduction_axes: every axis but the normalized ones; the results keep
      them with size 1.
    weights: per-example weights broadcastable to `x` (slim's
      `batch_weights`); the count is then the total weight.
    shift: the per-channel shift K, broadcastable to the results, the same
      on every replica (needed with `call`).
    call: a `replicas.LayerCall`: statistics of the global batch. Without
      `fused_axis` the all-sum is differentiable, so gradients reach every
      replica's input.
    fused_axis: with `call`, each replica's local moments come from the
      fused kernel (one pass over `x`), with no gradient: the caller's
      kernel provides it.

  Returns:
    (mean, variance, count): mean and variance shaped like `x` with the
    reduced axes kept as 1, count a scalar (the number of values per
    channel, or their total weight).
  """
  if fused_axis is not None:
    mean, sample_variance = kernels.fused_local_moments(x, fused_axis)
    count = count_per_channel(x, reduction_axes, mean.dtype)
    kept_shape = [x.shape[i] if i == fused_axis else 1 for i in range(x.shape.rank)]
    mean = tf.reshape(mean, kept_shape)
    variance = tf.reshape(sample_to_population(sample_variance, count), kept_shape)
  elif call is None:
    mean, variance = batch_moments(x, reduction_axes, weights, keepdims=True)
  else:
    mean, variance = _precise_moments(x, reduction_axes, weights)
  if fused_axis is None:
    if weights is None:
      count = count_per_channel(x, reduction_axes, variance.dtype)
    else:
      count = _total_weight(tf.cast(weights, variance.dtype), x, reduction_axes)
  if call is None:
    return mean, variance, count
  return _global_moments(mean, variance, count, shift, call, differentiable=fused_axis is None)


def _precise_moments(x, reduction_axes, weights):
  """A replica's moments for the global combination: the mean reduced in
  float64, the variance around it in the input's dtype (two passes).

  The combination weighs each replica's mean by how far it lies from the
  others', so its rounding matters there as it does not in local BN: a
  float32 mean of channels at 1000 is off by about 1e-4, which moved the
  global variance by 3e-5 of itself. Returns the mean in float64.
  """
  wide = tf.cast(x, tf.float64)
  if weights is None:
    mean = tf.reduce_mean(wide, reduction_axes, keepdims=True)
    centered = x - tf.stop_gradient(tf.cast(mean, x.dtype))
    variance = tf.reduce_mean(tf.square(centered), reduction_axes, keepdims=True)
  else:
    full = tf.broadcast_to(tf.cast(weights, tf.float64), tf.shape(wide))
    total = tf.reduce_sum(full, reduction_axes, keepdims=True)
    mean = tf.math.divide_no_nan(tf.reduce_sum(full * wide, reduction_axes, keepdims=True),
                                 total)
    centered = x - tf.stop_gradient(tf.cast(mean, x.dtype))
    variance = tf.math.divide_no_nan(
        tf.reduce_sum(tf.cast(full, x.dtype) * tf.square(centered), reduction_axes,
                      keepdims=True), tf.cast(total, x.dtype))
  # The variance is around the mean rounded to x's dtype; the difference
  # between the two means, squared, is below that dtype's resolution.
  return mean, variance


def _global_moments(mean, variance, count, shift, call, differentiable):
  """The global batch's moments from every replica's (mean, variance, count)."""
  dtype = variance.dtype
  wide = tf.float64
  shift = tf.cast(shift, wide)
  count = tf.cast(count, wide)
  centered = tf.cast(mean, wide) - shift
  nonempty = count > 0
  zeros = tf.zeros_like(centered)
  # An empty batch's moments are NaN: it contributes nothing.
  sum_shifted = tf.where(nonempty, count * centered, zeros)
  sum_squares = tf.where(nonempty, count * (tf.cast(variance, wide) + tf.square(centered)), zeros)
  total_shifted, total_squares, total_count = _all_sum_packed(
      [sum_shifted, sum_squares], count, call, replicas_lib.FORWARD_SLOT, 'cross_replica_sum',
      differentiable)
  # A safe divisor: the 0/0 of an all-empty global batch would also poison
  # the gradient of the branch tf.where does not take.
  divisor = tf.where(total_count > 0, total_count, tf.ones_like(total_count))
  mean_shifted = total_shifted / divisor
  global_variance = tf.nn.relu(total_squares / divisor - tf.square(mean_shifted))
  return (tf.cast(shift + mean_shifted, dtype), tf.cast(global_variance, dtype),
          tf.cast(total_count, dtype))


def _all_sum_packed(per_channel, scalar, call, slot, name, differentiable=False):
  """Sums tensors of one shape and a scalar over the replicas with one
  collective; returns them summed, in the same shapes."""
  packed = tf.concat([tf.reshape(t, [-1]) for t in per_channel] + [tf.reshape(scalar, [1])], 0)
  if differentiable:
    total = replicas_lib.all_sum(packed, call, slot, name)
  else:
    total = replicas_lib.all_sum_constant(packed, call, slot, name)
  size = tf.size(per_channel[0])
  shape = tf.shape(per_channel[0])
  summed = [tf.reshape(total[i * size:(i + 1) * size], shape) for i in range(len(per_channel))]
  return summed + [total[len(per_channel) * size]]


def replica_average(call, mean, variance, count):
  """Local statistics under a strategy: their average over the replicas
  with a usable batch, so that every replica's copy of the moving statistics
  receives the same update (the mean of the replicas' updates).

  Returns (mean, variance, the number of replicas averaged).
  """
  usable = tf.logical_and(count > 0, tf.logical_and(tf.reduce_all(tf.math.is_finite(mean)),
                                                    tf.reduce_all(tf.math.is_finite(variance))))
  zeros = tf.zeros_like(mean)
  total_mean, total_variance, replicas = _all_sum_packed(
      [tf.where(usable, mean, zeros), tf.where(usable, variance, zeros)],
      tf.cast(usable, mean.dtype), call, replicas_lib.UPDATE_SLOT, 'cross_replica_update_sum')
  divisor = tf.maximum(replicas, 1)
  return total_mean / divisor, total_variance / divisor, replicas


def sample_to_population(variance, count):
  """Removes Bessel's correction (n/(n-1)); a count of 0 or 1 has none."""
  return variance * tf.where(count > 1, (count - 1) / tf.maximum(count, 1), tf.ones_like(count))


def population_to_sample(variance, count):
  """Applies Bessel's correction n/(n-1), as the fused kernel reports it."""
  return variance * tf.where(count > 1, count / tf.maximum(count - 1, 1), tf.ones_like(count))


def convert_variance(variance, count, kind, to_kind):
  """A batch variance of `kind` ('population' or 'sample') as `to_kind`."""
  if kind == to_kind:
    return variance
  if to_kind == 'sample':
    return population_to_sample(variance, tf.cast(count, variance.dtype))
  return sample_to_population(variance, tf.cast(count, variance.dtype))
