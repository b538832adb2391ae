"""Writes tests/fixtures/export/: real legacy artefacts for `tf1-bn export`.

Each model is a tiny CNN built the way a TF1 user built it, with the real
tf.layers, tf-slim, Keras 2 and the hand-written recipe of an old TensorFlow
(2.12.1, the last release whose tf.layers and tf-slim are the originals),
trained for a few steps so that its moving statistics are not the initial
ones, then saved as the user saved it:

  layers/    meta graph + checkpoint: tf.layers conv + batch_normalization
             (fused=True), conv + batch_normalization(fused=False), dense,
             on an `is_training` placeholder, and dropout with a `keep_prob`
             placeholder;
  slim/      meta graph + checkpoint: tf-slim conv2d / fully_connected with
             batch_norm under an arg_scope, `is_training` a placeholder, and
             updates_collections=None (the update runs inside the layer);
  recipe/    meta graph + checkpoint: the classic moments + EMA + tf.cond
             recipe (tf1_bn/studies/recipe.py) on a `phase_train` placeholder;
  keras2/    a TF1 SavedModel of a Keras 2 Sequential model (Conv2D,
             BatchNormalization, Dense, BatchNormalization, Dense), written
             with tf.compat.v1.saved_model.simple_save (the learning phase is
             a placeholder_with_default);
  frozen.pb  the tf.layers model frozen with
             graph_util.convert_variables_to_constants, the Switch / Merge of
             its conds still in it.

Every model reads `x` ([None, 6, 6, 2] float32) and writes `logits`
([None, 3]); `inputs.npz` holds a batch of 4 inputs under the key `x`, and
`expected.npz` the logits each model computed for them in inference (its
switch False, keep_prob 1) under TensorFlow 2.12: the tests' reference.

  /work/tf212/bin/python scripts/make_export_fixtures.py
"""
import importlib.util
import os
import pathlib
import shutil
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / 'tests' / 'fixtures' / 'export'
SHAPE = (6, 6, 2)
CLASSES = 3
STEPS = 3
SEED = 7


def _recipe_module():
  """tf1_bn/studies/recipe.py alone (the package needs the current TensorFlow)."""
  spec = importlib.util.spec_from_file_location(
      'recipe', ROOT / 'tf1_bn' / 'studies' / 'recipe.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _batches(rng):
  """Training batches whose statistics are far from (0, 1)."""
  return [rng.normal(1.5, 2.0, (8,) + SHAPE).astype(np.float32) for _ in range(STEPS)]


def _train(sess, x, logits, feeds, batches, tf):
  """Runs the training forward pass and the moving-statistics updates (no
  optimizer: its gradient ops would make the meta graph ten times larger;
  the random gamma / beta initializers stand for trained values)."""
  v1 = tf.compat.v1
  sess.run(v1.global_variables_initializer())
  for images in batches:
    sess.run([logits, v1.get_collection(v1.GraphKeys.UPDATE_OPS)], {x: images, **feeds})


def _random_affine(tf):
  v1 = tf.compat.v1
  return {'beta_initializer': v1.random_uniform_initializer(-0.5, 0.5, seed=SEED),
          'gamma_initializer': v1.random_uniform_initializer(0.5, 1.5, seed=SEED)}


def _layers_model(tf):
  v1 = tf.compat.v1
  x = v1.placeholder(tf.float32, (None,) + SHAPE, name='x')
  is_training = v1.placeholder(tf.bool, (), name='is_training')
  keep_prob = v1.placeholder_with_default(1.0, (), name='keep_prob')
  h = v1.layers.conv2d(x, 4, 3, padding='same', name='conv1')
  h = tf.nn.relu(v1.layers.batch_normalization(h, momentum=0.5, training=is_training,
                                               fused=True, name='bn1', **_random_affine(tf)))
  h = v1.layers.conv2d(h, 4, 3, padding='same', use_bias=False, name='conv2')
  h = tf.nn.relu(v1.layers.batch_normalization(h, momentum=0.5, training=is_training,
                                               fused=False, name='bn2', **_random_affine(tf)))
  h = v1.nn.dropout(v1.layers.flatten(h), keep_prob=keep_prob)
  logits = tf.identity(v1.layers.dense(h, CLASSES, name='dense'), name='logits')
  return x, logits, {is_training: True, keep_prob: 0.8}


def _slim_model(tf):
  import tf_slim as slim
  v1 = tf.compat.v1
  x = v1.placeholder(tf.float32, (None,) + SHAPE, name='x')
  is_training = v1.placeholder(tf.bool, (), name='is_training')
  bn_params = {'is_training': is_training, 'decay': 0.5, 'updates_collections': None,
               'scale': True, 'param_initializers': {
                   'beta': v1.random_uniform_initializer(-0.5, 0.5, seed=SEED),
                   'gamma': v1.random_uniform_initializer(0.5, 1.5, seed=SEED)}}
  with slim.arg_scope([slim.conv2d, slim.fully_connected], normalizer_fn=slim.batch_norm,
                      normalizer_params=bn_params):
    h = slim.conv2d(x, 4, [3, 3], scope='conv1')
    h = slim.fully_connected(slim.flatten(h), 5, scope='fc1')
    logits = slim.fully_connected(h, CLASSES, activation_fn=None, normalizer_fn=None,
                                  scope='fc2')
  return x, tf.identity(logits, name='logits'), {is_training: True}


def _recipe_model(tf):
  v1 = tf.compat.v1
  recipe = _recipe_module()
  x = v1.placeholder(tf.float32, (None,) + SHAPE, name='x')
  phase_train = v1.placeholder(tf.bool, (), name='phase_train')
  h = v1.layers.conv2d(x, 4, 3, padding='same', name='conv1')
  h = tf.nn.relu(recipe.classic_recipe(h, phase_train, name='bn1', moving_decay=0.5))
  logits = v1.layers.dense(v1.layers.flatten(h), CLASSES, name='dense')
  return x, tf.identity(logits, name='logits'), {phase_train: True}


def _meta_fixture(build, name, batches, inputs, expected):
  import tensorflow as tf
  v1 = tf.compat.v1
  with tf.Graph().as_default():
    v1.set_random_seed(SEED)
    x, logits, feeds = build(tf)
    with v1.Session() as sess:
      _train(sess, x, logits, feeds, batches, tf)
      inference = {t: (1.0 if t.dtype.base_dtype == tf.float32 else False) for t in feeds}
      expected[name] = sess.run(logits, {x: inputs, **inference})
      directory = OUT / name
      directory.mkdir()
      v1.train.Saver().save(sess, str(directory / 'model.ckpt'), strip_default_attrs=True)
      (directory / 'checkpoint').unlink()  # holds absolute paths
      if name == 'layers':
        frozen = v1.graph_util.convert_variables_to_constants(
            sess, sess.graph.as_graph_def(), ['logits'])
        (OUT / 'frozen.pb').write_bytes(frozen.SerializeToString())
        expected['frozen'] = expected[name]


def _keras2_fixture(batches, inputs, expected):
  import tensorflow as tf
  v1 = tf.compat.v1
  keras = tf.keras
  with tf.Graph().as_default():
    v1.set_random_seed(SEED)
    model = keras.Sequential([
        keras.layers.InputLayer(SHAPE, name='x'),
        keras.layers.Conv2D(4, 3, padding='same', name='conv1'),
        keras.layers.BatchNormalization(momentum=0.5, name='bn1', **_random_affine(tf)),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(5, name='fc1'),
        keras.layers.BatchNormalization(momentum=0.5, name='bn2', **_random_affine(tf)),
        keras.layers.ReLU(),
        keras.layers.Dense(CLASSES, name='logits'),
    ])
    sess = v1.keras.backend.get_session()
    training_output = model(model.input, training=True)
    for images in batches:
      sess.run([training_output, model.updates], {model.input: images})
    expected['keras2'] = sess.run(model.output, {model.input: inputs})
    v1.saved_model.simple_save(sess, str(OUT / 'keras2'), inputs={'x': model.input},
                               outputs={'logits': model.output})


def main():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  tf.compat.v1.disable_v2_behavior()
  if OUT.exists():
    shutil.rmtree(OUT)
  OUT.mkdir(parents=True)
  rng = np.random.default_rng(SEED)
  batches = _batches(rng)
  inputs = rng.normal(1.5, 2.0, (4,) + SHAPE).astype(np.float32)
  expected = {}
  _meta_fixture(_layers_model, 'layers', batches, inputs, expected)
  _meta_fixture(_slim_model, 'slim', batches, inputs, expected)
  _meta_fixture(_recipe_model, 'recipe', batches, inputs, expected)
  _keras2_fixture(batches, inputs, expected)
  np.savez(OUT / 'inputs.npz', x=inputs)
  np.savez(OUT / 'expected.npz', **expected)
  sys.path.insert(0, str(ROOT / 'scripts'))
  from make_legacy_fixtures import write_versions
  write_versions(OUT, ('tensorflow-cpu', 'tf-slim', 'keras', 'numpy'))
  print(f'wrote {OUT}')


if __name__ == '__main__':
  main()
