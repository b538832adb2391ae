"""`tf1-bn demo`: the default run meets its accuracy bar and writes its
outputs (tables, three pictures at 150 dpi, no progress bar into a redirected
stderr); results are deterministic; the moving statistics approach the
population statistics the test computes with numpy; the pictures plot those
numbers, with labelled axes and a legend per panel; --write-docs fills the
docs page between its markers."""
import datetime

import numpy as np
import pytest
from PIL import Image

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
  for name in demo.PICTURES:
    with Image.open(tmp_path / name) as picture:
      assert picture.format == 'PNG'
      # PNG stores whole pixels per metre: 150 dpi is 5906 / m, 150.01 dpi.
      assert picture.info['dpi'] == pytest.approx((demo.DPI, demo.DPI), abs=0.05)
  # stderr is not a terminal here: no progress bar, and TensorFlow is quiet.
  assert capsys.readouterr().err == ''


def _check_panels(fig):
  """Every panel has both axes labelled and a legend of its own."""
  for ax in fig.axes:
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), ax
    assert ax.get_legend() is not None and ax.get_legend().get_texts(), ax.get_title()


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
  split = digits.load(0)
  demo.train(demo.MODELS[0], split, steps=30, seed=0, eval_every=30, progress=None)
  assert capsys.readouterr().err == ''  # captured stderr is not a terminal
  demo.train(demo.MODELS[0], split, steps=30, seed=0, eval_every=30, progress=True,
             label='shown')
  err = capsys.readouterr().err
  assert 'shown' in err and '30/30' in err and 'loss=' in err


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
  # The demo's statistics are float32 (its matmul's rounding can change with
  # what ran before in the process): gaps of about 0.03 agree to 1e-6.
  assert mean_gap[0] == pytest.approx(gap_mean.mean(), abs=1e-6) and \
      variance_gap[0] == pytest.approx(gap_variance.mean(), abs=1e-6)


def test_steps_to_target_and_table():
  result = demo.Result(demo.MODELS[0], eval_steps=[10, 20, 30], test_accuracy=[0.5, 0.91, 0.97],
                       train_loss=[1, 0.5, 0.2], seconds=1.25)
  never = demo.Result(demo.MODELS[4], [10], [0.3], [2.0], 0.5)
  assert result.steps_to_target == 20 and never.steps_to_target is None
  lines = demo.table([result, never]).splitlines()
  assert lines[2] == '| no BN | 32 | 0.05 | 0.9700 | 20 | 1.2 |'
  assert lines[3] == '| sigmoid, no BN | 32 | 0.05 | 0.3000 | not reached | 0.5 |'


def test_bad_arguments_name_the_option():
  with pytest.raises(ValueError, match='--steps must be >= 1, received 0'):
    demo.main(['--steps', '0'])
  with pytest.raises(ValueError, match='`bn` must be one of'):
    digits.mlp(None, bn='middle')


def test_precise_bn_section_recomputes_the_population_statistics(tmp_path):
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
  # The picture: accuracy bars, then per channel the moving statistics (y)
  # against the recomputed ones (x): the numpy population statistics.
  fig = demo.plot_precise([result], tmp_path / 'precise.png')
  _check_panels(fig)
  bars = [patch.get_width() for patch in fig.axes[0].patches]
  assert bars == [precise.accuracy, precise.recomputed_accuracy]
  layer = precise.recomputed.layers[0]
  means, variances = (ax.collections[0].get_offsets() for ax in fig.axes[1:])
  std = np.sqrt(expected[1] + layer.epsilon)
  np.testing.assert_allclose(means[:, 0], expected[0] / std, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(means[:, 1], np.ravel(layer.old_mean) / std, rtol=1e-5)
  np.testing.assert_allclose(variances[:, 0], expected[1], rtol=1e-5)
  np.testing.assert_allclose(variances[:, 1], np.ravel(layer.old_variance), rtol=1e-6)


def test_synchronized_towers_train_as_one_device_with_the_global_batch(tmp_path):
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
  # The picture plots these curves: test error (1 - accuracy) and training loss.
  fig = demo.plot_towers([local, synchronized, one_device], tmp_path / 'towers.png')
  _check_panels(fig)
  for ax, series in zip(fig.axes, ('test_error', 'train_loss')):
    for line, result in zip(ax.get_lines(), (local, synchronized, one_device)):
      np.testing.assert_array_equal(line.get_xdata(), result.eval_steps)
      np.testing.assert_allclose(line.get_ydata(), getattr(result, series))
      assert line.get_label() == result.model.name


def test_demo_figure_plots_every_model_with_labelled_panels(tmp_path):
  models = (demo.MODELS[0], demo.MODELS[1])
  results = demo.run(steps=20, seed=0, eval_every=10, models=models, progress=False)
  fig = demo.plot(results, tmp_path / 'demo.png')
  _check_panels(fig)
  error_lines = [line for line in fig.axes[0].get_lines() if line.get_label() in
                 {m.name for m in models}]
  for line, result in zip(error_lines, results):
    floor = demo.ZERO_ERROR_FLOOR / result.test_examples
    np.testing.assert_allclose(line.get_ydata(),
                               np.maximum(1 - np.array(result.test_accuracy), floor))
  assert any(f'{demo.TARGET_ACCURACY:.0%} accuracy' in t.get_text() for t in fig.axes[0].texts)
  assert fig.axes[0].get_yscale() == 'log'


def test_trailing_mean():
  values = [4.0, 0.0, 2.0, 6.0, 1.0]
  expected = [4.0, 2.0, 2.0, 8 / 3, 3.0]  # means of the last (up to) 3 values
  np.testing.assert_allclose(demo.trailing_mean(values, 3), expected)
  np.testing.assert_array_equal(demo.trailing_mean(values, 1), values)


DOCS_PAGE = """# The demo

Text before.

<!-- demo:begin -->
old tables
<!-- demo:end -->

Text after.
"""


def test_write_docs_replaces_only_the_block_between_the_markers(tmp_path):
  page = tmp_path / 'demo.md'
  page.write_text(DOCS_PAGE)
  demo.write_docs_block(page, '| new | table |\n')
  assert page.read_text() == DOCS_PAGE.replace('old tables', '| new | table |')
  when = datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
  line = demo.provenance(['--steps', '10', '--write-docs'], now=when)
  assert line.startswith('Written by `tf1-bn demo --steps 10 --write-docs` on 2026-01-02 03:04 '
                         'UTC: ') and 'CPU cores' in line
  block = demo.docs_block('TABLES', ['--write-docs'])
  assert block.splitlines()[2] == 'TABLES'
  assert all(f']({name})' in block for name in demo.PICTURES)
  assert list(tmp_path.iterdir()) == [page]  # no temporary file left


@pytest.mark.parametrize('page', [None, DOCS_PAGE.replace('<!-- demo:end -->\n', ''),
                                  DOCS_PAGE + '<!-- demo:begin -->\n'])
def test_write_docs_needs_the_page_and_its_markers_before_training(page, tmp_path, capsys):
  if page is not None:
    (tmp_path / 'demo.md').write_text(page)
  argv = ['demo', '--write-docs', '--docs', str(tmp_path), '--out', str(tmp_path / 'out')]
  assert cli.main(argv) == cli.EXIT_ERROR
  err = capsys.readouterr().err
  assert err.startswith('tf1-bn demo: error: ') and str(tmp_path / 'demo.md') in err
  assert ('no such file' in err) == (page is None)
  assert not (tmp_path / 'out').exists()  # failed before training
  if page is not None:
    assert (tmp_path / 'demo.md').read_text() == page
