"""Masks for padded batches: statistics over the unmasked positions only.

A padded batch of sequences `[B, T, ..., C]` holds positions that are not
data (the zeros after each sequence's end). Their values enter plain batch
statistics: a channel whose real values average 3.0 reads 1.5 when half the
positions are padding, and every real position is then normalized with the
wrong mean and variance, differently for each padding ratio.

`mask=` on `bn_layer`, `batch_normalization` and `batch_norm` is a bool or
0/1 tensor whose dimensions are the input's leading ones, channel axis
excluded: `[B, T]` from `tf.sequence_mask(lengths, T)`, or `[B]` to mask
whole examples. It becomes per-position weights of the weighted moments
(the same machinery as slim's `batch_weights`, with which it multiplies):

* the batch mean and variance are those of the unmasked positions exactly,
  as if the masked ones were absent (count-weighted; over the replicas of a
  synchronized layer the counts are summed too);
* every position, masked or not, is normalized with those statistics (the
  output at a padded position is finite; mask the loss there as usual);
* the moving statistics follow the unmasked statistics, with each front-end's
  own variance convention (the fused drop-ins' Bessel correction uses the
  unmasked count);
* a batch with every position masked leaves the moving statistics unchanged
  and its outputs and gradients finite (mean 0 and variance 0 are used).

Inference ignores the mask: the moving statistics normalize every position.
A mask makes the training path the general one (moments plus the formula):
the fused kernel has no weights.
"""
import tensorflow as tf

from tf1_bn.common import validation as v


def check_mask(mask, shape, axes, arg_name='mask'):
  """Validates `mask` against the input's static `shape` and channel `axes`
  without adding ops; returns it (None passes through)."""
  if mask is None:
    return None
  mask_shape, dtype = v.static_shape_and_dtype(mask, arg_name)
  if not (dtype == tf.bool or dtype.is_integer or dtype.is_floating):
    raise TypeError(f'`{arg_name}` must be a bool or 0/1 numeric tensor, received dtype '
                    f'{dtype.name}.')
  rank = mask_shape.rank
  leading = min(axes)
  if rank is None or rank < 1 or rank > leading:
    raise ValueError(
        f'`{arg_name}` must have the leading dimensions of `inputs` before the channel axis '
        f'({leading} dimension(s) of {shape}; e.g. [B, T] from tf.sequence_mask(lengths) for '
        f'[B, T, C] inputs, or [B]), received shape {mask_shape}.')
  if not mask_shape.is_compatible_with(shape[:rank]):
    raise ValueError(f'`{arg_name}` shape {mask_shape} does not match the leading dimensions '
                     f'{shape[:rank]} of `inputs` (shape {shape}).')
  return mask


def position_weights(mask, batch_weights, x):
  """The per-position weights of the moments: the mask (reshaped to broadcast
  against `x`) times slim's per-example `batch_weights`, or None for neither.

  The mask's dimensions that the static shapes cannot match are checked when
  the op runs.
  """
  if mask is None:
    return batch_weights
  rank = x.shape.rank
  weights = tf.convert_to_tensor(mask)
  mask_rank = weights.shape.rank
  if not (weights.shape.is_fully_defined() and x.shape[:mask_rank].is_fully_defined()):
    check = tf.debugging.assert_equal(
        tf.shape(weights), tf.shape(x)[:mask_rank],
        message='`mask` does not match the leading dimensions of `inputs`')
    with tf.control_dependencies([check]):
      weights = tf.identity(weights)
  weights = tf.reshape(tf.cast(weights, tf.float32),
                       tf.concat([tf.shape(weights), tf.ones([rank - mask_rank], tf.int32)], 0))
  if batch_weights is not None:
    per_example = tf.reshape(tf.cast(batch_weights, tf.float32), [-1] + [1] * (rank - 1))
    weights = weights * per_example
  return weights
