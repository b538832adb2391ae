"""The sequence study, its figure and its part of `tf1-bn demo`, and its
pitfalls (tiny sizes; the bench's sequence cases are tested in
test_bench.py)."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from PIL import Image

from tf1_bn.studies import demo, pitfalls_sequences, sequence_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cut_keeps_4_to_8_rows_and_zeroes_the_rest():
  sequences = np.arange(20 * 64, dtype=np.float32).reshape(20, 64) + 1
  padded, lengths = sequence_study.cut(sequence_study.as_sequences(sequences), seed=3)
  assert padded.shape == (20, 8, 8)
  assert lengths.min() >= 4 and lengths.max() <= 8
  for row, length in zip(range(20), lengths):
    np.testing.assert_array_equal(padded[row, :length].reshape(-1), sequences[row, :8 * length])
    assert not padded[row, length:].any()


@pytest.fixture(scope='module')
def rows():
  return sequence_study.run(steps=4, eval_every=2)


def test_study_rows(rows):
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


def test_sequence_figure_plots_each_curve_in_labelled_panels(rows, tmp_path):
  fig = demo.plot_sequences(rows, tmp_path / demo.SEQUENCES_PICTURE)
  assert len(fig.axes) == 2
  for ax, models in zip(fig.axes, (sequence_study.MODELS[:2], sequence_study.MODELS[2:])):
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(models)
    for line, row in zip(ax.get_lines(), [r for r in rows if r['model'] in models]):
      steps, accuracy = zip(*row['curve'])
      np.testing.assert_array_equal(line.get_xdata(), steps)
      np.testing.assert_array_equal(line.get_ydata(), accuracy)
  with Image.open(tmp_path / demo.SEQUENCES_PICTURE) as picture:
    assert picture.info['dpi'] == pytest.approx((demo.DPI, demo.DPI), abs=0.05)
  # One group only (say a run of the padded models): one panel.
  assert len(demo.plot_sequences(rows[2:], tmp_path / 'padded.png').axes) == 1


@pytest.mark.parametrize('option', ['--sequences', '--no-sequences'])
def test_demo_runs_the_sequence_study_unless_told_not_to(option, tmp_path):
  """The default demo (`--sequences`) adds the study's table and figure, in
  --out and in the docs block; `--no-sequences` leaves both out."""
  docs = tmp_path / 'docs'
  docs.mkdir()
  (docs / demo.DOCS_PAGE).write_text(f'# Demo\n\n{demo.BEGIN_MARKER}\nold\n{demo.END_MARKER}\n')
  out = tmp_path / 'out'
  argv = ['--steps', '10', '--eval-every', '5', option, '--sequence-steps', '2',
          '--out', str(out), '--write-docs', '--docs', str(docs)]
  assert demo.main(argv) == 0
  text = (out / 'demo.md').read_text()
  page = (docs / demo.DOCS_PAGE).read_text()
  picture = demo.SEQUENCES_PICTURE
  if option == '--no-sequences':
    assert '## Sequences' not in text and '## Sequences' not in page
    assert not (out / picture).exists() and not (docs / picture).exists()
    assert f']({picture})' not in page
    return
  section = text.split('## Sequences (2 steps)\n\n')[1]
  models = [line.split(' | ')[0].strip('| ') for line in section.splitlines()[2:6]]
  assert models == list(sequence_study.MODELS)
  for folder in (out, docs):
    assert (folder / picture).exists()
  assert '## Sequences (2 steps)' in page and f']({picture})' in page
  assert sorted(p.name for p in out.iterdir()) == sorted(('demo.md',) + demo.PICTURES)


def test_demo_refuses_sequence_steps_below_one():
  with pytest.raises(ValueError, match='--sequence-steps must be >= 1, received 0'):
    demo.main(['--sequence-steps', '0'])
