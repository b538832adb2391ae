"""`tf1-bn pitfalls`: every pitfall still reproduces on the installed
TensorFlow, and tf1_bn's way gives the numbers an independent numpy
reference gives."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import reference
from tf1_bn.studies import legacy_child as legacy, pitfalls, pitfalls_sequences


@pytest.fixture(scope='module')
def outcomes(tmp_path_factory):
  path = tmp_path_factory.mktemp('pitfalls') / 'outcomes.json'
  env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
  completed = subprocess.run([sys.executable, '-m', 'tf1_bn.studies.pitfalls', '--json', str(path)],
                             env=env, capture_output=True, text=True, timeout=600)
  assert completed.returncode == 0, completed.stdout + completed.stderr
  return {o['key']: o for o in json.loads(path.read_text())}, completed.stdout


def _outcome(outcomes, key):
  outcome = outcomes[0][key]
  assert not outcome['skipped'], outcome['skipped']
  assert outcome['reproduced'], outcome['evidence']
  assert outcome['remedy_ok'], outcome['remedy']
  return outcome


def test_every_pitfall_runs_and_is_printed(outcomes):
  assert list(outcomes[0]) == [p.__name__ for p in pitfalls.PITFALLS]
  for index, outcome in enumerate(outcomes[0].values(), 1):
    assert f'{index}. {outcome["title"]}' in outcomes[1]
  assert 'DOES NOT reproduce' not in outcomes[1] and 'FAILED' not in outcomes[1]


def test_undefined_axis(outcomes):
  outcome = _outcome(outcomes, 'undefined_axis')
  assert 'ValueError: Input has undefined `axis` dimension' in outcome['evidence']
  assert '(features, batch)' in outcome['remedy']
  details = outcome['details']
  expected, _, _ = reference.batch_norm_train(np.array(details['batch']), None, None,
                                              details['eps'], -1)
  assert reference.max_relative_error(details['output'], expected) < 1e-5


def test_incompatible_shapes_7_vs_2(outcomes):
  outcome = _outcome(outcomes, 'incompatible_shapes')
  assert 'Incompatible shapes: [7] vs. [2]' in outcome['evidence']
  details = outcome['details']
  assert details['sizes'] == [7, 2]
  for pre_bn, output in zip(details['pre_bn'], details['outputs']):
    expected, _, _ = reference.batch_norm_train(np.array(pre_bn), None, None, details['eps'], -1)
    assert reference.max_relative_error(output, expected) < 1e-5


def test_missing_update_ops_collapses_evaluation(outcomes):
  details = _outcome(outcomes, 'missing_update_ops')['details']
  for name, values in details['broken_moving'].items():
    assert np.all(np.array(values) == (0.0 if name.endswith('mean') else 1.0)), name
  assert details['broken_accuracy_training_true'] > 0.9
  assert details['broken_accuracy_inference'] < details['broken_accuracy_training_true'] - 0.3
  assert details['fixed_accuracy_inference'] >= 0.9
  assert 'bn_a, bn_b' in details['check_error']


def test_training_true_at_test(outcomes):
  details = _outcome(outcomes, 'training_true_at_test')['details']
  assert details['train_gap'] > 1e-2
  assert details['infer_gap'] <= 1e-5


def test_trainable_vs_training(outcomes):
  details = _outcome(outcomes, 'trainable_vs_training')['details']
  assert details['legacy_gap'] > 0.1
  batch = np.array(details['batch'])
  mean = np.full(3, pitfalls.PRETRAINED_MEAN)
  variance = np.full(3, pitfalls.PRETRAINED_VARIANCE)
  expected = reference.normalize(batch, mean, variance, None, None, 1e-5, -1)
  assert reference.max_relative_error(details['ours_fine_tune'], expected) < 1e-5
  for name, values in details['ours_moving_after'].items():
    np.testing.assert_array_equal(values, mean if name.endswith('mean') else variance)


def test_recipe_inference_computes_moments(outcomes):
  details = _outcome(outcomes, 'recipe_inference_moments')['details']
  assert details['recipe'] >= 2 and details['bn_layer'] == 0


def test_recipe_variance_starts_at_zero_matches_the_ema_replay(outcomes):
  details = _outcome(outcomes, 'recipe_variance_starts_at_zero')['details']
  data = np.random.RandomState(4).randn(64, 8).astype(np.float32) * 2
  mean, var = reference.moments(data, -1)
  for name, initial_variance in (('recipe', 0.0), ('bn_layer', 1.0)):
    for steps, measured in zip(details['checkpoints'], details['stds'][name]):
      moving_mean = reference.ema(np.zeros(8), [mean] * steps, 0.9)
      moving_var = reference.ema(np.full(8, initial_variance), [var] * steps, 0.9)
      expected = reference.normalize(data, moving_mean, moving_var, None, None, 1e-5, -1).std()
      assert abs(measured - expected) <= 1e-4 * expected, (name, steps)


def test_recipe_reuse(outcomes):
  outcome = _outcome(outcomes, 'recipe_reuse')
  assert 'does not exist' in outcome['evidence']
  assert outcome['details'] == {'created': 0, 'gap': 0.0}


def test_bn_in_while_loop(outcomes):
  outcome = _outcome(outcomes, 'bn_in_while_loop')
  assert 'is not an element of this graph' in outcome['evidence']
  # One training step: the moving mean is the EMA over the loop's iterations,
  # each iteration's batch mean in turn.
  data = pitfalls_sequences._loop_data()
  expected = reference.ema(np.zeros(data.shape[-1]), [step.mean(0) for step in
                                                      data.astype(np.float64)],
                           pitfalls_sequences.LOOP_MOMENTUM)
  np.testing.assert_allclose(outcome['details']['moving_mean'], expected, rtol=1e-5, atol=1e-6)


def test_padding_shifts_statistics(outcomes):
  details = _outcome(outcomes, 'padding_shifts_statistics')['details']
  padded = np.array(details['padded'], np.float64)
  keep = np.arange(padded.shape[1])[None, :] < np.array(details['lengths'])[:, None]
  assert np.isclose(details['padded_mean'], padded.mean(), rtol=1e-5)
  assert np.isclose(details['padded_variance'], padded.var(), rtol=1e-4)
  assert np.isclose(details['masked_mean'], padded[keep].mean(), rtol=1e-5)
  assert np.isclose(details['masked_variance'], padded[keep].var(), rtol=1e-4)
  assert details['padded_mean'] < details['masked_mean'] - 0.5


def test_legacy_pitfalls_are_skipped_with_a_message_without_the_legacy_layer():
  # This process did not set TF_USE_LEGACY_KERAS, like a machine without tf-keras.
  assert not legacy.active()
  outcome = pitfalls.undefined_axis()
  assert outcome.skipped == legacy.SKIP_MESSAGE and not outcome.reproduced
  assert 'skipped: ' + legacy.SKIP_MESSAGE in pitfalls.report(1, outcome, 'x')


BLOCK_SKLEARN = '''import sys


class _NoSklearn:
  """A meta-path finder that makes scikit-learn impossible to import."""

  def find_spec(self, name, path=None, target=None):
    if name == 'sklearn' or name.startswith('sklearn.'):
      raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
    return None


sys.meta_path.insert(0, _NoSklearn())
'''


def test_without_scikit_learn_the_other_pitfalls_run_quietly(tmp_path):
  """As `tf1-bn pitfalls` without the [demo] extra and with no log level chosen:
  the digits pitfalls are skipped with a note naming the extra, the others
  run (in the legacy child too), the status counts only those, and nothing of
  TensorFlow's C++ logging (its start-up lines, the reproduced error's
  `Local rendezvous is aborting`) reaches stderr."""
  (tmp_path / 'sitecustomize.py').write_text(BLOCK_SKLEARN)
  checkout = str(pathlib.Path(pitfalls.__file__).parents[2])
  env = {k: v for k, v in os.environ.items()
         if k not in ('TF_USE_LEGACY_KERAS', 'TF_CPP_MIN_LOG_LEVEL')}
  env['PYTHONPATH'] = os.pathsep.join([str(tmp_path), checkout, env.get('PYTHONPATH', '')])
  done = subprocess.run(
      [sys.executable, '-m', 'tf1_bn.studies.cli', 'pitfalls', '--only', 'incompatible_shapes',
       'missing_update_ops', 'training_true_at_test'],
      env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout + done.stderr
  assert done.stdout.startswith(pitfalls.HEADER)
  assert 'Incompatible shapes: [7] vs. [2]' in done.stdout and 'with tf1_bn (ok)' in done.stdout
  assert done.stdout.count(f'skipped: {pitfalls.SKLEARN_MESSAGE}') == 2
  assert 'tf1_bn[demo]' in pitfalls.SKLEARN_MESSAGE
  assert done.stderr == ''
