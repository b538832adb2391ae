"""A facenet-style slim model, run in a child process with the real slim or
with `tf1_bn.patch_slim()` (see tests/test_facenet_checkpoints.py).

The pattern of davidsandberg/facenet (`inception_resnet_v1.inference` and
`facenet.train`), kept exactly where it matters for checkpoints: slim.conv2d
with `normalizer_fn=slim.batch_norm` and facenet's `batch_norm_params`
(decay 0.995, epsilon 0.001, `updates_collections=None`, the variables in
TRAINABLE_VARIABLES), a tensor `is_training` (facenet's
`phase_train_placeholder`), Adam asked for the gradients of every global
variable, an ExponentialMovingAverage of the trainable variables, and a full
default `Saver()`. The network itself is a few conv+BN blocks, small.

    python facenet_style_child.py IMPL OUT_JSON [--restore PREFIX] [--save PREFIX]

(or `train(restore, save)` in a process whose slim is already chosen: the
tests run the tf1_bn side in-process under `with tf1_bn.patch_slim():`).

IMPL is 'real' (tf-slim 1.1.0's own batch_norm, made to run on this
TensorFlow by slim_nets_harness.enable_real_batch_norm and one more alias:
`control_flow_ops.cond`, which its fused path calls for a tensor
is_training) or 'tf1_bn'. The
child builds the graph, initializes it (or restores PREFIX with the default
Saver), evaluates a fixed batch (is_training False), trains TRAIN_STEPS Adam
steps (is_training True), evaluates again, saves to PREFIX, and writes
OUT_JSON: every global variable (name, shape) in creation order and both
evaluations.
"""
import argparse
import json
import os
import sys

import numpy as np

BATCH, SIZE, CLASSES = 4, 12, 3
TRAIN_STEPS = 2
BATCH_NORM_PARAMS = {  # facenet's inception_resnet_v1.inference, verbatim values
    'decay': 0.995,
    'epsilon': 0.001,
    'updates_collections': None,
    'variables_collections': None,  # set to [TRAINABLE_VARIABLES] once tf is imported
}


def _data():
  rng = np.random.RandomState(0)
  images = rng.rand(BATCH, SIZE, SIZE, 3).astype(np.float32) * 2 - 1
  labels = np.arange(BATCH) % CLASSES
  return images, labels


def _model(images, phase_train):
  import tensorflow as tf
  import tf_slim as slim
  v1 = tf.compat.v1
  params = dict(BATCH_NORM_PARAMS, variables_collections=[v1.GraphKeys.TRAINABLE_VARIABLES])
  with slim.arg_scope([slim.conv2d], weights_initializer=v1.truncated_normal_initializer(
      stddev=0.1), weights_regularizer=slim.l2_regularizer(0.0), normalizer_fn=slim.batch_norm,
                      normalizer_params=params):
    with v1.variable_scope('InceptionResnetV1'):
      with slim.arg_scope([slim.batch_norm], is_training=phase_train):
        net = slim.conv2d(images, 8, 3, stride=2, padding='VALID', scope='Conv2d_1a_3x3')
        net = slim.conv2d(net, 8, 3, padding='SAME', scope='Conv2d_2a_3x3')
        with v1.variable_scope('Block35'):  # a residual branch, as block35
          branch = slim.conv2d(net, 8, 1, scope='Conv2d_1x1')
          net = tf.nn.relu(net + 0.17 * slim.conv2d(branch, 8, 3, activation_fn=None,
                                                    scope='Conv2d_0b_3x3'))
        net = slim.conv2d(net, 12, 3, stride=2, padding='VALID', scope='Conv2d_4b_3x3')
        net = slim.flatten(tf.reduce_mean(net, [1, 2], keepdims=True))
  return slim.fully_connected(net, CLASSES, activation_fn=None, scope='Logits')


def train(restore=None, save=None):
  """Builds the model with the slim batch_norm in place now, restores
  `restore` (else initializes), evaluates, trains, evaluates, saves to
  `save`; returns the report."""
  import tensorflow as tf
  v1 = tf.compat.v1
  images, labels = _data()
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name='input')
    y = v1.placeholder(tf.int64, [None], name='labels')
    phase_train = v1.placeholder(tf.bool, [], name='phase_train')
    logits = _model(x, phase_train)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    total_loss = tf.add_n([loss] + v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES))
    # facenet.train: Adam over tf.global_variables(), then an EMA of the
    # trainable ones, which include the moving statistics here.
    update_gradient_vars = v1.global_variables()
    global_step = v1.Variable(0, trainable=False, name='global_step')
    opt = v1.train.AdamOptimizer(0.01, beta1=0.9, beta2=0.999, epsilon=0.1)
    grads = opt.compute_gradients(total_loss, update_gradient_vars)
    apply_gradient_op = opt.apply_gradients(grads, global_step=global_step)
    averages = v1.train.ExponentialMovingAverage(0.9999, global_step)
    with tf.control_dependencies([apply_gradient_op]):
      train_op = averages.apply(v1.trainable_variables())
    saver = v1.train.Saver()
    with v1.Session() as sess:
      if restore:
        saver.restore(sess, restore)
      else:
        sess.run(v1.global_variables_initializer())
      before = sess.run(logits, {x: images, phase_train: False})
      for step in range(TRAIN_STEPS):
        sess.run(train_op, {x: images * (1 + 0.5 * step), y: labels, phase_train: True})
      after = sess.run(logits, {x: images, phase_train: False})
      if save:
        saver.save(sess, save, write_meta_graph=False)
    return {
        'variables': [[v.op.name, v.shape.as_list()] for v in v1.global_variables()],
        'gradients': sorted(v.op.name for g, v in grads if g is not None),
        'before': before.tolist(), 'after': after.tolist()}


def main(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument('impl', choices=['real', 'tf1_bn'])
  parser.add_argument('out')
  parser.add_argument('--restore')
  parser.add_argument('--save')
  args = parser.parse_args(argv)
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import slim_nets_harness
  if args.impl == 'real':
    slim_nets_harness.enable_real_batch_norm()
    # slim's fused path with a tensor is_training calls
    # control_flow_ops.cond, which TensorFlow 2.21 keeps as tf.compat.v1.cond.
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_ops
    if not hasattr(control_flow_ops, 'cond'):
      control_flow_ops.cond = tf.compat.v1.cond
  else:
    import tf1_bn
    tf1_bn.patch_slim()
  report = train(args.restore, args.save)
  with open(args.out, 'w') as f:
    json.dump(report, f)


if __name__ == '__main__':
  main(sys.argv[1:])
