"""One protocol run by tf1_bn and by the real legacy implementations.

`run(impl, config, out_dir)` builds a BN layer with either tf1_bn or the
legacy function (tf.compat.v1.layers.batch_normalization from tf-keras or an
old TensorFlow, tf_slim.batch_norm), then records, into
`<out_dir>/<id>_<impl>.npz`:
  train, grad_x, grad_gamma, grad_beta: a training-mode forward and its
    gradients on the evaluation batch, before any update;
  infer: the inference output then;
  after_<var>: every moving variable after `steps` training steps;
  infer_after: the inference output after them;
  cross: inference output after restoring `restore` (another run's final
    checkpoint), when given.
Checkpoints: `<id>_<impl>_start` (after warm-up, or as restored) and
`<id>_<impl>_final`.

Run as a script it takes: impl, a JSON file of configs, out_dir, and an
optional restore impl whose final checkpoints to cross-restore.
"""
import json
import os
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent

MOVING_SUFFIXES = ('moving_mean', 'moving_variance', 'moving_stddev', 'renorm_mean',
                   'renorm_stddev', 'biased', 'local_step')


def legacy_env(legacy_keras='1'):
  """The environment of a child process that runs a legacy implementation
  (TF_USE_LEGACY_KERAS set, tests/ importable), or None when tf-keras is not
  installed here."""
  try:
    import tf_keras  # noqa: F401
  except ImportError:
    return None
  return dict(os.environ, TF_USE_LEGACY_KERAS=legacy_keras, TF_CPP_MIN_LOG_LEVEL='2',
              PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get('PYTHONPATH', '')]))


def legacy_env_or_skip(what):
  """`legacy_env()` for a pytest fixture: skips the tests when tf-keras is
  absent (`what` names the legacy implementation in the skip reason)."""
  env = legacy_env()
  if env is None:
    import pytest
    pytest.skip(f'tf-keras is not installed: {what} cannot run')
  return env


def _function(impl, fn):
  if impl == 'tf1_bn':
    import tf1_bn
    return {'layers': tf1_bn.batch_normalization, 'slim': tf1_bn.batch_norm}[fn]
  if fn == 'layers':
    import tensorflow as tf
    return tf.compat.v1.layers.batch_normalization
  import tf_slim
  return tf_slim.batch_norm


def _adjustment(shape):
  import tensorflow as tf
  channels = shape[-1]
  ramp = tf.cast(tf.range(channels), tf.float32) / tf.cast(channels, tf.float32)
  return 0.9 + 0.2 * ramp, 0.1 - 0.2 * ramp


def _kwargs(config):
  kwargs = dict(config.get('kwargs', {}))
  if kwargs.pop('adjustment', False):
    kwargs['adjustment'] = _adjustment
  if kwargs.pop('batch_weights', False):
    import tensorflow as tf
    kwargs['batch_weights'] = tf.constant(np.linspace(0.5, 1.5, config['shape'][0]), tf.float32)
  if 'updates_collections' in kwargs and kwargs['updates_collections'] == 'UPDATE_OPS':
    import tensorflow as tf
    kwargs['updates_collections'] = tf.compat.v1.GraphKeys.UPDATE_OPS
  return kwargs


def _batches(config, count):
  rng = np.random.RandomState(config.get('seed', 0))
  # `scale` shrinks the spread, so a small epsilon matters against the variance.
  spread = config.get('scale', 1.0)
  return [(rng.randn(*config['shape']) * (1.5 + 0.1 * i) * spread + 0.7 * i).astype(
      config.get('dtype', 'float32')) for i in range(count)]


def _short(name):
  return name.split(':')[0].split('/')[-1]


def _build(impl, config):
  import tensorflow as tf
  v1 = tf.compat.v1
  fn = _function(impl, config['fn'])
  dtype = tf.as_dtype(config.get('dtype', 'float32'))
  batch_dim = config['shape'][0] if config.get('static_batch') else None
  x = v1.placeholder(dtype, [batch_dim] + list(config['shape'][1:]), name='x')
  switch_name = 'training' if config['fn'] == 'layers' else 'is_training'
  kwargs = _kwargs(config)
  if config.get('training') == 'python':
    # Ghost batches: the legacy honours them only for a Python True.
    name_key, name = ('name', 'batch_normalization') if config['fn'] == 'layers' else \
        ('scope', 'BatchNorm')
    train_y = fn(x, **{switch_name: True, name_key: name}, **kwargs)
    infer_y = fn(x, **{switch_name: False, name_key: name, 'reuse': True}, **kwargs)
    switch = None
  else:
    switch = v1.placeholder(tf.bool, [], name='switch')
    train_y = infer_y = fn(x, **{switch_name: switch}, **kwargs)
  return x, switch, train_y, infer_y


def run(impl, config, out_dir, restore=None, fixture_ckpt=None):
  import tensorflow as tf
  v1 = tf.compat.v1
  ident = config['id']
  steps, warmup = config.get('steps', 20), config.get('warmup', 0)
  batches = _batches(config, steps + warmup + 1)
  evaluation = batches[0]
  rng = np.random.RandomState(100 + config.get('seed', 0))
  weights = rng.randn(*config['shape']).astype(np.float32)
  results = {'x_eval': evaluation}
  with tf.Graph().as_default():
    v1.set_random_seed(0)
    x, switch, train_y, infer_y = _build(impl, config)
    loss = tf.reduce_sum(tf.cast(train_y, tf.float32) * weights)
    gamma = [v for v in v1.global_variables() if _short(v.name) == 'gamma']
    beta = [v for v in v1.global_variables() if _short(v.name) == 'beta']
    targets = [x] + gamma + beta
    grads = tf.gradients(loss, targets)
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    moving = {_short(v.name): v for v in v1.global_variables() if _short(v.name) in MOVING_SUFFIXES}
    saver = v1.train.Saver()

    def feed(batch, training):
      result = {x: batch}
      if switch is not None:
        result[switch] = training
      return result

    with v1.Session() as sess:
      if fixture_ckpt:
        saver.restore(sess, fixture_ckpt)
      else:
        sess.run(v1.global_variables_initializer())
        for var in gamma + beta:
          var.load(rng.uniform(0.5, 1.5, var.shape).astype(var.dtype.as_numpy_dtype), sess)
        for batch in batches[1:1 + warmup]:
          sess.run([train_y] + updates, feed(batch, True))
      saver.save(sess, os.path.join(out_dir, f'{ident}_{impl}_start', 'model.ckpt'),
                 write_meta_graph=False)
      values = sess.run([train_y] + grads, feed(evaluation, True))
      results['train'] = values[0]
      names = ['grad_x'] + ['grad_gamma'] * len(gamma) + ['grad_beta'] * len(beta)
      for name, value in zip(names, values[1:]):
        results[name] = value
      results['infer'] = sess.run(infer_y, feed(evaluation, False))
      for batch in batches[1 + warmup:1 + warmup + steps]:
        sess.run([train_y] + updates, feed(batch, True))
      for name, value in sess.run(moving).items():
        results['after_' + name] = value
      results['infer_after'] = sess.run(infer_y, feed(evaluation, False))
      saver.save(sess, os.path.join(out_dir, f'{ident}_{impl}_final', 'model.ckpt'),
                 write_meta_graph=False)
      if restore:
        saver.restore(sess, os.path.join(out_dir, f'{ident}_{restore}_final', 'model.ckpt'))
        results['cross'] = sess.run(infer_y, feed(evaluation, False))
  np.savez(os.path.join(out_dir, f'{ident}_{impl}.npz'), **results)
  return results


def main(argv):
  impl, config_path, out_dir = argv[:3]
  restore = argv[3] if len(argv) > 3 else None
  with open(config_path) as f:
    configs = json.load(f)
  for config in configs:
    run(impl, config, out_dir, restore=restore)
  print(f'ran {len(configs)} configs with {impl}')


if __name__ == '__main__':
  main(sys.argv[1:])
