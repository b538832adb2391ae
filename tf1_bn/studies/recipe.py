"""The hand-written TF1 recipe people copy (moments + EMA + tf.cond), kept as a
reference: the benchmark times it, the pitfalls reproduce its traps, and the
checkpoint tools read its variable names."""
import tensorflow as tf

v1 = tf.compat.v1


def classic_recipe(x, training, name='bn', moving_decay=0.9, eps=1e-5, ema_name='ema'):
  """The recipe as the blog posts give it, channels last.

  Its moving averages are ExponentialMovingAverage shadows of the moments'
  tensors, named after their ops: `<name>/<name>/moments/Squeeze/<ema_name>`
  (mean) and `.../Squeeze_1/<ema_name>` (variance), created inside the
  cond's training branch and starting at 0.
  """
  shape = x.shape
  params_shape = shape[-1:]
  with v1.variable_scope(name):
    gamma = v1.get_variable('gamma', params_shape, initializer=v1.constant_initializer(1))
    beta = v1.get_variable('beta', params_shape, initializer=v1.constant_initializer(0))
    axes = list(range(len(shape) - 1))
    batch_mean, batch_var = tf.nn.moments(x, axes, name='moments')
    ema = v1.train.ExponentialMovingAverage(moving_decay, name=ema_name)

    def mean_var_with_update():
      ema_apply_op = ema.apply([batch_mean, batch_var])
      with tf.control_dependencies([ema_apply_op]):
        return tf.identity(batch_mean), tf.identity(batch_var)

    mean, var = tf.cond(tf.equal(training, True), mean_var_with_update,
                        lambda: (ema.average(batch_mean), ema.average(batch_var)))
    return tf.nn.batch_normalization(x, mean, var, beta, gamma, eps)
