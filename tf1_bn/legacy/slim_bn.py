"""`batch_norm`: a drop-in for `tf.contrib.layers.batch_norm` / `slim.batch_norm`.

Same signature, defaults, variable names (`BatchNorm/beta`, `gamma`,
`moving_mean`, `moving_variance`, and with `zero_debias_moving_mean` the
helpers `BatchNorm/BatchNorm/moving_mean/biased` and `.../local_step`, whose
doubled scope is slim's own) and numbers as tf-slim 1.1, on the shared core.

slim picks one of three implementations, and their numbers differ; this
function reproduces each one's semantics:

* slim's fused path (the default for 2-D inputs, and for 4-D inputs with
  `zero_debias_moving_mean` or an `updates_collections` other than
  UPDATE_OPS): Bessel-corrected variance in the moving average;
* the tf.layers path (4-D and other ranks with UPDATE_OPS, no batch weights,
  no zero-debias): exactly `tf1_bn.batch_normalization` (renorm and
  adjustment live only here);
* slim's general path (batch weights, or the cases above with `fused=False`):
  population variance, variables in the input's dtype.

Epsilon is used exactly on every path, as slim on the supported TensorFlow
releases does (its fused path calls `tf.compat.v1.nn.fused_batch_norm`, which
raised epsilon to 1.001e-5 on old releases; none from 2.12 to 2.21 does).

Differences, each deliberate: `param_regularizers` are applied on every path
(slim's general path silently drops them); an empty batch or non-finite
statistics leave the moving statistics unchanged; the moving statistics get
no gradient on any path (slim gives None on its fused path under a tensor
`is_training`, a gradient on its unfused inference path), so facenet's
pattern (moving statistics in TRAINABLE_VARIABLES, Adam over every global
variable) creates the same slot variables, and reads the same checkpoints,
as slim; a layer called more than once per step (reuse) with its updates in
a collection updates in call order, deterministically (see
`tf1_bn.bn.call_order`; updates in place, `updates_collections=None`, are not
chained, as chaining them would make one call's output compute the other).

Update collections hold what slim puts there: on its fused and general
paths what the assigns return (tensor-like, `update.op.name` is
`BatchNorm/AssignMovingAvg/...`), on its tf.layers path the assign
Operations. `tf1_bn.check_update_ops` and `tf1_bn.minimize` take both.
"""
import functools
import sys

import tensorflow as tf

from tf1_bn.bn import core
from tf1_bn.bn import loops
from tf1_bn.bn import masking
from tf1_bn.bn import steps
from tf1_bn.legacy import layers_bn as layers
from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v

DATA_FORMATS = ('NHWC', 'NCHW')
UPDATE_OPS = tf.compat.v1.GraphKeys.UPDATE_OPS
MODEL_VARIABLES = tf.compat.v1.GraphKeys.MODEL_VARIABLES
PARAM_INITIALIZER_KEYS = tuple(layers.DEFAULT_INITIALIZERS)
PARAM_REGULARIZER_KEYS = ('beta', 'gamma')
# Where tf-slim keeps the arg_scope stack; read only if tf_slim was imported.
ARG_SCOPE_MODULE = 'tf_slim.ops.arg_scope'


def _arg_scope_defaults(function):
  """What an enclosing `slim.arg_scope` sets for `function`, else {}.

  tf-slim's arg_scope protocol: a scope maps a function's `_key_op` to
  keyword defaults. `tf1_bn.patch_slim()` gives `batch_norm` slim's own
  key, so `arg_scope([slim.batch_norm], ...)` and `arg_scope([tf1_bn.batch_norm],
  ...)` are one entry. Without tf_slim imported there can be no arg_scope, so
  tf_slim is never imported here.
  """
  module = sys.modules.get(ARG_SCOPE_MODULE)
  key = getattr(function, '_key_op', None)
  if module is None or key is None:
    return {}
  return module.current_arg_scope().get(key, {})


def _arg_scoped(function):
  """`function` taking its defaults from an enclosing slim.arg_scope, as
  slim's `add_arg_scope` does (explicit keyword arguments win)."""

  @functools.wraps(function)
  def with_arg_scope(*args, **kwargs):
    defaults = _arg_scope_defaults(with_arg_scope)
    return function(*args, **{**defaults, **kwargs})

  return with_arg_scope


def _model_variable_getter(leaf_names):
  """A custom getter that makes variables slim's model variables.

  slim's tf.layers and general paths run under a model-variable custom
  getter, so every variable they create is in MODEL_VARIABLES, zero-debias
  helpers and renorm statistics included (`leaf_names` None); its fused path
  makes only its four parameters model variables.
  """

  def custom_getter(getter, name, *args, collections=None, **kwargs):
    if leaf_names is None or name.split('/')[-1] in leaf_names:
      collections = list(collections or [tf.compat.v1.GraphKeys.GLOBAL_VARIABLES])
      collections.append(MODEL_VARIABLES)
    return getter(name, *args, collections=collections, **kwargs)

  return custom_getter


def _collections_list(collections, arg_name):
  if collections is None:
    return None
  if isinstance(collections, str):
    return [collections]
  if isinstance(collections, (list, tuple)) and all(isinstance(c, str) for c in collections):
    return list(collections)
  raise TypeError(f'`{arg_name}` must be None, a collection name or a list of names, received '
                  f'{collections!r}.')


def _variable_collections(variables_collections):
  """The user's extra collections for each of the four parameters (slim's
  model variables come from the custom getter).

  A dict may hold other layers' keys ('weights', 'biases': one dict shared
  through an arg_scope), as slim ignores them.
  """
  result = {}
  for var_name in PARAM_INITIALIZER_KEYS:
    if isinstance(variables_collections, dict):
      extra = _collections_list(variables_collections.get(var_name),
                                f'variables_collections[{var_name!r}]')
    else:
      extra = _collections_list(variables_collections, 'variables_collections')
    result[var_name] = list(extra or [])
  return result


def _slim_path(rank, fused, renorm, batch_weights, adjustment, zero_debias, updates_collections):
  """Which of slim's implementations the legacy function would run."""
  possible_to_fuse = (batch_weights is None and not renorm and rank in (2, 4) and
                      adjustment is None)
  # slim compares with `is`: only the (default) UPDATE_OPS string itself counts.
  on_update_ops = isinstance(updates_collections, str) and updates_collections == UPDATE_OPS
  if fused and possible_to_fuse and (zero_debias or rank == 2 or not on_update_ops):
    return 'fused'
  if batch_weights is None and on_update_ops and not zero_debias:
    return 'layer'
  return 'general'


def _collect_outputs(outputs, alias, collections):
  if collections:
    outputs.aliases = list(getattr(outputs, 'aliases', [])) + [alias.rstrip('/')]
    for collection in collections:
      tf.compat.v1.add_to_collection(collection, outputs)
  return outputs


def _check_data_format(data_format):
  # slim's own wording first: code written against slim matches on it.
  if data_format not in DATA_FORMATS:
    raise ValueError(f'data_format has to be either NCHW or NHWC. `data_format` must be one of '
                     f'{list(DATA_FORMATS)} (NHWC: channels last, NCHW: channels on axis 1), '
                     f'received {data_format!r}.')
  return data_format


@_arg_scoped
def batch_norm(inputs, decay=0.999, center=True, scale=False, epsilon=0.001, activation_fn=None,
               param_initializers=None, param_regularizers=None,
               updates_collections=tf.compat.v1.GraphKeys.UPDATE_OPS, is_training=True,
               reuse=None, variables_collections=None, outputs_collections=None,
               trainable=True, batch_weights=None, fused=None, data_format='NHWC',
               zero_debias_moving_mean=False, scope=None, renorm=False, renorm_clipping=None,
               renorm_decay=0.99, adjustment=None, synchronized=False, mask=None, step=None,
               max_steps=None):
  """Drop-in for `slim.batch_norm` / `tf.contrib.layers.batch_norm` (see the module doc).

  `updates_collections=None` updates the moving statistics in place (the
  output depends on the update); otherwise two updates per call go into
  each named collection, of slim's kinds: on slim's fused and general
  paths what the assigns return (`update.op.name` is
  `BatchNorm/AssignMovingAvg/...`; running it returns the new value), on
  its tf.layers path the assign Operations. `data_format='NCHW'` normalizes axis 1. Inside
  `slim.arg_scope([slim.batch_norm], ...)` (after `tf1_bn.patch_slim()`) it
  takes the scope's defaults, as slim's does. `synchronized=True` (not in
  slim) computes the training statistics over the global batch of every
  replica: see `tf1_bn.bn.replicas`. `mask` (not in slim): positions left
  out of the batch statistics, see `tf1_bn.bn.masking`; it multiplies
  `batch_weights`. `step` and `max_steps` (not in slim): per-time-step
  moving statistics of shape [max_steps, C], see `tf1_bn.bn.steps`. Inside
  a loop body the updates are made in place whatever `updates_collections`
  says (see `tf1_bn.bn.loops`).
  """
  v.check_graph_mode('batch_norm')
  _check_data_format(data_format)
  shape, dtype = v.static_shape_and_dtype(inputs)
  v.check_float_dtype(dtype)
  rank = v.check_rank(shape, min_rank=2)
  axes = v.normalize_axis(1 if data_format == 'NCHW' else -1, shape,
                          arg_name='data_format axis')
  is_training = switch_lib.check_training(is_training, 'is_training', allow_int=True)
  decay = v.check_probability(decay, 'decay')
  epsilon = v.check_non_negative(epsilon, 'epsilon')
  center, scale = v.check_bool(center, 'center'), v.check_bool(scale, 'scale')
  trainable = v.check_bool(trainable, 'trainable')
  renorm = v.check_bool(renorm, 'renorm')
  zero_debias = v.check_bool(zero_debias_moving_mean, 'zero_debias_moving_mean')
  reuse = v.check_reuse(reuse)
  fused = True if fused is None else v.check_bool(fused, 'fused')
  initializer_args = v.check_dict(param_initializers, PARAM_INITIALIZER_KEYS,
                                  'param_initializers')
  regularizers = v.check_dict(param_regularizers, PARAM_REGULARIZER_KEYS, 'param_regularizers')
  for key, regularizer in regularizers.items():
    v.check_callable(regularizer, f'param_regularizers[{key!r}]')
  updates_list = _collections_list(updates_collections, 'updates_collections')
  outputs_list = _collections_list(outputs_collections, 'outputs_collections')
  collections = _variable_collections(variables_collections)
  v.check_callable(activation_fn, 'activation_fn')
  v.check_callable(adjustment, 'adjustment')
  if not isinstance(scope, tf.compat.v1.VariableScope):  # slim takes a scope object too
    v.check_name(scope, 'scope')
  initializers = layers.initializers_from(
      initializer_args, {key: f'param_initializers[{key!r}]' for key in PARAM_INITIALIZER_KEYS})
  path = _slim_path(rank, fused, renorm, batch_weights, adjustment, zero_debias,
                    updates_collections)
  if path == 'general' and renorm:
    raise ValueError('renorm is not supported with batch_weights, updates_collections or '
                     'zero_debias_moving_mean (as in slim).')
  # Checked even without renorm, as in tf1_bn.batch_normalization.
  clipping = v.check_renorm_clipping(renorm_clipping)
  renorm_decay = v.check_probability(renorm_decay, 'renorm_decay')
  synchronized = v.check_synchronized(synchronized, in_loop=loops.in_loop())
  mask = masking.check_mask(mask, shape, axes)
  step, max_steps = steps.check_step(step, max_steps, [
      (renorm, 'renorm'), (zero_debias, 'zero_debias_moving_mean')])
  if batch_weights is not None:
    weights_shape, weights_dtype = v.static_shape_and_dtype(batch_weights, 'batch_weights')
    v.check_real_dtype(weights_dtype, 'batch_weights')
    if not weights_shape.is_compatible_with(shape[:1]):
      raise ValueError(f'`batch_weights` must have shape [batch] = {shape[:1]}, received '
                       f'{weights_shape}.')

  getter = _model_variable_getter(PARAM_INITIALIZER_KEYS if path == 'fused' else None)
  with tf.compat.v1.variable_scope(scope, 'BatchNorm', reuse=reuse, custom_getter=getter) as sc:
    x = tf.convert_to_tensor(inputs)
    if path == 'layer':
      outputs, update = layers.build_layer(
          x, axes, momentum=decay, epsilon=epsilon, center=center, scale=scale,
          initializers=initializers, regularizers=regularizers, constraints={},
          training=is_training, trainable=trainable, renorm=renorm, clipping=clipping,
          renorm_momentum=renorm_decay, fused=fused, virtual_batch_size=None,
          adjustment=adjustment, synchronized=synchronized, collections=collections, mask=mask,
          step=step, max_steps=max_steps)
      outputs = core.attach_update(outputs, update, 'collection', per_variable=True)
    else:
      outputs = _build_slim(x, axes, path, dtype, decay, epsilon, center, scale, initializers,
                            regularizers, collections, is_training, trainable, zero_debias,
                            batch_weights, updates_list, fused, synchronized, mask, step,
                            max_steps)
    if activation_fn is not None:
      outputs = activation_fn(outputs)
    return _collect_outputs(outputs, sc.name, outputs_list)


def _build_slim(x, axes, path, dtype, decay, epsilon, center, scale, initializers, regularizers,
                collections, is_training, trainable, zero_debias, batch_weights, updates_list,
                fused, synchronized, mask=None, step=None, max_steps=None):
  """slim's own fused and general paths."""
  if path == 'fused':
    param_dtype, variance_kind = tf.float32, 'sample'
  else:
    # slim's general path keeps its variables in the input's dtype.
    param_dtype, variance_kind = dtype, 'population'
  call, builds_update = core.register_replicas(x.shape[axes[0]], synchronized)
  variables = layers.create_variables([x.shape[axes[0]]], param_dtype, initializers, center,
                                      scale, trainable, renorm=False, regularizers=regularizers,
                                      collections=collections, beta_first=True,
                                      max_steps=max_steps)
  debias = None
  if zero_debias:
    moving_mean = variables['moving_mean']
    with tf.control_dependencies(None), tf.compat.v1.variable_scope(moving_mean.op.name), \
        layers.unpartitioned():
      debias = (
          tf.compat.v1.get_variable('biased', moving_mean.shape, moving_mean.dtype.base_dtype,
                                    tf.compat.v1.zeros_initializer(), trainable=False),
          tf.compat.v1.get_variable('local_step', [], moving_mean.dtype.base_dtype,
                                    tf.compat.v1.zeros_initializer(), trainable=False))
  moving = core.MovingStatistics(variables['moving_mean'], variables['moving_variance'],
                                 1.0 - decay, variance_kind, zero_debias=debias,
                                 slot=steps.slot(step, max_steps))
  training = switch_lib.resolve_training(is_training)
  outputs, update = core.build(
      x, axes=axes, training=training, gamma=variables.get('gamma'), beta=variables.get('beta'),
      moving=moving, epsilon=epsilon, fused=None if (path == 'fused' or fused) else False,
      update=builds_update, batch_weights=batch_weights, call=call, synchronized=synchronized,
      mask=mask, in_place=updates_list is None)
  if updates_list is None:
    return core.attach_update(outputs, update, 'inline')
  # slim's own paths collect what the assigns return (tensor-like, with
  # `.op`), where its tf.layers path collects the ops.
  return core.attach_update(outputs, update, 'collection', collections=updates_list,
                            per_variable=True, values=True)
