"""The benchmark: its bound and summary logic on fake timings, the docs
writer on temporary files, and end-to-end runs on tiny shapes (no timing is
asserted anywhere)."""
import os

import numpy as np
import pytest

from tf1_bn.studies import bench

DOC = ('# Performance\n\nProse before.\n\n' + bench.BEGIN_MARKER + '\nold table\n' +
       bench.END_MARKER + '\n\nProse after.\n')
COPIES = {bench.NUMPY_COPY: 2.0e-3, bench.THREADED_COPY.format(2): 1.2e-3,
          bench.TENSORFLOW_COPY: 1.5e-3}


def _fake_case(title='fake', reference='ref', bounded=True):
  return bench.Case(title, dict, reference, ((1024, 1024), 'float32') if bounded else None)


# --- the copy bound, on fake timings -----------------------------------------


def test_copy_bound_is_the_best_copy_variant_when_every_row_is_slower():
  medians = dict(COPIES, ours=1.8e-3, ref=2.5e-3)
  assert bench.copy_bound(medians) == (1.2e-3, [])


def test_a_row_faster_than_every_copy_becomes_the_bound_and_is_named():
  medians = dict(COPIES, ours=1.0e-3, other=1.1e-3, ref=2.5e-3)
  assert bench.copy_bound(medians) == (1.0e-3, ['other', 'ours'])


def test_copy_bound_needs_a_copy_variant():
  with pytest.raises(ValueError, match=r"no copy variant among \['ours', 'ref'\]"):
    bench.copy_bound({'ours': 1e-3, 'ref': 2e-3})


@pytest.mark.parametrize('seed', range(5))
def test_no_row_exceeds_the_bound_whatever_the_timings(seed):
  rng = np.random.RandomState(seed)
  names = list(COPIES) + ['ours', 'ref', 'third']
  medians = dict(zip(names, rng.uniform(0.5e-3, 3e-3, len(names))))
  rows = bench.run_rows(_fake_case(), medians)
  fractions = np.array([r['copy_fraction'] for r in rows])
  assert fractions.max() == 1.0 and np.all(fractions > 0)
  fastest = min(medians, key=medians.get)
  assert next(r for r in rows if r['implementation'] == fastest)['copy_fraction'] == 1.0
  best_copy = min(medians[n] for n in COPIES)
  for row in rows:
    assert row['beats_copy'] == (not row['implementation'].startswith(bench.COPY_PREFIX)
                                 and medians[row['implementation']] < best_copy)
    assert row['ratio'] == medians[row['implementation']] / medians['ref']


def test_rows_of_an_unbounded_case_have_no_fraction():
  rows = bench.run_rows(_fake_case(bounded=False), {'ours': 1e-3, 'ref': 4e-3})
  assert [(r['ratio'], r['copy_fraction'], r['beats_copy']) for r in rows] == [
      (0.25, None, False), (1.0, None, False)]


# --- two runs: medians and spread ----------------------------------------------


def _two_runs():
  first = bench.run_rows(_fake_case(), dict(COPIES, ours=1.8e-3, ref=2.4e-3))
  second = bench.run_rows(_fake_case(), dict(COPIES, ours=1.0e-3, ref=3.0e-3))  # beats copies
  return bench.summarize([first, second])


def test_summary_shows_the_median_and_the_range_over_runs():
  ours = next(r for r in _two_runs() if r['implementation'] == 'ours')
  ratios = [1.8 / 2.4, 1.0 / 3.0]
  fractions = [1.2 / 1.8, 1.0]
  assert ours['runs'] == 2 and ours['ms'] == pytest.approx(np.median([1.8, 1.0]))
  assert ours['ratio'] == pytest.approx(np.median(ratios))
  assert ours['ratio_range'] == pytest.approx((min(ratios), max(ratios)))
  assert ours['copy_fraction'] == pytest.approx(np.median(fractions))
  assert ours['copy_fraction_range'] == pytest.approx((min(fractions), max(fractions)))
  assert ours['beats_copy'] and ours['gbps'] == pytest.approx(1024 * 1024 * 4 / 1.4e-3 / 1e9)


def test_table_flags_rows_that_beat_every_copy_and_never_prints_more_than_100_percent():
  table = bench.markdown(_two_runs())
  assert 'median (min\u2013max) over 2 runs' in table.splitlines()[0]
  ours = next(line for line in table.splitlines() if '| ours |' in line)
  assert ours.endswith('| 83% (67%\u2013100%) \u2020 |')
  assert '0.54x (0.33x\u20130.75x)' in ours
  assert table.rstrip().endswith('bound on this machine for: fake / ours.')
  percents = [int(p) for p in __import__('re').findall(r'(\d+)%', table)]
  assert max(percents) == 100


def test_table_of_one_run_has_no_ranges_and_no_flag():
  rows = bench.summarize([bench.run_rows(_fake_case(), dict(COPIES, ours=1.8e-3, ref=2.4e-3))])
  table = bench.markdown(rows)
  assert 'min\u2013max' not in table and '\u2020' not in table
  assert '| fake | ours | 1.80 | 2.3 | 0.75x | 67% |' in table


# --- the docs writer ------------------------------------------------------------


def test_write_docs_replaces_only_the_text_between_the_markers(tmp_path):
  path = tmp_path / 'performance.md'
  path.write_text(DOC)
  bench.write_docs(str(path), 'new table\n')
  expected = DOC.replace('\nold table\n', '\nnew table\n')
  assert path.read_text() == expected
  bench.write_docs(str(path), '\n\nnew table')  # rerunning gives the same file
  assert path.read_text() == expected
  assert os.listdir(tmp_path) == ['performance.md']  # no temporary file left


@pytest.mark.parametrize('text, found', [
    ('# Performance\n', '0 begin and 0 end'),
    (bench.BEGIN_MARKER + '\n', '1 begin and 0 end'),
    (bench.END_MARKER + '\n' + bench.BEGIN_MARKER + '\n', '1 begin and 1 end markers, end before'),
    (DOC + bench.BEGIN_MARKER, '2 begin and 1 end'),
])
def test_write_docs_refuses_a_file_without_one_pair_of_markers(tmp_path, text, found):
  path = tmp_path / 'performance.md'
  path.write_text(text)
  for call in (lambda: bench.check_docs(str(path)), lambda: bench.write_docs(str(path), 'x')):
    with pytest.raises(ValueError, match=f'--write-docs: {path} needs exactly one .*{found}'):
      call()
  assert path.read_text() == text


def test_header_names_the_date_machine_tensorflow_and_command():
  import datetime
  text = bench.header('tf1-bn bench --cases nhwc:2x3x3x4', 5, 1, 2, '2.21.0', 'CPU X, 2 cores',
                      datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc))
  assert text == ('Measured 2026-01-02 03:04 UTC on CPU X, 2 cores, TensorFlow 2.21.0; median of '
                  '5 alternated steps after 1 warm-up steps, 2 runs. Command:\n\n'
                  '```\ntf1-bn bench --cases nhwc:2x3x3x4\n```\n')
  assert bench.machine_description().endswith(f'{bench.usable_cores()} cores '
                                              f'({os.uname().sysname} {os.uname().machine})')


# --- the registry ----------------------------------------------------------------


def test_parse_case_checks_the_kind_and_the_dimensions():
  assert bench.parse_case('nchw:64x64x32x32') == ('nchw', [64, 64, 32, 32])
  with pytest.raises(ValueError, match=r"unknown case kind 'nhcw' in 'nhcw:2x3'; expected one "
                     r"of 2d, bnlstm, build, cnn, .*masked, .*nhwc"):
    bench.parse_case('nhcw:2x3')
  for text in ('nhwc:', 'nhwc:2xa', 'nhwc:2x0x3x3', 'nhwc:2x3', 'build:2x2', 'lstm:2x3x4'):
    with pytest.raises(ValueError, match=f"{text!r} needs [14] positive dimensions"):
      bench.parse_case(text)


def test_a_kind_can_ask_for_least_dimensions():
  assert bench.parse_case('layers:1x4x4x1') == ('layers', [1, 4, 4, 1])
  for text in ('layers:2x3x8x3', 'layers:2x8x2x3'):  # two 2x2 poolings need 4 pixels
    with pytest.raises(ValueError, match=f"{text!r}: the layers case needs each dimension at "
                       "least 1x4x4x1, e.g. layers:64x32x32x3"):
      bench.parse_case(text)
  with pytest.raises(ValueError, match=r"case kind 'odd': least=\(1, 2\) needs one entry per "
                     r"dimension \(rank=3\)"):
    bench.register_case_kind('odd', 'odd:1x2x3', '', rank=3, least=(1, 2))
  assert 'odd' not in bench.CASE_KINDS


class _FakeRunner:
  def __init__(self, seconds):
    self.seconds, self.closed, self.steps = seconds, False, 0

  def step(self):
    self.steps += 1
    return self.seconds

  def close(self):
    self.closed = True


def test_a_registered_kind_runs_through_the_bench(monkeypatch):
  monkeypatch.setattr(bench, 'CASE_KINDS', dict(bench.CASE_KINDS))
  built = []

  @bench.register_case_kind('fake', 'fake:N', 'N fake rows')
  def fake(dims, settings):
    def runners():
      built.append({f'row{i}': _FakeRunner(1e-3 * (i + 1)) for i in range(dims[0])})
      return built[-1]
    return [bench.Case(f'fake {dims[0]} {settings.modes[0]}', runners, 'row1')]

  assert bench.parse_case('fake:1x2x3') == ('fake', [1, 2, 3])  # any rank
  with pytest.raises(ValueError, match="case kind 'fake' is registered already"):
    bench.register_case_kind('fake', 'fake:N', '')(fake)
  cases = bench.build_cases(['fake:3'], bench.Settings(modes=('inference',)))
  summary = bench.run(cases, steps=2, warmup=1, repeat=2)
  assert [(r['case'], r['implementation'], r['ratio'], r['runs']) for r in summary] == [
      ('fake 3 inference', 'row0', 0.5, 2), ('fake 3 inference', 'row1', 1.0, 2),
      ('fake 3 inference', 'row2', 1.5, 2)]
  assert len(built) == 2 and all(r.closed for runners in built for r in runners.values())


def test_a_case_with_fixed_rounds_ignores_steps_and_warmup():
  built = []

  def runners():
    built.append({'ref': _FakeRunner(2e-3), 'other': _FakeRunner(1e-3)})
    return built[-1]

  rows = bench.measure_case(bench.Case('slow', runners, 'ref', rounds=3), steps=50, warmup=7)
  assert [r.steps for r in built[0].values()] == [3, 3]
  assert [(r['implementation'], r['ratio']) for r in rows] == [('ref', 1.0), ('other', 0.5)]
  (build,) = bench.build_cases(['build:2'], bench.Settings())
  assert build.rounds == bench.BUILD_ROUNDS and build.bound_input is None


# --- end to end on tiny shapes ----------------------------------------------------


def test_one_layer_case_times_every_implementation_and_the_copies():
  settings = bench.Settings(modes=('inference',))
  (case,) = bench.build_cases(['nhwc:2x3x3x4'], settings)
  rows = bench.measure_case(case, steps=2, warmup=1)
  threaded = [bench.THREADED_COPY.format(bench.usable_cores())] * (bench.usable_cores() > 1)
  assert [r['implementation'] for r in rows] == [
      'bn_layer', 'batch_normalization', 'batch_norm', 'classic recipe', bench.NUMPY_COPY,
      *threaded, bench.TENSORFLOW_COPY]
  assert case.reference == 'classic recipe' and case.nbytes == 2 * 3 * 3 * 4 * 4
  assert max(r['copy_fraction'] for r in rows) == 1.0


def test_implementations_that_cannot_build_a_dtype_are_skipped(capsys):
  (case,) = bench.build_cases(['nchw:2x4x3x3'], bench.Settings(('float16',), ('train',)))
  assert case.reference == 'bn_layer' and case.nbytes == 2 * 4 * 3 * 3 * 2
  rows = bench.measure_case(case, steps=1, warmup=0)
  assert [r['implementation'] for r in rows][:3] == ['bn_layer', 'batch_normalization',
                                                     'batch_norm']
  assert 'classic recipe' not in [r['implementation'] for r in rows]  # channels last only
  (case,) = bench.build_cases(['nhwc:2x3x3x4'], bench.Settings(('float16',), ('inference',)))
  assert 'classic recipe' not in [r['implementation'] for r in bench.measure_case(case, 1, 0)]
  assert 'skipping classic recipe for float16' in capsys.readouterr().out


def test_fold_and_build_cases_have_no_copy_bound():
  cases = bench.build_cases(['cnn:2x8x8x3', 'build:2'], bench.Settings())
  summary = bench.run(cases, steps=1, warmup=1, repeat=1)
  assert [r['implementation'] for r in summary] == [
      'exported, unfolded', 'exported, folded', 'bn_layer', 'batch_normalization', 'batch_norm',
      'classic recipe']
  for line in bench.markdown(summary).splitlines()[2:]:
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[3] == '-' and cells[5] == '-'  # no GB/s, no copy bound


@pytest.mark.parametrize('text, module', [('layers:2x8x8x3', 'bench_layers'),
                                          ('lstm:2x3x4x5', 'bench_cells')])
def test_the_model_cases_time_tf1_bn_alone_without_a_copy_bound(text, module):
  import importlib
  ours = importlib.import_module(f'tf1_bn.studies.{module}').OURS
  title = text.replace(':', ' ') + ' float32 '
  cases = bench.build_cases([text], bench.Settings())  # no legacy in this process
  assert [(c.title, c.reference, c.bound_input, c.rounds) for c in cases] == [
      (title + 'train', ours, None, None), (title + 'inference', ours, None, None)]
  summary = bench.run(cases, steps=1, warmup=0, repeat=1)
  assert [(r['case'], r['implementation'], r['ratio'], r['copy_fraction'], r['gbps'])
          for r in summary] == [(title + 'train', ours, 1.0, None, None),
                                (title + 'inference', ours, 1.0, None, None)]


def test_the_lstm_model_has_the_legacy_variable_names_and_its_train_step_updates_them():
  import tensorflow as tf
  from tf1_bn.studies import bench_cells
  v1 = tf.compat.v1
  with tf.Graph().as_default():
    fetch, feed, init = bench_cells.build_step(bench_cells.implementations(False)[bench_cells.OURS],
                                               [2, 3, 4, 5], 'train')
    assert [(v.name, v.shape.as_list()) for v in v1.trainable_variables()] == [
        ('rnn/lstm_cell/kernel:0', [9, 20]), ('rnn/lstm_cell/bias:0', [20])]
    assert list(feed.values())[0].shape == (2, 3, 4)
    with v1.Session() as sess:
      sess.run(init)
      before = sess.run(v1.trainable_variables())
      sess.run(fetch, feed)
      after = sess.run(v1.trainable_variables())
  assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))


def test_the_model_modules_build_only_and_import_nothing_of_the_bench():
  import ast
  from tf1_bn.studies import bench_cells, bench_layers
  for module in (bench_cells, bench_layers):
    with open(module.__file__) as f:
      tree = ast.parse(f.read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
        for alias in node.names}
    assert 'bench' not in imported and 'tf1_bn.studies.bench' not in imported, module.__name__
    assert not hasattr(module, 'alternate') and 'perf_counter' not in ast.dump(tree)


def test_the_sequence_cases_time_masked_bn_and_the_bn_lstm_step():
  from tf1_bn.studies import bench_sequences as seq
  with pytest.raises(ValueError, match="'masked:4x3' needs 3 positive dimensions"):
    bench.parse_case('masked:4x3')
  with pytest.raises(ValueError, match="'bnlstm:3x2x2' needs 4 positive dimensions"):
    bench.parse_case('bnlstm:3x2x2')
  # Training steps only, whatever --modes says.
  cases = bench.build_cases(['masked:4x3x2', 'bnlstm:3x2x2x4'],
                            bench.Settings(modes=('inference',)))
  assert [(c.title, c.reference, c.bound_input, c.rounds) for c in cases] == [
      ('masked 4x3x2 float32 train', seq.UNMASKED, ((4, 3, 2), 'float32'), None),
      ('bnlstm 3x2x2x4 float32 train', seq.LSTM, None, None)]
  summary = bench.run(cases, steps=1, warmup=0, repeat=1)
  rows = [(r['case'].split()[0], r['implementation'], r['ratio'] if r['implementation'] ==
           r['reference'] else None, r['copy_fraction'] is None) for r in summary
          if not r['implementation'].startswith(bench.COPY_PREFIX)]
  assert rows == [('masked', seq.UNMASKED, 1.0, False), ('masked', seq.MASKED, None, False),
                  ('masked', seq.UNFUSED, None, False), ('masked', seq.BY_HAND, None, False),
                  ('bnlstm', seq.LSTM, 1.0, True), ('bnlstm', seq.BN_LSTM, None, True)]
  assert 'masked' not in ' '.join(bench.DEFAULT_CASES)
  assert 'bnlstm' not in ' '.join(bench.DEFAULT_CASES)


def test_the_command_writes_its_table_into_the_docs_with_the_legacy_rows(tmp_path, capfd):
  docs = tmp_path / 'performance.md'
  docs.write_text(DOC)
  argv = ['--cases', 'nhwc:2x3x3x4', 'layers:2x8x8x3', 'lstm:2x3x4x5', '--modes', 'inference',
          '--steps', '2', '--warmup', '1',
          '--out', str(tmp_path / 'out'), '--write-docs', str(docs)]
  assert bench.main(argv) == 0  # re-runs itself with TF_USE_LEGACY_KERAS=1 (tf-keras is here)
  text = docs.read_text()
  assert text.startswith('# Performance\n\nProse before.\n\n' + bench.BEGIN_MARKER + '\nMeasured ')
  assert text.endswith(bench.END_MARKER + '\n\nProse after.\n')
  assert f'```\ntf1-bn bench {" ".join(argv)}\n```' in text and 'old table' not in text
  import tensorflow as tf
  assert f'TensorFlow {tf.__version__}' in text and f'{bench.usable_cores()} cores' in text
  assert 'over 2 runs' in text  # --repeat defaults to 2
  rows = [line for line in text.splitlines() if line.startswith('| nhwc')]
  assert [line.split(' | ')[1] for line in rows][4:6] == ['legacy fused=True',
                                                          'legacy fused=False']
  assert '| legacy fused=True | ' in text and ' 1.00x |' in rows[4]
  layers_rows = [line.split(' | ') for line in text.splitlines() if line.startswith('| layers')]
  assert [(row[0], row[1], row[4]) for row in layers_rows][1] == (
      '| layers 2x8x8x3 float32 inference', 'legacy tf.compat.v1.layers', '1.00x')
  assert [row[1] for row in layers_rows] == ['tf1_bn.layers', 'legacy tf.compat.v1.layers']
  lstm_rows = [line.split(' | ') for line in text.splitlines() if line.startswith('| lstm')]
  assert [(row[0], row[1]) for row in lstm_rows] == [
      ('| lstm 2x3x4x5 float32 inference', 'tf1_bn LSTMCell'),
      ('| lstm 2x3x4x5 float32 inference', 'legacy LSTMCell')]
  assert lstm_rows[1][4] == '1.00x'
  assert (tmp_path / 'out' / 'bench.md').read_text() in text
  assert (tmp_path / 'out' / 'bench.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert 'wrote the table into' in capfd.readouterr().out


def test_the_command_checks_the_docs_before_measuring(tmp_path):
  docs = tmp_path / 'performance.md'
  docs.write_text('# no markers\n')
  with pytest.raises(ValueError, match='needs exactly one'):
    bench.main(['--cases', 'nhwc:2x3x3x4', '--write-docs', str(docs), '--out',
                str(tmp_path / 'out')])
  assert not (tmp_path / 'out').exists() and docs.read_text() == '# no markers\n'
