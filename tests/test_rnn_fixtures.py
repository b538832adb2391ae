"""Checkpoints written by the legacy rnn cells (TensorFlow 2.12.1, see
scripts/make_rnn_fixtures.py) restore into tf1_bn's cells with a default
Saver and give the recorded legacy outputs and final states."""
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import rnn_harness
from reference import max_relative_error
from tf1_bn.legacy import rnn_cell_patch

FIXTURES = pathlib.Path(__file__).resolve().parent / 'fixtures'
CASES = json.loads((FIXTURES / 'rnn_cases.json').read_text())


@pytest.fixture(scope='module', autouse=True)
def patched():
  applied = rnn_cell_patch.patch()
  yield
  if applied:
    rnn_cell_patch.unpatch()


@pytest.mark.parametrize('case', CASES, ids=[case['id'] for case in CASES])
def test_legacy_checkpoint_restores_and_gives_the_legacy_outputs(case):
  directory = FIXTURES / 'rnn'
  checkpoint = str(directory / case['id'] / 'model.ckpt')
  recorded = dict(np.load(directory / f"{case['id']}.npz"))
  # Every variable of the checkpoint is one of ours, by name and shape.
  saved = dict(tf.train.list_variables(checkpoint))
  with tf.Graph().as_default():
    rnn_harness.build_graph(case)
    ours = {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
  assert ours == saved
  restored = rnn_harness.checkpoint_run(case, checkpoint, save=False)
  assert sorted(restored) == sorted(recorded)
  for key, value in recorded.items():
    assert max_relative_error(restored[key], value) <= 1e-6, key
