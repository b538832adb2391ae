"""The fast kernels behind `core.build`; which one runs is a speed choice only.

Both apply where the fused kernel computes the same thing as the general
path: one normalized axis, float16, bfloat16 or float32 input.

* Training: `FusedBatchNormV3`, reached for any rank and any single axis by a
  reshape to 4-D (NHWC when the axis is last, NCHW otherwise).
* Inference on CPU: `(x - mean) * multiplier + beta`, compiled by XLA into
  one loop over `x` (read once, written once, float16 converted in
  registers), with `multiplier = gamma * rsqrt(variance + epsilon)` computed
  per channel beforehand. TensorFlow's own CPU kernel computes that formula
  with three broadcasts: it took about 1.3x as long on an Intel Xeon (2.6x
  for channels first), and about 0.97x on an AMD EPYC (docs/performance.md).
  Subtracting the mean first matters: the compiled FusedBatchNormV3 (and
  `tf.nn.batch_normalization`) compute `x * s + (beta - mean * s)`,
  which rounds `mean * s` against `x * s` (a channel at 6e4 with variance
  1e-18 gives -0.84 where the answer is 0). The gradient (a frozen layer
  being fine-tuned) is the native `FusedBatchNormGradV3`.
* Inference of a convolution's output (`Conv2D` feeding the layer
  directly, the usual conv + BN + ReLU block): `FusedBatchNormV3`, which
  grappler's remapper fuses into the convolution (`_FusedConv2D`, with the
  ReLU after it): the normalization then costs no pass of its own, where
  the XLA transform would cost one and block the fusion (a conv + BN + ReLU
  CNN infers about 1.2x slower with it). The fused convolution computes
  `(conv - mean) * multiplier + beta` too: exact with large means (tested).
* Inference with a GPU: `FusedBatchNormV3` (cuDNN is one pass already, and
  XLA on a GPU needs CUDA's libdevice at run time).
* Synchronized training (statistics of the global batch, see
  `tf1_bn.bn.replicas`): the inference transform above on the global
  statistics, with a custom gradient that needs only two per-channel sums
  all-summed across replicas.

XLA compiles once per session for each distinct input shape, at its first
run (35 to 65 ms on a 2-core CPU; layers of the same shape share it). Set
TF1_BN_XLA=0 before building a graph to use `FusedBatchNormV3` instead;
tf1_bn does so itself, with a warning, when a probe finds XLA unusable.
"""
import functools
import os

import tensorflow as tf

from tf1_bn.common.log import warn_once
from tf1_bn.common.validation import FUSED_DTYPES

# No epsilon floor: cuDNN before 7.5 rejected epsilon below 1e-5, and
# tf.compat.v1.nn.fused_batch_norm raised it to 1.001e-5 for that; cuDNN 7.5
# lowered its minimum to 0, the TensorFlow releases this library supports
# (2.16+) build against cuDNN 8.9 or later, and none of the releases 2.12 to
# 2.21 floors epsilon any more.
# '0' turns the XLA inference transform off.
XLA_ENV = 'TF1_BN_XLA'


def gpu_present():
  return bool(tf.config.list_physical_devices('GPU'))


def fused_applies(dtype, axes, general=False):
  """Whether the fused kernel can compute this layer's path."""
  return not general and len(axes) == 1 and dtype in FUSED_DTYPES


def _to_4d(x, axis):
  """Reshapes `x` so the fused kernel normalizes `axis`; returns (x4, format)."""
  shape = x.shape
  rank = shape.rank
  channels = shape[axis]
  if axis == rank - 1:
    if rank == 4:
      return x, 'NHWC'
    return tf.reshape(x, [-1, 1, 1, channels]), 'NHWC'
  if rank == 4 and axis == 1:
    return x, 'NCHW'
  dynamic = tf.shape(x)
  outer = tf.reduce_prod(dynamic[:axis])
  inner = tf.reduce_prod(dynamic[axis + 1:])
  return tf.reshape(x, tf.stack([outer, channels, inner, 1])), 'NCHW'


def _from_4d(y, x):
  if y.shape.rank == x.shape.rank and y.shape.is_compatible_with(x.shape):
    return y
  restored = tf.reshape(y, tf.shape(x))
  restored.set_shape(x.shape)
  return restored


def _flat(param, dtype):
  return tf.reshape(tf.cast(param, dtype), [-1])


def _float32_parameters(x, axis, scale, offset, mean, variance):
  channels = x.shape[axis]
  scale = _flat(scale, tf.float32) if scale is not None else tf.ones([channels], tf.float32)
  offset = _flat(offset, tf.float32) if offset is not None else tf.zeros([channels], tf.float32)
  if mean is None:
    return scale, offset, tf.constant([], tf.float32), tf.constant([], tf.float32)
  return scale, offset, _flat(mean, tf.float32), _flat(variance, tf.float32)


def fused_normalize(x, axis, scale, offset, mean, variance, epsilon, training):
  """FusedBatchNormV3 on `x` of any rank; returns (y, batch_mean, batch_var).

  In training the kernel returns the batch mean and the sample
  (Bessel-corrected) batch variance; in inference it returns `mean` and
  `variance` unchanged.
  """
  scale, offset, mean, variance = _float32_parameters(
      x, axis, scale, offset, None if training else mean, variance)
  x4, data_format = _to_4d(x, axis)
  y, batch_mean, batch_variance = tf.raw_ops.FusedBatchNormV3(
      x=x4, scale=scale, offset=offset, mean=mean, variance=variance,
      epsilon=epsilon, exponential_avg_factor=1.0, data_format=data_format,
      is_training=training)[:3]
  return _from_4d(y, x), batch_mean, batch_variance


def shift_and_scale(x, mean, multiplier, offset):
  """`(x - mean) * multiplier + offset`: the inference transform.

  The mean is subtracted first, so a channel whose mean is large against its
  spread keeps its precision (`x * multiplier + (offset - mean * multiplier)`
  rounds two large products against each other).
  """
  y = (x - mean) * multiplier
  return y if offset is None else y + offset


def normalize(x, mean, variance, scale, offset, epsilon):
  """`(x - mean) * scale / sqrt(variance + epsilon) + offset`, broadcasting.

  The general path's formula, for training (batch statistics) and inference
  (moving statistics) alike; `scale` and `offset` may be None.
  """
  with tf.name_scope('batchnorm'):  # tf.nn.batch_normalization's scope, which slim's tests name
    multiplier = tf.math.rsqrt(variance + epsilon)
    if scale is not None:
      multiplier = multiplier * scale
    return shift_and_scale(x, mean, multiplier, offset)


def _channel_shape(data_format, channels):
  return [1, channels, 1, 1] if data_format == 'NCHW' else [channels]


@functools.lru_cache(maxsize=None)
def xla_inference_enabled():
  """Whether inference uses the XLA transform (probed once per process)."""
  if os.environ.get(XLA_ENV, '1') == '0' or gpu_present():
    return False
  try:
    with tf.Graph().as_default():
      probe = _xla_shift_and_scale(tf.ones([2, 1, 1, 3], tf.float16), tf.zeros([3]),
                                   tf.ones([3]), tf.zeros([3]), data_format='NHWC')
      with tf.compat.v1.Session() as sess:
        sess.run(probe)
  except Exception as error:  # any failure means: do not rely on XLA here
    warn_once(('xla',), f'tf1_bn: XLA is not usable here ({type(error).__name__}: '
              f'{str(error).splitlines()[0] if str(error) else ""}); inference uses '
              f'FusedBatchNormV3 instead. Set {XLA_ENV}=0 to skip this probe.')
    return False
  return True


@tf.function(jit_compile=True, autograph=False)
def _xla_shift_and_scale(x4, mean, multiplier, offset, data_format):
  """The inference transform on a 4-D `x`, which XLA compiles to one loop."""
  shape = _channel_shape(data_format, x4.shape[1 if data_format == 'NCHW' else 3])
  y = shift_and_scale(tf.cast(x4, tf.float32), tf.reshape(mean, shape),
                      tf.reshape(multiplier, shape), tf.reshape(offset, shape))
  return tf.cast(y, x4.dtype)


def _frozen_gradient(dy, x, axis, scale, mean, variance, epsilon):
  """dx, dscale, doffset of the inference transform: FusedBatchNormGradV3.

  With is_training=False the kernel takes NHWC only, so a channels-first
  layout is transposed, as TensorFlow's own gradient of FusedBatchNormV3 does.
  """
  x4, data_format = _to_4d(x, axis)
  dy4 = tf.reshape(dy, tf.shape(x4))
  if data_format == 'NCHW':
    x4, dy4 = tf.transpose(x4, [0, 2, 3, 1]), tf.transpose(dy4, [0, 2, 3, 1])
  dx4, dscale, doffset = tf.raw_ops.FusedBatchNormGradV3(
      y_backprop=dy4, x=x4, scale=scale, reserve_space_1=mean, reserve_space_2=variance,
      reserve_space_3=tf.constant([], tf.float32), epsilon=epsilon, data_format='NHWC',
      is_training=False)[:3]
  if data_format == 'NCHW':
    dx4 = tf.transpose(dx4, [0, 3, 1, 2])
  return _from_4d(dx4, x), dscale, doffset


def _inference_forward(x, axis, scale, offset, mean, variance, epsilon):
  """The inference output on the fastest kernel here, with no gradient of its
  own (float32 flat parameters)."""
  if not xla_inference_enabled():
    return fused_normalize(x, axis, scale, offset, mean, variance, epsilon, training=False)[0]
  x4, data_format = _to_4d(x, axis)
  multiplier = scale * tf.math.rsqrt(variance + epsilon)
  y = _xla_shift_and_scale(x4, mean, multiplier, offset, data_format=data_format)
  return _from_4d(y, x)


# Ops whose output grappler's remapper fuses with an inference FusedBatchNormV3 that reads it.
FUSABLE_PRODUCERS = ('Conv2D',)


def _fusable_into_producer(x, axis):
  """Whether `x` is a convolution's NHWC output that the remapper can fuse
  an inference FusedBatchNormV3 into."""
  return (x.op.type in FUSABLE_PRODUCERS and x.shape.rank == 4 and axis in (3, -1) and
          x.op.get_attr('data_format') == b'NHWC')


def fused_inference(x, axis, scale, offset, mean, variance, epsilon):
  """The inference output on the fastest kernel for this machine and this
  input; its gradient (a frozen layer being fine-tuned) is FusedBatchNormGradV3."""
  if not xla_inference_enabled() or _fusable_into_producer(x, axis):
    return fused_normalize(x, axis, scale, offset, mean, variance, epsilon, training=False)[0]
  scale, offset, mean, variance = _float32_parameters(x, axis, scale, offset, mean, variance)

  # The gradient of the compiled function would be compiled too, and XLA's
  # reductions are slow on CPU: keep the native gradient kernel.
  @tf.custom_gradient
  def transform(x, scale, offset):
    y = _inference_forward(x, axis, scale, offset, mean, variance, float(epsilon))
    y.set_shape(x.shape)

    def gradient(dy):
      return _frozen_gradient(dy, x, axis, scale, mean, variance, epsilon)

    return y, gradient

  return transform(x, scale, offset)


def fused_local_moments(x, axis):
  """This replica's batch mean and sample variance per channel of `axis`
  (float32), from the fused training kernel: float32 accumulation for 16-bit
  inputs; the kernel also writes a normalized output, discarded (epsilon
  only affects that). An empty batch gives NaN."""
  channels = x.shape[axis]
  x4, data_format = _to_4d(x, axis)
  _, mean, variance = tf.raw_ops.FusedBatchNormV3(
      x=x4, scale=tf.ones([channels], tf.float32), offset=tf.zeros([channels], tf.float32),
      mean=tf.constant([], tf.float32), variance=tf.constant([], tf.float32), epsilon=1e-3,
      exponential_avg_factor=1.0, data_format=data_format, is_training=True)[:3]
  return tf.stop_gradient(mean), tf.stop_gradient(variance)


def _synchronized_dx(dy4, x4, mean, multiplier, summed_dscale, summed_doffset, inverse_count,
                     rstd, data_format):
  """dx of batch norm over the global batch, from its two per-channel sums:
  multiplier * (dy - sum(dy) / N - xhat * sum(dy * xhat) / N)."""
  shape = _channel_shape(data_format, x4.shape[1 if data_format == 'NCHW' else 3])
  centered_factor = tf.reshape(multiplier * rstd * summed_dscale * inverse_count, shape)
  offset = tf.reshape(multiplier * summed_doffset * inverse_count, shape)
  dx = (tf.cast(dy4, tf.float32) * tf.reshape(multiplier, shape)
        - (tf.cast(x4, tf.float32) - tf.reshape(mean, shape)) * centered_factor - offset)
  return tf.cast(dx, x4.dtype)


_xla_synchronized_dx = tf.function(_synchronized_dx, jit_compile=True, autograph=False)


def synchronized_normalize(x, axis, scale, offset, mean, variance, count, epsilon,
                           gradient_all_sum):
  """Training-mode batch norm of `x` with the global batch's statistics.

  The forward pass is the inference transform on `mean` and `variance`
  (the global batch's, already all-summed; computing the replica's own
  moments took a pass of its own): one more pass over `x`. The gradient
  is the one of batch norm over the global batch of `count` values per
  channel,

      dx = gamma * rstd * (dy - S(dy) / N - xhat * S(dy * xhat) / N),

  where S sums over every replica: each replica computes its two sums with
  FusedBatchNormGradV3 and `gradient_all_sum` (built while the gradient is)
  adds them up. dgamma and dbeta are this replica's own sums; the strategy's
  or the towers' gradient aggregation adds those up as for any variable.
  """
  channels = x.shape[axis]
  scale, offset, mean, variance = _float32_parameters(x, axis, scale, offset, mean, variance)
  mean, variance, count = (tf.stop_gradient(t) for t in (mean, variance, count))

  @tf.custom_gradient
  def transform(x, scale, offset):
    y = _inference_forward(x, axis, scale, offset, mean, variance, float(epsilon))
    y.set_shape(x.shape)

    def gradient(dy):
      # Forward tensors reach the compiled function through an op of the
      # gradient graph: a cond's gradient finds its captures only that way.
      forward_x, forward_mean, forward_variance, forward_count, forward_scale = (
          tf.identity(t) for t in (x, mean, variance, count, scale))
      _, dscale, doffset = _frozen_gradient(dy, forward_x, axis, forward_scale, forward_mean,
                                            forward_variance, epsilon)
      summed = gradient_all_sum(tf.concat([dscale, doffset], 0))
      rstd = tf.math.rsqrt(forward_variance + epsilon)
      inverse_count = 1.0 / tf.maximum(tf.cast(forward_count, tf.float32), 1.0)
      x4, data_format = _to_4d(forward_x, axis)
      compute_dx = _xla_synchronized_dx if xla_inference_enabled() else _synchronized_dx
      dx4 = compute_dx(tf.reshape(dy, tf.shape(x4)), x4, forward_mean, forward_scale * rstd,
                       summed[:channels], summed[channels:], inverse_count, rstd,
                       data_format=data_format)
      return _from_4d(dx4, forward_x), dscale, doffset

    return y, gradient

  return transform(x, scale, offset)
