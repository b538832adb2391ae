"""`BatchNormalization`: the class form of `tf.compat.v1.layers.batch_normalization`.

The same layer as `tf1_bn.batch_normalization` (same core, checks, variable
names, update ops and numbers; see `tf1_bn.legacy.layers_bn`), as an object:
`bn = BatchNormalization(...)`, then `bn(x, training=is_training)`; a second
call shares the variables. `bn.updates` are the moving-average assign ops of
the training calls (also in UPDATE_OPS); `bn.moving_mean`, `bn.gamma`, ...
are the variables. `training` defaults to False (inference), as in the
legacy class.
"""
import tensorflow as tf

from tf1_bn.bn import core
from tf1_bn.bn import switch as switch_lib
from tf1_bn.legacy import layers_bn
from tf1_bn.legacy.tf_layers import base

_VARIABLE_NAMES = ('gamma', 'beta', 'moving_mean', 'moving_variance', 'moving_stddev',
                   'renorm_mean', 'renorm_stddev')


class BatchNormalization(base.Layer):
  """Batch normalization layer (tf.layers semantics; see the module doc)."""

  def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
               beta_initializer=tf.compat.v1.zeros_initializer(),
               gamma_initializer=tf.compat.v1.ones_initializer(),
               moving_mean_initializer=tf.compat.v1.zeros_initializer(),
               moving_variance_initializer=tf.compat.v1.ones_initializer(),
               beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
               gamma_constraint=None, renorm=False, renorm_clipping=None, renorm_momentum=0.99,
               fused=None, trainable=True, virtual_batch_size=None, adjustment=None, name=None,
               **kwargs):
    self._options = layers_bn.check_arguments(
        axis=axis, momentum=momentum, epsilon=epsilon, center=center, scale=scale,
        beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
        moving_mean_initializer=moving_mean_initializer,
        moving_variance_initializer=moving_variance_initializer,
        beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
        beta_constraint=beta_constraint, gamma_constraint=gamma_constraint, trainable=trainable,
        renorm=renorm, renorm_clipping=renorm_clipping, renorm_momentum=renorm_momentum,
        fused=fused, virtual_batch_size=virtual_batch_size, adjustment=adjustment)
    self.axis = axis
    super().__init__(trainable=trainable, name=name, **kwargs)
    self._bn_variables = None
    self._axes = self._virtual_batch_size = None
    for key in _VARIABLE_NAMES:  # set by build; None for those the options leave out
      setattr(self, key, None)

  def _check_before_build(self, inputs):
    _, self._axes, self._virtual_batch_size = layers_bn.check_inputs(inputs, self._options)

  def build(self, input_shape):
    options = self._options
    dtype = tf.as_dtype(self._dtype)
    param_dtype = tf.float64 if dtype == tf.float64 else tf.float32
    shape = layers_bn.param_shape(tf.TensorShape(input_shape), self._axes,
                                  self._virtual_batch_size)
    losses = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)
    self._bn_variables = layers_bn.create_variables(
        shape, param_dtype, options['initializers'], options['center'], options['scale'],
        options['trainable'], options['renorm'], regularizers=options['regularizers'],
        constraints=options['constraints'])
    self._losses.extend(tf.compat.v1.get_collection(
        tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)[len(losses):])
    for key in _VARIABLE_NAMES:
      if key in self._bn_variables:
        target = self._trainable_weights if key in ('gamma', 'beta') and self.trainable else \
            self._non_trainable_weights
        target.append(self._bn_variables[key])
        setattr(self, key, self._bn_variables[key])
    self.built = True

  def call(self, inputs, training=False):
    training = switch_lib.check_training(training, allow_int=True)
    outputs, update = layers_bn.build_layer(
        inputs, self._axes, **layers_bn.layer_options(self._options, self._virtual_batch_size),
        training=training, warn_fallback=True, variables=self._bn_variables)
    if update is not None:
      self._updates.extend(update.ops)
    return core.attach_update(outputs, update, 'collection', per_variable=True)
