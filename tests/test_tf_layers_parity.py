"""tf1_bn's tf.compat.v1.layers against the legacy layers (tf-keras, TF_USE_LEGACY_KERAS=1).

Every case of tests/tf_layers_harness.py runs twice: here after
`tf1_bn.patch_layers()` (through `tf.compat.v1.layers.<name>`), and in ONE
child process on tf-keras' legacy layers. Per case: the same variables
(names, shapes, dtypes, trainability, constraints), the same collections
(REGULARIZATION_LOSSES, UPDATE_OPS), the same layer-object properties, and
with the same variable values the same outputs and gradients within 1e-6
relative (float32). Initial values: each implementation's kernels pass a
Kolmogorov-Smirnov test against the analytic glorot-uniform law, and
against each other.
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import legacy_harness
import tf_layers_harness as harness
from reference import max_relative_error

HERE = pathlib.Path(__file__).resolve().parent
TOLERANCE = 1e-6


def _case(ident, fn, shape, *args, **kwargs):
  case = {'id': ident, 'fn': fn, 'shape': list(shape), 'args': list(args)}
  for key in ('twice', 'scope', 'call', 'batch', 'init', 'dtype', 'training_value'):
    if key in kwargs:
      case[key] = kwargs.pop(key)
  case['kwargs'] = kwargs
  return case


def _grid():
  img, seq, vol = [2, 7, 6, 3], [2, 9, 3], [2, 5, 6, 4, 2]
  nchw, ncw, ncdhw = [2, 3, 7, 6], [2, 3, 9], [2, 2, 5, 6, 4]
  reg = {'kernel_regularizer': 'reg:l2:0.01', 'bias_regularizer': 'reg:l2:0.02'}
  cases = [
      _case('conv2d', 'conv2d', img, 4, 3),
      _case('conv2d_same_upper', 'conv2d', img, 4, [3, 2], padding='SAME'),
      _case('conv2d_strides', 'conv2d', img, 4, 3, strides=2, padding='same'),
      _case('conv2d_dilation', 'conv2d', img, 4, 2, dilation_rate=2),
      _case('conv2d_nchw', 'conv2d', nchw, 4, 3, data_format='channels_first', strides=(2, 1)),
      _case('conv2d_no_bias_relu', 'conv2d', img, 4, 3, use_bias=False, activation='act:relu'),
      _case('conv2d_regularized', 'conv2d', img, 4, 3, activity_regularizer='reg:l2:0.5',
            kernel_constraint='constraint:clip', bias_constraint='constraint:clip', **reg),
      _case('conv2d_untrainable', 'conv2d', img, 4, 3, trainable=False),
      _case('conv2d_named_reuse', 'conv2d', img, 4, 3, name='c', twice=True),
      _case('conv2d_scoped', 'conv2d', img, 4, 3, scope='block'),
      _case('conv2d_unknown_batch', 'conv2d', [None, 7, 6, 3], 4, 3, batch=3),
      _case('Conv2D_twice', 'Conv2D', img, 4, 3, twice=True, scope='outer'),
      _case('Conv2D_named', 'Conv2D', img, 4, 3, name='mine'),
      _case('conv2d_float64', 'conv2d', img, 2, 3, dtype='float64'),
      _case('conv1d', 'conv1d', seq, 4, 3),
      _case('conv1d_causal', 'conv1d', seq, 4, 3, padding='causal', dilation_rate=2),
      _case('conv1d_ncw', 'conv1d', ncw, 4, 3, data_format='channels_first'),
      _case('conv3d', 'conv3d', vol, 3, 2),
      _case('conv3d_same_strides', 'conv3d', vol, 3, 3, strides=2, padding='same'),
      _case('conv2d_transpose_valid', 'conv2d_transpose', img, 2, 3, strides=2),
      _case('conv2d_transpose_same', 'conv2d_transpose', [None, 7, 6, 3], 2, [3, 2],
            strides=(2, 3), padding='same', batch=2),
      _case('conv2d_transpose_nchw', 'conv2d_transpose', nchw, 2, 3, strides=2,
            data_format='channels_first', **reg),
      _case('Conv2DTranspose', 'Conv2DTranspose', img, 2, 3, twice=True),
      _case('conv3d_transpose', 'conv3d_transpose', vol, 2, 2, strides=2, padding='same'),
      _case('separable_conv2d', 'separable_conv2d', img, 4, 3, depth_multiplier=2,
            depthwise_regularizer='reg:l2:0.1', pointwise_regularizer='reg:l2:0.2'),
      _case('separable_conv2d_same_dilated', 'separable_conv2d', img, 4, 3, padding='same',
            dilation_rate=2),
      _case('separable_conv2d_strides', 'separable_conv2d', img, 4, 2, strides=2),
      _case('separable_conv1d', 'separable_conv1d', seq, 4, 3, depth_multiplier=3,
            padding='same'),
      _case('SeparableConv1D_strides', 'SeparableConv1D', seq, 2, 2, strides=2, twice=True),
      _case('dense', 'dense', [3, 5], 4),
      _case('dense_rank3', 'dense', [2, 3, 5], 4, activation='act:tanh'),
      _case('dense_regularized', 'dense', [3, 5], 4, activity_regularizer='reg:l2:0.3',
            kernel_initializer='init:const:0.1', **reg),
      _case('dense_no_bias_untrainable', 'dense', [3, 5], 4, use_bias=False, trainable=False),
      _case('dense_named_reuse', 'dense', [3, 5], 4, name='fc', twice=True, scope='net'),
      _case('Dense_twice', 'Dense', [3, 5], 4, twice=True),
      _case('flatten', 'flatten', img),
      _case('flatten_nchw', 'flatten', nchw, data_format='channels_first'),
      _case('flatten_unknown_batch', 'flatten', [None, 3, 4], batch=2),
      _case('Flatten', 'Flatten', img, twice=True),
      _case('dropout_train', 'dropout', [4, 50], rate=0.3, seed=5, training=True),
      _case('dropout_switch', 'dropout', [4, 50], rate=0.5, seed=3, training='training:ph'),
      _case('dropout_noise_shape', 'dropout', [4, 6, 5], rate=0.5, seed=2,
            noise_shape=[4, 1, 5], training=True),
      _case('dropout_inference', 'dropout', [4, 50], rate=0.3),
      _case('Dropout_call', 'Dropout', [4, 50], 0.4, seed=1, call={'training': True}),
      _case('batch_normalization', 'batch_normalization', img, training='training:ph'),
      _case('BatchNormalization_twice', 'BatchNormalization', img, momentum=0.9, twice=True,
            call={'training': 'training:ph'}),
      _case('BatchNormalization_renorm', 'BatchNormalization', img, renorm=True,
            center=False, call={'training': 'training:ph'}),
      _case('BatchNormalization_nchw_unfused', 'BatchNormalization', nchw, axis=1, fused=False,
            trainable=False, call={'training': True}),
      _case('BatchNormalization_inference', 'BatchNormalization', [4, 5], axis=1,
            gamma_regularizer='reg:l2:0.1', call={'training': False}),
      _case('error_conv2d_rank', 'conv2d', [3, 5], 4, 3),
      _case('error_kernel_size', 'conv2d', img, 4, [3, 3, 3]),
      _case('error_dense_last_dim', 'dense', [3, None], 4),
      _case('error_conv2d_name_twice', 'conv2d', img, 4, 3, name='same', scope='s',
            twice=True),
  ]
  for mode in ('max', 'average'):
    cases += [
        _case(f'{mode}_pooling1d', f'{mode}_pooling1d', seq, 2, 2),
        _case(f'{mode}_pooling1d_ncw_same', f'{mode}_pooling1d', ncw, 2, 2, padding='same',
              data_format='channels_first'),
        _case(f'{mode}_pooling2d', f'{mode}_pooling2d', img, 2, 2),
        _case(f'{mode}_pooling2d_same', f'{mode}_pooling2d', img, [3, 2], [2, 1],
              padding='SAME'),
        _case(f'{mode}_pooling2d_nchw', f'{mode}_pooling2d', nchw, 2, 2,
              data_format='channels_first'),
        _case(f'{mode}_pooling3d', f'{mode}_pooling3d', vol, 2, 2, padding='same'),
        _case(f'{mode}_pooling3d_ncdhw', f'{mode}_pooling3d', ncdhw, 2, 1,
              data_format='channels_first'),
    ]
  cases.append(_case('MaxPooling2D', 'MaxPooling2D', img, 2, 2, twice=True))
  for program in harness.PROGRAMS:
    cases.append({'id': f'program_{program}', 'program': program, 'shape': [2, 2, 2, 4]})
  # Big enough for the statistical test of the default (glorot-uniform) kernels.
  cases.append(_case('init_conv2d', 'conv2d', [1, 5, 5, 48], 64, 3, init=True))
  cases.append(_case('init_dense', 'dense', [1, 300], 200, init=True))
  return cases


CASES = _grid()


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  env = legacy_harness.legacy_env_or_skip('the legacy layers')
  out = tmp_path_factory.mktemp('tf_layers')
  cases_path = out / 'cases.json'
  cases_path.write_text(json.dumps(CASES))
  child = subprocess.Popen([sys.executable, str(HERE / 'tf_layers_harness.py'), 'legacy',
                            str(cases_path), str(out / 'legacy.npz')], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  import tf1_bn
  try:
    ours = harness.run_cases('tf1_bn', CASES)
  finally:
    tf1_bn.unpatch_layers()
  _, stderr = child.communicate(timeout=900)
  assert child.returncode == 0, stderr[-3000:]
  return ours, harness.load(out / 'legacy.npz')


def _compare_meta(ours, legacy):
  if 'error' in legacy:
    assert ours.get('error') == legacy['error'], (ours, legacy['message'])
    return
  assert 'error' not in ours, ours
  for key in ('variables', 'regularization_losses', 'update_ops', 'output_shapes',
              'output_dtypes'):
    assert ours[key] == legacy[key], key
  if legacy['layer'] is not None:
    assert ours['layer'] == legacy['layer']


@pytest.mark.parametrize('case', CASES, ids=[c['id'] for c in CASES])
def test_matches_legacy_layer(results, case):
  ours, legacy = (r[case['id']] for r in results)
  _compare_meta(ours['meta'], legacy['meta'])
  compared = [key for key in legacy if key != 'meta' and not key.startswith('init/')]
  assert sorted(k for k in ours if k != 'meta' and not k.startswith('init/')) == sorted(compared)
  for key in compared:
    assert ours[key].shape == legacy[key].shape, key
    assert ours[key].dtype == legacy[key].dtype, key
    error = max_relative_error(ours[key], legacy[key])
    assert error <= TOLERANCE, f'{key}: max relative error {error:.2e} > {TOLERANCE}'


@pytest.mark.parametrize('ident,fan_in,fan_out', [('init_conv2d', 9 * 48, 9 * 64),
                                                   ('init_dense', 300, 200)])
def test_default_kernel_initializer_is_glorot_uniform(results, ident, fan_in, fan_out):
  ours, legacy = (r[ident] for r in results)
  limit = np.sqrt(6.0 / (fan_in + fan_out))
  law = stats.uniform(loc=-limit, scale=2 * limit).cdf
  kernels = [key for key in legacy if key.endswith('kernel')]
  assert kernels
  for key in kernels:
    for impl, values in (('tf1_bn', ours[key].ravel()), ('legacy', legacy[key].ravel())):
      assert np.abs(values).max() <= limit, impl
      # The moments of U(-limit, limit), within 5 standard errors.
      n = values.size
      assert abs(values.mean()) <= 5 * limit / np.sqrt(3 * n), impl
      variance, var_of_var = limit ** 2 / 3, limit ** 4 * (1 / 5 - 1 / 9)
      assert abs(values.var() - variance) <= 5 * np.sqrt(var_of_var / n), impl
      pvalue = stats.kstest(values, law).pvalue
      assert pvalue > 1e-4, (impl, pvalue)
    assert stats.ks_2samp(ours[key].ravel(), legacy[key].ravel()).pvalue > 1e-4
  # Biases start at zero in both.
  for key in legacy:
    if key.endswith('bias'):
      assert not ours[key].any() and not legacy[key].any()
