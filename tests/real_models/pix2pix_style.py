"""A pix2pix-style conditional GAN written with tf.compat.v1.layers, the TF1 way.

Test input, not tf1_bn code: it follows the structure of the widely copied
TF1 pix2pix ports (affinelayer/pix2pix-tensorflow and its descendants): a
U-Net generator of strided `conv2d` encoders and `conv2d_transpose`
decoders with `batch_normalization(training=True)`, leaky ReLU, `dropout`
in the first decoders and skip connections; a PatchGAN discriminator whose
variables are shared between the real and the fake pair through
`variable_scope(..., reuse=True)`; the GAN + L1 losses and two Adam
optimizers whose train ops depend on UPDATE_OPS. Sizes are tiny.
"""
import tensorflow as tf

layers = tf.compat.v1.layers
EPS = 1e-12


def lrelu(x, a=0.2):
  return tf.maximum(a * x, x)


def batchnorm(x):
  return layers.batch_normalization(x, axis=3, epsilon=1e-5, momentum=0.1, training=True,
                                    gamma_initializer=tf.compat.v1.random_normal_initializer(
                                        1.0, 0.02))


def gen_conv(x, channels):
  init = tf.compat.v1.random_normal_initializer(0, 0.02)
  return layers.conv2d(x, channels, kernel_size=4, strides=(2, 2), padding='same',
                       kernel_initializer=init)


def gen_deconv(x, channels):
  init = tf.compat.v1.random_normal_initializer(0, 0.02)
  return layers.conv2d_transpose(x, channels, kernel_size=4, strides=(2, 2), padding='same',
                                 kernel_initializer=init)


def generator(inputs, out_channels, ngf=4):
  encoders = []
  with tf.compat.v1.variable_scope('encoder_1'):
    encoders.append(gen_conv(inputs, ngf))
  for index, channels in enumerate([ngf * 2, ngf * 4]):
    with tf.compat.v1.variable_scope(f'encoder_{index + 2}'):
      encoders.append(batchnorm(gen_conv(lrelu(encoders[-1]), channels)))
  x = encoders[-1]
  for index, (channels, dropout) in enumerate([(ngf * 2, 0.5), (ngf, 0.0)]):
    skip = len(encoders) - index - 1
    with tf.compat.v1.variable_scope(f'decoder_{skip + 1}'):
      if index > 0:
        x = tf.concat([x, encoders[skip]], axis=3)
      x = batchnorm(gen_deconv(tf.nn.relu(x), channels))
      if dropout > 0:
        x = layers.dropout(x, rate=dropout, training=True, seed=index + 1)
  with tf.compat.v1.variable_scope('decoder_1'):
    x = tf.concat([x, encoders[0]], axis=3)
    return tf.tanh(gen_deconv(tf.nn.relu(x), out_channels))


def discriminator(inputs, targets, ndf=4):
  x = tf.concat([inputs, targets], axis=3)
  with tf.compat.v1.variable_scope('layer_1'):
    x = lrelu(layers.conv2d(x, ndf, 4, strides=2, padding='same'))
  with tf.compat.v1.variable_scope('layer_2'):
    x = lrelu(batchnorm(layers.conv2d(x, ndf * 2, 4, strides=2, padding='same')))
  with tf.compat.v1.variable_scope('layer_3'):
    x = layers.conv2d(x, 1, 2, strides=1, padding='valid')
  return tf.sigmoid(x)


def create_model(inputs, targets, lr=0.01):
  """Returns (generator outputs, {loss name: loss}, train op)."""
  with tf.compat.v1.variable_scope('generator'):
    outputs = generator(inputs, int(targets.shape[-1]))
  with tf.compat.v1.variable_scope('discriminator'):
    predict_real = discriminator(inputs, targets)
  with tf.compat.v1.variable_scope('discriminator', reuse=True):
    predict_fake = discriminator(inputs, outputs)
  discrim_loss = tf.reduce_mean(-(tf.math.log(predict_real + EPS) +
                                  tf.math.log(1 - predict_fake + EPS)))
  gen_loss_gan = tf.reduce_mean(-tf.math.log(predict_fake + EPS))
  gen_loss_l1 = tf.reduce_mean(tf.abs(targets - outputs))
  gen_loss = gen_loss_gan + 10.0 * gen_loss_l1
  variables = tf.compat.v1.trainable_variables()
  d_vars = [v for v in variables if v.name.startswith('discriminator')]
  g_vars = [v for v in variables if v.name.startswith('generator')]
  with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    d_train = tf.compat.v1.train.AdamOptimizer(lr, 0.5).minimize(discrim_loss, var_list=d_vars)
  with tf.control_dependencies([d_train]):
    g_train = tf.compat.v1.train.AdamOptimizer(lr, 0.5).minimize(gen_loss, var_list=g_vars)
  losses = {'discrim': discrim_loss, 'gen_gan': gen_loss_gan, 'gen_l1': gen_loss_l1}
  return outputs, losses, g_train
