"""A CRNN-style OCR net (conv + BN + stacked bidirectional LSTM + CTC) written
against tf.compat.v1.nn.rnn_cell only: the legacy run (tf-keras, in a child)
and the ported run (tf1_bn patched in, in a child where importing tf_keras
fails) train 3 steps from the same checkpoint and agree within 1e-5."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import rnn_harness
from reference import max_relative_error

HERE = pathlib.Path(__file__).resolve().parent


def _run(impl, checkpoint, out, env):
  result = subprocess.run([sys.executable, str(HERE / 'crnn_model.py'), impl, checkpoint,
                           str(out)], env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  return dict(np.load(out))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  env = rnn_harness.legacy_env_or_skip()
  out = tmp_path_factory.mktemp('crnn')
  checkpoint = str(out / 'start' / 'model.ckpt')
  legacy = _run('legacy', checkpoint, out / 'legacy.npz', env)
  # TF_USE_LEGACY_KERAS=1 too: the variable set, tf-keras absent.
  ours = _run('tf1_bn', checkpoint, out / 'tf1_bn.npz', env)
  return ours, legacy


def test_same_variables(runs):
  ours, legacy = runs
  assert sorted(ours) == sorted(legacy)
  names = [k for k in legacy if k.startswith('var/')]
  assert 'var/bidirectional_rnn/fw/multi_rnn_cell/cell_1/lstm_cell/kernel' in names
  assert 'var/bn1/moving_mean' in names


def test_training_matches_the_legacy_run(runs):
  ours, legacy = runs
  assert np.all(np.diff(legacy['losses']) < 0)  # it trains
  for key in sorted(legacy):
    assert max_relative_error(ours[key], legacy[key]) <= 1e-5, key
