"""The sequence study and its pitfalls (tiny sizes; the bench's sequence
cases are tested in test_bench.py)."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from tf1_bn.studies import pitfalls_sequences, sequence_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cut_keeps_4_to_8_rows_and_zeroes_the_rest():
  sequences = np.arange(20 * 64, dtype=np.float32).reshape(20, 64) + 1
  padded, lengths = sequence_study.cut(sequence_study.as_sequences(sequences), seed=3)
  assert padded.shape == (20, 8, 8)
  assert lengths.min() >= 4 and lengths.max() <= 8
  for row, length in zip(range(20), lengths):
    np.testing.assert_array_equal(padded[row, :length].reshape(-1), sequences[row, :8 * length])
    assert not padded[row, length:].any()


def test_study_rows():
  rows = sequence_study.run(steps=4, eval_every=2)
  assert [row['model'] for row in rows] == list(sequence_study.MODELS)
  for row in rows:
    assert [step for step, _ in row['curve']] == [2, 4]
    assert all(0 <= accuracy <= 1 for _, accuracy in row['curve'])
  padded = {row['model']: row for row in rows if 'mean_gap' in row}
  assert len(padded) == 2
  # The padding's own shift of the mean is a property of the data: the same
  # for both models.
  values = [row['padding_mean_gap'] for row in padded.values()]
  assert values[0] > 0.1 and np.isclose(values[0], values[1], rtol=0.5)
  assert 'steps to 90%' in sequence_study.report(rows)


def test_padding_pitfall():
  outcome = pitfalls_sequences.padding_shifts_statistics()
  details = outcome.details
  # Half of the 24 positions are padding: the padded mean is half the real one.
  assert np.isclose(details['padded_mean'], details['real_mean'] / 2, rtol=1e-5)
  assert np.isclose(details['masked_mean'], details['real_mean'], rtol=1e-5)
  assert outcome.reproduced and outcome.remedy_ok


@pytest.mark.skipif(importlib.util.find_spec('tf_keras') is None, reason='needs tf-keras')
def test_while_loop_pitfall_with_the_legacy_layer():
  code = ('from tf1_bn.studies import pitfalls_sequences as p; '
          'o = p.bn_in_while_loop(); print(o.reproduced, o.remedy_ok, bool(o.skipped))')
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip().splitlines()[-1] == 'True True False'
