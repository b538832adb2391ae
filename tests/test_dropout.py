"""dropout on the training switch: both scaling conventions against numpy."""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn

v1 = tf.compat.v1


def _run(rate, training, scale_at_inference, data, feed_training=None, noise_shape=None):
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, data.shape)
    y = tf1_bn.dropout(x, rate, training=training, seed=3, noise_shape=noise_shape,
                       scale_at_inference=scale_at_inference)
    feed = {x: data}
    if feed_training is not None:
      feed[tf1_bn.training_placeholder() if training is None else training] = feed_training
    with v1.Session() as sess:
      return sess.run(y, feed)


@pytest.mark.parametrize('scale_at_inference', [False, True])
def test_training_masks_and_scales(scale_at_inference):
  data = np.random.RandomState(0).uniform(1, 2, [200, 50]).astype(np.float32)
  out = _run(0.3, True, scale_at_inference, data)
  kept = out != 0
  factor = 1.0 if scale_at_inference else 1 / 0.7
  np.testing.assert_allclose(out[kept], data[kept] * factor, rtol=1e-6)
  # 10000 Bernoulli(0.7) draws: 0.7 +- 5 standard deviations.
  assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.21 / kept.size)


@pytest.mark.parametrize('scale_at_inference,factor', [(False, 1.0), (True, 0.75)])
@pytest.mark.parametrize('training', [False, None, 'placeholder'])
def test_inference_is_deterministic(training, scale_at_inference, factor):
  data = np.random.RandomState(1).randn(6, 5).astype(np.float32)
  if training == 'placeholder':
    with tf.Graph().as_default():
      switch = v1.placeholder(tf.bool, [])
      x = tf.constant(data)
      y = tf1_bn.dropout(x, 0.25, training=switch, scale_at_inference=scale_at_inference)
      with v1.Session() as sess:
        out = sess.run(y, {switch: False})
  else:
    out = _run(0.25, training, scale_at_inference, data)
  np.testing.assert_allclose(out, data * factor, rtol=1e-7)


def test_default_placeholder_switches_to_training():
  data = np.ones([100, 100], np.float32)
  out = _run(0.5, None, False, data, feed_training=True)
  assert set(np.unique(out)) == {0.0, 2.0}


def test_noise_shape_drops_whole_columns():
  data = np.ones([40, 30], np.float32)
  out = _run(0.5, True, False, data, noise_shape=[1, 30])
  assert all(len(np.unique(out[:, j])) == 1 for j in range(30))


def test_expected_value_is_preserved_by_both_conventions():
  data = np.full([400, 250], 3.0, np.float32)
  for scale_at_inference in (False, True):
    train = _run(0.4, True, scale_at_inference, data).mean()
    infer = _run(0.4, False, scale_at_inference, data).mean()
    assert abs(train - infer) / infer < 0.02


def test_rate_zero_is_identity():
  data = np.random.RandomState(2).randn(4, 4).astype(np.float32)
  np.testing.assert_array_equal(_run(0.0, True, False, data), data)


@pytest.mark.parametrize('rate,error', [(1.0, ValueError), (-0.1, ValueError), (1.5, ValueError),
                                        ('0.5', TypeError)])
def test_bad_rate(rate, error):
  with tf.Graph().as_default() as g:
    x = v1.placeholder(tf.float32, [None, 3])
    count = len(g.get_operations())
    with pytest.raises(error, match='rate'):
      tf1_bn.dropout(x, rate)
    assert len(g.get_operations()) == count


def test_bad_training():
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 3])
    with pytest.raises(TypeError, match='training'):
      tf1_bn.dropout(x, 0.5, training=v1.placeholder(tf.int32, []))
