"""`tf1-bn demo`: the default run meets its accuracy bar and writes its
outputs; results are deterministic; the moving statistics approach the
population statistics the test computes with numpy."""
import numpy as np
import pytest

import reference
from tf1_bn.studies import cli, demo, digits


def test_default_demo_prints_the_table_and_writes_the_plot(tmp_path, capsys):
  assert cli.main(['demo', '--out', str(tmp_path)]) == 0
  printed = capsys.readouterr().out
  written = (tmp_path / 'demo.md').read_text()
  assert written.strip() in printed
  table = written.split('\n\n')[0]  # the main table; the sections follow
  rows = [line for line in table.splitlines()[2:] if line.startswith('|')]
  assert [row.split('|')[1].strip() for row in rows] == [m.name for m in demo.MODELS]
  accuracy = {row.split('|')[1].strip(): float(row.split('|')[4]) for row in rows}
  assert max(a for name, a in accuracy.items()
             if next(m for m in demo.MODELS if m.name == name).bn) >= 0.95
  assert (tmp_path / 'demo.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_same_seed_same_results():
  models = (demo.MODELS[1], demo.MODELS[3])
  first = demo.run(steps=40, seed=3, eval_every=20, models=models, progress=False)
  second = demo.run(steps=40, seed=3, eval_every=20, models=models, progress=False)
  for a, b in zip(first, second):
    assert a.test_accuracy == b.test_accuracy and a.train_loss == b.train_loss


def test_moving_statistics_approach_the_population_statistics():
  split = digits.load(0)
  result = demo.train(demo.MODELS[1], split, steps=600, seed=0, eval_every=600)
  stats = result.statistics[-1]
  # Population statistics of the first BN layer's input, recomputed in numpy
  # from the training set (the layer has no bias: the input is x @ kernel).
  population = reference.moments(split.train_x.astype(np.float64) @ stats['kernel'], -1)
  np.testing.assert_allclose(stats['population_mean'], population[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats['population_variance'], population[1], rtol=1e-4)
  gap_mean = np.abs(stats['moving_mean'] - population[0]) / np.sqrt(population[1])
  gap_variance = np.abs(stats['moving_variance'] - population[1]) / population[1]
  assert np.median(gap_mean) < 0.1 and np.median(gap_variance) < 0.2
  steps, mean_gap, variance_gap = demo.statistics_gap(result)
  assert steps == [600]
  assert mean_gap[0] == pytest.approx(gap_mean.mean()) and \
      variance_gap[0] == pytest.approx(gap_variance.mean())


def test_steps_to_target_and_table():
  result = demo.Result(demo.MODELS[0], eval_steps=[10, 20, 30], test_accuracy=[0.5, 0.91, 0.97],
                       train_loss=[1, 0.5, 0.2], seconds=1.25)
  never = demo.Result(demo.MODELS[4], [10], [0.3], [2.0], 0.5)
  assert result.steps_to_target == 20 and never.steps_to_target is None
  lines = demo.table([result, never]).splitlines()
  assert lines[2] == '| no BN | 32 | 0.05 | 0.9700 | 20 | 1.2 |'
  assert lines[3] == '| sigmoid, no BN | 32 | 0.05 | 0.3000 | not reached | 0.5 |'


def test_bad_arguments_name_the_option():
  with pytest.raises(SystemExit, match='--steps must be >= 1, received 0'):
    demo.main(['--steps', '0'])
  with pytest.raises(ValueError, match='`bn` must be one of'):
    digits.mlp(None, bn='middle')


def test_precise_bn_section_recomputes_the_population_statistics():
  split = digits.load(0)

  def study(sess, tensors, model, split):
    variables = {v.op.name: v for v in sess.graph.get_collection('variables')}
    names = ['dense0/kernel', 'bn0/moving_mean', 'bn0/moving_variance']
    return demo.precise_bn(sess, tensors, model, split), sess.run([variables[n] for n in names])

  result = demo.train(demo.DECAY_MODEL, split, steps=60, seed=0, eval_every=60,
                      after_training=study)
  precise, (kernel, mean, variance) = result.after
  # The audit changes nothing: the accuracy before recomputing is the last evaluation's.
  assert precise.accuracy == result.final_accuracy
  # The first layer's input is x @ kernel: its population statistics over the training set.
  expected = reference.moments(split.train_x.astype(np.float64) @ kernel, -1)
  np.testing.assert_allclose(mean, expected[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(variance, expected[1], rtol=1e-5)
  # Decay 0.999 after 60 steps: stale.
  assert all(layer.verdict_label.startswith('stale') for layer in precise.audit.layers)
  result.after = precise
  lines = demo.precise_table([result]).splitlines()
  assert lines[2].startswith(f'| {demo.DECAY_MODEL.name} | 32 | 60 | 0.999 | '
                             f'{precise.accuracy:.4f} | {precise.recomputed_accuracy:.4f} |')


def test_synchronized_towers_train_as_one_device_with_the_global_batch():
  local, synchronized, one_device = demo.run(steps=60, seed=0, eval_every=20,
                                             models=demo.REPLICA_MODELS, progress=False)
  assert synchronized.model.global_batch_size == one_device.model.batch_size == 16
  # Same examples, same statistics (the global batch's), same updates: the
  # two differ only by the order of float32 sums.
  np.testing.assert_allclose(synchronized.train_loss, one_device.train_loss, rtol=1e-4)
  assert np.max(np.abs(np.subtract(synchronized.test_accuracy, one_device.test_accuracy))) \
      <= 1 / 540 + 1e-9
  # Local statistics of 2 examples per tower are another model.
  assert np.max(np.abs(np.subtract(local.train_loss, one_device.train_loss))) > 0.05
