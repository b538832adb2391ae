"""`bn_layer`: the classic TF1 batch-norm recipe as a maintained function."""
import numpy as np
import tensorflow as tf

from tf1_bn.bn import core
from tf1_bn.bn import loops
from tf1_bn.bn import masking
from tf1_bn.bn import steps
from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v


def _float32_decay_factor(decay):
  # ExponentialMovingAverage converts `decay` to float32 and subtracts in
  # float32; doing the same keeps bn_layer's statistics identical to it.
  return float(np.float32(1.0) - np.float32(decay))


def bn_layer(inputs, training=None, name='bn', moving_decay=0.9, eps=1e-5, axis=-1,
             center=True, scale=True, trainable=True, updates='collection', reuse=None,
             fused=None, synchronized=False, mask=None, step=None, max_steps=None):
  """Batch normalization for TF1 graph-mode models, driven by a training switch.

  y = gamma * (x - mean) / sqrt(variance + eps) + beta, per channel of `axis`.

  When `training` is true, `mean` and `variance` are the batch's moments over
  every axis except `axis` (population variance, as `tf.nn.moments`), and the
  moving statistics follow them:
  `moving -= (1 - moving_decay) * (moving - batch)`, the
  `tf.compat.v1.train.ExponentialMovingAverage(decay=moving_decay)` rule. When
  it is false, the moving statistics normalize and no batch statistic is
  computed. A tensor `training` builds both paths under one `tf.cond`.

  Variables, under `tf.compat.v1.variable_scope(name, reuse=reuse)`:
  `<scope>/gamma` (ones) and `<scope>/beta` (zeros), trainable unless
  `trainable=False`; `<scope>/moving_mean` (zeros) and
  `<scope>/moving_variance` (ones), global and non-trainable, saved by a
  default `tf.compat.v1.train.Saver()`. An enclosing name_scope does not
  change these names. The moving statistics start at mean 0 / variance 1
  rather than being zero-debiased: inference before any update is then the
  identity transform (never a division by sqrt(eps)), the values are the ones
  tf.layers and slim start from, and checkpoints need no helper variables.

  Pitfalls this function removes from the hand-written recipe:
  * the moving averages are created once, outside any control flow, with
    stable names (the recipe's `ema.apply` inside `tf.cond` gives
    `bn/bn/moments/Squeeze/ExponentialMovingAverage` names, and raised
    "Initializer for variable ... is from inside a control-flow construct" on
    older TensorFlow); `global_variables_initializer()` needs no feed;
  * inference computes no batch moments (the recipe computed them in both
    branches, about 5x slower than a fused kernel);
  * reusing the layer (`reuse=True` or `tf.compat.v1.AUTO_REUSE`) for an eval
    tower shares every variable and creates none;
  * an empty batch or non-finite batch statistics never change the moving
    statistics;
  * the moving statistics get no gradient (`tf.gradients` gives None), so an
    optimizer over every variable creates no slots for them;
  * a layer called more than once per step (`reuse`: a GAN discriminator on
    real then fake batches, siamese towers) is deterministic: every call's
    forward pass reads the start-of-step moving statistics, and with
    `updates='collection'` call k's update runs after call k-1's, from the
    value it left (the result of the calls as consecutive steps). With
    `updates='inline'` independent calls are not chained (that would make
    computing one call's output compute the other's) and their order is the
    executor's, as with the legacy layers. See `tf1_bn.bn.call_order`.

  Put BN after a linear layer built with `use_bias=False`: beta plays the
  role of the bias, and a bias before BN is cancelled by the mean subtraction.

  Args:
    inputs: a float tensor of rank 2 to 5 (float16 and bfloat16 keep their
      variables and statistics in float32 and return the input dtype).
    training: a Python bool (only that path is built), a scalar tf.bool
      tensor such as a placeholder, or None for
      `tf1_bn.training_placeholder()`, which defaults to False: inference needs
      no feed, a training step feeds `{tf1_bn.training_placeholder(): True}`.
    name: the variable scope.
    moving_decay: the moving average's decay, in [0, 1].
    eps: added to the variance, finite and > 0.
    axis: the channel axis, or a list of axes; -1 for NHWC and dense inputs,
      1 for NCHW. Its size must be static.
    center, scale: create beta / gamma.
    trainable: False freezes the layer (the Keras 2.1.3+ meaning): gamma and
      beta leave TRAINABLE_VARIABLES, the moving statistics normalize and are
      never updated, whatever `training` says. (tf.compat.v1.layers instead
      keeps normalizing a training batch with its own statistics; use
      `tf1_bn.batch_normalization` for that.)
    updates: 'collection' puts one update op per call into
      `tf.compat.v1.GraphKeys.UPDATE_OPS` (run it with your train op:
      `tf1_bn.minimize` does); 'inline' makes the output depend on the update,
      as the classic recipe does, and adds nothing to UPDATE_OPS. Inside a
      loop body (tf.while_loop, dynamic_rnn, map_fn, scan) the update is
      always inline, once per iteration in iteration order: see
      `tf1_bn.bn.loops`.
    reuse: as for `tf.compat.v1.variable_scope`.
    fused: None uses the fused kernel where it applies (one channel axis,
      float32 / 16-bit input); False forces moments plus the normalization
      formula. Both compute the same values.
    synchronized: True computes the training statistics over the global
      batch of every replica (a `tf.distribute` replica context, or
      `tf1_bn.tower`); on one device it is local BN and adds no collective.
      See `tf1_bn.bn.replicas`.
    mask: None, or a bool / 0-1 tensor of the input's leading dimensions
      (channel axis excluded), e.g. `[B, T]` from `tf.sequence_mask`: the
      batch statistics and their moving averages use the unmasked positions
      only, and every position is normalized with them. See
      `tf1_bn.bn.masking`.
    step, max_steps: per-time-step statistics (given together): moving
      mean and variance of shape [max_steps, C], row min(step, max_steps - 1)
      used and updated; `step` a Python int or a scalar integer tensor.
      See `tf1_bn.bn.steps`.

  Returns:
    The normalized tensor, same shape and dtype as `inputs`.
  """
  v.check_graph_mode('bn_layer')
  shape, dtype = v.static_shape_and_dtype(inputs)
  v.check_float_dtype(dtype)
  v.check_rank(shape, min_rank=v.BN_LAYER_MIN_RANK, max_rank=v.BN_LAYER_MAX_RANK)
  axes = v.normalize_axis(axis, shape)
  training = switch_lib.check_training(training)
  decay = v.check_probability(moving_decay, 'moving_decay')
  eps = v.check_positive(eps, 'eps')
  v.check_choice(updates, v.UPDATE_STYLES, 'updates')
  center, scale = v.check_bool(center, 'center'), v.check_bool(scale, 'scale')
  trainable = v.check_bool(trainable, 'trainable')
  reuse = v.check_reuse(reuse)
  if fused is not None:
    v.check_bool(fused, 'fused')
  synchronized = v.check_synchronized(synchronized, in_loop=loops.in_loop())
  mask = masking.check_mask(mask, shape, axes)
  step, max_steps = steps.check_step(step, max_steps)
  v.check_name(name, optional=False)

  param_shape = [shape[a] for a in axes]
  param_dtype = tf.float64 if dtype == tf.float64 else tf.float32
  with tf.compat.v1.variable_scope(name, reuse=reuse):
    call, builds_update = core.register_replicas(int(np.prod(param_shape)), synchronized)
    x = tf.convert_to_tensor(inputs)
    with tf.control_dependencies(None):
      gamma = tf.compat.v1.get_variable(
          'gamma', param_shape, param_dtype, tf.compat.v1.ones_initializer(),
          trainable=trainable) if scale else None
      beta = tf.compat.v1.get_variable(
          'beta', param_shape, param_dtype, tf.compat.v1.zeros_initializer(),
          trainable=trainable) if center else None
      statistics_shape = steps.statistics_shape(param_shape, max_steps)
      moving_mean = tf.compat.v1.get_variable(
          'moving_mean', statistics_shape, param_dtype, tf.compat.v1.zeros_initializer(),
          trainable=False)
      moving_variance = tf.compat.v1.get_variable(
          'moving_variance', statistics_shape, param_dtype, tf.compat.v1.ones_initializer(),
          trainable=False)
    # A frozen layer normalizes with the moving statistics, whatever `training`.
    training = False if not trainable else switch_lib.resolve_training(training)
    moving = core.MovingStatistics(moving_mean, moving_variance,
                                   _float32_decay_factor(decay), 'population',
                                   slot=steps.slot(step, max_steps))
    outputs, update = core.build(x, axes=axes, training=training, gamma=gamma, beta=beta,
                                 moving=moving, epsilon=eps, fused=fused, update=builds_update,
                                 call=call, synchronized=synchronized, mask=mask,
                                 in_place=updates == 'inline')
    return core.attach_update(outputs, update, updates)
