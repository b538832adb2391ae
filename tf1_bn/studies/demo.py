"""`tf1-bn demo`: BN studies on real data, TF1 style.

Every model is a graph-mode MLP on scikit-learn's 8x8 digits, trained in a
session loop that feeds `{tf1_bn.training_placeholder(): True}` and evaluated
on the held-out split without that feed (the moving statistics normalize).
All models share the seed, the steps, the optimizer and the data order, so
the table compares the layers only.

The sequence study (`sequence_study`: the digits read as 8-row sequences,
an LSTM against `tf1_bn.BNLSTMCell`, and padded sequences with and without
`mask=`) follows, with its table and `sequences.png`; it adds about 5 s on
two cores (`--no-sequences` skips it).
"""
import argparse
import dataclasses
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf

from tf1_bn.studies import digits, sequence_study
from tf1_bn.bn import precise
from tf1_bn.common import docs_page
from tf1_bn.common import progress as progress_lib
from tf1_bn.bn.replicas import tower
from tf1_bn.bn.switch import training_placeholder
from tf1_bn.bn.update_ops import minimize

v1 = tf.compat.v1

TARGET_ACCURACY = 0.9
LEARNING_RATE = 0.05
MOMENTUM = 0.9
BATCH_SIZE = 32
SMALL_BATCH_SIZE = 2


@dataclasses.dataclass(frozen=True)
class Model:
  name: str
  activation: str = 'relu'
  bn: str = None
  dropout_rate: float = 0.0
  batch_size: int = BATCH_SIZE
  track_statistics: bool = False
  bn_decay: float = 0.9
  # Towers (one CPU device each) with `batch_size` examples each.
  replicas: int = 1
  synchronized: bool = False

  @property
  def global_batch_size(self):
    return self.batch_size * self.replicas

  @property
  def learning_rate(self):
    # Linear scaling with the (global) batch size, so a small batch differs
    # from the others in its batch statistics, not in the size of its updates.
    return LEARNING_RATE * self.global_batch_size / BATCH_SIZE


MODELS = (
    Model('no BN'),
    Model('BN before ReLU', bn='before', track_statistics=True),
    Model('BN after ReLU', bn='after'),
    Model('BN before ReLU + dropout 0.3', bn='before', dropout_rate=0.3),
    Model('sigmoid, no BN', activation='sigmoid'),
    Model('sigmoid + BN', activation='sigmoid', bn='before'),
    Model(f'no BN, batch {SMALL_BATCH_SIZE}', batch_size=SMALL_BATCH_SIZE),
    Model(f'BN before ReLU, batch {SMALL_BATCH_SIZE}', bn='before',
          batch_size=SMALL_BATCH_SIZE),
)


@dataclasses.dataclass
class Result:
  model: Model
  eval_steps: list
  test_accuracy: list
  train_loss: list
  seconds: float
  # For track_statistics models: per evaluation, the first BN layer's moving
  # statistics and the population statistics of its input over the training set.
  statistics: list = dataclasses.field(default_factory=list)
  # What train()'s `after_training` returned (e.g. the precise-BN study).
  after: object = None
  test_examples: int = 0

  @property
  def test_error(self):
    return [1.0 - accuracy for accuracy in self.test_accuracy]

  @property
  def final_accuracy(self):
    return self.test_accuracy[-1]

  @property
  def steps_to_target(self):
    for step, acc in zip(self.eval_steps, self.test_accuracy):
      if acc >= TARGET_ACCURACY:
        return step
    return None


def train(model, split, steps, seed, eval_every, progress=None, label=None,
          after_training=None):
  """Trains one model; returns its Result.

  `progress`: a bar on stderr labelled `label`; True always, False never,
  None only on a terminal.

  `after_training(sess, tensors, model, split)`, if given, runs once training
  and the last evaluation are done (after the timing), with the model's
  tensors by name (x, y, logits, accuracy); its return value is
  `Result.after`.
  """
  graph = tf.Graph()
  with graph.as_default():
    v1.set_random_seed(seed)
    optimizer = v1.train.MomentumOptimizer(model.learning_rate, MOMENTUM)
    if model.replicas == 1:
      xs = [v1.placeholder(tf.float32, [None, digits.NUM_FEATURES], name='x')]
      ys = [v1.placeholder(tf.int64, [None], name='y')]
      logits = _logits(model, xs[0], seed)
      loss = digits.cross_entropy(logits, ys[0])
      train_op = minimize(optimizer, loss)
    else:
      xs, ys, logits, loss, train_op = _towers(model, optimizer, seed)
    # Evaluation runs the first tower in inference mode (no collective).
    x, y = xs[0], ys[0]
    accuracy = digits.accuracy(logits, y)
    training = training_placeholder()
    if model.track_statistics:
      pre_bn = graph.get_tensor_by_name('dense0/MatMul:0')
      variables = {var.op.name: var for var in v1.global_variables()}
      moving = [variables['bn0/moving_mean'], variables['bn0/moving_variance']]
      kernel = variables['dense0/kernel']
    init = v1.global_variables_initializer()
  graph.finalize()

  result = Result(model, [], [], [], 0.0, test_examples=len(split.test_y))
  running_loss = None
  with digits.single_thread_session(graph, model.replicas) as sess, \
      progress_lib.bar(steps, label or model.name, progress) as bar:
    sess.run(init)
    start = time.perf_counter()
    batches = digits.minibatches(len(split.train_x), steps, model.global_batch_size, seed)
    for step, batch in enumerate(batches, 1):
      feed = {training: True}
      for tower_x, tower_y, part in zip(xs, ys, np.split(batch, model.replicas)):
        feed.update({tower_x: split.train_x[part], tower_y: split.train_y[part]})
      _, batch_loss = sess.run([train_op, loss], feed)
      running_loss = batch_loss if running_loss is None else 0.95 * running_loss + 0.05 * batch_loss
      bar.update()
      if step % eval_every == 0 or step == steps:
        # No training feed: the placeholder defaults to False, inference mode.
        result.eval_steps.append(step)
        result.test_accuracy.append(float(sess.run(accuracy, {x: split.test_x, y: split.test_y})))
        result.train_loss.append(float(running_loss))
        if model.track_statistics:
          population = sess.run(pre_bn, {x: split.train_x})
          moving_mean, moving_variance = sess.run(moving)
          result.statistics.append(dict(
              step=step, kernel=sess.run(kernel), moving_mean=moving_mean,
              moving_variance=moving_variance,
              population_mean=population.mean(0), population_variance=population.var(0)))
        bar.set_postfix(loss=f'{running_loss:.4f}', refresh=False)
    result.seconds = time.perf_counter() - start
    if after_training is not None:
      tensors = dict(x=x, y=y, logits=logits, accuracy=accuracy)
      result.after = after_training(sess, tensors, model, split)
  return result


def _logits(model, x, seed):
  return digits.mlp(x, activation=model.activation, bn=model.bn,
                    dropout_rate=model.dropout_rate, seed=seed, bn_decay=model.bn_decay,
                    synchronized=model.synchronized)


def _towers(model, optimizer, seed):
  """The TF1 multi-tower recipe: one tower per CPU device, variables shared
  by reuse, each tower's loss its share of the global batch's mean, the
  gradients summed, the updates from UPDATE_OPS (tower 0's only)."""
  xs, ys, losses, tower_gradients = [], [], [], []
  for i in range(model.replicas):
    xs.append(v1.placeholder(tf.float32, [None, digits.NUM_FEATURES], name=f'x{i}'))
    ys.append(v1.placeholder(tf.int64, [None], name=f'y{i}'))
    with tf.device(f'/cpu:{i}'), tower(i, model.replicas), \
        v1.variable_scope(v1.get_variable_scope(), reuse=i > 0):
      tower_logits = _logits(model, xs[i], seed)
      losses.append(digits.cross_entropy(tower_logits, ys[i]) / model.replicas)
      tower_gradients.append(optimizer.compute_gradients(losses[-1]))
      if i == 0:
        logits = tower_logits
  gradients = [(tf.add_n([g[k][0] for g in tower_gradients]), tower_gradients[0][k][1])
               for k in range(len(tower_gradients[0]))]
  with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
    train_op = optimizer.apply_gradients(gradients)
  return xs, ys, logits, tf.add_n(losses), train_op


def run(steps=3000, seed=0, eval_every=10, models=MODELS, progress=None, after_training=None):
  split = digits.load(seed)
  return [train(model, split, steps, seed, eval_every, progress,
                f'[{i}/{len(models)}] {model.name}', after_training)
          for i, model in enumerate(models, 1)]


def table(results):
  lines = [f'| model | batch | learning rate | final test accuracy | steps to {TARGET_ACCURACY:.0%} '
           '| seconds |', '|---|---:|---:|---:|---:|---:|']
  for r in results:
    to_target = r.steps_to_target if r.steps_to_target is not None else 'not reached'
    batch = (f'{r.model.replicas} x {r.model.batch_size}' if r.model.replicas > 1
             else r.model.batch_size)
    lines.append(f'| {r.model.name} | {batch} | {r.model.learning_rate:g} | '
                 f'{r.final_accuracy:.4f} | '
                 f'{to_target} | {r.seconds:.1f} |')
  return '\n'.join(lines)


def statistics_gap(result):
  """Per evaluation: mean over channels of |moving - population| relative to
  the population standard deviation (means) or variance (variances)."""
  steps, mean_gap, variance_gap = [], [], []
  for s in result.statistics:
    std = np.sqrt(s['population_variance'])
    steps.append(s['step'])
    mean_gap.append(float(np.mean(np.abs(s['moving_mean'] - s['population_mean']) / std)))
    variance_gap.append(float(np.mean(
        np.abs(s['moving_variance'] - s['population_variance']) / s['population_variance'])))
  return steps, mean_gap, variance_gap


# --- Pictures --------------------------------------------------------------------
DPI = 150


def _save(fig, path):
  """Writes `fig` as a PNG at DPI, in 256 colours (line plots lose nothing
  visible; the file is about a quarter of matplotlib's RGBA output, which
  matters for the copies the docs keep)."""
  import io
  from PIL import Image  # matplotlib's own dependency
  buffer = io.BytesIO()
  fig.savefig(buffer, dpi=DPI, format='png')
  buffer.seek(0)
  with Image.open(buffer) as image:
    image.convert('RGB').quantize(colors=256).save(path, format='PNG', optimize=True,
                                                   dpi=(DPI, DPI))
# Test error is drawn on a log axis; an evaluation without error is drawn at
# half an error (the axis' floor), so a curve that reaches 0 stays visible.
ZERO_ERROR_FLOOR = 0.5
# A test error measured on 540 examples moves in steps of 1/540: a curve with
# more than this many evaluations is drawn as the trailing mean of
# len // POINTS_PER_WINDOW of them, so close curves stay apart.
POINTS_PER_WINDOW = 30
_COLORS = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple', 'tab:brown',
           'tab:pink', 'tab:gray', 'tab:olive', 'tab:cyan')


def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def _plain_log_ticks(ax):
  """Tick labels of a log y axis (call it once the data is drawn) as plain
  numbers (0.05, not 5 x 10^-2); over more than a decade only 2s and 5s
  between the powers of ten, over less every minor tick."""
  import matplotlib.ticker as ticker
  low, high = ax.get_ylim()
  every = high / low < 10
  ax.yaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
  ax.yaxis.set_minor_formatter(ticker.FuncFormatter(
      lambda value, _: f'{value:g}' if every or f'{value:.0e}'[0] in '25' else ''))


def _legend_below(ax, columns=2):
  ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.12), ncol=columns,
            frameon=False)


def trailing_mean(values, window):
  """values[i] -> the mean of values[max(0, i - window + 1)]..values[i]."""
  sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, np.float64)]))
  ends = np.arange(1, len(values) + 1)
  starts = np.maximum(0, ends - window)
  return (sums[ends] - sums[starts]) / (ends - starts)


def _error_panel(ax, results, styles):
  """Test error rate per evaluation (a trailing mean when there are many),
  log axis, the target accuracy marked."""
  floor = ZERO_ERROR_FLOOR / max(r.test_examples for r in results)
  window = max(1, min(len(r.eval_steps) for r in results) // POINTS_PER_WINDOW)
  for r, style in zip(results, styles):
    ax.plot(r.eval_steps, np.maximum(trailing_mean(r.test_error, window), floor),
            label=r.model.name, **style)
  if any(min(r.test_error) == 0 for r in results):
    ax.set_ylim(bottom=floor * 0.8)  # the floor on the axis: "no error"
  target = 1.0 - TARGET_ACCURACY
  ax.axhline(target, color='black', lw=0.8, ls=':')
  ax.annotate(f'{TARGET_ACCURACY:.0%} accuracy (error {target:g})', (0.99, target),
              xycoords=('axes fraction', 'data'), ha='right', va='bottom', fontsize=8)
  smoothed = f', mean of the last {window} evaluations' if window > 1 else ''
  ax.set(yscale='log', xlabel='training step', ylabel=f'test error rate{smoothed} (log scale)',
         title='test error, inference mode (moving statistics)')
  _plain_log_ticks(ax)
  ax.grid(True, which='both', alpha=0.2)


def _loss_panel(ax, results, styles):
  for r, style in zip(results, styles):
    ax.plot(r.eval_steps, r.train_loss, label=r.model.name, **style)
  ax.set(yscale='log', xlabel='training step', ylabel='cross-entropy (nats, log scale)',
         title='training loss (running average)')
  _plain_log_ticks(ax)
  ax.grid(True, which='both', alpha=0.2)


def _styles(results):
  """One colour per model; models without BN dashed."""
  return [dict(color=_COLORS[i % len(_COLORS)], lw=1.4,
               ls='--' if r.model.bn is None else '-') for i, r in enumerate(results)]


def plot(results, path):
  """demo.png: test error and training loss of every model, and how far the
  tracked model's moving statistics are from the population statistics.
  Returns the (closed) figure."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(18, 7))
  styles = _styles(results)
  _error_panel(axes[0], results, styles)
  _loss_panel(axes[1], results, styles)
  for ax in axes[:2]:
    _legend_below(ax)
  tracked = [r for r in results if r.statistics]
  for r in tracked:
    steps, mean_gap, variance_gap = statistics_gap(r)
    axes[2].plot(steps, mean_gap, color='tab:blue',
                 label=f'mean: |moving - population| / population std')
    axes[2].plot(steps, variance_gap, color='tab:red',
                 label=f'variance: |moving - population| / population variance')
  names = ', '.join(r.model.name for r in tracked)
  axes[2].set(yscale='log', xlabel='training step',
              ylabel='relative gap, mean over channels (log scale)',
              title=f'first BN layer ({names}):\nmoving vs population statistics')
  _plain_log_ticks(axes[2])
  axes[2].grid(True, which='both', alpha=0.2)
  if tracked:
    _legend_below(axes[2], columns=1)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
  return fig


def plot_precise(studied, path):
  """precise.png: per model, test accuracy with the moving and with the
  recomputed statistics; per channel of the first BN layer, the moving
  against the recomputed mean and variance (on the diagonal: nothing to fix)."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(18, 7), gridspec_kw=dict(width_ratios=[1.3, 1, 1]))
  names = [r.model.name for r in studied]
  rows = np.arange(len(studied))
  moving = np.array([r.after.accuracy for r in studied])
  recomputed = np.array([r.after.recomputed_accuracy for r in studied])
  height = 0.38
  axes[0].barh(rows - height / 2, moving, height, color='tab:gray', label='moving statistics')
  axes[0].barh(rows + height / 2, recomputed, height, color='tab:green',
               label='recomputed (training set)')
  for row, a, b in zip(rows, moving, recomputed):
    axes[0].text(a, row - height / 2, f' {a:.3f}', va='center', fontsize=8)
    axes[0].text(b, row + height / 2, f' {b:.3f}', va='center', fontsize=8)
  low = min(moving.min(), recomputed.min())
  axes[0].set_xlim(max(0.0, low - (1 - low) * 0.3), 1.0)
  axes[0].set_yticks(rows, names, fontsize=8)
  axes[0].invert_yaxis()
  axes[0].set(xlabel='test accuracy (fraction correct)', ylabel='trained model',
              title='test accuracy: moving vs recomputed statistics')
  _legend_below(axes[0])
  axes[0].grid(True, axis='x', alpha=0.3)
  shown = _scatter_models(studied)
  for ax, kind in zip(axes[1:], ('mean', 'variance')):
    values = []
    for i, r in shown:
      layer = r.after.recomputed.layers[0]
      old, new = (np.ravel(getattr(layer, f'{when}_{kind}')) for when in ('old', 'new'))
      if kind == 'mean':  # in units of each channel's recomputed standard deviation
        std = np.sqrt(np.ravel(layer.new_variance) + layer.epsilon)
        old, new = old / std, new / std
      ax.scatter(new, old, s=14, alpha=0.6, color=_COLORS[i % len(_COLORS)],
                 label=r.model.name)
      values.extend([old, new])
    values = np.concatenate(values)
    if kind == 'variance':
      ax.set(xscale='log', yscale='log')
      positive = values[values > 0]
      span = (positive.min() / 1.5, positive.max() * 1.5)
      unit = '(squared units of the layer input, log-log)'
    else:
      margin = 0.05 * (values.max() - values.min())
      span = (values.min() - margin, values.max() + margin)
      unit = '(units: the recomputed standard deviation)'
    ax.plot(span, span, color='black', lw=0.8, ls=':', label='moving = recomputed')
    ax.set(xlim=span, ylim=span, xlabel=f'recomputed {kind}, training set\n{unit}',
           ylabel=f'moving {kind} after training',
           title=f'first BN layer, one point per channel: {kind}')
    ax.grid(True, alpha=0.3)
    _legend_below(ax, columns=1)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
  return fig


def _scatter_models(studied):
  """(index, result) of the models the scatter panels show: the first one
  (well trained), the small-batch one and the short-decay one, when there."""
  picked = [0] + [i for i, r in enumerate(studied) if i and (
      r.model.batch_size == SMALL_BATCH_SIZE or r.model is DECAY_MODEL or
      r.model == DECAY_MODEL)]
  return [(i, studied[i]) for i in picked]


def plot_towers(at_scale, path):
  """towers.png: the small-batch study at scale, test error and training loss
  of local and synchronized statistics on towers and of one device."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(14, 6.5))
  styles = [dict(color='tab:red', lw=1.6), dict(color='tab:blue', lw=3.0, alpha=0.6),
            dict(color='black', lw=1.0, ls='--')][:len(at_scale)]
  _error_panel(axes[0], at_scale, styles)
  _loss_panel(axes[1], at_scale, styles)
  for ax in axes:
    _legend_below(ax, columns=1)
  fig.suptitle(f'{REPLICAS} towers x batch {SMALL_BATCH_SIZE}: local against synchronized '
               f'statistics\n(synchronized, the towers train as one device with batch '
               f'{REPLICAS * SMALL_BATCH_SIZE}: those two curves overlap)', fontsize=11)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
  return fig


def _accuracy_panel(ax, rows, title):
  """Test accuracy (inference mode) of each sequence model against the step."""
  for i, row in enumerate(rows):
    steps, accuracy = zip(*row['curve'])
    ax.plot(steps, accuracy, label=row['model'], color=_COLORS[i % len(_COLORS)], lw=1.4,
            marker='.' if len(steps) < 3 else None)
  target = sequence_study.TARGET_ACCURACY
  ax.axhline(target, color='black', lw=0.8, ls=':')
  ax.annotate(f'{target:.0%} accuracy', (0.99, target), xycoords=('axes fraction', 'data'),
              ha='right', va='bottom', fontsize=8)
  ax.set(xlabel='training step', ylabel='test accuracy, inference mode (moving statistics)',
         title=title)
  ax.grid(True, alpha=0.2)
  _legend_below(ax, columns=1)


def plot_sequences(rows, path):
  """sequences.png: the sequence study's test accuracy curves, full
  sequences (LSTM against BNLSTMCell) and padded ones (BN without and with
  `mask=`), one panel each (a panel without rows is left out). Returns the
  (closed) figure."""
  plt = _pyplot()
  panels = [(group, title) for group, title in (
      ([r for r in rows if 'mean_gap' not in r],
       f'digits as {sequence_study.ROWS}-row sequences: LSTM against BNLSTMCell'),
      ([r for r in rows if 'mean_gap' in r],
       f'cut to {sequence_study.MIN_ROWS}-{sequence_study.ROWS} rows, zero-padded: '
       'BN without and with mask=')) if group]
  fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 6.5), squeeze=False)
  for ax, (group, title) in zip(axes[0], panels):
    _accuracy_panel(ax, group, title)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)
  return fig


# --- Small batches at scale: synchronized BN on towers ------------------------------
# REPLICAS towers of SMALL_BATCH_SIZE examples each (one logical CPU device
# per tower): local statistics (each tower's 2 examples; tower 0's update)
# against synchronized statistics (the global batch of 16) and one device
# at batch 16. All three see the same 16 examples per step, at the learning
# rate of a batch of 16. Towers on 2 cores are slow, hence the shorter run.
REPLICAS = 8
REPLICA_STEPS_DIVISOR = 10
REPLICA_MODELS = (
    Model(f'BN before ReLU, {REPLICAS} towers x batch {SMALL_BATCH_SIZE}, local statistics',
          bn='before', batch_size=SMALL_BATCH_SIZE, replicas=REPLICAS),
    Model(f'BN before ReLU, {REPLICAS} towers x batch {SMALL_BATCH_SIZE}, synchronized',
          bn='before', batch_size=SMALL_BATCH_SIZE, replicas=REPLICAS, synchronized=True),
    Model(f'BN before ReLU, one device, batch {REPLICAS * SMALL_BATCH_SIZE}', bn='before',
          batch_size=REPLICAS * SMALL_BATCH_SIZE),
)


def replica_study(steps, seed, eval_every, progress=None):
  """The small-batch study at scale; returns the Results of REPLICA_MODELS."""
  return run(max(steps // REPLICA_STEPS_DIVISOR, 1), seed, eval_every, REPLICA_MODELS, progress)


# --- Precise BN: tf1_bn.audit and tf1_bn.recompute_statistics on trained models -----
# The audit's batches: the first AUDIT_EXAMPLES training examples in batches of
# the model's training size, so its per-batch numbers describe training. Its
# recomputed statistics carry the sampling noise of N values per channel, an
# inference shift of about sqrt(1.5 / N): 0.054 for 512, under half of
# precise.STALE_SHIFT.
AUDIT_EXAMPLES = 512
# The decay-0.999 model trains for steps // SHORT_TRAINING_DIVISOR steps: with
# 300, its moving statistics have moved 1 - 0.999^300 = 26% of the way from
# their start (mean 0, variance 1).
SHORT_TRAINING_DIVISOR = 10
DECAY_MODEL = Model('BN before ReLU, decay 0.999, short training', bn='before', bn_decay=0.999)


@dataclasses.dataclass
class PreciseResult:
  """One trained BN model before and after recompute_statistics."""
  accuracy: float  # test accuracy with the moving statistics
  recomputed_accuracy: float  # after recomputing over the training set
  audit: object  # tf1_bn.audit's report, before recomputing
  recomputed: object = None  # recompute_statistics' report (old = moving, new = recomputed)


def precise_bn(sess, tensors, model, split):
  """train()'s `after_training` for BN models: audit, recompute over the
  training set (one batch: every layer then gets the input inference gives
  it), test accuracy. None for models without BN."""
  if model.bn is None:
    return None
  x, y = tensors['x'], tensors['y']
  size = model.batch_size
  feeds = [{x: split.train_x[i:i + size]} for i in range(0, AUDIT_EXAMPLES, size)]

  def test_accuracy():
    return float(sess.run(tensors['accuracy'], {x: split.test_x, y: split.test_y}))

  audit = precise.audit(sess, feeds, outputs={'logits': tensors['logits']}, progress=False)
  accuracy = test_accuracy()
  recomputed = precise.recompute_statistics(sess, [{x: split.train_x}], progress=False)
  return PreciseResult(accuracy, test_accuracy(), audit, recomputed)


def precise_study(results, steps, seed, progress=None):
  """The precise-BN section: the BN models of `results` (trained with
  `after_training=precise_bn`) and DECAY_MODEL, trained here for
  steps // SHORT_TRAINING_DIVISOR steps. Returns their Results."""
  split = digits.load(seed)
  short = max(1, steps // SHORT_TRAINING_DIVISOR)
  # One evaluation, at the end: this model's curve is not plotted.
  extra = train(DECAY_MODEL, split, short, seed, short, progress,
                f'[precise BN] {DECAY_MODEL.name}', precise_bn)
  return [r for r in results if r.after is not None] + [extra]


def precise_table(studied):
  """Markdown: test accuracy with the moving and the recomputed statistics,
  how often training and inference mode predict the same class on the audit's
  batches (with the moving statistics), and each layer's verdict."""
  lines = ['| model | batch | steps | moving decay | test accuracy: moving statistics | '
           'recomputed | train/inference argmax agreement | verdicts |',
           '|---|---:|---:|---:|---:|---:|---:|---|']
  for r in studied:
    p = r.after
    verdicts = '; '.join(f'{layer.scope} {layer.verdict_label}' for layer in p.audit.layers)
    lines.append(f'| {r.model.name} | {r.model.batch_size} | {r.eval_steps[-1]} | '
                 f'{r.model.bn_decay:g} | {p.accuracy:.4f} | {p.recomputed_accuracy:.4f} | '
                 f'{p.audit.outputs[0].argmax_agreement:.4f} | {verdicts} |')
  return '\n'.join(lines)


def precise_audit_table(studied):
  """Markdown: the audit of every studied model before recomputing."""
  lines = ['| model | ' + ' | '.join(precise.AUDIT_COLUMNS) + ' |',
           '|---|---|---:|---|---:|---|---|']
  for r in studied:
    lines += [f'| {r.model.name} | ' + ' | '.join(layer.audit_cells()) + ' |'
              for layer in r.after.audit.layers]
  return '\n'.join(lines)


# --- The tables in the docs --------------------------------------------------------
DOCS_PAGE = 'demo.md'
BEGIN_MARKER = '<!-- demo:begin -->'
END_MARKER = '<!-- demo:end -->'
SEQUENCES_PICTURE = 'sequences.png'  # not with --no-sequences
PICTURES = ('demo.png', 'precise.png', 'towers.png', SEQUENCES_PICTURE)
_PICTURE_TEXT = {'demo.png': 'test error, training loss and moving statistics of every model',
                 'precise.png': 'moving against recomputed statistics',
                 'towers.png': 'local against synchronized statistics on 8 towers',
                 SEQUENCES_PICTURE: 'LSTM against BNLSTMCell, and padded sequences with and '
                                    'without mask='}


def _marked_span(text, path):
  """(start, end) of the text between the markers; ValueError naming the
  page when a marker is missing, repeated or out of order."""
  found = docs_page.span(text, BEGIN_MARKER, END_MARKER)
  if found is None:
    raise ValueError(f'{path} must hold the line {BEGIN_MARKER} and, after it, the line '
                     f'{END_MARKER} once each (the demo writes its tables between them); '
                     f'found {text.count(BEGIN_MARKER)} and {text.count(END_MARKER)}.')
  return found


def check_docs_page(path):
  """Reads the docs page and checks its markers (before any training)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise ValueError(f'--write-docs needs {path} with the markers {BEGIN_MARKER} and '
                     f'{END_MARKER}; there is no such file (run from the repository root, or '
                     'pass --docs FOLDER).')
  text = path.read_text(encoding='utf-8')
  _marked_span(text, path)
  return text


def provenance(argv, now=None):
  """Where the tables come from: the date, the machine and the command."""
  import datetime
  import os
  import platform
  import shlex
  now = now or datetime.datetime.now(datetime.timezone.utc)
  return (f'Written by `{shlex.join(["tf1-bn", "demo", *argv])}` on '
          f'{now:%Y-%m-%d %H:%M} UTC: {platform.system()} {platform.machine()}, '
          f'{os.cpu_count()} CPU cores, Python {platform.python_version()}, '
          f'TensorFlow {tf.__version__}.')


def write_docs_block(path, body):
  """Replaces what is between the markers of the page at `path` with `body`;
  the page is replaced in one step (a temporary file renamed over it)."""
  path = pathlib.Path(path)
  text = check_docs_page(path)
  start, end = _marked_span(text, path)
  docs_page.write_between(path, text, start, end, body, prefix='.demo-')


def docs_block(text, argv, pictures=PICTURES):
  """The block the docs page gets: provenance, the tables, the pictures."""
  pictures = '\n\n'.join(f'![{_PICTURE_TEXT[name]}]({name})' for name in pictures)
  return f'{provenance(argv)}\n\n{text}\n\n{pictures}'


def build_parser(parser=None):
  parser = parser or argparse.ArgumentParser(prog='tf1-bn demo', description=__doc__)
  parser.add_argument('--steps', type=int, default=3000, help='training steps per model')
  parser.add_argument('--seed', type=int, default=0,
                      help='seed of the data split, the initial weights and the batch order')
  parser.add_argument('--eval-every', type=int, default=10,
                      help='steps between test-set evaluations')
  parser.add_argument('--out', default='demo_out',
                      help='folder for demo.md and the pictures ' + ', '.join(PICTURES))
  parser.add_argument('--write-docs', action='store_true',
                      help=f'also write the tables into DOCS/{DOCS_PAGE} between its lines '
                      f'{BEGIN_MARKER} and {END_MARKER} (with the date, machine and command) '
                      'and copy the pictures into DOCS')
  parser.add_argument('--docs', default='docs', help='the DOCS folder of --write-docs')
  parser.add_argument('--sequences', action=argparse.BooleanOptionalAction, default=True,
                      help='run the sequence study (the digits as 8-row sequences: LSTM against '
                      'BNLSTMCell, padded sequences with and without mask=) and write '
                      f'{SEQUENCES_PICTURE}; --no-sequences skips it')
  parser.add_argument('--sequence-steps', type=int, default=sequence_study.STEPS,
                      help='training steps per model of the sequence study')
  return parser


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  args = build_parser().parse_args(argv)
  for name in ('steps', 'eval_every', 'sequence_steps'):
    if getattr(args, name) < 1:
      raise ValueError(f'--{name.replace("_", "-")} must be >= 1, received '
                       f'{getattr(args, name)}.')
  docs = pathlib.Path(args.docs)
  if args.write_docs:
    check_docs_page(docs / DOCS_PAGE)  # before ten minutes of training
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  results = run(args.steps, args.seed, args.eval_every, after_training=precise_bn)
  studied = precise_study(results, args.steps, args.seed)
  at_scale = replica_study(args.steps, args.seed, args.eval_every)
  text = '\n\n'.join([table(results), '## Precise BN', precise_table(studied),
                       'Audit (before recomputing):', precise_audit_table(studied),
                       f'## Small batches at scale ({at_scale[0].eval_steps[-1]} steps)',
                       table(at_scale)])
  pictures = tuple(name for name in PICTURES if args.sequences or name != SEQUENCES_PICTURE)
  if args.sequences:
    sequences = sequence_study.run(args.sequence_steps, seed=args.seed)
    text += (f'\n\n## Sequences ({args.sequence_steps} steps)\n\n' +
             sequence_study.report(sequences))
  (out / 'demo.md').write_text(text + '\n', encoding='utf-8')
  plot(results, out / 'demo.png')
  plot_precise(studied, out / 'precise.png')
  plot_towers(at_scale, out / 'towers.png')
  if args.sequences:
    plot_sequences(sequences, out / SEQUENCES_PICTURE)
  print(text)
  bn_best = max(r.final_accuracy for r in results if r.model.bn)
  written = [out / 'demo.md'] + [out / name for name in pictures]
  if args.write_docs:
    import shutil
    for name in pictures:
      shutil.copyfile(out / name, docs / name)
    write_docs_block(docs / DOCS_PAGE, docs_block(text, argv, pictures))
    written += [docs / DOCS_PAGE] + [docs / name for name in pictures]
  print(f'\nbest BN model: {bn_best:.4f} test accuracy. Wrote '
        f'{", ".join(str(path) for path in written)}.')
  return 0


if __name__ == '__main__':
  sys.exit(main())
