"""Benchmark case: a tf.compat.v1.layers CNN on tf1_bn's layers against the legacy layers.

`layers_case(shape, steps, warmup, legacy_available)` builds the same CNN
(two conv + BN + ReLU blocks, max pooling, a third block, average pooling,
flatten, dense) with `tf1_bn.layers` and, when the legacy layers are active
in this process (tf-keras installed and TF_USE_LEGACY_KERAS=1 set before
TensorFlow's import, see `tf1_bn.studies.legacy_child`), with
`tf.compat.v1.layers`; then times a training step (forward, backward,
gradient-descent update and the BN updates) and an inference step of each,
alternated step by step in a new random order every round, and reports the
median of each with its ratio to the legacy layers (to tf1_bn's without
them).

Both builds take their variables from the same seed and see the same batch;
each runs in its own graph and session with the default session config.

`main` runs the case from the command line (and re-runs itself with the
legacy layers active when tf-keras is installed):

    python -m tf1_bn.studies.bench_layers --shape 32x16x16x3 --steps 30
"""
import argparse

import numpy as np

from tf1_bn.studies import legacy_child as legacy

CASE = 'layers'
DEFAULT_SHAPE = (32, 16, 16, 3)
OURS = 'tf1_bn.layers'
LEGACY = 'legacy tf.compat.v1.layers'
MODES = ('train', 'inference')


def cnn(layers, tf, x, training, classes=10):
  """The benchmarked CNN, written against a tf.compat.v1.layers namespace."""
  h = x
  for filters in (16, 32):
    h = layers.conv2d(h, filters, 3, padding='same', use_bias=False)
    h = tf.nn.relu(layers.batch_normalization(h, training=training, fused=True))
  h = layers.max_pooling2d(h, 2, 2)
  h = layers.conv2d(h, 32, 3, padding='same', use_bias=False)
  h = tf.nn.relu(layers.batch_normalization(h, training=training, fused=True))
  h = layers.average_pooling2d(h, 2, 2)
  return layers.dense(layers.flatten(h), classes)


class _Runner:
  """One implementation's graph and session; `step()` returns seconds."""

  def __init__(self, layers, shape, mode):
    import tensorflow as tf
    v1 = tf.compat.v1
    self.graph = tf.Graph()
    with self.graph.as_default():
      v1.set_random_seed(0)
      x = v1.placeholder(tf.float32, shape, name='x')
      labels = v1.placeholder(tf.int32, shape[:1], name='labels')
      logits = cnn(layers, tf, x, training=mode == 'train')
      if mode == 'train':
        loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
        with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
          self.fetch = v1.train.GradientDescentOptimizer(0.01).minimize(loss)
      else:
        self.fetch = logits
      init = v1.global_variables_initializer()
    rng = np.random.RandomState(0)
    self.feed = {x: rng.randn(*shape).astype(np.float32),
                 labels: rng.randint(0, 10, shape[:1])}
    self.sess = v1.Session(graph=self.graph)
    self.sess.run(init)

  def step(self):
    import time
    start = time.perf_counter()
    self.sess.run(self.fetch, self.feed)
    return time.perf_counter() - start


def layers_case(shape=DEFAULT_SHAPE, steps=30, warmup=5, legacy_available=None):
  """Rows {'case', 'implementation', 'ms', 'ratio', 'reference'} per mode and implementation."""
  import tensorflow as tf

  import tf1_bn
  if legacy_available is None:
    legacy_available = legacy.active()
  shape = list(shape)
  namespaces = {OURS: tf1_bn.layers}
  if legacy_available:
    namespaces[LEGACY] = tf.compat.v1.layers
  reference = LEGACY if legacy_available else OURS
  rows = []
  order = np.random.RandomState(0)
  for mode in MODES:
    runners = {name: _Runner(ns, shape, mode) for name, ns in namespaces.items()}
    for runner in runners.values():
      for _ in range(warmup):
        runner.step()
    times = {name: [] for name in runners}
    for _ in range(steps):
      for name in order.permutation(list(runners)):
        times[name].append(runners[name].step())
    for runner in runners.values():
      runner.sess.close()
    medians = {name: float(np.median(samples)) for name, samples in times.items()}
    for name, median in medians.items():
      rows.append({'case': f'{CASE} {"x".join(map(str, shape))} {mode}', 'implementation': name,
                   'ms': median * 1e3, 'ratio': median / medians[reference],
                   'reference': reference})
  return rows


def build_parser():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--shape', default='x'.join(map(str, DEFAULT_SHAPE)),
                      help='input batch BxHxWxC (default %(default)s)')
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--warmup', type=int, default=5)
  return parser


def main(argv=None):
  args, status = legacy.parse_or_rerun('tf1_bn.studies.bench_layers', build_parser, argv)
  if args is None:
    return status
  shape = [int(d) for d in args.shape.split('x')]
  for row in layers_case(shape, args.steps, args.warmup):
    print(f"{row['case']:<32} {row['implementation']:<28} {row['ms']:8.2f} ms  "
          f"x{row['ratio']:.2f} of {row['reference']}")
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
