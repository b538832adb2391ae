"""Benchmark: tf1_bn's front-ends against the classic recipe and the legacy layer.

Each implementation gets its own graph and session; the steps alternate
between implementations so machine noise hits all of them alike, and each
reports the median. The copy bound is measured on the spot, as one more
runner in the same alternation: numpy copying a buffer of the input's size
(one read, one write), which is what a one-pass BN inference has to do at
least. Alternated like the others, it finds the caches as they do: its source
was evicted by the runner before it, as each implementation's input was.

The legacy tf.compat.v1.layers.batch_normalization needs tf-keras and
TF_USE_LEGACY_KERAS=1 before TensorFlow is imported: when tf-keras is
installed and the variable is unset, `main` re-runs itself with it set.
"""
import argparse
import os
import sys
import time

import numpy as np

from tf1_bn.studies import legacy_child as legacy

DEFAULT_CASES = ('nhwc:64x32x32x64', '2d:4096x1024', 'cnn:64x32x32x3', 'build:100',
                 'sync:64x32x32x64')
# `cnn:BxHxWxC` times a small CNN's exported inference graph, folded or not.
FOLD_CASE = 'cnn'
# `build:N` times building N layers, chained, in one graph.
BUILD_CASE = 'build'
BUILD_ROUNDS = 3
# `sync:BxHxWxC` times a training step of the global batch BxHxWxC split over
# `--replicas` hand-built towers (one logical CPU device each): synchronized
# BN, local BN on the same towers (the reference), and one device.
SYNC_CASE = 'sync'
DEFAULT_REPLICAS = (2, 4)
SYNCHRONIZED = 'synchronized, {} replicas'
LOCAL = 'local, {} replicas'
ONE_DEVICE = 'one device, global batch'
COPY_BOUND = 'copy bound (numpy copyto)'


def _implementations(legacy_available):
  import tf1_bn
  from tf1_bn.studies import recipe
  impls = {
      'bn_layer': lambda x, t: tf1_bn.bn_layer(x, training=t),
      'batch_normalization': lambda x, t: tf1_bn.batch_normalization(x, training=t),
      'batch_norm': lambda x, t: tf1_bn.batch_norm(x, is_training=t, scale=True),
      'classic recipe': recipe.classic_recipe,
  }
  if legacy_available:
    import tensorflow as tf
    impls['legacy fused=True'] = lambda x, t: tf.compat.v1.layers.batch_normalization(
        x, training=t, fused=True)
    impls['legacy fused=False'] = lambda x, t: tf.compat.v1.layers.batch_normalization(
        x, training=t, fused=False)
  return impls


class _Runner:
  """One implementation in its own graph and session."""

  def __init__(self, build, shape, dtype, mode):
    import tensorflow as tf
    v1 = tf.compat.v1
    self.graph = tf.Graph()
    with self.graph.as_default():
      x = v1.get_variable('x', shape, dtype, v1.random_normal_initializer(1.0, 2.0),
                          trainable=False)
      self.training = v1.placeholder(tf.bool, [], name='is_training')
      y = build(x, self.training)
      if mode == 'train':
        params = [v for v in v1.trainable_variables()]
        grads = tf.gradients(tf.reduce_sum(tf.cast(y, tf.float32)), [x] + params)
        self.fetch = [tf.group(*grads), tf.group(*v1.get_collection(v1.GraphKeys.UPDATE_OPS))]
        self.feed = {self.training: True}
      else:
        self.fetch = tf.group(y)
        self.feed = {self.training: False}
      self.sess = v1.Session(config=_session_config())
      self.sess.run(v1.global_variables_initializer())

  def step(self):
    start = time.perf_counter()
    self.sess.run(self.fetch, self.feed)
    return time.perf_counter() - start


class _CopyRunner:
  """The copy bound: numpy copying `nbytes` from one buffer into another."""

  def __init__(self, nbytes):
    self.source = np.ones(nbytes, np.uint8)
    self.target = np.empty_like(self.source)
    self.sess = None

  def step(self):
    start = time.perf_counter()
    np.copyto(self.target, self.source)
    return time.perf_counter() - start


def parse_case(text):
  """'nhwc:64x32x32x64' -> ('nhwc', [64, 32, 32, 64])."""
  label, _, dims = text.partition(':')
  return label, [int(d) for d in dims.split('x')]


def _alternate(runners, steps, warmup):
  """Per-runner step times, the runners alternated step by step."""
  for runner in runners.values():
    for _ in range(warmup):
      runner.step()
  times = {name: [] for name in runners}
  names = list(runners)
  order = np.random.RandomState(0)
  for _ in range(steps):
    # A new random order every round: every implementation takes every
    # position and follows every other one (a runner pays for the cache its
    # predecessor evicted; a rotated order fixes the predecessor).
    for name in order.permutation(names):
      times[name].append(runners[name].step())
  for runner in runners.values():
    if runner.sess is not None:
      runner.sess.close()
  return times


def _rows(case, times, reference, nbytes, bound):
  rows = []
  for name, samples in times.items():
    median = float(np.median(samples))
    rows.append({'case': case, 'implementation': name, 'ms': median * 1e3,
                 'gbps': nbytes / median / 1e9 if nbytes else None,
                 'ratio': median / float(np.median(times[reference])),
                 'copy_fraction': bound / median if bound else None, 'reference': reference})
  return rows


def run_case(label, shape, dtype_name, mode, steps, warmup, legacy_available):
  import tensorflow as tf
  dtype = tf.as_dtype(dtype_name)
  runners = {}
  for name, build in _implementations(legacy_available).items():
    try:
      runners[name] = _Runner(build, shape, dtype, mode)
    except (TypeError, ValueError) as error:  # e.g. the recipe's float32 gamma on float16
      print(f'skipping {name} for {dtype_name}: {type(error).__name__}: '
            f'{str(error).splitlines()[0]}')
  nbytes = int(np.prod(shape)) * dtype.size
  runners[COPY_BOUND] = _CopyRunner(nbytes)
  times = _alternate(runners, steps, warmup)
  reference = next(r for r in ('legacy fused=True', 'classic recipe', 'bn_layer') if r in runners)
  return _rows(f'{label} {"x".join(map(str, shape))} {dtype_name} {mode}', times, reference,
               nbytes, float(np.median(times[COPY_BOUND])))


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


class _GraphDefRunner:
  """A frozen inference GraphDef in its own graph and session, fed one batch."""

  def __init__(self, graph_def, input_name, output_name, batch):
    import tensorflow as tf
    v1 = tf.compat.v1
    self.graph = tf.Graph()
    with self.graph.as_default():
      tf.graph_util.import_graph_def(graph_def, name='')
    self.sess = v1.Session(graph=self.graph)
    self.fetch = self.graph.get_tensor_by_name(output_name)
    self.feed = {self.graph.get_tensor_by_name(input_name): batch}

  def step(self):
    start = time.perf_counter()
    self.sess.run(self.fetch, self.feed)
    return time.perf_counter() - start


def fold_case(shape, steps, warmup):
  """Folded versus unfolded export of `small_cnn`, inference, float32."""
  import tensorflow as tf
  from tf1_bn.deploy import export
  v1 = tf.compat.v1
  batch = np.random.RandomState(0).randn(*shape).astype(np.float32)
  graph_defs = {}
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None] + shape[1:], name='images')
    y = small_cnn(x)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for name, fold in (('exported, unfolded', False), ('exported, folded', True)):
        graph_def, (output,), _ = export.inference_graph_def(sess, [y], fold=fold)
        graph_defs[name] = graph_def
  runners = {name: _GraphDefRunner(graph_def, 'images:0', output, batch)
             for name, graph_def in graph_defs.items()}
  times = _alternate(runners, steps, warmup)
  return _rows(f'{FOLD_CASE} {"x".join(map(str, shape))} float32 inference', times,
               'exported, unfolded', batch.nbytes, None)


class _BuildRunner:
  """Builds `count` layers of one implementation, chained, in a new graph."""

  def __init__(self, build, count):
    self.build, self.count, self.sess = build, count, None
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


def build_case(count, legacy_available):
  """Graph construction time of `count` layers per implementation."""
  runners = {name: _BuildRunner(build, count)
             for name, build in _implementations(legacy_available).items()}
  times = _alternate(runners, BUILD_ROUNDS, 0)
  reference = 'legacy fused=True' if 'legacy fused=True' in runners else 'bn_layer'
  return _rows(f'{BUILD_CASE} {count} layers, graph construction', times, reference, None, None)


class _TowerRunner:
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
          x = v1.get_variable(f'x{i}', per_replica, tf.float32,
                              v1.random_normal_initializer(1.0, 2.0), trainable=False)
          with v1.variable_scope('model', reuse=i > 0):
            y = tf1_bn.bn_layer(x, synchronized=synchronized)
          fetches.append(tf.group(*tf.gradients(tf.reduce_sum(y), [x] + v1.trainable_variables())))
      fetches.append(tf.group(*v1.get_collection(v1.GraphKeys.UPDATE_OPS)))
      self.fetch = fetches
      self.feed = {tf1_bn.training_placeholder(): True}
      config = _session_config(replicas)
      self.sess = v1.Session(config=config)
      self.sess.run(v1.global_variables_initializer())

  def step(self):
    start = time.perf_counter()
    self.sess.run(self.fetch, self.feed)
    return time.perf_counter() - start


def _session_config(devices=1):
  import tensorflow as tf
  from tensorflow.core.protobuf import rewriter_config_pb2
  v1 = tf.compat.v1
  config = v1.ConfigProto(device_count={'CPU': devices}, graph_options=v1.GraphOptions(
      optimizer_options=v1.OptimizerOptions(opt_level=v1.OptimizerOptions.L1)))
  # Grappler's dependency optimizer drops stateless ops that only a
  # tf.group reads: the backward pass of an implementation that normalizes
  # outside a cond (the recipe, the legacy unfused layer) would not run at
  # all. Off for every runner; bn_layer times the same with it on and off.
  config.graph_options.rewrite_options.dependency_optimization = (
      rewriter_config_pb2.RewriterConfig.OFF)
  # Collectives must not starve the inter-op pool.
  config.inter_op_parallelism_threads = max(devices + 1, os.cpu_count() or 1)
  return config


def sync_case(shape, replica_counts, steps, warmup):
  """Synchronized against local BN on the same towers, and one device."""
  rows = []
  for replicas in replica_counts:
    runners = {SYNCHRONIZED.format(replicas): _TowerRunner(shape, replicas, True),
               LOCAL.format(replicas): _TowerRunner(shape, replicas, False),
               ONE_DEVICE: _TowerRunner(shape, 1, False)}
    times = _alternate(runners, steps, warmup)
    rows.extend(_rows(f'{SYNC_CASE} {"x".join(map(str, shape))} float32 train, '
                      f'{replicas} replicas', times, LOCAL.format(replicas),
                      int(np.prod(shape)) * 4, None))
  return rows


def markdown(rows):
  lines = ['| case | implementation | median ms | GB/s (input) | vs reference | of copy bound |',
           '|---|---|---|---|---|---|']
  for row in rows:
    fraction = '-' if row['copy_fraction'] is None else f"{row['copy_fraction']:.0%}"
    gbps = '-' if row['gbps'] is None else f"{row['gbps']:.1f}"
    lines.append(f"| {row['case']} | {row['implementation']} | {row['ms']:.2f} | "
                 f"{gbps} | {row['ratio']:.2f}x | {fraction} |")
  return '\n'.join(lines) + '\n'


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


def build_parser(parser=None):
  parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--cases', nargs='+', default=list(DEFAULT_CASES),
                      help='label:shape, e.g. nhwc:64x32x32x64 nchw:64x64x32x32 2d:4096x1024; '
                      f'{FOLD_CASE}:BxHxWxC times a small CNN exported folded and unfolded; '
                      f'{BUILD_CASE}:N times building N layers in one graph; '
                      f'{SYNC_CASE}:BxHxWxC times a synchronized training step of that global '
                      'batch on --replicas towers')
  parser.add_argument('--replicas', nargs='+', type=int, default=list(DEFAULT_REPLICAS),
                      help=f'replica counts of the {SYNC_CASE} case')
  parser.add_argument('--dtypes', nargs='+', default=['float32'],
                      help='input dtypes of the layer cases, e.g. float32 float16')
  parser.add_argument('--modes', nargs='+', default=['train', 'inference'],
                      choices=['train', 'inference'],
                      help='time a training step (with the update), inference, or both')
  parser.add_argument('--steps', type=int, default=100,
                      help='timed steps per implementation, alternated; the table gives their median')
  parser.add_argument('--warmup', type=int, default=10,
                      help='untimed warm-up steps per implementation before timing')
  parser.add_argument('--out', default='bench_out', help='folder for bench.md and bench.png')
  return parser


def main(argv=None):
  args, status = legacy.parse_or_rerun('tf1_bn.studies.bench', build_parser, argv)
  if status is not None:
    return status
  legacy_available = legacy.active()
  if not legacy_available:
    print(legacy.SKIP_MESSAGE + ' Skipping the legacy rows.')
  import tensorflow as tf
  rows = []
  for case in args.cases:
    label, shape = parse_case(case)
    if label == FOLD_CASE:
      rows.extend(fold_case(shape, args.steps, args.warmup))
      continue
    if label == BUILD_CASE:
      rows.extend(build_case(shape[0], legacy_available))
      continue
    if label == SYNC_CASE:
      rows.extend(sync_case(shape, args.replicas, args.steps, args.warmup))
      continue
    for dtype in args.dtypes:
      for mode in args.modes:
        rows.extend(run_case(label, shape, dtype, mode, args.steps, args.warmup,
                             legacy_available))
  os.makedirs(args.out, exist_ok=True)
  header = (f'TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, median of {args.steps} '
            f'alternated steps after {args.warmup} warm-up steps\n\n')
  table = header + markdown(rows)
  with open(os.path.join(args.out, 'bench.md'), 'w') as f:
    f.write(table)
  bar_chart(rows, os.path.join(args.out, 'bench.png'))
  print(table)
  print(f"wrote {os.path.join(args.out, 'bench.md')} and bench.png")
  return 0


if __name__ == '__main__':
  sys.exit(main())
