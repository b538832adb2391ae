"""tf1_bn.batch_normalization against the real tf.compat.v1.layers.batch_normalization.

The legacy layer runs from tf-keras with TF_USE_LEGACY_KERAS=1, in a
subprocess so the setting does not leak into this session. Both run the same
protocol (tests/legacy_harness.py); outputs, gradients, moving statistics
after 20 steps and checkpoints restored across implementations must agree.
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import legacy_harness
from reference import max_relative_error

HERE = pathlib.Path(__file__).resolve().parent


def _grid():
  configs = []
  layouts = {2: [8, 5], 3: [6, 4, 5], 4: [4, 5, 6, 3], 5: [3, 4, 3, 2, 5]}
  for rank, shape in layouts.items():
    axes = [-1] if rank == 2 else [-1, 1, [1, 2]]
    for axis in axes:
      for fused in (None, True, False):
        configs.append({'id': f'r{rank}_a{str(axis).replace(", ", "-")}_f{fused}', 'fn': 'layers',
                        'shape': shape, 'kwargs': {'axis': axis, 'fused': fused}})
  base = {'fn': 'layers', 'shape': [8, 3, 4, 5]}
  extra = {
      'renorm': {'renorm': True, 'renorm_momentum': 0.9},
      'renorm_clip': {'renorm': True, 'renorm_clipping': {'rmax': 1.2, 'rmin': 0.8, 'dmax': 0.3}},
      'no_center_scale': {'center': False, 'scale': False},
      'untrainable': {'trainable': False},
      'adjustment': {'adjustment': True},
      'momentum_eps': {'momentum': 0.9, 'epsilon': 1e-5},
      'nchw_momentum': {'axis': 1, 'momentum': 0.8, 'fused': True},
  }
  for name, kwargs in extra.items():
    configs.append(dict(base, id=name, kwargs=kwargs))
  configs.append(dict(base, id='virtual', kwargs={'virtual_batch_size': 2}, training='python'))
  configs.append(dict(base, id='virtual_2d', shape=[8, 5], kwargs={'virtual_batch_size': 4},
                      training='python'))
  for fused in (None, False):
    configs.append(dict(base, id=f'float16_f{fused}', dtype='float16', kwargs={'fused': fused}))
  # Epsilon as the installed TensorFlow's legacy layer uses it (no floor at
  # 1.001e-5 on 2.12-2.21), on data whose variance (about 2e-4) makes a
  # floor visible: 1e-6 against 1.001e-5 moves the outputs by 2%.
  for epsilon in (1e-8, 1e-6, 1e-3):
    for fused in (True, None):
      for layout, axis in (('nhwc', -1), ('nchw', 1)):
        configs.append(dict(base, id=f'eps{epsilon:g}_f{fused}_{layout}', scale=1e-2,
                            kwargs={'epsilon': epsilon, 'fused': fused, 'axis': axis}))
  return configs


CONFIGS = _grid()


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  env = legacy_harness.legacy_env_or_skip('the legacy layer')
  out = tmp_path_factory.mktemp('parity')
  config_path = out / 'configs.json'
  config_path.write_text(json.dumps(CONFIGS))
  for config in CONFIGS:
    legacy_harness.run('tf1_bn', config, str(out))
  result = subprocess.run([sys.executable, str(HERE / 'legacy_harness.py'), 'legacy',
                           str(config_path), str(out), 'tf1_bn'],
                          env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  cross = {}
  for config in CONFIGS:
    cross[config['id']] = legacy_harness.run('tf1_bn', dict(config, id=config['id']), str(out),
                                             restore='legacy')['cross']
  return out, cross


def _tolerance(config):
  return 1e-2 if config.get('dtype') == 'float16' else 1e-5


@pytest.mark.parametrize('config', CONFIGS, ids=[c['id'] for c in CONFIGS])
def test_matches_legacy_layer(runs, config):
  out, cross = runs
  ours = np.load(out / f"{config['id']}_tf1_bn.npz")
  legacy = np.load(out / f"{config['id']}_legacy.npz")
  assert sorted(ours.files) == sorted(legacy.files), 'different variables or gradients'
  tol = _tolerance(config)
  for key in legacy.files:
    if key in ('cross', 'x_eval'):
      continue
    assert ours[key].shape == legacy[key].shape, key
    error = max_relative_error(ours[key], legacy[key])
    assert error <= tol, f'{key}: max relative error {error:.2e} > {tol}'
  # Checkpoints cross-restore both ways with identical inference outputs.
  assert max_relative_error(legacy['cross'], ours['infer_after']) <= tol
  assert max_relative_error(cross[config['id']], legacy['infer_after']) <= tol
