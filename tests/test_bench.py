"""The benchmark runs end to end on tiny shapes (no timing is asserted)."""
import numpy as np

from tf1_bn.studies import bench


def test_benchmark_runs_on_tiny_shapes_and_writes_its_outputs(tmp_path):
  args = bench.build_parser().parse_args(
      ['--cases', 'nhwc:2x3x3x4', '2d:8x5', '--steps', '2', '--warmup', '1', '--out',
       str(tmp_path)])
  # In-process run, legacy rows skipped (they need TF_USE_LEGACY_KERAS set
  # before TensorFlow is imported).
  rows = []
  for case in args.cases:
    label, shape = bench.parse_case(case)
    for mode in args.modes:
      rows.extend(bench.run_case(label, shape, 'float32', mode, args.steps, args.warmup, False))
  assert len(rows) == 2 * 2 * 5  # four implementations and the copy bound, per case and mode
  bound_rows = [r for r in rows if r['implementation'] == bench.COPY_BOUND]
  assert len(bound_rows) == 4 and all(r['copy_fraction'] == 1.0 for r in bound_rows)
  reference_rows = [r for r in rows if r['implementation'] == r['reference']]
  assert all(r['ratio'] == 1.0 for r in reference_rows)
  assert all(r['ms'] > 0 and np.isfinite(r['gbps']) for r in rows)
  table = bench.markdown(rows)
  assert table.count('\n') == len(rows) + 2
  bench.bar_chart(rows, tmp_path / 'bench.png')
  assert (tmp_path / 'bench.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_parse_case():
  assert bench.parse_case('nchw:64x64x32x32') == ('nchw', [64, 64, 32, 32])


def test_fold_case_times_the_folded_and_unfolded_exports():
  rows = bench.fold_case([2, 8, 8, 3], steps=2, warmup=1)
  assert [r['implementation'] for r in rows] == ['exported, unfolded', 'exported, folded']
  assert rows[0]['ratio'] == 1.0 and rows[1]['ms'] > 0
  assert '| - |' in bench.markdown(rows)  # no copy bound for a whole network


def test_implementations_that_cannot_build_a_dtype_are_skipped(capsys):
  rows = bench.run_case('nhwc', [2, 3, 3, 4], 'float16', 'inference', 2, 1, False)
  assert [r['implementation'] for r in rows] == ['bn_layer', 'batch_normalization', 'batch_norm',
                                                 bench.COPY_BOUND]
  assert rows[0]['reference'] == 'bn_layer' and rows[0]['ratio'] == 1.0
  assert 'skipping classic recipe for float16' in capsys.readouterr().out


def test_build_case_times_graph_construction_per_implementation():
  rows = bench.build_case(2, False)
  assert [r['implementation'] for r in rows] == ['bn_layer', 'batch_normalization', 'batch_norm',
                                                 'classic recipe']
  assert rows[0]['ratio'] == 1.0 and all(r['ms'] > 0 and r['gbps'] is None for r in rows)
  for line in bench.markdown(rows).splitlines()[2:]:
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[3] == '-' and cells[5] == '-'  # no GB/s, no copy bound
