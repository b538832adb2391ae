"""Checkpoints of every convention: inspected, ported and restored into
tf1_bn models with the legacy implementation's own inference outputs (the
recorded fixtures) or a numpy reference as the expected values."""
import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import reference
import tf1_bn
from tf1_bn.deploy import checkpoints
from tf1_bn.studies import cli

v1 = tf.compat.v1
FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
CONFIGS = {c['id']: c for c in json.loads((FIXTURES / 'legacy_configs.json').read_text())}


def _fixture(ident):
  return str(FIXTURES / 'legacy' / f'{ident}_legacy_start' / 'model.ckpt'), \
      np.load(FIXTURES / 'legacy' / f'{ident}_legacy.npz')


def _bn_layer_args(config):
  kwargs = config['kwargs']
  if config['fn'] == 'slim':
    return dict(axis=1 if kwargs.get('data_format') == 'NCHW' else -1,
                scale=kwargs.get('scale', False), eps=1e-3)
  return dict(axis=kwargs.get('axis', -1), scale=True, eps=1e-3)


def _bn_layer_inference(config, x_eval, load, name='bn'):
  """Inference output of a bn_layer model after `load(sess)`."""
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None] + config['shape'][1:])
    y = tf1_bn.bn_layer(x, name=name, **_bn_layer_args(config))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      load(sess)
      return sess.run(y, {x: x_eval})


def _expected_inference(ident, path, recorded):
  """The legacy layer's recorded inference output from this checkpoint; for
  in-place updates (updates_collections=None) the recorded one ran after one
  more update, so numpy on the checkpoint's own values instead."""
  config = CONFIGS[ident]
  if 'updates_collections' not in config['kwargs']:
    return recorded['infer']
  reader = tf.train.load_checkpoint(path)
  get = lambda leaf: reader.get_tensor(f'BatchNorm/{leaf}') if reader.has_tensor(
      f'BatchNorm/{leaf}') else None
  return reference.normalize(recorded['x_eval'], get('moving_mean'), get('moving_variance'),
                             get('gamma'), get('beta'), 1e-3, _bn_layer_args(config)['axis'])


@pytest.mark.parametrize('ident', sorted(CONFIGS))
def test_legacy_checkpoint_is_inspected_and_restores_into_bn_layer(ident):
  path, recorded = _fixture(ident)
  report = checkpoints.inspect_checkpoint(path)
  assert report.ok, report.text()
  assert [layer.convention for layer in report.layers] == \
      ['slim' if ident.startswith('slim') else 'tf.layers']
  out = _bn_layer_inference(CONFIGS[ident], recorded['x_eval'],
                            lambda sess: tf1_bn.restore(sess, path))
  assert reference.max_relative_error(out, _expected_inference(ident, path, recorded)) <= 1e-5


@pytest.mark.parametrize('to', checkpoints.PORT_TARGETS)
@pytest.mark.parametrize('ident', ['layers_nhwc', 'layers_renorm', 'slim_nchw',
                                   'slim_zero_debias', 'slim_2d'])
def test_ported_checkpoint_loads_with_a_plain_saver(ident, to, tmp_path):
  path, recorded = _fixture(ident)
  out_path = str(tmp_path / 'ported' / 'model.ckpt')
  renamed = checkpoints.port_checkpoint(path, out_path, to)
  config = CONFIGS[ident]
  layer_path = {'tf.layers': 'batch_normalization', 'slim': 'BatchNorm',
                'bn_layer': 'BatchNorm' if config['fn'] == 'slim' else 'batch_normalization'}[to]
  # The names are exactly a bn_layer's with that path: a default Saver restores them.
  out = _bn_layer_inference(config, recorded['x_eval'],
                            lambda sess: v1.train.Saver().restore(sess, out_path), name=layer_path)
  assert reference.max_relative_error(out, _expected_inference(ident, path, recorded)) <= 1e-5
  source = checkpoints.read_checkpoint(path)
  ported = checkpoints.read_checkpoint(out_path)
  for old, new in renamed.items():  # every value copied bit for bit
    if new is not None:
      assert ported[new].tobytes() == source[old].tobytes()
  dropped = [old for old, new in renamed.items() if new is None]
  assert dropped == ([] if to == 'slim' or ident != 'slim_zero_debias' else
                     ['BatchNorm/BatchNorm/moving_mean/biased',
                      'BatchNorm/BatchNorm/moving_mean/local_step'])


def _blog_recipe(x, training, name='bn', moving_decay=0.9, eps=1e-5):
  """The recipe as the seed blog post wrote it (its `beat` typo included)."""
  param_shape = x.shape[-1]
  with v1.variable_scope(name):
    gamma = v1.get_variable('gamma', param_shape, initializer=v1.constant_initializer(1))
    beta = v1.get_variable('beat', param_shape, initializer=v1.constant_initializer(0))
    axes = list(range(len(x.shape) - 1))
    batch_mean, batch_var = tf.nn.moments(x, axes, name='moments')
    ema = v1.train.ExponentialMovingAverage(moving_decay, name='ema')

    def mean_var_with_update():
      with tf.control_dependencies([ema.apply([batch_mean, batch_var])]):
        return tf.identity(batch_mean), tf.identity(batch_var)

    mean, var = tf.cond(tf.equal(training, True), mean_var_with_update,
                        lambda: (ema.average(batch_mean), ema.average(batch_var)))
    return tf.nn.batch_normalization(x, mean, var, beta, gamma, eps)


def _recipe_checkpoint(tmp_path, steps=5):
  rng = np.random.RandomState(0)
  x_eval = rng.randn(6, 4, 4, 3).astype(np.float32)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4, 4, 3])
    training = v1.placeholder(tf.bool, [])
    with v1.variable_scope('net'):
      h = _blog_recipe(x, training, name='bn1')
      y = _blog_recipe(h * 2.0 + 1.0, training, name='bn2')
    step = v1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean((y - 0.5) ** 2))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for _ in range(steps):
        sess.run(step, {x: rng.randn(8, 4, 4, 3) * 2 + 3, training: True})
      expected = sess.run(y, {x: x_eval, training: False})
      path = v1.train.Saver().save(sess, str(tmp_path / 'recipe' / 'model.ckpt'))
  return path, x_eval, expected


def _two_layer_model(x_eval, load, **kwargs):
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4, 4, 3])
    with v1.variable_scope('net'):
      h = tf1_bn.bn_layer(x, name='first', eps=1e-5, **kwargs)
      y = tf1_bn.bn_layer(h * 2.0 + 1.0, name='second', eps=1e-5, **kwargs)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      mapping = load(sess)
      return sess.run(y, {x: x_eval}), mapping


def test_recipe_checkpoint_restores_and_ports(tmp_path):
  path, x_eval, expected = _recipe_checkpoint(tmp_path)
  report = checkpoints.inspect_checkpoint(path)
  assert [(l.path, l.convention) for l in report.layers] == [('net/bn1', 'recipe'),
                                                             ('net/bn2', 'recipe')]
  assert report.ok, report.text()
  out, mapping = _two_layer_model(x_eval, lambda sess: tf1_bn.restore(sess, path))
  assert reference.max_relative_error(out, expected) <= 1e-5
  assert mapping['net/first/moving_mean'] == 'net/bn1/net/bn1/moments/Squeeze/ema'
  assert mapping['net/second/beta'] == 'net/bn2/beat'
  ported = str(tmp_path / 'ported' / 'model.ckpt')
  checkpoints.port_checkpoint(path, ported, 'bn_layer')
  assert set(checkpoints.read_checkpoint(ported)) == {
      f'net/bn{i}/{leaf}' for i in (1, 2) for leaf in checkpoints.ROLES}


def test_sonnet_and_tensorpack_checkpoints(tmp_path):
  """Checkpoints written with the variable names and shapes those libraries
  use (Sonnet 1 keeps the reduced axes as 1), checked against numpy."""
  rng = np.random.RandomState(1)
  params = {k: rng.uniform(0.5, 2.0, 3).astype(np.float32) for k in
            ('gamma', 'beta', 'mean', 'variance')}
  names = {'sonnet': {'gamma': 'net/batch_norm/gamma', 'beta': 'net/batch_norm/beta',
                      'mean': 'net/batch_norm/moving_mean',
                      'variance': 'net/batch_norm/moving_variance'},
           'tensorpack': {'gamma': 'net/bn/gamma', 'beta': 'net/bn/beta',
                          'mean': 'net/bn/mean/EMA', 'variance': 'net/bn/variance/EMA'}}
  x_eval = rng.randn(5, 4, 4, 3).astype(np.float32)
  expected = reference.normalize(x_eval, params['mean'], params['variance'], params['gamma'],
                                 params['beta'], 1e-5, -1)
  for convention, leaf_names in names.items():
    shape = [1, 1, 1, 3] if convention == 'sonnet' else [3]
    with tf.Graph().as_default():
      for key, name in leaf_names.items():
        v1.get_variable(name, initializer=params[key].reshape(shape))
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        path = v1.train.Saver().save(sess, str(tmp_path / convention / 'model.ckpt'))
    assert [l.convention for l in checkpoints.inspect_checkpoint(path).layers] == [convention]
    with tf.Graph().as_default():
      x = v1.placeholder(tf.float32, [None, 4, 4, 3])
      with v1.variable_scope('net'):
        y = tf1_bn.bn_layer(x, name='bn_layer')
      with v1.Session() as sess:
        tf1_bn.restore(sess, path)
        out = sess.run(y, {x: x_eval})
    assert reference.max_relative_error(out, expected) <= 1e-5, convention
    ported_path = str(tmp_path / convention / 'tf_layers' / 'model.ckpt')
    checkpoints.port_checkpoint(path, ported_path, 'tf.layers')
    ported = checkpoints.read_checkpoint(ported_path)
    np.testing.assert_array_equal(ported['net/batch_normalization/moving_variance'],
                                  params['variance'])


def _save(tmp_path, name, values):
  return checkpoints.write_checkpoint(
      {k: np.asarray(v, np.float32) for k, v in values.items()}, str(tmp_path / name / 'ckpt'))


def test_inspector_flags_broken_checkpoints(tmp_path, capsys):
  healthy = {'a/bn/moving_mean': [1e-4, 0, 0], 'a/bn/moving_variance': [1, 1, 1.0001],
             'a/bn/gamma': [1, 1, 1], 'a/bn/beta': [0, 0, 0], 'a/dense/kernel': [[1.0]]}
  cases = {
      'never_updated': ({'b/BatchNorm/moving_mean': [0, 0], 'b/BatchNorm/moving_variance': [1, 1]},
                        'never updated'),
      'nan': ({'b/batch_normalization/moving_mean': [0, np.nan],
               'b/batch_normalization/moving_variance': [1, 1]}, 'non-finite values'),
      'missing_variance': ({'b/bn/gamma': [1, 1], 'b/bn/moving_mean': [0.3, 0.1]},
                           'missing moving_variance'),
      'negative_variance': ({'b/bn/moving_mean': [0.3, 0.1], 'b/bn/moving_variance': [1, -0.5]},
                            'non-positive moving variance in 1 channel'),
  }
  path = _save(tmp_path, 'healthy', healthy)
  assert cli.main(['inspect', path]) == 0
  assert 'OK' in capsys.readouterr().out
  for case, (broken, flag) in cases.items():
    path = _save(tmp_path, case, {**healthy, **broken})
    report = checkpoints.inspect_checkpoint(path)
    assert [l.path for l in report.layers] == sorted(['a/bn', next(iter(broken)).rpartition(
        '/')[0]])
    assert not report.ok and flag in report.text(), case
    assert report.other_variables == 1
    assert cli.main(['inspect', path]) == 1
    assert 'PROBLEM: ' + flag in capsys.readouterr().out


def test_restore_refuses_a_partial_restore(tmp_path):
  path = _save(tmp_path, 'partial', {'net/bn/moving_mean': [0.5, 0.5], 'net/bn/gamma': [2, 2],
                                    'net/bn/beta': [0, 0]})
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 2])
    with v1.variable_scope('net'):
      tf1_bn.bn_layer(x, name='bn')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      before = sess.run(v1.global_variables())
      with pytest.raises(tf1_bn.RestoreError, match='net/bn/moving_variance') as error:
        tf1_bn.restore(sess, path)
      assert error.value.missing == ['net/bn/moving_variance']
      after = sess.run(v1.global_variables())
  assert all(a.tobytes() == b.tobytes() for a, b in zip(before, after))  # nothing assigned


def test_port_errors_name_the_argument(tmp_path):
  path = _save(tmp_path, 'two', {'m/bn1/moving_mean': [0], 'm/bn1/moving_variance': [1],
                                 'm/bn2/moving_mean': [0], 'm/bn2/moving_variance': [1]})
  with pytest.raises(ValueError, match='`to` must be one of'):
    checkpoints.port_checkpoint(path, str(tmp_path / 'o'), 'keras')
  with pytest.raises(ValueError, match='2 layers share the parent'):
    checkpoints.port_checkpoint(path, str(tmp_path / 'o'), 'slim')
  renamed = checkpoints.port_checkpoint(path, str(tmp_path / 'o' / 'ckpt'), 'tf.layers')
  assert renamed['m/bn2/moving_mean'] == 'm/batch_normalization_1/moving_mean'
  with pytest.raises(ValueError, match='No checkpoint at'):
    checkpoints.inspect_checkpoint(str(tmp_path / 'nothing'))


# --- paths as users type them; port's state file; port never touches its input ------
START = FIXTURES / 'legacy' / 'layers_2d_legacy_start'  # model.ckpt.*, no `checkpoint` file


@pytest.fixture
def copied(tmp_path):
  """A copy of a recorded legacy checkpoint folder (no state file): its prefix."""
  folder = tmp_path / 'legacy'
  folder.mkdir()
  for file in START.iterdir():
    (folder / file.name).write_bytes(file.read_bytes())
  return str(folder / 'model.ckpt')


def _listing(root):
  return {str(p): p.read_bytes() for p in sorted(pathlib.Path(root).rglob('*')) if p.is_file()}


@pytest.mark.parametrize('form', ['prefix', 'index', 'data', 'directory', 'directory/'])
def test_checkpoint_paths_as_users_type_them(form, capsys):
  prefix = str(START / 'model.ckpt')
  typed = {'prefix': prefix, 'index': prefix + '.index',
           'data': prefix + '.data-00000-of-00001', 'directory': str(START),
           'directory/': str(START) + '/'}[form]
  assert checkpoints.checkpoint_prefix(typed) == prefix
  assert cli.main(['inspect', typed]) == 0
  out = capsys.readouterr().out
  assert out.splitlines()[0].endswith('model.ckpt: 1 batch-norm layer(s), 0 other variable(s)')
  # The values are the recorded legacy checkpoint's, whatever the form.
  reader = tf.train.load_checkpoint(prefix)
  values = checkpoints.read_checkpoint(typed)
  assert sorted(values) == sorted(reader.get_variable_to_shape_map())
  for name, value in values.items():
    np.testing.assert_array_equal(value, reader.get_tensor(name))


def test_a_directory_of_several_checkpoints_needs_a_state_file_or_a_prefix(tmp_path):
  values = {'bn/moving_mean': np.zeros(2, np.float32), 'bn/moving_variance': np.ones(2, np.float32)}
  first = checkpoints.write_checkpoint(values, str(tmp_path / 'run' / 'model.ckpt-1'))
  second = checkpoints.write_checkpoint(values, str(tmp_path / 'run' / 'model.ckpt-2'))
  with pytest.raises(tf1_bn.CheckpointError, match='2 checkpoints in this directory') as error:
    checkpoints.checkpoint_prefix(str(tmp_path / 'run'))
  assert f'{first}, {second}' in str(error.value)
  v1.train.update_checkpoint_state(str(tmp_path / 'run'), 'model.ckpt-1')
  assert checkpoints.checkpoint_prefix(str(tmp_path / 'run')) == first
  with pytest.raises(tf1_bn.CheckpointError, match='No checkpoint found in this directory'):
    checkpoints.checkpoint_prefix(str(tmp_path))
  (tmp_path / 'run' / 'model.ckpt-2.index').unlink()
  with pytest.raises(tf1_bn.CheckpointError, match='whose index is not there'):
    checkpoints.checkpoint_prefix(second + '.data-00000-of-00001')


def test_port_writes_a_state_file_so_its_output_directory_works(copied, tmp_path, capsys):
  out_dir = tmp_path / 'ported'
  assert cli.main(['port', os.path.dirname(copied), str(out_dir / 'model.ckpt'),
                   '--to', 'slim']) == 0
  assert tf.train.latest_checkpoint(str(out_dir)) == str(out_dir / 'model.ckpt')
  capsys.readouterr()
  assert cli.main(['inspect', str(out_dir)]) == 0
  assert 'BatchNorm  slim  channels' in capsys.readouterr().out
  # A second port into the same folder becomes the latest; the first stays listed.
  checkpoints.port_checkpoint(copied, str(out_dir / 'again.ckpt'), 'bn_layer')
  state = tf.train.get_checkpoint_state(str(out_dir))
  assert state.model_checkpoint_path == str(out_dir / 'again.ckpt')
  assert list(state.all_model_checkpoint_paths) == [str(out_dir / 'model.ckpt'),
                                                    str(out_dir / 'again.ckpt')]
  # The ported values are the input's, under the new names.
  source = checkpoints.read_checkpoint(copied)
  ported = checkpoints.read_checkpoint(str(out_dir / 'model.ckpt'))
  for leaf in ('gamma', 'beta', 'moving_mean', 'moving_variance'):
    np.testing.assert_array_equal(ported[f'BatchNorm/{leaf}'],
                                  source[f'batch_normalization/{leaf}'])


@pytest.mark.parametrize('output', ['same prefix', 'same prefix from the index', 'data file',
                                    'same directory', 'same directory, relative'])
def test_port_refuses_to_overwrite_or_mix_with_its_input(output, copied, tmp_path, capsys,
                                                         monkeypatch):
  folder = os.path.dirname(copied)
  in_path, out_path = {
      'same prefix': (folder, copied),
      'same prefix from the index': (copied + '.index', copied),
      'data file': (copied, copied + '.data-00000-of-00001'),
      'same directory': (copied, os.path.join(folder, 'ported.ckpt')),
      'same directory, relative': ('model.ckpt', 'ported.ckpt'),
  }[output]
  monkeypatch.chdir(folder)
  before = _listing(tmp_path)
  assert cli.main(['port', in_path, out_path, '--to', 'tf.layers']) == cli.EXIT_ERROR
  err = capsys.readouterr().err
  assert err.startswith(f"tf1-bn port: error: `out_path` '{out_path}' ") and \
      err.count('\n') == 1, err
  assert ('would overwrite it' in err) == output.startswith(('same prefix', 'data'))
  assert 'Nothing was written.' in err
  assert _listing(tmp_path) == before
