"""The fast kernels behind `core.build`; which one runs is a speed choice only.

Both apply where the fused kernel computes the same thing as the general
path: one normalized axis, float16, bfloat16 or float32 input.

* Training: `FusedBatchNormV3`, reached for any rank and any single axis by a
  reshape to 4-D (NHWC when the axis is last, NCHW otherwise).
* Inference on CPU: the same `FusedBatchNormV3`, compiled by XLA, which
  lowers `(x - mean) * gamma * rsqrt(variance + epsilon) + beta` to one loop
  over `x` (read once, written once, float16 converted in registers).
  TensorFlow's own CPU kernel computes that formula with three broadcasts and
  takes about 1.3x as long, 2.6x for channels first. The gradient (a frozen
  layer being fine-tuned) is the native `FusedBatchNormGradV3`, as before.
* Inference with a GPU: `FusedBatchNormV3` (cuDNN is one pass already, and
  XLA on a GPU needs CUDA's libdevice at run time).

XLA compiles once per session for each distinct input shape, at its first
run (35 to 65 ms on a 2-core CPU; layers of the same shape share it). Set
TF1_BN_XLA=0 before building a graph to use `FusedBatchNormV3` instead;
tf1_bn does so itself, with a warning, when a probe finds XLA unusable.
"""
import functools
import os

import tensorflow as tf

from tf1_bn.validation import FUSED_DTYPES

# cuDNN rejects epsilon below 1e-5; float32(1e-5) rounds below it, so TF
# floors at 1.001e-5 (tf.compat.v1.nn.fused_batch_norm does the same).
CUDNN_MIN_EPSILON = 1.001e-5
# '0' turns the XLA inference transform off.
XLA_ENV = 'TF1_BN_XLA'


def gpu_present():
  return bool(tf.config.list_physical_devices('GPU'))


def fused_applies(dtype, axes, epsilon, general=False):
  """Whether the fused kernel can compute this layer's training path."""
  if general or len(axes) != 1 or dtype not in FUSED_DTYPES:
    return False
  return epsilon >= CUDNN_MIN_EPSILON or not gpu_present()


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
  if not training and epsilon < CUDNN_MIN_EPSILON and gpu_present():
    # var + eps is what matters: move the difference into the variance.
    variance = variance + (epsilon - CUDNN_MIN_EPSILON)
    epsilon = CUDNN_MIN_EPSILON
  x4, data_format = _to_4d(x, axis)
  y, batch_mean, batch_variance = tf.raw_ops.FusedBatchNormV3(
      x=x4, scale=scale, offset=offset, mean=mean, variance=variance,
      epsilon=epsilon, exponential_avg_factor=1.0, data_format=data_format,
      is_training=training)[:3]
  return _from_4d(y, x), batch_mean, batch_variance


@functools.lru_cache(maxsize=None)
def xla_inference_enabled():
  """Whether inference uses the XLA transform (probed once per process)."""
  if os.environ.get(XLA_ENV, '1') == '0' or gpu_present():
    return False
  try:
    with tf.Graph().as_default():
      probe = _xla_fused_inference(tf.ones([2, 3], tf.float16), tf.ones([3]), tf.zeros([3]),
                                   tf.zeros([3]), tf.ones([3]), axis=1, epsilon=1e-3)
      with tf.compat.v1.Session() as sess:
        sess.run(probe)
  except Exception as error:  # any failure means: do not rely on XLA here
    from tf1_bn import core  # core imports this module
    core.warn_once(('xla',), f'tf1_bn: XLA is not usable here ({type(error).__name__}: '
                   f'{str(error).splitlines()[0] if str(error) else ""}); inference uses '
                   f'FusedBatchNormV3 instead. Set {XLA_ENV}=0 to skip this probe.')
    return False
  return True


@tf.function(jit_compile=True, autograph=False)
def _xla_fused_inference(x, scale, offset, mean, variance, axis, epsilon):
  """FusedBatchNormV3 in inference, which XLA lowers to one fused loop."""
  return fused_normalize(x, axis, scale, offset, mean, variance, epsilon, training=False)[0]


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


def _xla_inference(x, axis, scale, offset, mean, variance, epsilon):
  scale, offset, mean, variance = _float32_parameters(x, axis, scale, offset, mean, variance)

  # The gradient of the compiled function would be compiled too, and XLA's
  # reductions are slow on CPU: keep the native gradient kernel.
  @tf.custom_gradient
  def transform(x, scale, offset):
    y = _xla_fused_inference(x, scale, offset, mean, variance, axis=axis,
                             epsilon=float(epsilon))
    y.set_shape(x.shape)

    def gradient(dy):
      return _frozen_gradient(dy, x, axis, scale, mean, variance, epsilon)

    return y, gradient

  return transform(x, scale, offset)


def fused_inference(x, axis, scale, offset, mean, variance, epsilon):
  """The inference output on the fastest kernel for this machine."""
  if xla_inference_enabled():
    return _xla_inference(x, axis, scale, offset, mean, variance, epsilon)
  return fused_normalize(x, axis, scale, offset, mean, variance, epsilon, training=False)[0]
