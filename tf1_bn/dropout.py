"""Dropout on the same train/inference switch as batch norm."""
import tensorflow as tf

from tf1_bn import switch as switch_lib
from tf1_bn import validation as v


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
      e.g. [batch, 1, 1, channels] to drop whole feature maps.
    seed: op-level random seed.
    name: name scope.
    scale_at_inference: the convention above.
  """
  v.check_graph_mode('dropout')
  _, dtype = v.static_shape_and_dtype(inputs)
  v.check_float_dtype(dtype)
  rate = v.check_probability(rate, 'rate', high_inclusive=False)
  training = switch_lib.check_training(training)
  scale_at_inference = v.check_bool(scale_at_inference, 'scale_at_inference')
  with tf.compat.v1.name_scope(name, 'dropout'):
    x = tf.convert_to_tensor(inputs)
    training = switch_lib.resolve_training(training)
    keep = 1.0 - rate
    mask_shape = tf.shape(x) if noise_shape is None else noise_shape

    def train():
      if rate == 0:
        return tf.identity(x)
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
