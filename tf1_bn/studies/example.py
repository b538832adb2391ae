"""The README example: a two-layer MLP with bn_layer, trained in a session loop."""
import argparse
import sys

import numpy as np
import tensorflow as tf

import tf1_bn

v1 = tf.compat.v1


def train(steps=300, seed=0):
  rng = np.random.RandomState(seed)
  centers = rng.randn(3, 10) * 2.0
  labels = rng.randint(0, 3, 3000)
  features = (centers[labels] + rng.randn(3000, 10) + 5.0).astype(np.float32)
  train_x, test_x = features[:2400], features[2400:]
  train_y, test_y = labels[:2400], labels[2400:]
  graph = tf.Graph()
  with graph.as_default():
    v1.set_random_seed(seed)
    x = v1.placeholder(tf.float32, [None, 10], name='x')
    y = v1.placeholder(tf.int64, [None], name='y')
    # No bias before BN: beta takes its role.
    h = tf.matmul(x, v1.get_variable('w1', [10, 32]))
    h = tf.nn.relu(tf1_bn.bn_layer(h, name='bn1'))
    logits = tf.matmul(h, v1.get_variable('w2', [32, 3]))
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    train_op = tf1_bn.minimize(v1.train.AdamOptimizer(0.01), loss)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for step in range(steps):
        batch = rng.randint(0, len(train_x), 64)
        sess.run(train_op, {x: train_x[batch], y: train_y[batch],
                            tf1_bn.training_placeholder(): True})
      test_accuracy = sess.run(accuracy, {x: test_x, y: test_y})  # no feed: inference
  print(f'test accuracy after {steps} steps: {test_accuracy:.3f}')
  return test_accuracy


def build_parser(parser=None):
  parser = parser or argparse.ArgumentParser(prog='tf1-bn example')
  parser.add_argument('--steps', type=int, default=300, help='training steps (batches of 64)')
  parser.add_argument('--seed', type=int, default=0,
                      help='seed of the data, the initial weights and the batch order')
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  train(args.steps, args.seed)
  return 0


if __name__ == '__main__':
  sys.exit(main())
