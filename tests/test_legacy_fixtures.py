"""tf1_bn restores checkpoints written by the real tf-slim and tf.layers.

The fixtures come from scripts/make_legacy_fixtures.py under TensorFlow
2.12.1 + tf-slim 1.1.0 (tests/fixtures/legacy/VERSIONS.txt). Each holds the
checkpoint after 3 training steps and the legacy's training and inference
outputs, gradients, and moving statistics after one more training step.
"""
import json
import pathlib

import numpy as np
import pytest

import legacy_harness
from reference import max_relative_error

FIXTURES = pathlib.Path(__file__).resolve().parent / 'fixtures'
CONFIGS = json.loads((FIXTURES / 'legacy_configs.json').read_text())


@pytest.mark.parametrize('config', CONFIGS, ids=[c['id'] for c in CONFIGS])
def test_restores_legacy_checkpoint_and_matches(tmp_path, config):
  legacy = np.load(FIXTURES / 'legacy' / f"{config['id']}_legacy.npz")
  ckpt = FIXTURES / 'legacy' / f"{config['id']}_legacy_start" / 'model.ckpt'
  ours = legacy_harness.run('tf1_bn', config, str(tmp_path), fixture_ckpt=str(ckpt))
  np.testing.assert_array_equal(ours['x_eval'], legacy['x_eval'])
  assert sorted(ours) == sorted(legacy.files)
  for key in legacy.files:
    error = max_relative_error(ours[key], legacy[key])
    assert error <= 1e-5, f'{key}: max relative error {error:.2e}'
