"""tf1_bn's rnn cells against the legacy cells of tf.compat.v1.nn.rnn_cell.

The legacy cells run from tf-keras with TF_USE_LEGACY_KERAS=1 in ONE child
process for all cases; tf1_bn's run here, patched in. Both go through
`tf.compat.v1.nn.rnn_cell` and the same protocol (tests/rnn_harness.py):
variable names, shapes, dtypes, classes and collections must be identical;
given the same variable values, outputs, final states and gradients agree
within 1e-6 relative (float32); initial values come from the same
distributions (two-sample Kolmogorov-Smirnov tests at alpha 0.001, constants
exactly).
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import rnn_harness
from reference import max_relative_error

HERE = pathlib.Path(__file__).resolve().parent
SHAPE = [3, 4, 5]  # batch, time, depth

LSTM = ['LSTMCell', {'num_units': 4}]
GRU = ['GRUCell', {'num_units': 3}]

CASES = [
    dict(id='basic_rnn_dynamic', cell=['BasicRNNCell', {'num_units': 4}]),
    dict(id='basic_rnn_relu_static', rnn='static',
         cell=['BasicRNNCell', {'num_units': 3, 'activation': 'relu'}]),
    dict(id='gru_dynamic', cell=GRU),
    dict(id='gru_bidi_seq', rnn='bidi', seq=True, cell=GRU),
    dict(id='basic_lstm_dynamic', cell=['BasicLSTMCell', {'num_units': 4}]),
    dict(id='basic_lstm_flat_static', rnn='static',
         cell=['BasicLSTMCell', {'num_units': 3, 'state_is_tuple': False, 'forget_bias': 0.5}]),
    dict(id='lstm_dynamic', cell=LSTM),
    dict(id='lstm_seq_time_major', seq=True, time_major=True, cell=LSTM),
    dict(id='lstm_full', cell=['LSTMCell', {'num_units': 4, 'use_peepholes': True, 'cell_clip': 0.7,
                                            'num_proj': 3, 'proj_clip': 0.4, 'forget_bias': 0.3}]),
    dict(id='lstm_proj_flat_static', rnn='static',
         cell=['LSTMCell', {'num_units': 4, 'num_proj': 2, 'state_is_tuple': False}]),
    dict(id='lstm_shards', cell=['LSTMCell', {'num_units': 4, 'num_proj': 3,
                                              'num_unit_shards': 2, 'num_proj_shards': 2}]),
    dict(id='lstm_float64', dtype='float64', cell=['LSTMCell', {'num_units': 3,
                                                                'use_peepholes': True}]),
    dict(id='lstm_bidi_named', rnn='bidi', scope='enc', cell=['LSTMCell', {'num_units': 3,
                                                                            'name': 'lstm'}]),
    dict(id='lstm_again', again=True, cell=LSTM),
    dict(id='basic_lstm_static_bidi', rnn='static_bidi',
         cell=['BasicLSTMCell', {'num_units': 3}]),
    dict(id='lstm_untrainable', cell=['LSTMCell', {'num_units': 3, 'trainable': False}]),
    dict(id='manual_two_lstm', rnn='manual', cell=['LSTMCell', {'num_units': 3}]),
    dict(id='manual_two_named', rnn='manual', cell=['GRUCell', {'num_units': 2, 'name': 'g'}]),
    dict(id='multi_dynamic', cell=['MultiRNNCell', [LSTM, GRU, ['BasicRNNCell',
                                                               {'num_units': 2}]]]),
    dict(id='multi_bidi_seq', rnn='bidi', seq=True, cell=['MultiRNNCell', [LSTM, LSTM]]),
    dict(id='multi_flat_static', rnn='static', cell=['MultiRNNCell', [
        ['BasicLSTMCell', {'num_units': 2, 'state_is_tuple': False}], GRU],
        {'state_is_tuple': False}]),
    dict(id='dropout_keep1', cell=['DropoutWrapper', LSTM]),
    # No per-step input dropout here: its ops do not wait for the previous
    # step, so dynamic_rnn's parallel iterations draw its masks in whatever
    # order they run (legacy too); output and state dropout follow the steps.
    dict(id='dropout_seeded', cell=['DropoutWrapper', LSTM, {
        'output_keep_prob': 0.6, 'state_keep_prob': 0.8, 'seed': 3}]),
    dict(id='dropout_seeded_input_static', rnn='static', cell=['DropoutWrapper', LSTM, {
        'input_keep_prob': 0.7, 'output_keep_prob': 0.6, 'seed': 3}]),
    dict(id='dropout_variational', cell=['DropoutWrapper', ['MultiRNNCell', [LSTM, GRU]], {
        'input_keep_prob': 0.7, 'output_keep_prob': 0.6, 'state_keep_prob': 0.8, 'seed': 5,
        'variational_recurrent': True, 'input_size': SHAPE[2], 'dtype': 'float32'}]),
    dict(id='residual_multi', cell=['MultiRNNCell', [
        ['ResidualWrapper', ['GRUCell', {'num_units': 5}]],
        ['DeviceWrapper', LSTM, {'device': '/cpu:0'}]]]),
    dict(id='init_lstm', init=True, shape=[2, 1, 24], cell=['MultiRNNCell', [
        ['LSTMCell', {'num_units': 40, 'use_peepholes': True, 'num_proj': 20}],
        ['GRUCell', {'num_units': 30}], ['BasicLSTMCell', {'num_units': 30}],
        ['BasicRNNCell', {'num_units': 30}]]]),
]
for case in CASES:
  case.setdefault('shape', SHAPE)
IDS = [case['id'] for case in CASES]
TOLERANCE = {'float32': 1e-6, 'float64': 1e-12}


def _load(prefix):
  with open(str(prefix) + '.json') as f:
    meta = json.load(f)
  return meta, dict(np.load(str(prefix) + '.npz'))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  env = rnn_harness.legacy_env_or_skip()
  out = tmp_path_factory.mktemp('rnn_parity')
  cases_path = out / 'cases.json'
  cases_path.write_text(json.dumps(CASES))
  child = subprocess.Popen(
      [sys.executable, str(HERE / 'rnn_harness.py'), 'legacy', str(cases_path),
       str(out / 'legacy')], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  from tf1_bn.legacy import rnn_cell_patch
  applied = rnn_cell_patch.patch()
  try:
    rnn_harness.run_all(CASES, str(out / 'tf1_bn'))
  finally:
    if applied:
      rnn_cell_patch.unpatch()
  log = child.communicate()[0].decode()
  assert child.returncode == 0, log[-3000:]
  return _load(out / 'tf1_bn'), _load(out / 'legacy')


# The two-sample Kolmogorov-Smirnov critical value at alpha = 0.001:
# D > C * sqrt((n + m) / (n m)) rejects "same distribution".
KS_C_ALPHA = 1.949


def ks_statistic(a, b):
  """The largest gap between the empirical CDFs of two samples."""
  a, b = np.sort(a), np.sort(b)
  points = np.concatenate([a, b])
  cdf_a = np.searchsorted(a, points, side='right') / a.size
  cdf_b = np.searchsorted(b, points, side='right') / b.size
  return np.abs(cdf_a - cdf_b).max()


def _case_arrays(arrays, ident):
  prefix = ident + '/'
  return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


@pytest.mark.parametrize('ident', IDS)
def test_variables_and_collections_match(runs, ident):
  (ours, _), (legacy, _) = runs
  assert ours[ident]['variables'] == legacy[ident]['variables']
  assert ours[ident]['collections'] == legacy[ident]['collections']
  assert ours[ident]['state_structure'] == legacy[ident]['state_structure']


@pytest.mark.parametrize('ident', IDS)
def test_cell_properties_match(runs, ident):
  (ours, _), (legacy, _) = runs
  wrapped = 'Wrapper' in json.dumps(next(c['cell'] for c in CASES if c['id'] == ident))
  all_variables = sorted(v[0] for v in ours[ident]['variables'])
  for mine, theirs in zip(ours[ident]['cells'], legacy[ident]['cells']):
    assert mine['state_size'] == theirs['state_size']
    assert mine['output_size'] == theirs['output_size']
    if wrapped:
      # The legacy wrappers list no variables (nor does a MultiRNNCell for its
      # wrapped cells); tf1_bn's list the wrapped cell's.
      assert sorted(mine['variables']) == all_variables
      assert sorted(mine['trainable_weights']) == all_variables
      continue
    assert sorted(mine['variables']) == sorted(theirs['variables'])
    if ident == 'lstm_shards':
      # The legacy lists no part of a partitioned kernel among the trainable
      # weights (its check misses PartitionedVariable parts); tf1_bn lists them.
      assert sorted(mine['trainable_weights']) == sorted(mine['variables'])
      continue
    assert sorted(mine['trainable_weights']) == sorted(theirs['trainable_weights'])


@pytest.mark.parametrize('ident', IDS)
def test_outputs_states_and_gradients_match(runs, ident):
  (_, ours), (_, legacy) = runs
  mine, theirs = _case_arrays(ours, ident), _case_arrays(legacy, ident)
  compared = sorted(k for k in theirs if not k.startswith('init/'))
  assert sorted(k for k in mine if not k.startswith('init/')) == compared
  dtype = next(c.get('dtype', 'float32') for c in CASES if c['id'] == ident)
  for key in compared:
    assert mine[key].shape == theirs[key].shape, key
    assert max_relative_error(mine[key], theirs[key]) <= TOLERANCE[dtype], key


def test_initial_values_come_from_the_same_distributions(runs):
  (_, ours), (_, legacy) = runs
  mine, theirs = _case_arrays(ours, 'init_lstm'), _case_arrays(legacy, 'init_lstm')
  keys = sorted(k for k in theirs if k.startswith('init/'))
  assert sorted(k for k in mine if k.startswith('init/')) == keys
  for key in keys:
    a, b = mine[key].ravel(), theirs[key].ravel()
    if np.ptp(b) == 0:
      np.testing.assert_array_equal(a, b, err_msg=key)  # zeros / ones biases
      continue
    # Glorot-uniform: the same bound, and the same distribution.
    if b.size >= 500:
      assert abs(np.abs(a).max() - np.abs(b).max()) < 0.02 * np.abs(b).max(), key
    bound = KS_C_ALPHA * np.sqrt((a.size + b.size) / (a.size * b.size))
    assert ks_statistic(a, b) < bound, key
    if b.size >= 500:
      # The test has the power to see a bound 30% off.
      assert ks_statistic(0.7 * a, b) > bound, key
