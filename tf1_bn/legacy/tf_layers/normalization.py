"""`BatchNormalization`: the class form of `tf.compat.v1.layers.batch_normalization`.

The same layer as `tf1_bn.batch_normalization` (same core, checks, variable
names, update ops and numbers; see `tf1_bn.legacy.layers_bn`), as an object:
`bn = BatchNormalization(...)`, then `bn(x, training=is_training)`; a second
call shares the variables. `bn.updates` are the moving-average assign ops of
the training calls (also in UPDATE_OPS); `bn.moving_mean`, `bn.gamma`, ...
are the variables. `training` defaults to False (inference), as in the
legacy class.

Beyond the legacy class, as on the function: `max_steps=T` (constructor:
it sets the moving statistics' shape to [T, C]) with `step=t` at each call
keeps per-time-step statistics (`tf1_bn.bn.steps`); `mask=` at a call leaves
positions out of the batch statistics (`tf1_bn.bn.masking`).
"""
import tensorflow as tf

from tf1_bn.bn import core
from tf1_bn.bn import masking
from tf1_bn.bn import steps
from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v
from tf1_bn.legacy import layers_bn
from tf1_bn.legacy.tf_layers import base

_CALL_ARGUMENTS = ('training', 'mask', 'step')
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
               max_steps=None, **kwargs):
    self._options = layers_bn.check_arguments(
        axis=axis, momentum=momentum, epsilon=epsilon, center=center, scale=scale,
        beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
        moving_mean_initializer=moving_mean_initializer,
        moving_variance_initializer=moving_variance_initializer,
        beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
        beta_constraint=beta_constraint, gamma_constraint=gamma_constraint, trainable=trainable,
        renorm=renorm, renorm_clipping=renorm_clipping, renorm_momentum=renorm_momentum,
        fused=fused, virtual_batch_size=virtual_batch_size, adjustment=adjustment)
    if max_steps is not None:
      v.check_integer(max_steps, 'max_steps', low=1)
    self.axis, self.max_steps = axis, max_steps
    super().__init__(trainable=trainable, name=name, **kwargs)
    self._bn_variables = None
    self._axes = self._virtual_batch_size = None
    for key in _VARIABLE_NAMES:  # set by build; None for those the options leave out
      setattr(self, key, None)

  def __call__(self, inputs, *args, **kwargs):
    # `mask` and `step` are checked before the first call builds anything.
    given = dict(zip(_CALL_ARGUMENTS, args), **{k: kwargs[k] for k in _CALL_ARGUMENTS
                                               if k in kwargs})
    self._check_call(inputs, given.get('mask'), given.get('step'))
    return super().__call__(inputs, *args, **kwargs)

  def _check_call(self, inputs, mask, step):
    """The inputs, and the call's `mask` and `step` against them and
    `max_steps`; adds no op. Before the first call builds the layer, its axes
    come from here (the base's `_check_before_build` is not needed)."""
    shape, axes, virtual_batch_size = layers_bn.check_inputs(inputs, self._options)
    if not self.built:
      self._axes, self._virtual_batch_size = axes, virtual_batch_size
    masking.check_mask(mask, shape, axes)
    if (step is None) != (self.max_steps is None):
      raise ValueError(
          f'Per-step statistics: the layer was built with max_steps={self.max_steps!r} and '
          f'called with step={step!r}; pass `max_steps` to BatchNormalization(...) and `step` '
          'to every call, or neither.')
    steps.check_step(step, self.max_steps,
                     layers_bn.per_step_conflicts(self._options, virtual_batch_size, axes))

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
        constraints=options['constraints'], max_steps=self.max_steps)
    self._losses.extend(tf.compat.v1.get_collection(
        tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)[len(losses):])
    for key in _VARIABLE_NAMES:
      if key in self._bn_variables:
        target = self._trainable_weights if key in ('gamma', 'beta') and self.trainable else \
            self._non_trainable_weights
        target.append(self._bn_variables[key])
        setattr(self, key, self._bn_variables[key])
    self.built = True

  def call(self, inputs, training=False, mask=None, step=None):
    training = switch_lib.check_training(training, allow_int=True)
    outputs, update = layers_bn.build_layer(
        inputs, self._axes, **layers_bn.layer_options(self._options, self._virtual_batch_size),
        training=training, warn_fallback=True, variables=self._bn_variables, mask=mask,
        step=step, max_steps=self.max_steps)
    if update is not None:
      self._updates.extend(update.ops)
    return core.attach_update(outputs, update, 'collection', per_variable=True)
