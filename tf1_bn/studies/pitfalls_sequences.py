"""`tf1-bn pitfalls` items for sequences: BN inside a while_loop, and padding
in the batch statistics. Each is an item of `pitfall_items.pitfall` (it
reproduces the problem on the installed TensorFlow and shows tf1_bn's result
against numpy); `pitfalls.py` lists them after its own items.
"""
import numpy as np

from tf1_bn.studies.pitfall_items import error_text, pitfall, tf_modules

LOOP_STEPS, LOOP_BATCH, LOOP_CHANNELS = 3, 4, 2
LOOP_MOMENTUM = 0.9


def _loop_data(seed=0):
  rng = np.random.RandomState(seed)
  return (rng.randn(LOOP_STEPS, LOOP_BATCH, LOOP_CHANNELS) * 2 +
          rng.randn(LOOP_STEPS, 1, LOOP_CHANNELS) * 3).astype(np.float32)


def _loop_model(tf, v1, x, layer):
  """A while_loop whose body batch-normalizes x[i]; returns the loss."""
  def body(i, total):
    return i + 1, total + tf.reduce_sum(tf.square(layer(x[i])))
  _, loss = tf.while_loop(lambda i, _: i < LOOP_STEPS, body, [0, 0.0])
  return loss


@pitfall('BN inside a tf.while_loop: the UPDATE_OPS idiom fails', needs_legacy=True)
def bn_in_while_loop(outcome):
  import tf1_bn
  tf, v1 = tf_modules()
  data = _loop_data()
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, data.shape)
    loss = _loop_model(tf, v1, x, lambda h: v1.layers.batch_normalization(
        h, training=True, momentum=LOOP_MOMENTUM, name='bn'))

    def build_train_op():
      with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        return v1.train.GradientDescentOptimizer(0.1).minimize(loss)

    legacy_error = error_text(build_train_op)
  outcome.reproduced = bool(legacy_error) and 'is not an element of this graph' in legacy_error
  lines = (legacy_error or '').splitlines()
  outcome.evidence = (
      'tf.compat.v1.layers.batch_normalization(x[i], training=True) in a tf.while_loop body, '
      'then with tf.control_dependencies(tf.get_collection(UPDATE_OPS)): '
      'optimizer.minimize(loss)\n'
      f'{lines[0] if lines else "no error"} ... {lines[-1] if len(lines) > 1 else ""}\n'
      '(the update op was put into UPDATE_OPS from inside the loop body: an op of the '
      "loop's frame cannot be fetched or depended on from outside it)")
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, data.shape)
    loss = _loop_model(tf, v1, x, lambda h: tf1_bn.batch_normalization(
        h, training=True, momentum=LOOP_MOMENTUM, name='bn'))
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
      train = v1.train.GradientDescentOptimizer(0.0).minimize(loss)
    tf1_bn.check_update_ops(train)
    moving = [v for v in v1.global_variables() if v.op.name == 'bn/moving_mean']
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(train, {x: data})
      got = sess.run(moving[0])
  expected = np.zeros(LOOP_CHANNELS)
  for step in data.astype(np.float64):
    expected = LOOP_MOMENTUM * expected + (1 - LOOP_MOMENTUM) * step.mean(0)
  error = float(np.max(np.abs(got - expected)))
  outcome.remedy = (
      'tf1_bn.batch_normalization in the same body, same train op: it builds and runs. Inside '
      'a loop the update is made in place at every iteration (nothing goes into UPDATE_OPS), '
      'one iteration after the other, each with its own batch statistics: the moving mean '
      f'after one step is the {LOOP_STEPS}-step recurrence, max |error| vs numpy {error:.1e}.')
  outcome.remedy_ok = error < 1e-5
  outcome.details = dict(moving_mean=got.tolist(), expected=expected.tolist())


PADDING_BATCH, PADDING_STEPS = 4, 6


@pitfall('Padding shifts the batch statistics of sequences')
def padding_shifts_statistics(outcome):
  import tf1_bn
  tf, v1 = tf_modules()
  rng = np.random.RandomState(0)
  # Real values around 3.0; half of the positions are padding (zeros).
  lengths = np.array([6, 3, 2, 1])
  real = (3.0 + rng.randn(PADDING_BATCH, PADDING_STEPS, 1)).astype(np.float32)
  keep = np.arange(PADDING_STEPS)[None, :] < lengths[:, None]
  padded = real * keep[:, :, None]
  real_values = real[keep].astype(np.float64)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, padded.shape)
    mean, variance = tf.nn.moments(x, [0, 1])
    masked = tf1_bn.bn_layer(x, training=True, name='bn', moving_decay=0.0,
                             mask=tf.sequence_mask(lengths, PADDING_STEPS), updates='inline')
    moving = [v for v in v1.global_variables() if v.op.name.startswith('bn/moving_')]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      plain_mean, plain_variance = sess.run([mean, variance], {x: padded})
      out = sess.run(masked, {x: padded})
      moving_mean, moving_variance = sess.run(moving)
  outcome.reproduced = abs(float(plain_mean[0]) - real_values.mean()) > 0.5
  outcome.evidence = (
      f'{int(keep.sum())} real positions of {keep.size} (lengths {lengths.tolist()}): the real '
      f'values have mean {real_values.mean():.3f} and variance {real_values.var():.3f}; '
      f'tf.nn.moments over the padded [batch, time, 1] tensor (what an unmasked BN layer uses) '
      f'gives mean {float(plain_mean[0]):.3f} and variance {float(plain_variance[0]):.3f}, and '
      'every real position is normalized with those.')
  expected = (real - real_values.mean()) / np.sqrt(real_values.var() + 1e-5)
  error = float(np.max(np.abs(out[keep] - expected[keep])))
  outcome.remedy = (
      'tf1_bn.bn_layer(x, mask=tf.sequence_mask(lengths)) uses the real positions only: batch '
      f'mean {float(moving_mean[0]):.3f}, variance {float(moving_variance[0]):.3f} (moving '
      f'statistics with decay 0); outputs at the real positions max |error| vs numpy '
      f'{error:.1e}.')
  outcome.remedy_ok = (abs(float(moving_mean[0]) - real_values.mean()) < 1e-5 and
                       abs(float(moving_variance[0]) - real_values.var()) < 1e-4 and
                       error < 1e-4)
  outcome.details = dict(lengths=lengths.tolist(), padded=padded[:, :, 0].tolist(),
                         real_mean=real_values.mean(), padded_mean=float(plain_mean[0]),
                         padded_variance=float(plain_variance[0]),
                         masked_mean=float(moving_mean[0]),
                         masked_variance=float(moving_variance[0]))


PITFALLS = (bn_in_while_loop, padding_shifts_statistics)
