"""`batch_normalization`: a drop-in for `tf.compat.v1.layers.batch_normalization`.

Same signature, defaults, variable names, collections and numbers as the
legacy function (tf-keras 2.x under TF1 graph semantics), built on the shared
core. Differences, each deliberate:

* `virtual_batch_size` with a tensor `training`: the legacy function under
  TensorFlow 2 behaviour silently normalizes the whole batch (its ghost-batch
  reshape tests the tensor as a Python bool); here the training branch of the
  cond uses ghost batches, as with `training=True`.
* A batch that is not a multiple of `virtual_batch_size` is an error at build
  when the batch size is static, and a clear run-time error otherwise.
* `fused=True` where the fused kernel cannot apply (renorm, rank other than 4
  or 5, a list axis, ghost batches, adjustment, float64) falls back to the
  general path as the legacy does, with a one-time warning that says why.
* An empty batch or non-finite statistics leave the moving statistics
  unchanged (the legacy writes NaN into them).
* The inference branch of a tensor `training` computes no batch moments (the
  legacy unfused path computes them in both branches); outputs are the same.
* The moving statistics get no gradient on any path (`tf.gradients` gives
  None; the legacy unfused inference formula differentiates them), so an
  optimizer over every global variable creates no slots for them.
* A layer called more than once per step (reuse: a GAN discriminator on real
  then fake batches) updates in call order, each call's update from the
  value the previous call's left, and every call's forward pass reads the
  start-of-step values; the legacy lets the executor pick, usually (not
  always) computing both updates from the start-of-step value. See
  `tf1_bn.bn.call_order`.
* Arguments are checked before anything is built, with the argument named:
  `epsilon` must be finite (0 is accepted, as by the legacy); the values of
  `renorm_clipping` must be finite numbers (None: no clip) with
  rmin <= 1 <= rmax and dmax >= 0, checked with or without `renorm`. The
  legacy checks only its keys, so NaN (every training output NaN), a negative
  dmax (every output shifted by it) or rmin > rmax build and run; it also
  takes scalar tensors, whose values cannot be checked while building.

What the legacy does and this keeps: `trainable=False` only removes gamma and
beta from TRAINABLE_VARIABLES and drops the updates: a training batch is
still normalized with its own statistics (compare `bn_layer`, which freezes).
Where the legacy would use its fused kernel it averages the Bessel-corrected
batch variance into the moving variance, with `1 - momentum` computed in
float32; on its general path it uses the population variance and
`1 - momentum` computed in Python. Those semantics are reproduced whichever
kernel runs here. Epsilon is used exactly on both, as the legacy layer on
the supported TensorFlow releases does (`tf.compat.v1.nn.fused_batch_norm`
raised it to 1.001e-5 on old releases; none from 2.12 to 2.21 does).
"""
import contextlib
import functools

import numpy as np
import tensorflow as tf

from tf1_bn.bn import core
from tf1_bn.bn import loops
from tf1_bn.bn import masking
from tf1_bn.bn import steps
from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v
from tf1_bn.common.log import warn_once

# Initializers accepted by name (the Keras names the legacy layers took).
_INITIALIZERS_BY_NAME = {
    'zeros': tf.compat.v1.zeros_initializer,
    'ones': tf.compat.v1.ones_initializer,
    'glorot_uniform': tf.compat.v1.glorot_uniform_initializer,
    'glorot_normal': tf.compat.v1.glorot_normal_initializer,
    'he_normal': tf.compat.v1.initializers.he_normal,
    'he_uniform': tf.compat.v1.initializers.he_uniform,
    'lecun_normal': tf.compat.v1.initializers.lecun_normal,
    'lecun_uniform': tf.compat.v1.initializers.lecun_uniform,
    'orthogonal': tf.compat.v1.orthogonal_initializer,
    'random_normal': tf.compat.v1.random_normal_initializer,
    'random_uniform': tf.compat.v1.random_uniform_initializer,
    'truncated_normal': tf.compat.v1.truncated_normal_initializer,
}


def initializer_from(value, default, arg_name):
  """A get_variable initializer from None, a name ('zeros', 'ones') or a callable."""
  if value is None:
    return default()
  if isinstance(value, str):
    if value not in _INITIALIZERS_BY_NAME:
      raise ValueError(f'`{arg_name}` must be a callable or one of '
                       f'{sorted(_INITIALIZERS_BY_NAME)}, received {value!r}.')
    return _INITIALIZERS_BY_NAME[value]()
  if not callable(value):
    raise TypeError(f'`{arg_name}` must be an initializer, received {value!r}.')
  return value


# The legacy defaults, by variable name; both drop-ins take theirs from here.
DEFAULT_INITIALIZERS = {
    'beta': tf.compat.v1.zeros_initializer,
    'gamma': tf.compat.v1.ones_initializer,
    'moving_mean': tf.compat.v1.zeros_initializer,
    'moving_variance': tf.compat.v1.ones_initializer,
}


def initializers_from(values, arg_names):
  """Initializers by variable name from user values (None means the default)."""
  return {key: initializer_from(values.get(key), default, arg_names[key])
          for key, default in DEFAULT_INITIALIZERS.items()}


def legacy_fused_semantics(rank, axes, dtype, renorm, virtual_batch_size, adjustment):
  """Whether tf.layers would take its fused kernel; if not, the reason."""
  if renorm:
    return False, 'renorm is not supported by the fused kernel'
  if virtual_batch_size is not None:
    return False, 'virtual_batch_size is not supported by the fused kernel'
  if adjustment is not None:
    return False, 'adjustment is not supported by the fused kernel'
  if rank not in (4, 5):
    return False, f'the fused kernel needs a 4-D or 5-D input, the input has rank {rank}'
  if len(axes) != 1 or axes[0] not in (1, rank - 1):
    return False, f'the fused kernel normalizes axis 1 or {rank - 1} only, axis is {axes}'
  if dtype not in v.FUSED_DTYPES:
    return False, f'the fused kernel does not support {dtype.name}'
  return True, None


def fused_moving_statistics(mean, variance, momentum):
  """The legacy fused kernel's update rule (Bessel, float32 1 - momentum)."""
  factor = 1.0 - tf.constant(momentum, tf.float32)
  return core.MovingStatistics(mean, variance, factor, 'sample')


def general_moving_statistics(mean, variance, momentum, renorm=None, zero_debias=None):
  """The legacy general path's rule (population variance, Python 1 - momentum)."""
  return core.MovingStatistics(mean, variance, 1.0 - momentum, 'population',
                               zero_debias=zero_debias, renorm=renorm)


def _check_virtual_batch_size(virtual_batch_size, axes, adjustment, shape):
  if virtual_batch_size is None:
    return None
  virtual_batch_size = v.check_integer(virtual_batch_size, 'virtual_batch_size', low=1)
  if 0 in axes:
    raise ValueError(f'With `virtual_batch_size` the batch dimension is 0, so `axis` cannot '
                     f'include 0; received axis={axes}.')
  if adjustment is not None:
    raise ValueError('`adjustment` cannot be combined with `virtual_batch_size`.')
  batch = shape[0]
  if batch is not None and batch % virtual_batch_size:
    raise ValueError(f'The batch size {batch} of `inputs` (shape {shape}) is not a multiple of '
                     f'virtual_batch_size={virtual_batch_size}.')
  return int(virtual_batch_size)


def param_shape(shape, axes, virtual_batch_size):
  """tf.layers' variable shape: [C] for one axis, else the broadcast shape."""
  if len(axes) == 1 and virtual_batch_size is None:
    return [shape[axes[0]]]
  dims = [shape[i] if i in axes else 1 for i in range(shape.rank)]
  if virtual_batch_size is not None:
    dims.insert(1, 1)
  return dims


def batch_normalization(inputs, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                        beta_initializer=tf.compat.v1.zeros_initializer(),
                        gamma_initializer=tf.compat.v1.ones_initializer(),
                        moving_mean_initializer=tf.compat.v1.zeros_initializer(),
                        moving_variance_initializer=tf.compat.v1.ones_initializer(),
                        beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                        gamma_constraint=None, training=False, trainable=True, name=None,
                        reuse=None, renorm=False, renorm_clipping=None, renorm_momentum=0.99,
                        fused=None, virtual_batch_size=None, adjustment=None,
                        synchronized=False, mask=None, step=None, max_steps=None):
  """Drop-in for `tf.compat.v1.layers.batch_normalization` (see the module doc).

  Variables under the layer scope (`batch_normalization`,
  `batch_normalization_1`, ... within the current variable scope, or `name`):
  `gamma`, `beta`, `moving_mean`, `moving_variance`, and with renorm
  `moving_stddev`, `renorm_mean`, `renorm_stddev`. Each training call adds two
  update ops (mean, variance) to UPDATE_OPS, conditional on `training`.

  `synchronized=True` (Keras' name; not in the legacy function) computes the
  training statistics over the global batch of every replica: see
  `tf1_bn.bn.replicas`. `mask` (not in the legacy function): positions left
  out of the batch statistics, see `tf1_bn.bn.masking`. `step` and
  `max_steps` (not in the legacy function): per-time-step moving statistics
  of shape [max_steps, C], see `tf1_bn.bn.steps`. Inside a loop body the
  updates are made in place instead (see `tf1_bn.bn.loops`).
  """
  v.check_graph_mode('batch_normalization')
  options = check_arguments(
      axis=axis, momentum=momentum, epsilon=epsilon, center=center, scale=scale,
      beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
      moving_mean_initializer=moving_mean_initializer,
      moving_variance_initializer=moving_variance_initializer, beta_regularizer=beta_regularizer,
      gamma_regularizer=gamma_regularizer, beta_constraint=beta_constraint,
      gamma_constraint=gamma_constraint, trainable=trainable, renorm=renorm,
      renorm_clipping=renorm_clipping, renorm_momentum=renorm_momentum, fused=fused,
      virtual_batch_size=virtual_batch_size, adjustment=adjustment)
  shape, axes, virtual_batch_size = check_inputs(inputs, options)
  training = switch_lib.check_training(training, allow_int=True)
  reuse = v.check_reuse(reuse)
  synchronized = v.check_synchronized(synchronized, virtual_batch_size, in_loop=loops.in_loop())
  mask = masking.check_mask(mask, shape, axes)
  step, max_steps = steps.check_step(step, max_steps,
                                     per_step_conflicts(options, virtual_batch_size, axes))
  name = v.check_name(name) or None  # '' is the default name, as for the legacy Keras layer

  with tf.compat.v1.variable_scope(name, default_name='batch_normalization', reuse=reuse):
    x = tf.convert_to_tensor(inputs)
    outputs, update = build_layer(x, axes, **layer_options(options, virtual_batch_size),
                                  training=training, synchronized=synchronized,
                                  warn_fallback=True, mask=mask, step=step,
                                  max_steps=max_steps)
    return core.attach_update(outputs, update, 'collection', per_variable=True)


def per_step_conflicts(options, virtual_batch_size, axes):
  """The (flag, reason) pairs of options that cannot keep per-step statistics."""
  return [(options['renorm'], 'renorm'), (virtual_batch_size is not None, 'virtual_batch_size'),
          (len(axes) != 1, f'several axes ({axes})')]


def check_arguments(*, axis, momentum, epsilon, center, scale, beta_initializer,
                    gamma_initializer, moving_mean_initializer, moving_variance_initializer,
                    beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint,
                    trainable, renorm, renorm_clipping, renorm_momentum, fused,
                    virtual_batch_size, adjustment):
  """The input-independent arguments of tf.layers' batch normalization, checked.

  Shared by the function and the `BatchNormalization` class
  (tf1_bn.legacy.tf_layers.normalization). Returns a dict of checked values.
  """
  initializers = initializers_from(
      {'beta': beta_initializer, 'gamma': gamma_initializer,
       'moving_mean': moving_mean_initializer, 'moving_variance': moving_variance_initializer},
      {key: f'{key}_initializer' for key in DEFAULT_INITIALIZERS})
  for arg_name, value in (('beta_regularizer', beta_regularizer),
                          ('gamma_regularizer', gamma_regularizer),
                          ('beta_constraint', beta_constraint),
                          ('gamma_constraint', gamma_constraint), ('adjustment', adjustment)):
    v.check_callable(value, arg_name)
  if fused is not None:
    v.check_bool(fused, 'fused')
  if virtual_batch_size is not None:
    v.check_integer(virtual_batch_size, 'virtual_batch_size', low=1)
  return dict(
      axis=axis, momentum=v.check_probability(momentum, 'momentum'),
      epsilon=v.check_non_negative(epsilon, 'epsilon'),
      center=v.check_bool(center, 'center'), scale=v.check_bool(scale, 'scale'),
      initializers=initializers,
      regularizers={'beta': beta_regularizer, 'gamma': gamma_regularizer},
      constraints={'beta': beta_constraint, 'gamma': gamma_constraint},
      trainable=v.check_bool(trainable, 'trainable'), renorm=v.check_bool(renorm, 'renorm'),
      # Checked even without renorm, where the legacy ignores them: a bad
      # value is a bug in the caller either way.
      clipping=v.check_renorm_clipping(renorm_clipping),
      renorm_momentum=v.check_probability(renorm_momentum, 'renorm_momentum'), fused=fused,
      virtual_batch_size=virtual_batch_size, adjustment=adjustment)


def check_inputs(inputs, options):
  """(shape, normalized axes, virtual_batch_size) for `inputs`, checked against `options`."""
  shape, dtype = v.static_shape_and_dtype(inputs)
  v.check_float_dtype(dtype)
  v.check_rank(shape, min_rank=1)
  axes = v.normalize_axis(options['axis'], shape)
  virtual_batch_size = _check_virtual_batch_size(options['virtual_batch_size'], axes,
                                                 options['adjustment'], shape)
  return shape, axes, virtual_batch_size


def layer_options(options, virtual_batch_size):
  """The keyword arguments of `build_layer` from `check_arguments`' dict."""
  keys = ('momentum', 'epsilon', 'center', 'scale', 'initializers', 'regularizers',
          'constraints', 'trainable', 'renorm', 'clipping', 'renorm_momentum', 'fused',
          'adjustment')
  return dict({key: options[key] for key in keys}, virtual_batch_size=virtual_batch_size)


def build_layer(x, axes, *, momentum, epsilon, center, scale, initializers, regularizers,
                constraints, training, trainable, renorm, clipping, renorm_momentum, fused,
                virtual_batch_size, adjustment, synchronized=False, collections=None,
                warn_fallback=False, variables=None, mask=None, step=None, max_steps=None):
  """A tf.layers BatchNormalization in the current variable scope.

  Returns (outputs, update); the update is None when `trainable` is False
  (the legacy layer then has no updates) or `training` is False.
  `variables`: those `create_variables` made earlier (a layer object called
  again); None creates them here.
  """
  shape, dtype = x.shape, x.dtype.base_dtype
  legacy_fused, reason = legacy_fused_semantics(shape.rank, axes, dtype, renorm,
                                                virtual_batch_size, adjustment)
  if warn_fallback and fused is True and not legacy_fused:
    warn_once(('batch_normalization', reason),
              f'tf1_bn.batch_normalization: fused=True falls back to the general path '
              f'because {reason} (as tf.compat.v1.layers.batch_normalization does).')
  use_fused_semantics = legacy_fused and fused is not False
  param_dtype = tf.float64 if dtype == tf.float64 else tf.float32
  shape_of_params = param_shape(shape, axes, virtual_batch_size)
  call, builds_update = core.register_replicas(int(np.prod(shape_of_params)), synchronized)
  if variables is None:
    variables = create_variables(shape_of_params, param_dtype,
                                 initializers, center, scale, trainable, renorm,
                                 regularizers=regularizers, constraints=constraints,
                                 collections=collections, max_steps=max_steps)
  training = switch_lib.resolve_training(training)
  if use_fused_semantics:
    moving = fused_moving_statistics(variables['moving_mean'], variables['moving_variance'],
                                     momentum)
    moving.slot = steps.slot(step, max_steps)
  else:
    renorm_state = None
    if renorm:
      renorm_state = core.Renorm(variables['moving_stddev'], variables['renorm_mean'],
                                 variables['renorm_stddev'], clipping, 1.0 - renorm_momentum)
    moving = general_moving_statistics(variables['moving_mean'], variables['moving_variance'],
                                       momentum, renorm=renorm_state)
    moving.slot = steps.slot(step, max_steps)
  # Off the legacy's fused semantics, fused=False keeps the legacy's kernel too.
  kernel = False if (fused is False and not use_fused_semantics) else None
  return core.build(x, axes=axes, training=training, gamma=variables.get('gamma'),
                    beta=variables.get('beta'), moving=moving, epsilon=epsilon, fused=kernel,
                    update=trainable and builds_update, virtual_batch_size=virtual_batch_size,
                    adjustment=adjustment, call=call, synchronized=synchronized, mask=mask)


@contextlib.contextmanager
def unpartitioned():
  """The current variable scope without its partitioner.

  The statistics are assigned every step and a PartitionedVariable cannot be,
  so tf.layers and slim create them unpartitioned (gamma and beta keep the
  scope's partitioner); same idiom as slim's.
  """
  with tf.compat.v1.variable_scope(tf.compat.v1.get_variable_scope()) as scope:
    scope.set_partitioner(None)
    yield


def create_variables(shape, dtype, initializers, center, scale, trainable, renorm,
                     regularizers=None, constraints=None, collections=None, beta_first=False,
                     max_steps=None):
  """tf.layers' variables, in its creation order, outside any control flow.

  `collections` maps a variable name to extra collections (slim's
  `variables_collections`). `beta_first` is the order of slim's own fused and
  general paths (tf.layers creates gamma first). `max_steps`: per-step
  moving statistics, one row per step (`tf1_bn.bn.steps`).
  """
  regularizers = regularizers or {}
  constraints = constraints or {}
  collections = collections or {}

  def make(var_name, initializer, is_trainable, var_shape=shape):
    extra = list(collections.get(var_name) or [])
    kwargs = {}
    if extra:
      # get_variable adds TRAINABLE_VARIABLES itself for a trainable variable.
      kwargs['collections'] = [tf.compat.v1.GraphKeys.GLOBAL_VARIABLES] + extra
    return tf.compat.v1.get_variable(
        var_name, var_shape, dtype, initializer, regularizer=regularizers.get(var_name),
        trainable=is_trainable, constraint=constraints.get(var_name), **kwargs)

  variables = {}
  params = [('gamma', scale), ('beta', center)]
  with tf.control_dependencies(None):
    for var_name, wanted in (params[::-1] if beta_first else params):
      if wanted:
        variables[var_name] = make(var_name, initializers[var_name], trainable)
    with unpartitioned():
      _create_statistics(variables, functools.partial(
          make, var_shape=steps.statistics_shape(shape, max_steps)), initializers, renorm)
  return variables


def _create_statistics(variables, make, initializers, renorm):
  """The moving (and renorm) statistics, into `variables`."""
  variables['moving_mean'] = make('moving_mean', initializers['moving_mean'], False)
  variables['moving_variance'] = make('moving_variance', initializers['moving_variance'], False)
  if renorm:
    variance_init = initializers['moving_variance']

    def stddev_initializer(*args, **kwargs):
      return tf.sqrt(variance_init(*args, **kwargs))

    variables['moving_stddev'] = make('moving_stddev', stddev_initializer, False)
    variables['renorm_mean'] = make('renorm_mean', initializers['moving_mean'], False)
    variables['renorm_stddev'] = make('renorm_stddev', stddev_initializer, False)
