"""One protocol for tf-slim's own nets, run with the real slim batch_norm and
with `tf1_bn.patch_slim()`.

tf-slim 1.1.0's batch_norm fails on TensorFlow 2.21 only because it loads
`tf_keras.legacy_tf_layers` (tf-keras now keeps those layers in
`tf_keras.src.legacy_tf_layers`) and, on its fused path, uses `ops.Tensor`
(now `tensor.Tensor`). `enable_real_batch_norm()` aliases both, in a child
process only (it changes TensorFlow's module for the whole process), so the
real function runs: it is the reference.

`run(impl, net, out_dir)` builds the net (unmodified tf_slim.nets code,
under the net's own arg scope) on a placeholder with an `is_training`
placeholder, then records into `<out_dir>/<net>_<impl>.npz` and `.json`:
  structure (`describe`): every global variable (name, shape, dtype) in creation order,
    the names in TRAINABLE_VARIABLES, MODEL_VARIABLES and the nets'
    'moving_vars' collection, the number of REGULARIZATION_LOSSES and
    UPDATE_OPS; and which variables running UPDATE_OPS changes;
  train_logits: the training-mode forward before any update;
  after_update/<var>: every moving statistic after running UPDATE_OPS once;
  after_step/<var>: gamma, beta and the first and last weights after one SGD
    step on a cross-entropy loss (UPDATE_OPS not run again);
  infer_logits: the inference-mode forward after both.
The real run initializes the variables and saves them to
`<out_dir>/<net>_start` first; the tf1_bn run restores that checkpoint, so both
start from the same weights.

Run as a script it takes: impl ('real' or 'tf1_bn'), out_dir, net names.
`scripts/make_slim_net_fixtures.py` records `describe` of the full-size nets
built by the real slim, for the tests that build them without running them.
"""
import contextlib
import json
import os
import sys

import numpy as np

BATCH = 2
CLASSES = 5
LEARNING_RATE = 0.1
# name: (module under tf_slim.nets, function, its arg scope, input size,
# keyword arguments). Inception v1 ends in a fixed 7x7 pool (input at least
# 193); v3's auxiliary head needs 139. Dropout is off so runs are
# deterministic. The *_small nets are the generic resnet_v1 / resnet_v2 with
# thin blocks (as tf-slim's own tests build them), cheap enough to train.
NETS = {
    'resnet_v1_50': ('resnet_v1', 'resnet_v1_50', 'resnet_arg_scope', 64, {}),
    'resnet_v2_50': ('resnet_v2', 'resnet_v2_50', 'resnet_arg_scope', 64, {}),
    'inception_v1': ('inception_v1', 'inception_v1', 'inception_v1_arg_scope', 193,
                     {'dropout_keep_prob': 1.0}),
    'inception_v2': ('inception_v2', 'inception_v2', 'inception_v2_arg_scope', 64,
                     {'dropout_keep_prob': 1.0, 'depth_multiplier': 0.25}),
    'inception_v3': ('inception_v3', 'inception_v3', 'inception_v3_arg_scope', 139,
                     {'dropout_keep_prob': 1.0, 'depth_multiplier': 0.25}),
    'resnet_v1_small': ('resnet_v1', 'resnet_v1', 'resnet_arg_scope', 32,
                        {'blocks': [('block1', 1, 2, 2), ('block2', 2, 1, 1)]}),
    'resnet_v2_small': ('resnet_v2', 'resnet_v2', 'resnet_arg_scope', 32,
                        {'blocks': [('block1', 1, 2, 2), ('block2', 2, 1, 1)]}),
}
MOVING_LEAVES = ('moving_mean', 'moving_variance')
STEP_LEAVES = ('gamma', 'beta')


def enable_real_batch_norm():
  """Lets tf-slim 1.1.0's own batch_norm run on TensorFlow 2.21 (this process)."""
  from tensorflow.python.framework import ops, tensor
  import tf_keras.src.legacy_tf_layers as legacy_layers
  import tf_keras.src.legacy_tf_layers.normalization  # noqa: F401 (the module aliased)
  sys.modules['tf_keras.legacy_tf_layers'] = legacy_layers
  sys.modules['tf_keras.legacy_tf_layers.normalization'] = legacy_layers.normalization
  if not hasattr(ops, 'Tensor'):
    ops.Tensor = tensor.Tensor


def _leaf(name):
  return name.split(':')[0].split('/')[-1]


def _data(net):
  size = NETS[net][3]
  rng = np.random.RandomState(0)
  images = rng.uniform(-1, 1, (BATCH, size, size, 3)).astype(np.float32)
  labels = rng.randint(0, CLASSES, BATCH)
  return images, labels


def build(net, is_training=None):
  """The net in the default graph; returns (images, labels, is_training, logits).

  `is_training` None builds it on a tf.bool placeholder (both modes, fed per
  run), True or False for one mode (then the returned switch is None).
  """
  import importlib
  import tensorflow as tf
  import tf_slim
  v1 = tf.compat.v1
  module_name, fn_name, scope_name, size, kwargs = NETS[net]
  module = importlib.import_module(f'tf_slim.nets.{module_name}')
  images = v1.placeholder(tf.float32, [BATCH, size, size, 3], name='images')
  labels = v1.placeholder(tf.int64, [BATCH], name='labels')
  switch = v1.placeholder(tf.bool, [], name='is_training') if is_training is None else None
  kwargs = dict(kwargs)
  if 'blocks' in kwargs:
    block = getattr(module, f'{module_name}_block')
    kwargs['blocks'] = [block(name, base_depth=depth, num_units=units, stride=stride)
                        for name, depth, units, stride in kwargs['blocks']]
  with tf_slim.arg_scope(getattr(module, scope_name)()):
    logits, _ = getattr(module, fn_name)(
        images, num_classes=CLASSES, is_training=switch if is_training is None else is_training,
        **kwargs)
  return images, labels, switch, tf.reshape(logits, [BATCH, CLASSES])


def describe(graph):
  """Variables and collections of the graph, as JSON-able lists."""
  import tensorflow as tf
  keys = tf.compat.v1.GraphKeys

  def names(key):
    return [v.op.name for v in graph.get_collection(key)]

  return {
      'variables': [[v.op.name, v.shape.as_list(), v.dtype.base_dtype.name]
                    for v in graph.get_collection(keys.GLOBAL_VARIABLES)],
      'trainable': names(keys.TRAINABLE_VARIABLES),
      'model': names(keys.MODEL_VARIABLES),
      'moving_vars': names('moving_vars'),
      'regularization_losses': len(graph.get_collection(keys.REGULARIZATION_LOSSES)),
      'update_ops': len(graph.get_collection(keys.UPDATE_OPS)),
  }


def batch_norm_of(impl):
  """A context in which slim's batch_norm is `impl`'s: 'real' or 'tf1_bn'."""
  if impl == 'real':
    enable_real_batch_norm()
    return contextlib.nullcontext()
  import tf1_bn
  return tf1_bn.patch_slim()


def run(impl, net, out_dir):
  import tensorflow as tf
  v1 = tf.compat.v1
  data, label_values = _data(net)
  results = {}
  with batch_norm_of(impl), tf.Graph().as_default() as graph:
    v1.set_random_seed(0)
    images, labels, is_training, logits = build(net)
    structure = describe(graph)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))
    step = v1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(loss)
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    variables = {v.op.name: v for v in v1.global_variables()}
    moving = {n: v for n, v in variables.items() if _leaf(n) in MOVING_LEAVES}
    weights = [n for n, v in variables.items() if v in v1.trainable_variables()]
    stepped = {n: variables[n] for n in weights
               if _leaf(n) in STEP_LEAVES or n in (weights[0], weights[-1])}
    saver = v1.train.Saver()
    start = os.path.join(out_dir, f'{net}_start', 'model.ckpt')
    train = {images: data, labels: label_values, is_training: True}
    with v1.Session() as sess:
      if impl == 'real':
        sess.run(v1.global_variables_initializer())
        saver.save(sess, start, write_meta_graph=False)
      else:
        saver.restore(sess, start)
      before = sess.run(variables)
      results['train_logits'] = sess.run(logits, train)
      sess.run(updates, train)
      after = sess.run(variables)
      structure['updated'] = sorted(n for n in variables
                                    if not np.array_equal(before[n], after[n]))
      for name, value in sess.run(moving).items():
        results['after_update/' + name] = value
      sess.run(step, train)
      for name, value in sess.run(stepped).items():
        results['after_step/' + name] = value
      results['infer_logits'] = sess.run(logits, {images: data, is_training: False})
  np.savez(os.path.join(out_dir, f'{net}_{impl}.npz'), **results)
  with open(os.path.join(out_dir, f'{net}_{impl}.json'), 'w') as f:
    json.dump(structure, f)
  return results, structure


def main(argv):
  impl, out_dir, nets = argv[0], argv[1], argv[2:]
  for net in nets:
    run(impl, net, out_dir)
  print(f'ran {len(nets)} nets with {impl}')


if __name__ == '__main__':
  main(sys.argv[1:])
