"""Benchmark: tf1_bn's front-ends against the classic recipe and the legacy layer.

How it measures:

* **Side by side.** Each implementation gets its own graph and session; the
  steps alternate between implementations in a new random order every round,
  so machine noise hits all of them alike, and each reports its median step.
  Ratios divide by the case's reference row of the same run.
* **Runs and spread.** The whole measurement runs `--repeat` times (2 by
  default), each run on freshly built graphs; a table shows the median over
  the runs and, for the ratios and the bound fraction, the range (min-max)
  across runs. A loaded or noisy machine shows up as a wide range.
* **Copy bound.** A one-pass BN layer has to read its input and write its
  output at least once, so no layer can be faster than the fastest way this
  machine copies a tensor of that size. The bench measures several copies,
  warmed and alternated with the rows they bound (so they meet the caches as
  the layers do): numpy on one thread, numpy on every core (the buffer split
  into one chunk per thread) and TensorFlow's own elementwise copy (`x + 0`
  with the zero fed, so grappler cannot remove it) in a session configured
  as the layers' sessions. The bound is the best of them. Should a layer
  still beat every copy (a copy variant this machine runs badly), the bound
  becomes that layer's own time, the row is marked and a line under the table
  says so: the "of copy bound" column never exceeds 100%.
* **Nothing pruned.** Grappler's dependency optimizer is off in every
  session: with it on, stateless ops that only a `tf.group` reads are
  dropped, so the backward pass of an implementation that normalizes outside
  a cond (the recipe, the legacy unfused layer) would not run at all.

Adding a case kind (the extension point): decorate a builder with
`register_case_kind(name, usage, help_text)`. The builder takes the case's
dimensions (the `AxBxC` after `name:` on the command line, as a list of
ints) and the run's `Settings`, and returns a list of `Case`s: a title, a
zero-argument function that builds fresh runners (name -> object with
`step()` returning seconds and `close()`; `SessionRunner` covers a
fetch/feed in a session), the name of the reference row, and the input's
(shape, dtype name) when the copy bound applies (`bound_input`; None for a
whole network or graph construction). The bench does the rest: warm-up, alternation, runs,
bound, table. `tf1-bn bench --cases KIND:DIMS` then runs it; see
`CASE_KINDS` for the registered kinds. `register_case_kind(..., rank,
least)` makes `--cases` refuse other numbers of dimensions or smaller ones
before anything is measured; `Case(..., rounds=N)` times N steps and no
warm-up whatever `--steps` says, for steps that take seconds.

The legacy tf.compat.v1.layers.batch_normalization needs tf-keras and
TF_USE_LEGACY_KERAS=1 before TensorFlow is imported: when tf-keras is
installed and the variable is unset, `main` re-runs itself with it set.
"""
import argparse
import concurrent.futures
import dataclasses
import datetime
import os
import platform
import shlex
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional

import numpy as np

from tf1_bn.common import docs_page
from tf1_bn.studies import legacy_child as legacy

DEFAULT_CASES = ('nhwc:64x32x32x64', '2d:4096x1024', 'cnn:64x32x32x3', 'build:100',
                 'sync:64x32x32x64')
DEFAULT_REPLICAS = (2, 4)
DEFAULT_REPEAT = 2
MIN_REPEAT = 1
MODES = ('train', 'inference')
BUILD_ROUNDS = 3
SYNCHRONIZED = 'synchronized, {} replicas'
LOCAL = 'local, {} replicas'
ONE_DEVICE = 'one device, global batch'
LEGACY_FUSED = 'legacy fused=True'
RECIPE = 'classic recipe'
# Copy variants: every name starts with COPY_PREFIX.
COPY_PREFIX = 'copy: '
NUMPY_COPY = COPY_PREFIX + 'numpy, 1 thread'
THREADED_COPY = COPY_PREFIX + 'numpy, {} threads'
TENSORFLOW_COPY = COPY_PREFIX + 'TensorFlow x + 0'
BEATS_COPY_MARK = '\u2020'  # dagger
# docs/performance.md: the bench owns the text between these two lines.
DOCS_PATH = os.path.join('docs', 'performance.md')
BEGIN_MARKER = '<!-- bench:begin -->'
END_MARKER = '<!-- bench:end -->'


# --- the registry of case kinds ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the command line says beyond a case's dimensions."""
  dtypes: tuple = ('float32',)
  modes: tuple = MODES
  replicas: tuple = DEFAULT_REPLICAS
  legacy_available: bool = False


@dataclasses.dataclass(frozen=True)
class Case:
  """One block of table rows, measured side by side.

  `runners()` builds fresh runners, {row name: runner}, each with `step()`
  (one timed step, seconds) and `close()`; it is called once per run.
  `reference` names the row that ratios divide by. `bound_input`, (shape,
  dtype name), is the tensor a one-pass layer reads and writes once at least:
  the copy bound applies, and copies of a tensor of that size join the
  alternation; None (a whole network, graph construction): no bound.
  `rounds`, for steps that take seconds (graph construction): that many
  timed steps and no warm-up, whatever `--steps` and `--warmup` say (the
  runners then do their one-time work when built); None: the command line's.
  """
  title: str
  runners: Callable[[], Dict[str, object]]
  reference: str
  bound_input: Optional[tuple] = None
  rounds: Optional[int] = None

  @property
  def nbytes(self):
    if self.bound_input is None:
      return None
    shape, dtype_name = self.bound_input
    return int(np.prod(shape)) * np.dtype(_numpy_dtype(dtype_name)).itemsize


def _numpy_dtype(dtype_name):
  return np.float16 if dtype_name == 'bfloat16' else dtype_name  # same size


@dataclasses.dataclass(frozen=True)
class CaseKind:
  name: str
  usage: str
  help: str
  builder: Callable[[List[int], Settings], List[Case]]
  rank: Optional[int] = None  # how many dimensions it takes; None: any
  least: Optional[tuple] = None  # the least value of each dimension; None: 1


CASE_KINDS: Dict[str, CaseKind] = {}


def register_case_kind(name, usage, help_text, rank=None, least=None):
  """Decorator: registers `builder(dims, settings) -> [Case, ...]` as `name`,
  for `rank` dimensions (None: any number), each at least its entry of
  `least` (a tuple of `rank` ints; None: every dimension at least 1)."""
  if least is not None and (rank is None or len(least) != rank):
    raise ValueError(f'case kind {name!r}: least={least!r} needs one entry per dimension '
                     f'(rank={rank!r})')

  def register(builder):
    if name in CASE_KINDS:
      raise ValueError(f'case kind {name!r} is registered already')
    CASE_KINDS[name] = CaseKind(name, usage, help_text, builder, rank, least)
    return builder
  return register


def parse_case(text):
  """'nhwc:64x32x32x64' -> ('nhwc', [64, 32, 32, 64]), checked against the registry."""
  label, _, dims = text.partition(':')
  if label not in CASE_KINDS:
    raise ValueError(f'--cases: unknown case kind {label!r} in {text!r}; expected one of '
                     f'{", ".join(sorted(CASE_KINDS))} followed by :DIMS, e.g. nhwc:64x32x32x64')
  try:
    shape = [int(d) for d in dims.split('x')]
  except ValueError:
    shape = []
  kind = CASE_KINDS[label]
  if not shape or any(d < 1 for d in shape) or kind.rank not in (None, len(shape)):
    rank = '' if kind.rank is None else f'{kind.rank} '
    raise ValueError(f'--cases: {text!r} needs {rank}positive dimensions after the colon, '
                     f'e.g. {kind.usage}')
  if kind.least is not None and any(d < m for d, m in zip(shape, kind.least)):
    raise ValueError(f'--cases: {text!r}: the {label} case needs each dimension at least '
                     f'{"x".join(map(str, kind.least))}, e.g. {kind.usage}')
  return label, shape


def build_cases(texts, settings):
  """Every Case of the `--cases` texts, in order."""
  cases = []
  for text in texts:
    label, shape = parse_case(text)
    cases.extend(CASE_KINDS[label].builder(shape, settings))
  return cases


# --- runners ---------------------------------------------------------------


class SessionRunner:
  """Runs `fetch` with `feed` in `sess`; the graph and session are its own."""
  sess = None

  def step(self):
    start = time.perf_counter()
    self.sess.run(self.fetch, self.feed)
    return time.perf_counter() - start

  def close(self):
    if self.sess is not None:
      self.sess.close()


def session_config(devices=1):
  """The config of every session the bench times (copies included)."""
  import tensorflow as tf
  from tensorflow.core.protobuf import rewriter_config_pb2
  v1 = tf.compat.v1
  config = v1.ConfigProto(device_count={'CPU': devices}, graph_options=v1.GraphOptions(
      optimizer_options=v1.OptimizerOptions(opt_level=v1.OptimizerOptions.L1)))
  # Grappler's dependency optimizer drops stateless ops that only a tf.group
  # reads: the backward pass of an implementation that normalizes outside a
  # cond (the recipe, the legacy unfused layer) would not run at all.
  config.graph_options.rewrite_options.dependency_optimization = (
      rewriter_config_pb2.RewriterConfig.OFF)
  # Collectives must not starve the inter-op pool.
  config.inter_op_parallelism_threads = max(devices + 1, os.cpu_count() or 1)
  return config


def _input_variable(shape, dtype, name='x'):
  import tensorflow as tf
  v1 = tf.compat.v1
  return v1.get_variable(name, shape, dtype, v1.random_normal_initializer(1.0, 2.0),
                         trainable=False)


class _LayerRunner(SessionRunner):
  """One implementation's train step or inference on a variable input."""

  def __init__(self, build, shape, dtype, mode):
    import tensorflow as tf
    v1 = tf.compat.v1
    self.graph = tf.Graph()
    with self.graph.as_default():
      x = _input_variable(shape, dtype)
      training = v1.placeholder(tf.bool, [], name='is_training')
      y = build(x, training)
      if mode == 'train':
        grads = tf.gradients(tf.reduce_sum(tf.cast(y, tf.float32)),
                             [x] + v1.trainable_variables())
        self.fetch = [tf.group(*grads), tf.group(*v1.get_collection(v1.GraphKeys.UPDATE_OPS))]
      else:
        self.fetch = tf.group(y)
      self.feed = {training: mode == 'train'}
      self.sess = v1.Session(config=session_config())
      self.sess.run(v1.global_variables_initializer())


class _TensorFlowCopyRunner(SessionRunner):
  """TensorFlow's elementwise copy of a variable input: `x + zero`, the zero
  fed (a constant zero would let grappler turn the add into nothing)."""

  def __init__(self, shape, dtype):
    import tensorflow as tf
    v1 = tf.compat.v1
    self.graph = tf.Graph()
    with self.graph.as_default():
      x = _input_variable(shape, dtype)
      zero = v1.placeholder(dtype, [], name='zero')
      self.fetch = tf.group(x + zero)
      self.feed = {zero: 0}
      self.sess = v1.Session(config=session_config())
      self.sess.run(v1.global_variables_initializer())


class _NumpyCopyRunner:
  """numpy copying `nbytes` from one buffer into another, on `threads`
  threads (one contiguous chunk each; np.copyto releases the GIL)."""

  def __init__(self, nbytes, threads=1):
    self.source = np.ones(nbytes, np.uint8)
    self.target = np.empty_like(self.source)
    self.pool = None
    if threads > 1:
      self.pool = concurrent.futures.ThreadPoolExecutor(threads)
      self.chunks = list(zip(np.array_split(self.target, threads),
                             np.array_split(self.source, threads)))

  def step(self):
    start = time.perf_counter()
    if self.pool is None:
      np.copyto(self.target, self.source)
    else:
      for future in [self.pool.submit(np.copyto, t, s) for t, s in self.chunks]:
        future.result()
    return time.perf_counter() - start

  def close(self):
    if self.pool is not None:
      self.pool.shutdown()


def usable_cores():
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def copy_runners(case):
  """The copy variants of the bound for `case` (its input's size and dtype)."""
  runners = {NUMPY_COPY: _NumpyCopyRunner(case.nbytes)}
  threads = usable_cores()
  if threads > 1:
    runners[THREADED_COPY.format(threads)] = _NumpyCopyRunner(case.nbytes, threads)
  shape, dtype_name = case.bound_input
  runners[TENSORFLOW_COPY] = _TensorFlowCopyRunner(list(shape), dtype_name)
  return runners


# --- measurement -----------------------------------------------------------


def alternate(runners, steps, warmup, seed=0):
  """Per-runner step times {name: [seconds]}, the runners alternated step by step."""
  for runner in runners.values():
    for _ in range(warmup):
      runner.step()
  times = {name: [] for name in runners}
  names = list(runners)
  order = np.random.RandomState(seed)
  for _ in range(steps):
    # A new random order every round: every implementation takes every
    # position and follows every other one (a runner pays for the cache its
    # predecessor evicted; a rotated order would fix the predecessor).
    for name in order.permutation(names):
      times[name].append(runners[name].step())
  return times


def copy_bound(medians):
  """The copy bound of one run from its median step times {name: seconds}.

  Returns (bound, beaten): `bound` is the least time of any copy variant
  (names starting with COPY_PREFIX) or row, so no row takes less than it;
  `beaten` lists, sorted, the rows faster than every copy variant, for which
  the copies were no bound (the bound is then the fastest such row).
  """
  copies = [seconds for name, seconds in medians.items() if name.startswith(COPY_PREFIX)]
  if not copies:
    raise ValueError(f'copy_bound: no copy variant among {sorted(medians)}; expected names '
                     f'starting with {COPY_PREFIX!r}')
  best_copy = min(copies)
  beaten = sorted(name for name, seconds in medians.items()
                  if not name.startswith(COPY_PREFIX) and seconds < best_copy)
  return min(medians.values()), beaten


def run_rows(case, medians):
  """The rows of one run of `case` from its median step times."""
  reference = medians[case.reference]
  bound, beaten = copy_bound(medians) if case.bound_input is not None else (None, [])
  return [{'case': case.title, 'implementation': name, 'ms': seconds * 1e3,
           'ratio': seconds / reference,
           'copy_fraction': None if bound is None else bound / seconds,
           'beats_copy': name in beaten, 'nbytes': case.nbytes, 'reference': case.reference}
          for name, seconds in medians.items()]


def measure_case(case, steps, warmup, seed=0):
  """One run of `case`: fresh runners (and copy runners), alternated; its rows."""
  runners = {}
  try:
    runners.update(case.runners())
    if case.reference not in runners:
      raise ValueError(f'case {case.title!r}: reference row {case.reference!r} is not among '
                       f'its runners {sorted(runners)}')
    if case.bound_input is not None:
      runners.update(copy_runners(case))
    if case.rounds is not None:
      steps, warmup = case.rounds, 0
    times = alternate(runners, steps, warmup, seed)
  finally:
    for runner in runners.values():
      runner.close()
  return run_rows(case, {name: float(np.median(t)) for name, t in times.items()})


def summarize(runs):
  """One row per (case, implementation) over runs (lists of run_rows):
  the medians over runs, and the ranges of the ratio and the bound fraction."""
  grouped = {}
  for rows in runs:
    for row in rows:
      grouped.setdefault((row['case'], row['implementation']), []).append(row)
  summary = []
  for (case, name), rows in grouped.items():
    ms = float(np.median([r['ms'] for r in rows]))
    ratios = [r['ratio'] for r in rows]
    fractions = [r['copy_fraction'] for r in rows if r['copy_fraction'] is not None]
    nbytes = rows[0]['nbytes']
    summary.append({
        'case': case, 'implementation': name, 'runs': len(rows), 'ms': ms,
        'gbps': nbytes / ms / 1e6 if nbytes else None,
        'ratio': float(np.median(ratios)), 'ratio_range': (min(ratios), max(ratios)),
        'copy_fraction': float(np.median(fractions)) if fractions else None,
        'copy_fraction_range': (min(fractions), max(fractions)) if fractions else None,
        'beats_copy': any(r['beats_copy'] for r in rows), 'reference': rows[0]['reference']})
  return summary


def _with_range(value, value_range, fmt):
  text = fmt.format(value)
  if value_range[0] != value_range[1]:
    text += f' ({fmt.format(value_range[0])}\u2013{fmt.format(value_range[1])})'
  return text


def markdown(summary):
  """The table, then one line per row that beat every copy variant."""
  runs = max((r['runs'] for r in summary), default=1)
  spread = f', median (min\u2013max) over {runs} runs' if runs > 1 else ''
  lines = [f'| case | implementation | median ms | GB/s (input) | vs reference{spread} | '
           f'of copy bound{spread} |', '|---|---|---|---|---|---|']
  for row in summary:
    gbps = '-' if row['gbps'] is None else f"{row['gbps']:.1f}"
    fraction = '-'
    if row['copy_fraction'] is not None:
      fraction = _with_range(row['copy_fraction'] * 100, row['copy_fraction_range'] and tuple(
          f * 100 for f in row['copy_fraction_range']), '{:.0f}%')
      if row['beats_copy']:
        fraction += ' ' + BEATS_COPY_MARK
    lines.append(f"| {row['case']} | {row['implementation']} | {row['ms']:.2f} | {gbps} | "
                 f"{_with_range(row['ratio'], row['ratio_range'], '{:.2f}x')} | {fraction} |")
  beaten = [row for row in summary if row['beats_copy']]
  if beaten:
    lines.append('')
    lines.append(f'{BEATS_COPY_MARK} Faster than every copy variant in at least one run: '
                 'there the bound is the fastest row itself, not a copy, so the copies are no '
                 'bound on this machine for: ' +
                 '; '.join(f"{r['case']} / {r['implementation']}" for r in beaten) + '.')
  return '\n'.join(lines) + '\n'


# --- the case kinds --------------------------------------------------------


def _implementations(legacy_available, channels_first):
  import tf1_bn
  from tf1_bn.studies import recipe
  axis = 1 if channels_first else -1
  data_format = 'NCHW' if channels_first else 'NHWC'
  impls = {
      'bn_layer': lambda x, t: tf1_bn.bn_layer(x, training=t, axis=axis),
      'batch_normalization': lambda x, t: tf1_bn.batch_normalization(x, training=t, axis=axis),
      'batch_norm': lambda x, t: tf1_bn.batch_norm(x, is_training=t, scale=True,
                                                   data_format=data_format),
  }
  if not channels_first:  # the recipe, as the blog posts give it, is channels last
    impls[RECIPE] = recipe.classic_recipe
  if legacy_available:
    import tensorflow as tf
    for fused in (True, False):
      impls[f'legacy fused={fused}'] = (
          lambda x, t, fused=fused: tf.compat.v1.layers.batch_normalization(
              x, training=t, fused=fused, axis=axis))
  return impls


def _layer_cases(label, shape, settings, channels_first):
  import tensorflow as tf
  builds = _implementations(settings.legacy_available, channels_first)
  cases = []
  for dtype_name in settings.dtypes:
    dtype = tf.as_dtype(dtype_name)
    # The recipe's float32 gamma meets a 16-bit input: it does not build there.
    reference = next(r for r in (LEGACY_FUSED, RECIPE if dtype == tf.float32 else None,
                                 'bn_layer') if r in builds)
    for mode in settings.modes:

      def runners(dtype=dtype, mode=mode):
        built = {}
        for name, build in builds.items():
          try:
            built[name] = _LayerRunner(build, shape, dtype, mode)
          except (TypeError, ValueError) as error:  # e.g. the recipe on float16
            print(f'skipping {name} for {dtype.name}: {type(error).__name__}: '
                  f'{str(error).splitlines()[0]}')
        return built

      cases.append(Case(f'{label} {"x".join(map(str, shape))} {dtype_name} {mode}', runners,
                        reference, bound_input=(tuple(shape), dtype_name)))
  return cases


for _label, _rank, _first in (('2d', 2, False), ('nhwc', 4, False), ('ndhwc', 5, False),
                              ('nchw', 4, True), ('ncdhw', 5, True)):
  register_case_kind(
      _label, f'{_label}:{"x".join("64" for _ in range(_rank))}',
      f'one BN layer, train step and inference, channels {"first" if _first else "last"}',
      _rank)(
          lambda shape, settings, label=_label, first=_first: _layer_cases(
              label, shape, settings, first))


def small_cnn(x):
  """Three conv + BN + ReLU blocks, a global average pool, a dense + BN head."""
  import tensorflow as tf
  import tf1_bn
  v1 = tf.compat.v1
  h = x
  for i, width in enumerate((32, 32, 64)):
    kernel = v1.get_variable(f'conv{i}', [3, 3, h.shape[-1], width])
    h = tf.nn.relu(tf1_bn.bn_layer(tf.nn.conv2d(h, kernel, 1, 'SAME'), name=f'bn{i}'))
  h = tf.reduce_mean(h, [1, 2])
  return tf1_bn.bn_layer(tf.matmul(h, v1.get_variable('dense', [64, 10])), name='bn_head')


class _GraphDefRunner(SessionRunner):
  """A frozen inference GraphDef in its own graph and session, fed one batch."""

  def __init__(self, graph_def, input_name, output_name, batch):
    import tensorflow as tf
    self.graph = tf.Graph()
    with self.graph.as_default():
      tf.graph_util.import_graph_def(graph_def, name='')
    self.sess = tf.compat.v1.Session(graph=self.graph, config=session_config())
    self.fetch = self.graph.get_tensor_by_name(output_name)
    self.feed = {self.graph.get_tensor_by_name(input_name): batch}


@register_case_kind('cnn', 'cnn:64x32x32x3',
                    "a small CNN's exported inference graph, folded against unfolded", 4)
def fold_cases(shape, settings):
  del settings  # float32 inference only

  def runners():
    import tensorflow as tf
    from tf1_bn.deploy import export
    v1 = tf.compat.v1
    batch = np.random.RandomState(0).randn(*shape).astype(np.float32)
    built = {}
    with tf.Graph().as_default():
      x = v1.placeholder(tf.float32, [None] + shape[1:], name='images')
      y = small_cnn(x)
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for name, fold in (('exported, unfolded', False), ('exported, folded', True)):
          graph_def, (output,), _ = export.inference_graph_def(sess, [y], fold=fold)
          built[name] = _GraphDefRunner(graph_def, 'images:0', output, batch)
    return built

  return [Case(f'cnn {"x".join(map(str, shape))} float32 inference', runners,
               'exported, unfolded')]


class _StepRunner(SessionRunner):
  """A step built by `build_step()` -> (fetch, feed, init) in its own graph
  and session (the model modules' builders: bench_layers, bench_cells).

  The legacy layers and cells warn at each construction that they are
  deprecated; those warnings (only those) are filtered while building."""

  def __init__(self, build_step):
    import tensorflow as tf
    self.graph = tf.Graph()
    with self.graph.as_default(), warnings.catch_warnings():
      warnings.filterwarnings('ignore', r'`tf\.(layers|nn\.rnn_cell)\.\w+` is deprecated',
                              UserWarning)
      self.fetch, self.feed, init = build_step()
      self.sess = tf.compat.v1.Session(config=session_config())
      self.sess.run(init)


def _model_cases(label, shape, settings, model):
  """A train and an inference case (per `--modes`) of a model module: its
  `implementations(legacy_available)` -> {row name: implementation} and
  `build_step(implementation, shape, mode)`; its `LEGACY` row is the
  reference when the legacy is active, else its `OURS` row. float32, no
  copy bound (a whole model)."""
  reference = model.LEGACY if settings.legacy_available else model.OURS
  cases = []
  for mode in settings.modes:

    def runners(mode=mode):
      return {name: _StepRunner(lambda impl=impl: model.build_step(impl, shape, mode))
              for name, impl in model.implementations(settings.legacy_available).items()}

    cases.append(Case(f'{label} {"x".join(map(str, shape))} float32 {mode}', runners, reference))
  return cases


@register_case_kind('layers', 'layers:64x32x32x3',
                    'a tf.compat.v1.layers CNN (conv, BN, pooling, dense), train step and '
                    "inference: tf1_bn's layers (patch_layers) against the legacy layers",
                    4, least=(1, 4, 4, 1))
def tf_layers_cases(shape, settings):
  from tf1_bn.studies import bench_layers
  return _model_cases('layers', shape, settings, bench_layers)


@register_case_kind('lstm', 'lstm:32x20x64x128',
                    'an LSTMCell(U) under dynamic_rnn on B sequences of T steps of depth D, '
                    "train step and inference: tf1_bn's cell against the legacy cell", 4)
def lstm_cases(shape, settings):
  from tf1_bn.studies import bench_cells
  return _model_cases('lstm', shape, settings, bench_cells)


def _built_step_case(title, steps, reference, bound_input=None):
  """A Case of `_StepRunner`s, one per `{row: build}` of `steps()`."""
  def runners():
    return {name: _StepRunner(build) for name, build in steps().items()}
  return Case(title, runners, reference, bound_input)


@register_case_kind('masked', 'masked:64x50x256',
                    'BN on a zero-padded [B, T, C] batch, a training step whatever --modes '
                    'says: bn_layer(x, mask=m) against bn_layer(x) on the same tensor, '
                    'unfused, and weighted moments by hand', 3)
def masked_cases(shape, settings):
  from tf1_bn.studies import bench_sequences
  del settings  # float32, train: the mask only changes the training statistics
  return [_built_step_case(f'masked {"x".join(map(str, shape))} float32 train',
                           lambda: bench_sequences.masked_steps(shape),
                           bench_sequences.UNMASKED, (tuple(shape), 'float32'))]


@register_case_kind('bnlstm', 'bnlstm:64x8x8x128',
                    'a dynamic_rnn training step over T steps of D inputs, U units, whatever '
                    '--modes says: BNLSTMCell against the same LSTM without BN', 4)
def bn_lstm_cases(shape, settings):
  from tf1_bn.studies import bench_sequences
  del settings  # float32, train
  return [_built_step_case(f'bnlstm {"x".join(map(str, shape))} float32 train',
                           lambda: bench_sequences.bn_lstm_steps(shape),
                           bench_sequences.LSTM)]


class _BuildRunner:
  """Builds `count` layers of one implementation, chained, in a new graph."""

  def __init__(self, build, count):
    self.build, self.count = build, count
    self._build_graph(1)  # one-time costs (imports, the XLA probe) before timing

  def _build_graph(self, count):
    import tensorflow as tf
    v1 = tf.compat.v1
    with tf.Graph().as_default():
      h = v1.placeholder(tf.float32, [None, 8, 8, 16])
      training = v1.placeholder(tf.bool, [], name='is_training')
      for i in range(count):
        with v1.variable_scope(f'layer{i}'):
          h = self.build(h, training)

  def step(self):
    start = time.perf_counter()
    self._build_graph(self.count)
    return time.perf_counter() - start

  def close(self):
    pass


@register_case_kind('build', 'build:100', 'graph construction of N chained layers', 1)
def build_cases_of(shape, settings):
  count = shape[0]

  def runners():
    return {name: _BuildRunner(build, count)
            for name, build in _implementations(settings.legacy_available, False).items()}

  reference = LEGACY_FUSED if settings.legacy_available else 'bn_layer'
  return [Case(f'build {count} layers, graph construction', runners, reference,
               rounds=BUILD_ROUNDS)]


class _TowerRunner(SessionRunner):
  """A bn_layer training step on `replicas` towers (or one device)."""

  def __init__(self, shape, replicas, synchronized):
    import tensorflow as tf
    import tf1_bn
    v1 = tf.compat.v1
    self.graph = tf.Graph()
    with self.graph.as_default():
      per_replica = [shape[0] // replicas] + list(shape[1:])
      fetches = []
      for i in range(replicas):
        with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, replicas):
          x = _input_variable(per_replica, tf.float32, f'x{i}')
          with v1.variable_scope('model', reuse=i > 0):
            y = tf1_bn.bn_layer(x, synchronized=synchronized)
          fetches.append(tf.group(*tf.gradients(tf.reduce_sum(y), [x] + v1.trainable_variables())))
      fetches.append(tf.group(*v1.get_collection(v1.GraphKeys.UPDATE_OPS)))
      self.fetch = fetches
      self.feed = {tf1_bn.training_placeholder(): True}
      self.sess = v1.Session(config=session_config(replicas))
      self.sess.run(v1.global_variables_initializer())


@register_case_kind('sync', 'sync:64x32x32x64',
                    'a training step of that global batch on --replicas towers: synchronized '
                    'BN, local BN on the same towers (the reference) and one device', 4)
def sync_cases(shape, settings):
  cases = []
  for replicas in settings.replicas:
    def runners(replicas=replicas):
      return {SYNCHRONIZED.format(replicas): _TowerRunner(shape, replicas, True),
              LOCAL.format(replicas): _TowerRunner(shape, replicas, False),
              ONE_DEVICE: _TowerRunner(shape, 1, False)}
    cases.append(Case(f'sync {"x".join(map(str, shape))} float32 train, {replicas} replicas',
                      runners, LOCAL.format(replicas)))
  return cases


# --- the whole run, its outputs --------------------------------------------


def run(cases, steps, warmup, repeat):
  """`repeat` runs of every case (run after run, so each spans the whole
  measurement's time); the summary rows."""
  runs = [[] for _ in cases]
  for r in range(repeat):
    for i, case in enumerate(cases):
      runs[i].append(measure_case(case, steps, warmup, seed=r))
  summary = []
  for case_runs in runs:
    summary.extend(summarize(case_runs))
  return summary


def machine_description():
  """'<CPU model>, <N> cores' from /proc/cpuinfo where there is one."""
  model = None
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          model = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  model = model or platform.processor() or platform.machine() or 'unknown CPU'
  return f'{model}, {usable_cores()} cores ({platform.system()} {platform.machine()})'


def header(command, steps, warmup, repeat, tf_version, machine, when=None):
  when = when or datetime.datetime.now(datetime.timezone.utc)
  return (f'Measured {when:%Y-%m-%d %H:%M} UTC on {machine}, TensorFlow {tf_version}; '
          f'median of {steps} alternated steps after {warmup} warm-up steps, '
          f'{repeat} run{"s" if repeat > 1 else ""}. Command:\n\n'
          f'```\n{command}\n```\n')


def _marked_span(text, path):
  """(start, end) of the text between the markers, or a ValueError naming `path`."""
  found = docs_page.span(text, BEGIN_MARKER, END_MARKER)
  if found is None:
    begin, end = text.find(BEGIN_MARKER), text.find(END_MARKER)
    raise ValueError(f'--write-docs: {path} needs exactly one {BEGIN_MARKER!r} line followed by '
                     f'one {END_MARKER!r} line (the bench writes between them); found '
                     f'{text.count(BEGIN_MARKER)} begin and {text.count(END_MARKER)} end '
                     'markers' + (', end before begin' if 0 <= end < begin else ''))
  return found


def check_docs(path):
  """Raises, before any measuring, if `path` cannot take the tables."""
  with open(path, encoding='utf-8') as f:
    _marked_span(f.read(), path)


def write_docs(path, content):
  """Replaces the text between the markers of `path` with `content`; the file
  is replaced whole (a temporary file renamed over it) or not at all."""
  with open(path, encoding='utf-8') as f:
    text = f.read()
  start, end = _marked_span(text, path)
  docs_page.write_between(path, text, start, end, content, prefix='.performance-')


def bar_chart(rows, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  cases = list(dict.fromkeys(r['case'] for r in rows))
  impls = list(dict.fromkeys(r['implementation'] for r in rows))
  fig, ax = plt.subplots(figsize=(11, 0.6 * len(cases) * len(impls) / 3 + 2))
  width = 0.8 / len(impls)
  for i, impl in enumerate(impls):
    values = [next((r['ms'] for r in rows if r['case'] == c and r['implementation'] == impl),
                   np.nan) for c in cases]
    ax.barh(np.arange(len(cases)) + i * width, values, width, label=impl)
  ax.set_yticks(np.arange(len(cases)) + 0.4 - width / 2)
  ax.set_yticklabels(cases)
  ax.set_xscale('log')  # graph construction takes seconds, a BN step milliseconds
  ax.set_xlabel('median milliseconds per step, log scale (lower is better)')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _positive(name, minimum):
  def parse(text):
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'{name} must be an integer, received {text!r}')
    if value < minimum:
      raise argparse.ArgumentTypeError(f'{name} must be at least {minimum}, received {value}')
    return value
  return parse


def build_parser(parser=None):
  parser = parser or argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  kinds = '; '.join(f'{k.usage}: {k.help}' for k in CASE_KINDS.values())
  parser.add_argument('--cases', nargs='+', default=list(DEFAULT_CASES),
                      help=f'KIND:DIMS to time. Kinds: {kinds}')
  parser.add_argument('--replicas', nargs='+', type=_positive('--replicas', 1),
                      default=list(DEFAULT_REPLICAS), help='replica counts of the sync case')
  parser.add_argument('--dtypes', nargs='+', default=['float32'],
                      help='input dtypes of the one-layer cases')
  parser.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES,
                      help='train step (forward, backward, moving-statistics update) and/or '
                      'inference (forward with training fed False) for the one-layer cases')
  parser.add_argument('--steps', type=_positive('--steps', 1), default=100,
                      help='timed steps per runner and run (the median is reported)')
  parser.add_argument('--warmup', type=_positive('--warmup', 0), default=10,
                      help='untimed steps per runner before each run')
  parser.add_argument('--repeat', type=_positive('--repeat', MIN_REPEAT), default=DEFAULT_REPEAT,
                      help='runs of the whole measurement; tables show the median and the '
                      'range across runs')
  parser.add_argument('--out', default='bench_out', help='directory for bench.md and bench.png')
  parser.add_argument('--write-docs', nargs='?', const=DOCS_PATH, default=None, metavar='PATH',
                      help=f'also write the table into PATH between {BEGIN_MARKER} and '
                      f'{END_MARKER} (PATH defaults to {DOCS_PATH})')
  return parser


def _check_arguments(args):
  """Raises on a bad case or a docs file without markers."""
  for text in args.cases:
    parse_case(text)
  if args.write_docs:
    check_docs(args.write_docs)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  _check_arguments(build_parser().parse_args(argv))  # before a re-run, before any timing
  args, status = legacy.parse_or_rerun('tf1_bn.studies.bench', build_parser, argv)
  if status is not None:
    return status
  legacy_available = legacy.active()
  if not legacy_available:
    print(legacy.SKIP_MESSAGE + ' Skipping the legacy rows.')
  import tensorflow as tf
  settings = Settings(tuple(args.dtypes), tuple(args.modes), tuple(args.replicas),
                      legacy_available)
  summary = run(build_cases(args.cases, settings), args.steps, args.warmup, args.repeat)
  command = 'tf1-bn bench' + (' ' + shlex.join(argv) if argv else '')
  table = header(command, args.steps, args.warmup, args.repeat, tf.__version__,
                 machine_description()) + '\n' + markdown(summary)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'bench.md'), 'w') as f:
    f.write(table)
  bar_chart(summary, os.path.join(args.out, 'bench.png'))
  print(table)
  print(f"wrote {os.path.join(args.out, 'bench.md')} and bench.png")
  if args.write_docs:
    write_docs(args.write_docs, table)
    print(f'wrote the table into {args.write_docs}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
