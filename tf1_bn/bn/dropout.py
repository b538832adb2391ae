"""Dropout on the same train/inference switch as batch norm."""
import tensorflow as tf

from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v


def dropout(inputs, rate, training=None, noise_shape=None, seed=None, name=None,
            scale_at_inference=False):
  """Drops units with probability `rate` while training.

  Two conventions keep the expected activation equal between training and
  inference:

  * inverted dropout (default, what tf.nn.dropout and tf.layers.dropout do):
    training keeps each unit with probability 1 - rate and divides it by
    1 - rate; inference is the identity;
  * `scale_at_inference=True` (the original paper's form): training only
    masks; inference multiplies by 1 - rate. Use it for models trained that
    way, or their inference outputs are too large by 1 / (1 - rate).

  Unlike batch norm, dropout has no state: inference is deterministic and
  independent of the rest of the batch either way.

  Args:
    inputs: a float tensor.
    rate: the drop probability, in [0, 1).
    training: as for `bn_layer`: a Python bool, a scalar tf.bool tensor, or
      None for `tf1_bn.training_placeholder()`.
    noise_shape: the shape of the random keep mask (broadcast to `inputs`),
      e.g. [None, 1, 1, channels] to drop whole feature maps: a list of
      ints (None for the input's size) or a 1-D int tensor. Aligned from the
      last dimension, each size must be 1 or the input's; what the static
      shapes cannot settle is checked when the op runs.
    seed: op-level random seed, an int.
    name: name scope.
    scale_at_inference: the convention above.
  """
  v.check_graph_mode('dropout')
  shape, dtype = v.static_shape_and_dtype(inputs)
  v.check_float_dtype(dtype)
  rate = v.check_probability(rate, 'rate', high_inclusive=False)
  training = switch_lib.check_training(training)
  noise_dims, check_at_run_time = v.check_noise_shape(noise_shape, shape)
  seed = v.check_seed(seed)
  name = v.check_name(name)
  scale_at_inference = v.check_bool(scale_at_inference, 'scale_at_inference')
  with tf.compat.v1.name_scope(name, 'dropout'):
    x = tf.convert_to_tensor(inputs)
    training = switch_lib.resolve_training(training)
    keep = 1.0 - rate

    def train():
      if rate == 0:
        return tf.identity(x)
      mask_shape = _mask_shape(x, noise_dims, check_at_run_time)
      mask = tf.cast(tf.random.uniform(mask_shape, seed=seed, dtype=tf.float32) >= rate, x.dtype)
      if scale_at_inference:
        return x * mask
      return x * (mask * tf.cast(1.0 / keep, x.dtype))

    def infer():
      if scale_at_inference and rate > 0:
        return x * tf.cast(keep, x.dtype)
      return tf.identity(x)

    outputs = switch_lib.switch(training, train, infer)
    outputs.set_shape(x.shape)
    return outputs


def _mask_shape(x, dims, check_at_run_time):
  """The keep mask's shape: the input's, or `noise_shape` with None filled in,
  behind an assertion where the static shapes could not prove it broadcasts."""
  if dims is None:
    return tf.shape(x)
  if tf.is_tensor(dims):
    mask_shape = tf.cast(dims, tf.int32)
  elif any(d is None for d in dims):
    input_shape = tf.shape(x)
    mask_shape = tf.stack([input_shape[i - len(dims)] if d is None else d
                           for i, d in enumerate(dims)])
  else:
    mask_shape = tf.constant(dims, tf.int32)
  if not check_at_run_time:
    return mask_shape
  input_shape = tf.shape(x)
  length, rank = tf.size(mask_shape), tf.size(input_shape)
  # Left-padded with -1 (never a size) so a mask longer than the input fails
  # the comparison instead of the slice.
  padded = tf.concat([tf.fill([tf.maximum(length - rank, 0)], -1), input_shape], 0)
  aligned = padded[tf.size(padded) - length:]
  ok = tf.logical_and(length <= rank, tf.reduce_all(
      tf.logical_or(tf.equal(mask_shape, 1), tf.equal(mask_shape, aligned))))
  check = tf.debugging.Assert(ok, [
      'dropout: `noise_shape` does not broadcast to `inputs` (from the last dimension each '
      'size must be 1 or the input\'s, with no more dimensions than the input); noise_shape:',
      mask_shape, 'inputs shape:', input_shape])
  with tf.control_dependencies([check]):
    return tf.identity(mask_shape)
