"""A CRNN-style OCR net in TF1 style, written against tf.compat.v1.nn.rnn_cell only.

The structure of the public TF1 CRNN implementations (VGG-like conv + batch
norm + ReLU + max-pool blocks, a conv collapsing the height, the width as
time, a stacked bidirectional LSTM, a per-frame dense layer, CTC loss on
time-major logits, the optimizer under UPDATE_OPS), at tiny sizes. Nothing
in `crnn` knows about tf1_bn: the legacy run and the ported run execute the
same code, the port being the one patch line in `main` (and the BN function,
the tf.layers name when tf.compat.v1.layers is patched too).

Run as a script: `python crnn_model.py IMPL CHECKPOINT OUT.npz`:
  legacy: tf-keras's cells (TF_USE_LEGACY_KERAS=1); initializes, saves
    CHECKPOINT, trains;
  tf1_bn: in a process where importing tf_keras FAILS (tests/no_tf_keras),
    patches, restores CHECKPOINT, trains.
Records the loss of each step, the logits before and after training, and
every variable after training.
"""
import sys

import numpy as np

BATCH, HEIGHT, WIDTH, CLASSES = 4, 8, 16, 5
HIDDEN, LAYERS, STEPS = 6, 2, 3


def _conv(x, filters, kernel, name, padding='SAME'):
  import tensorflow as tf
  v1 = tf.compat.v1
  with v1.variable_scope(name):
    w = v1.get_variable('weights', kernel + [int(x.shape[-1]), filters],
                        initializer=v1.glorot_uniform_initializer())
    b = v1.get_variable('biases', [filters], initializer=v1.zeros_initializer())
    return tf.nn.bias_add(tf.nn.conv2d(x, w, [1, 1, 1, 1], padding), b)


def crnn(images, seq_len, keep_prob, is_training, batch_norm):
  """images [batch, 8, 16, 1] -> time-major logits [4, batch, CLASSES + 1]."""
  import tensorflow as tf
  v1 = tf.compat.v1
  x = images
  for i, filters in enumerate((4, 8)):
    x = _conv(x, filters, [3, 3], f'conv{i + 1}')
    x = batch_norm(x, training=is_training, name=f'bn{i + 1}')
    x = tf.nn.max_pool2d(tf.nn.relu(x), 2, 2, 'VALID')
  x = tf.nn.relu(_conv(x, 8, [2, 1], 'conv_out', padding='VALID'))  # height 2 -> 1
  sequence = tf.squeeze(x, axis=1)  # [batch, width / 4, 8]: the width is the time

  def stack():
    return v1.nn.rnn_cell.MultiRNNCell([
        v1.nn.rnn_cell.DropoutWrapper(v1.nn.rnn_cell.LSTMCell(HIDDEN),
                                      output_keep_prob=keep_prob)
        for _ in range(LAYERS)])
  (out_fw, out_bw), _ = v1.nn.bidirectional_dynamic_rnn(
      stack(), stack(), sequence, sequence_length=seq_len, dtype=tf.float32)
  features = tf.concat([out_fw, out_bw], -1)
  time = int(features.shape[1])
  with v1.variable_scope('logits'):
    w = v1.get_variable('w', [2 * HIDDEN, CLASSES + 1])
    b = v1.get_variable('b', [CLASSES + 1], initializer=v1.zeros_initializer())
    logits = tf.reshape(tf.matmul(tf.reshape(features, [-1, 2 * HIDDEN]), w) + b,
                        [-1, time, CLASSES + 1])
  return tf.transpose(logits, [1, 0, 2])


def _data():
  rng = np.random.RandomState(0)
  images = rng.rand(BATCH, HEIGHT, WIDTH, 1).astype(np.float32)
  labels = [rng.randint(0, CLASSES, size=rng.randint(1, 3)) for _ in range(BATCH)]
  indices = np.array([[i, j] for i, seq in enumerate(labels) for j in range(len(seq))], np.int64)
  values = np.concatenate(labels).astype(np.int32)
  seq_len = np.array([WIDTH // 4, WIDTH // 4, WIDTH // 4 - 1, WIDTH // 4], np.int32)
  return images, (indices, values, [BATCH, max(len(s) for s in labels)]), seq_len


def train(batch_norm, checkpoint, save):
  import tensorflow as tf
  from rnn_harness import start_session
  v1 = tf.compat.v1
  images_value, labels_value, seq_len_value = _data()
  results = {}
  with tf.Graph().as_default():
    v1.set_random_seed(3)
    images = v1.placeholder(tf.float32, [None, HEIGHT, WIDTH, 1], name='images')
    seq_len = v1.placeholder(tf.int32, [None], name='seq_len')
    labels = v1.sparse_placeholder(tf.int32, name='labels')
    keep_prob = v1.placeholder_with_default(1.0, [], name='keep_prob')
    is_training = v1.placeholder_with_default(False, [], name='is_training')
    logits = crnn(images, seq_len, keep_prob, is_training, batch_norm)
    loss = tf.reduce_mean(v1.nn.ctc_loss(labels, logits, seq_len))
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
      train_op = v1.train.AdamOptimizer(0.01).minimize(loss)
    saver = v1.train.Saver()
    feed = {images: images_value, labels: labels_value, seq_len: seq_len_value}
    with v1.Session() as sess:
      start_session(sess, saver, checkpoint, save)
      results['logits_before'] = sess.run(logits, feed)
      losses = []
      for _ in range(STEPS):
        step_loss, _ = sess.run([loss, train_op], {**feed, is_training: True})
        losses.append(step_loss)
      results['losses'] = np.array(losses)
      results['logits_after'] = sess.run(logits, feed)
      for var in v1.global_variables():
        results['var/' + var.op.name] = sess.run(var)
  return results


def main(argv):
  impl, checkpoint, out = argv
  if impl == 'tf1_bn':
    import no_tf_keras
    no_tf_keras.install()
  import tensorflow as tf
  if impl == 'tf1_bn':
    import tf1_bn
    tf1_bn.patch_layers()  # the one line of the port
  batch_norm = tf.compat.v1.layers.batch_normalization
  np.savez(out, **train(batch_norm, checkpoint, save=impl == 'legacy'))
  print(f'trained {STEPS} steps with {impl}')


if __name__ == '__main__':
  main(sys.argv[1:])
