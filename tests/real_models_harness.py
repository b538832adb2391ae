"""Real TF1 models by others, trained a few steps by the legacy layers and by tf1_bn.

    python real_models_harness.py legacy OUT_DIR MODEL...   (TF_USE_LEGACY_KERAS=1)
    python real_models_harness.py tf1_bn OUT_DIR MODEL...   (tf_keras blocked)

'legacy' builds each model on tf-keras' legacy layers, initializes it
(graph seed 0) and saves the start checkpoint `OUT_DIR/<model>_start`;
'tf1_bn' makes `import tf_keras` fail (a meta-path finder, as if tf-keras
were not installed), calls `tf1_bn.patch_layers()` (the one line of the
port), builds the same unmodified model code and restores that checkpoint
with a default Saver. Both then run STEPS training steps on the same
batches and write `OUT_DIR/<model>_<impl>.npz`: the losses of every step,
the final outputs and every variable after training.

Models: 'pix2pix' (tests/real_models/pix2pix_style.py); 'resnet_style_v1'
and 'resnet_style_v2' (tests/real_models/resnet_style.py, written in the
style of the r1 ResNet); 'resnet_v1' and 'resnet_v2' (tensorflow/models'
official/r1/resnet/resnet_model.py, loaded unmodified from the directory in
TF1_BN_REAL_MODELS).
"""
import importlib.abc
import importlib.util
import os
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
STEPS = 3
RESNET_DIR_ENV = 'TF1_BN_REAL_MODELS'


class _Blocked(ImportError, ValueError):
  """ImportError for `import tf_keras`; a ValueError for importlib.util.find_spec,
  which TensorFlow's own import calls and treats as 'not installed'."""


class BlockTfKeras(importlib.abc.MetaPathFinder):

  def find_spec(self, name, path, target=None):
    if name == 'tf_keras' or name.startswith('tf_keras.'):
      raise _Blocked('tf_keras is blocked in this process (as if not installed)')
    return None


def resnet_module():
  directory = os.environ.get(RESNET_DIR_ENV)
  path = pathlib.Path(directory or '') / 'resnet_model.py'
  if not directory or not path.exists():
    return None
  spec = importlib.util.spec_from_file_location('resnet_model', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _data(shape, count, seed):
  rng = np.random.RandomState(seed)
  return [rng.randn(*shape).astype(np.float32) for _ in range(count)]


def official_resnet(version):
  """tensorflow/models' r1 Model, small: v2 with bottleneck blocks."""
  return resnet_module().Model(
      resnet_size=8, bottleneck=version == 2, num_classes=3, num_filters=4, kernel_size=3,
      conv_stride=1, first_pool_size=2, first_pool_stride=2, block_sizes=[1, 1],
      block_strides=[1, 2], resnet_version=version, data_format='channels_last')


def resnet_style(version):
  """tests/real_models/resnet_style.py at the same sizes."""
  sys.path.insert(0, str(HERE))
  from real_models import resnet_style as module
  return module.ResNet(version=version, bottleneck=version == 2, num_classes=3, num_filters=4,
                       block_sizes=[1, 1], block_strides=[1, 2])


def build_resnet(tf, model):
  x = tf.compat.v1.placeholder(tf.float32, [4, 8, 8, 3], name='x')
  labels = tf.compat.v1.placeholder(tf.int32, [4], name='labels')
  training = tf.compat.v1.placeholder(tf.bool, [], name='training')
  logits = model(x, training)
  loss = tf.compat.v1.losses.sparse_softmax_cross_entropy(labels, logits)
  loss += 1e-4 * tf.add_n([tf.nn.l2_loss(v) for v in tf.compat.v1.trainable_variables()])
  with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
    train = tf.compat.v1.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
  batches = _data([4, 8, 8, 3], STEPS + 1, 1)
  label_values = np.arange(4 * (STEPS + 1)).reshape(STEPS + 1, 4) % 3

  def feed(step, is_training):
    return {x: batches[step], labels: label_values[step], training: is_training}
  return {'loss': loss}, train, logits, feed


def build_pix2pix(tf):
  sys.path.insert(0, str(HERE))
  from real_models import pix2pix_style
  inputs = tf.compat.v1.placeholder(tf.float32, [2, 8, 8, 3], name='inputs')
  targets = tf.compat.v1.placeholder(tf.float32, [2, 8, 8, 3], name='targets')
  outputs, losses, train = pix2pix_style.create_model(inputs, targets)
  sources, goals = _data([2, 8, 8, 3], STEPS + 1, 2), _data([2, 8, 8, 3], STEPS + 1, 3)

  def feed(step, is_training):
    del is_training  # pix2pix runs its layers in training mode always
    return {inputs: sources[step], targets: np.tanh(goals[step])}
  return losses, train, outputs, feed


BUILDERS = {
    'pix2pix': build_pix2pix,
    'resnet_style_v1': lambda tf: build_resnet(tf, resnet_style(1)),
    'resnet_style_v2': lambda tf: build_resnet(tf, resnet_style(2)),
    'resnet_v1': lambda tf: build_resnet(tf, official_resnet(1)),
    'resnet_v2': lambda tf: build_resnet(tf, official_resnet(2)),
}


def run(impl, out_dir, model):
  import tensorflow as tf
  v1 = tf.compat.v1
  start = os.path.join(out_dir, f'{model}_start', 'model.ckpt')
  results = {}
  with tf.Graph().as_default():
    v1.set_random_seed(0)
    losses, train, outputs, feed = BUILDERS[model](tf)
    saver = v1.train.Saver()
    with v1.Session() as sess:
      if impl == 'legacy':
        sess.run(v1.global_variables_initializer())
        saver.save(sess, start, write_meta_graph=False)
      else:
        saver.restore(sess, start)
      for step in range(1, STEPS + 1):
        values, _ = sess.run([losses, train], feed(step, True))
        for name, value in values.items():
          results[f'loss_{name}_{step}'] = value
      results['outputs'] = sess.run(outputs, feed(0, False))
      for variable in v1.global_variables():
        results['var/' + variable.name] = sess.run(variable)
  np.savez(os.path.join(out_dir, f'{model}_{impl}.npz'), **results)


def main(argv):
  impl, out_dir, models = argv[0], argv[1], argv[2:]
  if impl == 'tf1_bn':
    sys.meta_path.insert(0, BlockTfKeras())
    import tf1_bn
    tf1_bn.patch_layers()
  for model in models:
    run(impl, out_dir, model)
  if impl == 'tf1_bn':
    assert 'tf_keras' not in sys.modules
  print(f'ran {models} with {impl}')


if __name__ == '__main__':
  main(sys.argv[1:])
