"""The one batch-normalization implementation behind every front-end.

`bn_layer`, `batch_normalization` (tf.layers) and `batch_norm` (slim) create
their variables with their own names and conventions, then call `build`.
`build` owns the arithmetic:

* the train/inference switch (one `tf.cond` for a tensor `training`, none for
  a Python bool);
* batch statistics (`statistics.moments`, local or over the replicas of a
  synchronized layer, or the fused kernel);
* normalization (`(x - mean) * gamma / sqrt(var + eps) + beta`, or the fast
  kernels of `tf1_bn.bn.kernels`: `FusedBatchNormV3` for training, an
  XLA-compiled one-pass transform for inference on CPU);
* the moving-average update, built outside the cond from the cond's outputs
  and masked, so a step with training False, an empty batch (no values, or
  zero total weight) or non-finite statistics leaves every moving variable
  bit-for-bit unchanged. It runs after the layer's output is computed, so
  every read of a variable it writes (renorm's statistics, the shift of a
  synchronized layer) sees the value from before the step;
* the order of the calls of a layer used more than once in a step (see
  `tf1_bn.bn.call_order`): every call's forward pass reads the moving
  variables as they were at the start of the step, and with the updates in
  a collection call k updates after call k-1 has, from the value call k-1
  left;
* no gradient for the moving variables: every read of them is behind a
  `tf.stop_gradient`, so `tf.gradients(loss, moving_mean)` is `[None]` on
  every path, and an optimizer given every variable creates no slots for
  them.

Under a `tf.distribute` strategy each replica holds a copy of the moving
statistics, and every copy receives the same update: the global batch's
statistics for a synchronized layer, the average of the replicas' batch
statistics for a local one (so the copies never drift apart).

Which kernel runs is a speed choice only: the semantics (population or
sample variance in the moving average, epsilon, the decay arithmetic) are
chosen by the front-end and hold on both kernels.
"""
import dataclasses
import json
import re
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf1_bn.bn import call_order as call_order_lib
from tf1_bn.bn import kernels
from tf1_bn.bn import loops
from tf1_bn.bn import masking
from tf1_bn.bn import replicas as replicas_lib
from tf1_bn.bn import statistics
from tf1_bn.bn import switch as switch_lib
from tf1_bn.common.log import warn_once
from tf1_bn.common.validation import HALF_DTYPES

VARIANCE_KINDS = statistics.VARIANCE_KINDS
# Every update op a layer put into a collection (see check_update_ops).
COLLECTION_UPDATES_KEY = 'tf1_bn_collection_updates'
# Name scope of the one group op of a layer's update; what precedes it in
# the op's name is the layer.
UPDATE_SCOPE = 'moving_statistics_update'
# The assign ops are named as tf.layers and slim name theirs
# (`<layer>/AssignMovingAvg/AssignSubVariableOp`, `<layer>/AssignMovingAvg_1/...`,
# `<layer>/AssignNewValue`): tools and error messages refer to those names.
MOVING_AVERAGE_SCOPE = 'AssignMovingAvg'
NEW_VALUE_SCOPE = 'AssignNewValue'
_UPDATE_OP_NAME = re.compile(
    rf'/(?:{MOVING_AVERAGE_SCOPE}|{NEW_VALUE_SCOPE}|{UPDATE_SCOPE})(?:_\d+)?'
    r'(?:/AssignSubVariableOp|/group)?$')
# Graph collection of JSON records, one per BN layer call with an inference
# path: input/output tensor names, axes, epsilon and the parameter variables.
INFERENCE_RECORDS_KEY = 'tf1_bn_inference_records'
# Graph collection of JSON records, one per BN layer call (any `training`):
# what recomputing its statistics from data needs (tf1_bn.precise).
LAYER_RECORDS_KEY = 'tf1_bn_layer_records'


@dataclasses.dataclass
class Renorm:
  """Batch renormalization state (Ioffe 2017), as tf.layers keeps it."""
  moving_stddev: tf.Variable
  renorm_mean: tf.Variable
  renorm_stddev: tf.Variable
  clipping: dict
  decay_factor: object  # 1 - renorm_momentum


@dataclasses.dataclass
class MovingStatistics:
  """The moving statistics and how the batch statistics update them.

  `decay_factor` is `1 - decay`: a Python float (converted to the variable's
  dtype) or a scalar tensor, so a front-end reproduces the arithmetic of the
  implementation it replaces. `variance_kind` says which batch variance the
  moving variance averages: 'population' (as tf.nn.moments returns it) or
  'sample' (Bessel-corrected, as the fused kernel reports it).
  """
  mean: tf.Variable
  variance: tf.Variable
  decay_factor: object
  variance_kind: str = 'population'
  zero_debias: Optional[tuple] = None  # (biased, local_step) variables
  renorm: Optional[Renorm] = None
  # Per-step statistics (tf1_bn.bn.steps): the row of `mean` and `variance`
  # this call uses and updates, an int32 scalar tensor.
  slot: Optional[object] = None


@dataclasses.dataclass
class Update:
  """The update built by `build`: its assign ops and one group of them.

  `values` are what the two assigns returned (for resource variables a
  lazily read variable whose `.op` is the assign, and whose value read in a
  session is the variable after it): slim's own paths put those in its
  updates collections, tf.layers puts the ops.
  """
  ops: list
  group: tf.Operation
  values: list = dataclasses.field(default_factory=list)
  # Every assign to a variable the forward pass reads (renorm's included).
  assigns: list = dataclasses.field(default_factory=list)


def compose_affine(scale, offset, then_scale, then_offset):
  """(x * scale + offset) * then_scale + then_offset as one scale and offset."""
  if then_scale is not None:
    scale = scale * then_scale
    offset = offset * then_scale
  if then_offset is not None:
    offset = offset + then_offset
  return scale, offset


class _Layout:
  """Shapes of the working tensor: broadcast shape, reduction axes."""

  def __init__(self, shape, axes, virtual_batch_size=None):
    self.virtual = virtual_batch_size
    if virtual_batch_size is not None:
      # Ghost batches: [N, ...] -> [virtual_batch_size, N / vbs, ...]; the
      # statistics are per ghost batch (dimension 1 is kept).
      self.axes = [a + 1 for a in axes]
      self.rank = shape.rank + 1
      dims = [virtual_batch_size, None] + shape.as_list()[1:]
      self.reduction_axes = [i for i in range(self.rank) if i not in self.axes and i != 1]
    else:
      self.axes = list(axes)
      self.rank = shape.rank
      dims = shape.as_list()
      self.reduction_axes = [i for i in range(self.rank) if i not in self.axes]
    self.broadcast_shape = [dims[i] if i in self.axes else 1 for i in range(self.rank)]

  def broadcast(self, param, dtype):
    if param is None:
      return None
    return tf.reshape(tf.cast(param, dtype), self.broadcast_shape)


def _general_training(x, layout, gamma, beta, epsilon, stat_dtype, moving, adjustment,
                      batch_weights, call=None):
  """Moments and the normalization formula; returns (y, mean, population
  variance, count).

  `mean` and the variance come back in the working broadcast shape; with ghost
  batches they are averaged over the ghost batches, as tf.layers does. With
  `call` (a synchronized layer) they are the global batch's.
  """
  xs = tf.cast(x, stat_dtype)
  if layout.virtual is not None:
    batch = tf.shape(x)[0]
    check = tf.debugging.assert_equal(
        batch % layout.virtual, 0,
        message=f'the batch size is not a multiple of virtual_batch_size={layout.virtual}')
    with tf.control_dependencies([check]):
      xs = tf.reshape(xs, tf.concat([[layout.virtual, -1], tf.shape(x)[1:]], axis=0))
  weights = None
  if batch_weights is not None:
    weights = tf.cast(batch_weights, stat_dtype)
    if weights.shape.rank != x.shape.rank:  # per example (slim); a mask's are per position
      weights = tf.reshape(weights, [-1] + [1] * (layout.rank - 1))
    elif layout.virtual is not None:
      weights = tf.reshape(weights, tf.concat([[layout.virtual, -1], tf.shape(weights)[1:]], 0))
  shift = None if call is None else _shift(moving, layout, stat_dtype)
  mean, variance, count = statistics.moments(xs, layout.reduction_axes, weights, shift, call)
  scale, offset = layout.broadcast(gamma, stat_dtype), layout.broadcast(beta, stat_dtype)
  if adjustment is not None:
    adj_scale, adj_bias = adjustment(tf.shape(x))
    scale, offset = compose_affine(tf.cast(adj_scale, stat_dtype), tf.cast(adj_bias, stat_dtype),
                                   scale, offset)
  new_mean, new_variance = mean, variance
  if layout.virtual is not None:
    new_mean = tf.reduce_mean(mean, axis=1, keepdims=True)
    new_variance = tf.reduce_mean(variance, axis=1, keepdims=True)
  if moving.renorm is not None:
    r, d = _renorm_correction(moving.renorm, new_mean, new_variance, epsilon, stat_dtype,
                              layout)
    scale, offset = compose_affine(r, d, scale, offset)
  y = kernels.normalize(xs, mean, variance, scale, offset, epsilon)
  if layout.virtual is not None:
    y = tf.reshape(y, tf.shape(x))
  return tf.cast(y, x.dtype), new_mean, new_variance, count


def _shift(moving, layout, dtype):
  """The per-channel shift of a synchronized layer's sums: the moving mean,
  which every replica holds (the same value) before the step's update."""
  return layout.broadcast(_moving_value(moving.mean, moving.slot, _loop_read()), dtype)


def _loop_read():
  """`loops.read` inside a loop body (through the handle: the previous
  iteration's value, not a cached copy), None outside."""
  return loops.read if loops.in_loop() else None


def _read(variable, read=None):
  """What the forward pass reads of a moving variable: a tensor without a
  gradient, through `read` where given (`_loop_read`). A tensor given in
  its place (by `_start_of_step_reads`) is one already."""
  if isinstance(variable, tf.Variable):
    return tf.stop_gradient(_current(variable, read))
  return variable


def _start_of_step_reads(moving, order):
  """`moving` with the variables a later call's forward pass reads replaced
  by reads with no input, outside any cond of this layer, which every
  earlier call's update waits for (call_order); `moving` itself for the
  first call."""
  if not order.earlier:
    return moving
  with tf.control_dependencies(None):
    renorm = moving.renorm
    if renorm is not None:
      renorm = dataclasses.replace(renorm, renorm_mean=_read(renorm.renorm_mean),
                                   renorm_stddev=_read(renorm.renorm_stddev))
    forward = dataclasses.replace(moving, mean=_read(moving.mean),
                                  variance=_read(moving.variance), renorm=renorm)
  reads = [forward.mean, forward.variance] + (
      [renorm.renorm_mean, renorm.renorm_stddev] if renorm is not None else [])
  call_order_lib.precede([t.op.inputs[0].op for t in reads], order)
  return forward


def _call_order(moving, in_place, builds_update, looping):
  """(call_order.Call or None, what the forward pass reads, the updates
  this call's update follows) for a call of the layer of `moving`.

  Inside a loop body there is no call order: the loop's updates are in
  place and run in iteration order (`tf1_bn.bn.loops`), and nothing is
  chained into or out of the loop's frame.
  """
  if looping:
    return None, moving, []
  order = call_order_lib.begin(moving.mean)
  forward = _start_of_step_reads(moving, order)
  if in_place and order.earlier and builds_update:
    warn_once(('in_place_calls',),
              f'tf1_bn: the layer of {moving.mean.name!r} is called again in a step with its '
              'update in place; in-place updates of independent calls run in an order the '
              'executor picks (as with the legacy layers). Put the updates in a collection '
              '(run with tf1_bn.minimize) for a deterministic call order.')
  return order, forward, [] if in_place else order.previous


def _synchronized_training(x, layout, gamma, beta, epsilon, stat_dtype, moving, adjustment,
                           batch_weights, call, use_fast_kernel):
  """Training over the global batch; returns (y, mean, population variance,
  global count)."""
  if not use_fast_kernel:
    return _general_training(x, layout, gamma, beta, epsilon, stat_dtype, moving, adjustment,
                             batch_weights, call)
  axis = layout.axes[0]
  mean, variance, count = statistics.moments(
      x, layout.reduction_axes, shift=_shift(moving, layout, tf.float32), call=call,
      fused_axis=axis)

  def gradient_all_sum(tensor):
    return replicas_lib.gradient_all_sum(tensor, call, 'cross_replica_sum_gradient')

  y = kernels.synchronized_normalize(x, axis, gamma, beta, mean, variance, count, epsilon,
                                     gradient_all_sum)
  return y, mean, variance, count


def _renorm_correction(renorm, mean, variance, epsilon, dtype, layout):
  """The r and d corrections of batch renorm, from the pre-update averages."""
  stddev = tf.sqrt(variance + epsilon)
  # In a loop, the previous iteration's values (see tf1_bn.bn.loops).
  read = _loop_read()
  renorm_mean = layout.broadcast(_read(renorm.renorm_mean, read), dtype)
  renorm_stddev = tf.maximum(layout.broadcast(_read(renorm.renorm_stddev, read), dtype),
                             tf.sqrt(tf.cast(epsilon, dtype)))
  r = stddev / renorm_stddev
  d = (mean - renorm_mean) / renorm_stddev
  rmin, rmax, dmax = (renorm.clipping.get(k) for k in ('rmin', 'rmax', 'dmax'))
  if rmin is not None:
    r = tf.maximum(r, rmin)
  if rmax is not None:
    r = tf.minimum(r, rmax)
  if dmax is not None:
    d = tf.minimum(tf.maximum(d, -dmax), dmax)
  return tf.stop_gradient(r, name='renorm_r'), tf.stop_gradient(d, name='renorm_d')


def _inference(x, layout, gamma, beta, mean, variance, epsilon, stat_dtype, use_fused):
  if use_fused:
    return kernels.fused_inference(x, layout.axes[0], gamma, beta, mean, variance, epsilon)
  xs = tf.cast(x, stat_dtype)
  y = kernels.normalize(xs, layout.broadcast(mean, stat_dtype),
                        layout.broadcast(variance, stat_dtype),
                        layout.broadcast(gamma, stat_dtype), layout.broadcast(beta, stat_dtype),
                        epsilon)
  return tf.cast(y, x.dtype)


def register_replicas(channels, synchronized):
  """This layer's place among the replicas, or None on one device.

  Called by a front-end inside the layer's variable scope, before it creates
  anything, because a replica whose layers do not pair up with its peers'
  is an error (ValueError naming both layers) that must leave nothing built.
  Returns (replicas.LayerCall or None, whether this replica builds the
  moving-statistics update).
  """
  replicas = replicas_lib.current()
  layer = tf.compat.v1.get_variable_scope().name
  call = replicas_lib.layer_call(replicas, layer, channels, synchronized)
  return call, replicas is None or replicas.builds_update


def build(inputs, *, axes: Sequence[int], training, gamma, beta, moving: MovingStatistics,
          epsilon: float, fused: Optional[bool] = None, update: bool = True,
          virtual_batch_size: Optional[int] = None, adjustment: Optional[Callable] = None,
          batch_weights=None, call: Optional[replicas_lib.LayerCall] = None,
          synchronized: bool = False, in_place: bool = False, mask=None):
  """Normalizes `inputs` and builds the moving-statistics update.

  Args:
    inputs: a float tensor whose `axes` have static sizes.
    axes: the normalized (channel) axes, non-negative and sorted.
    training: a Python bool or a scalar tf.bool tensor.
    gamma, beta: scale and offset (variables or tensors) or None.
    moving: the moving statistics and their update rule.
    epsilon: added to the variance.
    fused: None picks the fused kernel wherever it computes the same thing;
      False always uses moments plus the normalization formula; True is a
      request that falls back like None.
    update: False builds no update (inference-only or frozen layers).
    virtual_batch_size, adjustment, batch_weights: tf.layers' ghost batches
      and adjustment, slim's weighted moments.
    call: from `register_replicas`: the layer's place among the replicas.
    synchronized: with `call`, training statistics over the global batch.
    in_place: the front-end makes the outputs depend on the update (rather
      than collecting it): a later call's update is then not chained to the
      earlier call's (see `tf1_bn.bn.call_order`).
    mask: positions left out of the batch statistics (`tf1_bn.bn.masking`),
      checked by the front-end with `masking.check_mask`.

  Returns:
    (outputs, Update or None).
  """
  x = inputs
  batch_weights = masking.position_weights(mask, batch_weights, x)
  looping = loops.in_loop()
  if looping:  # see tf1_bn.bn.loops
    fused = False
    loops.serialize_iterations()
  # In a loop without its input: a loop's tensors cannot be fed or fetched
  # from outside it (recompute_statistics names such a layer and keeps it).
  _record_layer(x, axes, training, moving, epsilon, update, virtual_batch_size, batch_weights,
                looping)
  read = loops.read if looping else None  # None: through the variable, as outside loops
  layout = _Layout(x.shape, axes)
  stat_dtype = tf.float32 if x.dtype in HALF_DTYPES else x.dtype
  general = (moving.renorm is not None or virtual_batch_size is not None or
             adjustment is not None or batch_weights is not None)
  use_fused = fused is not False and kernels.fused_applies(x.dtype, axes, general)
  use_fused_inference = fused is not False and kernels.fused_applies(x.dtype, axes)
  train_layout = _Layout(x.shape, axes, virtual_batch_size)
  synchronized = synchronized and call is not None
  known = switch_lib.static_value(training)
  builds_update = update and known is not False
  # Local statistics under a strategy: averaged over the replicas for the
  # update, so only when there is one.
  averages_replicas = call is not None and not synchronized and builds_update
  # A layer called again in the step (call_order): its forward pass reads
  # the start-of-step values (`forward`), and an update into a collection
  # follows the previous call's.
  order, forward, previous = _call_order(moving, in_place, builds_update, looping)

  def training_branch():
    if synchronized:
      y, mean, variance, count = _synchronized_training(
          x, layout, gamma, beta, epsilon, stat_dtype, forward, adjustment, batch_weights, call,
          use_fused_inference and not general)
      kind = 'population'
    elif use_fused:
      y, mean, variance = kernels.fused_normalize(x, axes[0], gamma, beta, None, None, epsilon,
                                                  True)
      count = statistics.count_per_channel(x, layout.reduction_axes, tf.float32)
      kind = 'sample'
    else:
      y, mean, variance, count = _general_training(x, train_layout, gamma, beta, epsilon,
                                                   stat_dtype, forward, adjustment,
                                                   batch_weights)
      kind = 'population'
    variance = statistics.convert_variance(variance, count, kind, moving.variance_kind)
    mean, variance = _like(mean, moving.mean, moving.slot), _like(variance, moving.variance,
                                                                  moving.slot)
    count = tf.cast(count, mean.dtype)
    if averages_replicas:
      mean, variance, count = statistics.replica_average(call, mean, variance, count)
      # Before the layer's output: then every replica runs the collectives of
      # consecutive layers in one order (NCCL needs that; the data orders
      # every other all-sum).
      with tf.control_dependencies([count]):
        y = tf.identity(y)
    # The statistics leave the cond for the update only: without the stop,
    # the cond's gradient would differentiate them too (with zero upstream
    # gradients, through the all-sum of a synchronized layer).
    return (y,) + tuple(tf.stop_gradient(t) for t in (mean, variance, count))

  inference_outputs = []

  def inference_branch():
    mean = _moving_value(forward.mean, moving.slot, read)
    variance = _moving_value(forward.variance, moving.slot, read)
    y = _inference(x, layout, gamma, beta, mean, variance, epsilon, stat_dtype,
                   use_fused_inference)
    inference_outputs.append(y)
    return y, mean, variance, tf.zeros([], mean.dtype)

  if not builds_update:
    outputs = switch_lib.switch(training, lambda: training_branch()[0],
                                lambda: inference_branch()[0])
    outputs = _after_step_check(outputs, moving.slot)
    outputs.set_shape(x.shape)
    if not looping:
      _record_inference(x, inference_outputs, axes, gamma, beta, moving, epsilon)
    call_order_lib.end(order, None)
    return outputs, None
  outputs, mean, variance, count = switch_lib.switch(training, training_branch,
                                                     inference_branch)
  outputs = _after_step_check(outputs, moving.slot)
  outputs.set_shape(x.shape)
  if not looping:
    _record_inference(x, inference_outputs, axes, gamma, beta, moving, epsilon)
  ok = tf.logical_and(count > 0, tf.logical_and(_all_finite(mean), _all_finite(variance)))
  if known is None:
    ok = tf.logical_and(training, ok)
  after = [] if _computes_its_statistics(outputs) else [outputs]
  update = _build_update(moving, mean, variance, ok, epsilon, after=after + previous,
                         read=read)
  call_order_lib.end(order, update.assigns)
  return outputs, update


def _computes_its_statistics(outputs):
  """Whether `outputs` come straight from the fused training kernel, whose
  batch mean and variance the update reads: the update then follows the
  kernel by data, and a control edge from it would stop grappler's remapper
  from fusing the kernel with the activation after it (FusedBatchNormEx:
  the ReLU costs no pass of its own, as with the legacy layer)."""
  op = outputs.op
  return op.type == 'FusedBatchNormV3' and op.get_attr('is_training')


def _after_step_check(outputs, slot):
  """The outputs, after the run-time check of a tensor `step` (a negative
  step fails whatever is fetched)."""
  if slot is None or tf.get_static_value(slot) is not None:
    return outputs
  with tf.control_dependencies([slot]):
    return tf.identity(outputs)


def _record_inference(x, inference_outputs, axes, gamma, beta, moving, epsilon):
  """Registers the layer's inference transform for export and folding.

  The last inference output built is the one outside any cond (the only one
  for a Python False `training`, the switch's shadow for a tensor).
  """
  if not inference_outputs:
    return
  params = {'gamma': gamma, 'beta': beta, 'mean': moving.mean, 'variance': moving.variance}
  if not all(p is None or isinstance(p, tf.Variable) for p in params.values()):
    return
  record = {'input': x.name, 'output': inference_outputs[-1].name, 'axes': list(axes),
            'step': _slot_record(moving.slot),
            'rank': x.shape.rank, 'dtype': x.dtype.base_dtype.name, 'epsilon': float(epsilon),
            **{k: (p.name if p is not None else None) for k, p in params.items()}}
  tf.compat.v1.add_to_collection(INFERENCE_RECORDS_KEY, json.dumps(record))


def _record_layer(x, axes, training, moving, epsilon, update, virtual_batch_size,
                  batch_weights, in_loop):
  """Registers the layer call for tf1_bn.recompute_statistics (adds no op).

  `training` is recorded as a bool when known while building, else the
  switch tensor's name; `batch_weights` as a tensor name, or its values when
  the front-end received an array. A call inside a loop body records its
  variables only (`in_loop`), no tensor of the loop's frame.
  """
  def name(variable):
    return variable.name if variable is not None else None

  renorm, debias = moving.renorm, moving.zero_debias
  known = switch_lib.static_value(training)
  weights = batch_weights
  if in_loop:
    weights = None
  elif weights is not None:
    weights = weights.name if tf.is_tensor(weights) else {'value': np.asarray(weights).tolist()}
  decay = moving.decay_factor
  decay = tf.get_static_value(decay) if tf.is_tensor(decay) else decay
  record = {
      'input': None if in_loop else x.name, 'in_loop': bool(in_loop), 'axes': list(axes),
      'epsilon': float(epsilon),
      'training': bool(known) if known is not None else (None if in_loop else training.name),
      'update': bool(update),
      'mean': moving.mean.name, 'variance': moving.variance.name,
      'variance_kind': moving.variance_kind,
      'decay_factor': float(decay) if decay is not None else None,
      'zero_debias': [name(v) for v in debias] if debias is not None else None,
      'moving_stddev': name(renorm.moving_stddev) if renorm is not None else None,
      'renorm': [name(renorm.renorm_mean), name(renorm.renorm_stddev)]
                if renorm is not None else None,
      'virtual_batch_size': virtual_batch_size, 'batch_weights': weights,
      'step': _slot_record(moving.slot)}
  loops.outside_graph().add_to_collection(LAYER_RECORDS_KEY, json.dumps(record))


def _slot_record(slot):
  """A per-step layer's row in the records: an int when fixed while
  building, 'tensor' when chosen at run time, None without per-step
  statistics."""
  if slot is None:
    return None
  value = tf.get_static_value(slot)
  return int(value) if value is not None else 'tensor'


def _like(value, variable, slot=None):
  shape = variable.shape if slot is None else variable.shape[1:]
  return tf.reshape(tf.cast(value, variable.dtype.base_dtype), shape)


def _all_finite(t):
  return tf.reduce_all(tf.math.is_finite(t))


def _factor(decay_factor, dtype):
  if tf.is_tensor(decay_factor):
    return tf.cast(decay_factor, dtype)
  return tf.constant(decay_factor, dtype)


def _current(variable, read):
  """The variable's value: read_value(), or `read(variable)` (a loop's)."""
  return variable.read_value() if read is None else read(variable)


def _moving_value(variable, slot, read=None):
  """The moving statistic this call's forward pass uses (`_read`): the
  whole variable, or its row `slot`."""
  value = _read(variable, read)
  return value if slot is None else tf.gather(value, slot)


def _write(kind, variable, value, name, read):
  """tf.compat.v1.assign / assign_sub / assign_add, or in a loop (`read`
  given) `loops.write`: no control input on the cached read, which would make
  the While op invalid once its gradient adds inputs to it."""
  if read is None:
    return getattr(tf.compat.v1, kind)(variable, value, name=name)
  return loops.write(kind, variable, value, name)


def _masked_moving_average(variable, value, decay_factor, ok, scope=MOVING_AVERAGE_SCOPE,
                           read=None, slot=None):
  """variable -= (variable - value) * (1 - decay), only where `ok` (row
  `slot` only, for per-step statistics)."""
  with tf.name_scope(scope) as name:
    dtype = variable.dtype.base_dtype
    if slot is not None:
      return _scatter_moving_average(variable, value, _factor(decay_factor, dtype), ok, slot,
                                     name, read)
    current = variable if read is None else read(variable)
    delta = (current - value) * _factor(decay_factor, dtype)
    delta = tf.where(ok, delta, tf.zeros_like(delta))
    return _write('assign_sub', variable, delta, name, read)


def _scatter_moving_average(variable, value, factor, ok, slot, name, read):
  """Row `slot` -= (row - value) * factor, by a scatter (the other rows are
  not written). Calls that share a row are ordered as every other update of
  a layer called several times: call order outside loops
  (`tf1_bn.bn.call_order`), iteration order inside (`tf1_bn.bn.loops`)."""
  delta = (tf.gather(_current(variable, read), slot) - value) * factor
  delta = tf.where(ok, delta, tf.zeros_like(delta))
  return tf.raw_ops.ResourceScatterSub(resource=variable.handle, indices=tf.reshape(slot, [1]),
                                       updates=delta[tf.newaxis], name=name)


def _zero_debiased_average(variable, value, decay_factor, debias_vars, ok, read=None):
  """tf.train's zero-debiased EMA: moving = biased / (1 - decay ** step)."""
  biased, local_step = debias_vars
  with tf.name_scope(MOVING_AVERAGE_SCOPE) as name:
    dtype = variable.dtype.base_dtype
    factor = _factor(decay_factor, dtype)
    delta = ((biased if read is None else read(biased)) - value) * factor
    new_biased = _write('assign_sub', biased, tf.where(ok, delta, tf.zeros_like(delta)), None,
                        read)
    new_step = _write('assign_add', local_step, tf.cast(ok, local_step.dtype.base_dtype), None,
                      read)
    bias_factor = 1 - tf.pow(1.0 - factor, new_step)
    unbiased = new_biased / bias_factor
    return _write('assign', variable, tf.where(ok, unbiased, _current(variable, read)), name, read)


def _as_op(update):
  # assign ops on resource variables return a lazily read variable; its op
  # is the assign.
  return update if isinstance(update, tf.Operation) else update.op


def update_layer_name(update_op):
  """The layer (its name scope) that built an update op."""
  name = update_op.name
  match = _UPDATE_OP_NAME.search(name)
  return name[:match.start()] if match else name


def _build_update(moving, mean, variance, ok, epsilon, after, read=None):
  """The assign ops, in tf.layers' order and names, after `after` (the
  layer's output, so what the step's forward pass read of these variables is
  read before they change; and an earlier call's update of them, so this one
  reads what that one wrote)."""
  with tf.control_dependencies(after):
    first = []
    renorm = moving.renorm
    if renorm is not None:
      stddev = tf.sqrt(variance + epsilon)
      first = [
          _masked_moving_average(renorm.renorm_mean, mean, renorm.decay_factor, ok, read=read),
          _masked_moving_average(renorm.renorm_stddev, stddev, renorm.decay_factor, ok,
                                 read=read),
      ]
    with tf.control_dependencies(first):
      if moving.zero_debias is not None:
        mean_op = _zero_debiased_average(moving.mean, mean, moving.decay_factor,
                                         moving.zero_debias, ok, read=read)
      else:
        mean_op = _masked_moving_average(moving.mean, mean, moving.decay_factor, ok, read=read,
                                         slot=moving.slot)
      if renorm is not None:
        new_stddev = _masked_moving_average(renorm.moving_stddev, stddev,
                                            moving.decay_factor, ok, read=read)
        # tf.layers keeps the stddev and derives the variance (relu against
        # rounding below zero); a skipped step rewrites the same value.
        with tf.name_scope(NEW_VALUE_SCOPE) as name:
          derived = tf.nn.relu(new_stddev * new_stddev - epsilon)
          variance_op = _write('assign', moving.variance,
                               tf.where(ok, derived, _current(moving.variance, read)), name, read)
      else:
        new_stddev = None
        variance_op = _masked_moving_average(moving.variance, variance, moving.decay_factor,
                                             ok, read=read, slot=moving.slot)
    ops = [_as_op(mean_op), _as_op(variance_op)]
    with tf.name_scope(UPDATE_SCOPE):
      group = tf.group(*ops, name='group')
  assigns = [_as_op(a) for a in first + [mean_op, new_stddev, variance_op] if a is not None]
  return Update(ops=ops, group=group, values=[mean_op, variance_op], assigns=assigns)


def attach_update(outputs, update, style, collections=(tf.compat.v1.GraphKeys.UPDATE_OPS,),
                  per_variable=False, values=False):
  """Puts the update into collections, or makes the outputs depend on it.

  Args:
    style: 'collection' or 'inline'.
    per_variable: add each assign op (as tf.layers does: two per layer)
      rather than the one group op.
    values: with `per_variable`, add what each assign returned rather than
      its op, as slim's own fused and general paths do (`update.op.name` is
      the assign's name; running it returns the updated variable).
  """
  if update is None:
    return outputs
  if loops.in_loop():  # a loop's ops cannot be fetched from outside it
    loops.keep(update.group)
    style = 'inline'
  if style == 'inline':
    with tf.control_dependencies([update.group]):
      return tf.identity(outputs)
  ops = update.ops if per_variable else [update.group]
  members = update.values if per_variable and values else ops
  for collection in collections:
    for member in members:
      tf.compat.v1.add_to_collection(collection, member)
  # Remembered (as ops, whatever the collections hold) so check_update_ops
  # can name a layer whose update is not run.
  for op in ops:
    tf.compat.v1.add_to_collection(COLLECTION_UPDATES_KEY, op)
  return outputs


