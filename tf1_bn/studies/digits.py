"""scikit-learn's bundled 8x8 digits and the small graph-mode MLPs the demo and
the pitfalls train on them (no download: the data ships inside scikit-learn)."""
import dataclasses

import numpy as np
import tensorflow as tf

from tf1_bn.common import validation as v
from tf1_bn.bn.bn_layer import bn_layer
from tf1_bn.bn.dropout import dropout

v1 = tf.compat.v1

NUM_FEATURES = 64
NUM_CLASSES = 10
PIXEL_MAX = 16.0
BN_PLACEMENTS = (None, 'before', 'after')
ACTIVATIONS = {'relu': tf.nn.relu, 'sigmoid': tf.sigmoid}


@dataclasses.dataclass
class Split:
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray


def load(seed=0, test_fraction=0.3, scale=True):
  """A stratified train/test split of the 1797 digits, shuffled by `seed`.

  `scale=True` maps pixels from 0..16 to 0..1; False keeps the stored values.
  """
  try:
    from sklearn.datasets import load_digits
  except ImportError as error:
    raise ImportError('The digits data comes from scikit-learn: pip install "tf1_bn[demo]".') \
        from error
  data = load_digits()
  features = data.data.astype(np.float32) / (PIXEL_MAX if scale else 1.0)
  labels = data.target.astype(np.int64)
  rng = np.random.RandomState(seed)
  train, test = [], []
  for digit in range(NUM_CLASSES):
    members = rng.permutation(np.flatnonzero(labels == digit))
    cut = int(round(len(members) * test_fraction))
    test.extend(members[:cut])
    train.extend(members[cut:])
  train, test = rng.permutation(train), rng.permutation(test)
  return Split(features[train], labels[train], features[test], labels[test])


def mlp(x, hidden=(128, 128), activation='relu', bn=None, dropout_rate=0.0, training=None,
        bn_decay=0.9, seed=0, normalize=None, synchronized=False):
  """Logits of an MLP on `x`; BN before or after each activation.

  With `bn='before'` the dense layers have no bias: beta replaces it, and a
  bias would be cancelled by the mean subtraction anyway.
  Layer scopes: `dense<i>/`, `bn<i>`; dropout follows each hidden activation.
  `normalize(h, name)` replaces the default `bn_layer` (the pitfalls put the
  legacy layer there); `synchronized` is the default layer's.
  """
  v.check_choice(bn, BN_PLACEMENTS, 'bn')
  v.check_choice(activation, tuple(ACTIVATIONS), 'activation')
  act = ACTIVATIONS[activation]
  if normalize is None:
    normalize = lambda h, name: bn_layer(h, training=training, name=name, moving_decay=bn_decay,
                                         synchronized=synchronized)
  h = x
  for i, width in enumerate(list(hidden) + [NUM_CLASSES]):
    last = i == len(hidden)
    with v1.variable_scope(f'dense{i}'):
      w = v1.get_variable('kernel', [h.shape[-1], width],
                          initializer=v1.glorot_uniform_initializer(seed=seed + i))
      h = tf.matmul(h, w)
      if last or bn != 'before':
        h = h + v1.get_variable('bias', [width], initializer=v1.zeros_initializer())
    if last:
      return h
    if bn == 'before':
      h = normalize(h, f'bn{i}')
    h = act(h)
    if bn == 'after':
      h = normalize(h, f'bn{i}')
    if dropout_rate:
      h = dropout(h, dropout_rate, training=training, seed=seed + 100 + i)
  return h


def minibatches(num_examples, steps, batch_size, seed):
  """`steps` index arrays of `batch_size`, walking through shuffled epochs."""
  rng = np.random.RandomState(seed)
  epochs = steps * batch_size // num_examples + 1
  order = np.concatenate([rng.permutation(num_examples) for _ in range(epochs)])
  return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def accuracy(logits, labels):
  return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))


def cross_entropy(logits, labels):
  return tf.reduce_mean(
      tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def single_thread_session(graph, devices=1):
  """A session whose results do not depend on thread scheduling: one thread
  per op, and, for towers on `devices` CPU devices, one inter-op thread per
  device and one more (a collective waits for its peers on one)."""
  config = v1.ConfigProto(intra_op_parallelism_threads=1,
                          inter_op_parallelism_threads=1 if devices == 1 else devices + 1,
                          device_count={'CPU': devices})
  return v1.Session(graph=graph, config=config)
