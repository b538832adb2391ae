"""Batch statistics: the single place where a batch's moments are computed.

Every unfused path of every front-end calls `batch_moments`. A cross-replica
(synchronized) batch norm replaces this function and turns off the fused
training kernel, which computes its moments inside the kernel.
"""
import tensorflow as tf


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
  return tf.nn.weighted_moments(x, reduction_axes, weights, keepdims=keepdims)


def count_per_channel(x, reduction_axes, dtype):
  """The number of values each channel's statistics are computed from."""
  shape = tf.shape(x)
  return tf.cast(tf.reduce_prod(tf.gather(shape, reduction_axes)), dtype)


def sample_to_population(variance, count):
  """Removes Bessel's correction (n/(n-1)); a count of 0 or 1 has none."""
  return variance * tf.where(count > 1, (count - 1) / tf.maximum(count, 1), tf.ones_like(count))


def population_to_sample(variance, count):
  """Applies Bessel's correction n/(n-1), as the fused kernel reports it."""
  return variance * tf.where(count > 1, count / tf.maximum(count - 1, 1), tf.ones_like(count))
