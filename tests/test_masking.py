"""mask= on the three front-ends: statistics over the unmasked positions only.

References: numpy float64 (outputs, gradients, moving statistics) and Keras
3's BatchNormalization(x, training=True, mask=m) run eagerly on the same
values.
"""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from tests import reference

v1 = tf.compat.v1
EPS = 1e-3
RTOL = 1e-5
SHAPE = (4, 5, 3)
LENGTHS = np.array([5, 2, 3, 1])

# front-end -> (builder, moving decay, variance convention on a rank-3 input)
FRONT_ENDS = {
    'bn_layer': (lambda x, **kw: tf1_bn.bn_layer(x, eps=EPS, moving_decay=0.9, **kw), 0.9),
    'batch_normalization': (lambda x, **kw: tf1_bn.batch_normalization(
        x, epsilon=EPS, momentum=0.9, **kw), 0.9),
    'batch_norm': (lambda x, training=True, **kw: tf1_bn.batch_norm(
        x, epsilon=EPS, decay=0.9, scale=True, is_training=training, **kw), 0.9),
}


def _data(seed=0, shape=SHAPE):
  rng = np.random.RandomState(seed)
  x = (rng.randn(*shape) * 2 + 3).astype(np.float32)
  upstream = rng.randn(*shape).astype(np.float32)
  gamma = (rng.rand(shape[-1]) + 0.5).astype(np.float32)
  beta = rng.randn(shape[-1]).astype(np.float32)
  return x, upstream, gamma, beta


def _sequence_mask(lengths, steps):
  return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def masked_reference(x, mask, gamma, beta, upstream, eps):
  """Masked BN in float64: outputs, the unmasked mean / population variance /
  count, and the gradients of sum(upstream * y) for x, gamma and beta."""
  x = x.astype(np.float64)
  w = np.asarray(mask, np.float64).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
  w = np.broadcast_to(w, x.shape)
  axes = tuple(range(x.ndim - 1))
  count = w.sum(axes)[0]
  mean = (w * x).sum(axes) / max(count, 1)
  var = (w * (x - mean) ** 2).sum(axes) / max(count, 1)
  if count == 0:
    mean, var = np.zeros_like(mean), np.zeros_like(var)
  rstd = 1 / np.sqrt(var + eps)
  xhat = (x - mean) * rstd
  y = gamma * xhat + beta
  g = upstream.astype(np.float64)
  dxhat = g * gamma
  dvar = (dxhat * (x - mean)).sum(axes) * -0.5 * rstd ** 3
  dmean = -(dxhat * rstd).sum(axes)
  n = max(count, 1)
  dx = dxhat * rstd + w * dmean / n + w * dvar * 2 * (x - mean) / n
  return y, mean, var, count, dx, (g * xhat).sum(axes), g.sum(axes)


def _run_layer(build, x, mask, gamma, beta, upstream, training=True, steps=1):
  with tf.Graph().as_default():
    xp = v1.placeholder(tf.float32, [None] + list(x.shape[1:]))
    mp = None if mask is None else v1.placeholder(tf.as_dtype(mask.dtype),
                                                  [None] * mask.ndim)
    y = build(xp, mask=mp, training=training) if build is not None else None
    with v1.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
      step = tf.no_op()
    variables = {var.op.name.split('/')[-1]: var for var in v1.global_variables()}
    grads = tf.gradients(y, [xp, variables['gamma'], variables['beta']], upstream)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      variables['gamma'].load(gamma, sess)
      variables['beta'].load(beta, sess)
      feed = {xp: x} if mp is None else {xp: x, mp: mask}
      for _ in range(steps):
        out = sess.run([y] + grads + [step], feed)[:4]
      moving = sess.run([variables['moving_mean'], variables['moving_variance']])
  return out, moving


@pytest.mark.parametrize('front_end', sorted(FRONT_ENDS))
@pytest.mark.parametrize('mask_kind', ['sequence', 'examples', 'float01'])
def test_matches_numpy(front_end, mask_kind):
  build, decay = FRONT_ENDS[front_end]
  x, upstream, gamma, beta = _data()
  if mask_kind == 'sequence':
    mask = _sequence_mask(LENGTHS, SHAPE[1])
  elif mask_kind == 'examples':
    mask = np.array([True, False, True, True])
  else:
    mask = _sequence_mask(LENGTHS, SHAPE[1]).astype(np.float32)
  (y, dx, dgamma, dbeta), (moving_mean, moving_var) = _run_layer(
      build, x, mask, gamma, beta, upstream)
  ry, rmean, rvar, _, rdx, rdgamma, rdbeta = masked_reference(x, mask, gamma, beta, upstream,
                                                              EPS)
  for actual, expected in ((y, ry), (dx, rdx), (dgamma, rdgamma), (dbeta, rdbeta),
                           (moving_mean, (1 - decay) * rmean),
                           (moving_var, decay + (1 - decay) * rvar)):
    assert reference.max_relative_error(actual, expected) < RTOL


def test_keras3_reference():
  keras = pytest.importorskip('keras')
  x, _, _, _ = _data(1)
  mask = _sequence_mask(LENGTHS, SHAPE[1])
  layer = keras.layers.BatchNormalization(momentum=0.9, epsilon=EPS)
  expected = layer(tf.constant(x), training=True, mask=tf.constant(mask)).numpy()
  expected_moving = (layer.moving_mean.numpy(), layer.moving_variance.numpy())
  build, _ = FRONT_ENDS['bn_layer']
  ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
  (y, _, _, _), moving = _run_layer(build, x, mask, ones, zeros, np.ones_like(x))
  assert reference.max_relative_error(y, expected) < RTOL
  for actual, wanted in zip(moving, expected_moving):
    assert reference.max_relative_error(actual, wanted) < RTOL


def test_fused_drop_in_keeps_its_bessel_convention_with_the_unmasked_count():
  # tf.layers on a 4-D input uses its fused semantics: Bessel-corrected
  # variance in the moving average, with n = the unmasked values per channel.
  x, upstream, gamma, beta = _data(2, (4, 5, 2, 3))
  mask = _sequence_mask(LENGTHS, 5)
  build, decay = FRONT_ENDS['batch_normalization']
  (y, _, _, _), (_, moving_var) = _run_layer(build, x, mask, gamma, beta, upstream)
  ry, _, rvar, count, *_ = masked_reference(x, mask, gamma, beta, upstream, EPS)
  assert reference.max_relative_error(y, ry) < RTOL
  expected = decay + (1 - decay) * rvar * count / (count - 1)
  assert reference.max_relative_error(moving_var, expected) < RTOL


@pytest.mark.parametrize('front_end', sorted(FRONT_ENDS))
def test_all_masked_batch_changes_nothing_and_stays_finite(front_end):
  build, _ = FRONT_ENDS[front_end]
  x, upstream, gamma, beta = _data(3)
  mask = np.zeros(SHAPE[:2], bool)
  (y, dx, dgamma, dbeta), (moving_mean, moving_var) = _run_layer(
      build, x, mask, gamma, beta, upstream)
  for value in (y, dx, dgamma, dbeta):
    assert np.all(np.isfinite(value))
  np.testing.assert_array_equal(moving_mean, np.zeros(3))
  np.testing.assert_array_equal(moving_var, np.ones(3))
  ry, *_ = masked_reference(x, mask, gamma, beta, upstream, EPS)
  assert reference.max_relative_error(y, ry) < RTOL


def test_inference_ignores_the_mask():
  build, _ = FRONT_ENDS['bn_layer']
  x, upstream, gamma, beta = _data(4)
  (y, _, _, _), _ = _run_layer(build, x, _sequence_mask(LENGTHS, 5), gamma, beta, upstream,
                               training=False)
  expected = reference.normalize(x, np.zeros(3), np.ones(3), gamma, beta, EPS, -1)
  assert reference.max_relative_error(y, expected) < RTOL


@pytest.mark.parametrize('front_end', sorted(FRONT_ENDS))
@pytest.mark.parametrize('mask, message', [
    (np.ones([4, 5, 3], bool), 'leading dimensions'),
    (np.ones([4, 6], bool), 'does not match'),
    (np.array([['a'] * 5] * 4), 'must be'),
])
def test_bad_mask_is_refused_before_building(front_end, mask, message):
  build, _ = FRONT_ENDS[front_end]
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [4, 5, 3])
    with pytest.raises((ValueError, TypeError), match=message):
      build(x, mask=mask, training=True)
    assert not v1.global_variables()
    assert not graph.get_collection(v1.GraphKeys.UPDATE_OPS)


def test_mask_shape_checked_when_the_op_runs():
  build, _ = FRONT_ENDS['bn_layer']
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, None, 3])
    m = v1.placeholder(tf.bool, [None, None])
    y = build(x, mask=m, training=True)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      with pytest.raises(tf.errors.InvalidArgumentError, match='mask'):
        sess.run(y, {x: np.ones([4, 5, 3]), m: np.ones([4, 4], bool)})


def test_recompute_statistics_uses_the_unmasked_positions():
  x_value, _, _, _ = _data(5)
  mask = _sequence_mask(LENGTHS, SHAPE[1])
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 5, 3])
    m = v1.placeholder(tf.bool, [None, 5])
    tf1_bn.bn_layer(x, mask=m, name='bn')
    variables = {var.op.name: var for var in v1.global_variables()}
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      tf1_bn.recompute_statistics(sess, [{x: x_value[:2], m: mask[:2]},
                                         {x: x_value[2:], m: mask[2:]}])
      mean, variance = sess.run([variables['bn/moving_mean'], variables['bn/moving_variance']])
  real = x_value[mask].astype(np.float64)
  assert reference.max_relative_error(mean, real.mean(0)) < RTOL
  assert reference.max_relative_error(variance, real.var(0)) < RTOL
