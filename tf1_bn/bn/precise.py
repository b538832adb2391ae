"""Precise BN: recompute every BN layer's statistics from data, and audit them.

The moving statistics are an exponential average of batch statistics taken
while the weights changed: they remember where they started (decay 0.999
forgets 99% of its start after 4,600 steps), they average noisy batch
statistics, and nothing updates them after a change that skips training
(weight averaging, pruning, a ported checkpoint). `recompute_statistics`
replaces them with the statistics of each layer's input over a set of
batches, as detectron2 / fvcore's PreciseBN and PyTorch's
`torch.optim.swa_utils.update_bn` do for PyTorch.

How it runs, and why:

* Each tf1_bn BN layer call registers itself in `core.LAYER_RECORDS_KEY` (input
  tensor, axes, variables, conventions). Calls that share moving statistics
  (towers built with `reuse`) are one layer whose data is all their inputs;
  calls with a Python `training=False` (and frozen `bn_layer(trainable=False)`)
  never normalize with batch statistics and are not recomputed.
* One pass over `feeds`, whatever the number of layers: each batch is one
  `Session.run` in training mode (`tf1_bn.training_placeholder()` fed True
  unless the feed sets it) that fetches every layer's input, and nothing
  else (no update op, no train op). Each layer's input is then what it sees
  in training: the layers before it normalize with the batch's statistics.
* The reduction happens in numpy, in float64: per batch the sum and the
  centred sum of squares, merged across batches with Chan et al.'s parallel
  formula. No op is added, so a finalized graph works; values are written
  through the variables' initializers (fed), which adds no op either.
* Layers that update inline (`bn_layer(updates='inline')`, slim's
  `updates_collections=None`) run their update whenever their output is
  computed, which fetching a later layer's input does. Every variable any
  layer's update writes is read before the pass and written back after it
  (bytes identical, also when the pass fails), and only then are the
  recomputed values assigned.

Replicas (towers, tf.distribute strategies): a layer's calls on every
replica share its variables, so their inputs merge into the global batch's
statistics, and every replica's copy of a variable receives them. Each feed
must feed every replica (a synchronized layer's peers wait for each other).
"""
import collections
import dataclasses
import json
from collections.abc import Iterable, Mapping

import numpy as np
import tensorflow as tf

from tf1_bn.common import assignment
from tf1_bn.bn import core
from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v
from tf1_bn.common import progress as progress_lib

v1 = tf.compat.v1

ESTIMATORS = ('population', 'batch_average')
# A pass that has run this long shows the progress bar (on a terminal).
LONG_RUN_SECONDS = 2.0
# Audit thresholds, in units of a layer's normalized output (which has unit
# variance in training): RMS over all values and channels.
# Recomputing moves the inference output by more than this: the moving
# statistics are stale.
STALE_SHIFT = 0.1
# Training and inference normalize the same values this differently even with
# recomputed statistics: the batches are too small (for n independent values
# per channel per batch the difference is about sqrt(1.5 / n), so 0.3 is
# about 16 values).
NOISY_MISMATCH = 0.3
# A channel whose variance is at most this multiple of epsilon has a near-zero
# variance: epsilon, not the data, sets its scale.
NEAR_ZERO_VARIANCE_EPS_MULTIPLE = 1.0
# Why a layer's statistics are kept as they are (Report.skipped).
SKIPPED_IN_LOOP = ('is called inside a loop body (tf.while_loop, dynamic_rnn, map_fn, scan): '
                   'each iteration normalizes its own input, which cannot be fetched from '
                   'outside the loop; its moving statistics are kept')
SKIPPED_TENSOR_STEP = ('keeps per-step statistics with a tensor `step`: which row a batch feeds '
                       'is only known when it runs; its moving statistics are kept (a layer '
                       'with Python int steps is recomputed row by row)')
AUDIT_COLUMNS = ('layer', 'values / channel / batch', 'mean, variance change',
                 'near-zero variance', 'train/inference mismatch: now -> recomputed', 'verdict')


class RecomputeError(RuntimeError):
  """A batch of `feeds` failed; nothing was assigned."""


# --- the layers of a graph -----------------------------------------------------
@dataclasses.dataclass
class _Layer:
  """One BN layer: its moving statistics and the calls that feed them."""
  scope: str
  calls: list  # records of the calls that normalize with batch statistics
  mean: tf.Variable
  variance: tf.Variable
  variance_kind: str
  epsilon: float
  moving_stddev: object = None  # tf.Variable (renorm) or None
  zero_debias: object = None  # (biased, local_step) variables or None
  decay_factor: object = None
  updated_in_training: bool = True
  row: object = None  # per-step statistics (tf1_bn.bn.steps): the row of `mean` / `variance`

  @property
  def shape(self):
    """The shape of the statistics recomputed: the variables', or one row's."""
    shape = self.mean.shape.as_list()
    return shape if self.row is None else shape[1:]

  @property
  def channels(self):
    return int(np.prod(self.shape, dtype=np.int64))

  def old(self, snapshot, variable):
    """The variable's value before recomputing: the whole, or the row."""
    value = snapshot[variable.name]
    return value if self.row is None else value[self.row]


def _written_names(record):
  """Every variable the layer call's update may write."""
  names = [record['mean'], record['variance'], record['moving_stddev']]
  names += record['renorm'] or []
  names += record['zero_debias'] or []
  return [n for n in names if n is not None]


def _find_layers(graph):
  """The graph's BN layers (grouped by moving mean) and the variables any
  update writes, by name."""
  records = [json.loads(r) for r in graph.get_collection(core.LAYER_RECORDS_KEY)]
  if not records:
    raise ValueError(
        'The session\'s graph has no tf1_bn BN layer (tf1_bn.bn_layer, '
        'tf1_bn.batch_normalization, tf1_bn.batch_norm): there are no statistics to '
        'recompute. Layers built by tf.compat.v1.layers, tf_slim or the hand-written recipe '
        'are not tracked.')
  variables = {var.name: var for var in graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)
               + graph.get_collection(v1.GraphKeys.LOCAL_VARIABLES)}
  written = {}
  for record in records:
    for name in _written_names(record):
      if name not in variables:
        raise ValueError(f'The BN variable {name!r} is not in the graph\'s global or local '
                         'variables; recompute_statistics cannot read or restore it.')
      written[name] = variables[name]
  skipped = _skipped_layers(records)
  records = [r for r in records if _scope(r['mean']) not in skipped]
  # A per-step layer (Python int steps) is recomputed row by row.
  by_mean = collections.OrderedDict()
  for record in records:
    by_mean.setdefault((record['mean'], record.get('step')), []).append(record)
  layers, inference_only = [], []
  for (mean_name, row), calls in by_mean.items():
    scope = _scope(mean_name)
    if row is not None:
      scope = f'{scope}[step {row}]'
    training_calls = [r for r in calls if r['training'] is not False]
    if not training_calls:
      inference_only.append(scope)
      continue
    first = training_calls[0]
    for field in ('variance', 'variance_kind', 'moving_stddev', 'zero_debias'):
      values = {json.dumps(r[field]) for r in training_calls}
      if len(values) > 1:
        raise ValueError(f'The calls of BN layer {scope!r} disagree on {field} ({sorted(values)}); '
                         'a layer must keep one convention to be recomputed.')
    debias = first['zero_debias']
    layers.append(_Layer(
        scope=scope, calls=training_calls, mean=variables[mean_name],
        variance=variables[first['variance']], variance_kind=first['variance_kind'],
        epsilon=first['epsilon'],
        moving_stddev=variables[first['moving_stddev']] if first['moving_stddev'] else None,
        zero_debias=tuple(variables[n] for n in debias) if debias else None,
        decay_factor=first['decay_factor'],
        updated_in_training=any(r['update'] for r in training_calls), row=row))
  if not layers:
    reasons = [f'{scope} is inference-only (a Python training=False, or '
               'bn_layer(trainable=False))' for scope in inference_only]
    reasons += [f'{scope} {reason}' for scope, reason in skipped.items()]
    raise ValueError('No tf1_bn BN layer of the graph can be recomputed: '
                     + '; '.join(reasons) + '. Nothing was run.')
  return layers, written, skipped


def _scope(variable_name):
  """A layer's scope from its moving mean's name ('a/bn/moving_mean:0' -> 'a/bn')."""
  return variable_name.rsplit(':', 1)[0].rpartition('/')[0]


def _skipped_layers(records):
  """{scope: reason} of the layers whose statistics cannot be recomputed
  from fetched inputs: a call inside a loop body (its input differs per
  iteration and cannot be fetched from outside the loop), or per-step
  statistics with a tensor `step` (which row a batch feeds is only known when
  it runs). Any such call excludes every call of the same variables."""
  skipped = {}
  for record in records:
    scope = _scope(record['mean'])
    if record.get('in_loop'):
      skipped.setdefault(scope, SKIPPED_IN_LOOP)
    elif record.get('step') == 'tensor':
      skipped.setdefault(scope, SKIPPED_TENSOR_STEP)
  return skipped


# --- float64 statistics ----------------------------------------------------------
def _as_groups(x, axes, virtual_batch_size, weights):
  """x as [groups, values, channels] in float64, and its weights alike (or None).

  A group is a batch, or one of its ghost batches: tf.layers reshapes
  [N, ...] to [virtual_batch_size, N / virtual_batch_size, ...] and keeps
  dimension 1, so ghost batch j holds examples j, j + N / vbs, j + 2 N / vbs...
  """
  x = np.asarray(x, np.float64)
  w = None
  if weights is not None:
    w = np.asarray(weights, np.float64)
    if w.ndim != x.ndim:  # slim's per-example weights; a mask's are per position
      w = w.reshape((-1,) + (1,) * (x.ndim - 1))
  if virtual_batch_size:
    shape = (virtual_batch_size, x.shape[0] // virtual_batch_size)
    x = x.reshape(shape + x.shape[1:])
    w = None if w is None else w.reshape(shape + w.shape[1:])
    group_axis = 1
  else:
    x, w = x[np.newaxis], (None if w is None else w[np.newaxis])
    group_axis = 0
  channel_axes = [a + 1 for a in axes]
  reduce_axes = [i for i in range(x.ndim) if i != group_axis and i not in channel_axes]
  order = [group_axis] + reduce_axes + channel_axes
  grouped = (x.shape[group_axis], -1, int(np.prod([x.shape[a] for a in channel_axes])))
  if w is not None:
    # Slim broadcasts each example's weight over its other axes.
    w = np.transpose(np.broadcast_to(w, x.shape), order).reshape(grouped)
  return np.transpose(x, order).reshape(grouped), w


def _bessel(count):
  """n / (n - 1), and 1 for n <= 1 (statistics.population_to_sample's rule)."""
  return count / (count - 1) if count > 1 else 1.0


@dataclasses.dataclass
class _Moments:
  """Per-channel float64 statistics of one layer's input over every batch.

  `count` is the total weight (the number of values, or the sum of slim's
  batch weights over them); `within` the sum over (ghost) batches of their
  own centred sums of squares, `between` the centred sum of squares of the
  batch means (Chan et al.'s merge term), so `within + between` is the centred
  sum of squares of all values: no E[x^2] - E[x]^2 anywhere.
  """
  channels: int
  epsilon: float

  def __post_init__(self):
    zeros = lambda: np.zeros(self.channels)
    self.count, self.mean, self.within, self.between = zeros(), zeros(), zeros(), zeros()
    # Sum over batches of count * Bessel-corrected variance ('sample' layers).
    self.within_sample = zeros()
    # For mismatch(): sums over batches of count * v / (v + eps) and
    # count * v / sqrt(v + eps), v the batch's variance.
    self.normalized, self.normalized_cross = zeros(), zeros()
    self.values = 0  # values per channel, all batches
    self.batches = 0  # (ghost) batches with a value
    self.effective = 0.0  # sum over batches of their effective number of values

  def add(self, x, w):
    """Merges one batch, given as [groups, values, channels] (and weights)."""
    groups, values, _ = x.shape
    if values == 0:
      return
    if w is None:
      count = np.full((groups, self.channels), float(values))
      mean = x.sum(axis=1) / values
      m2 = np.square(x - mean[:, None]).sum(axis=1)
      effective = np.full(groups, float(values))
    else:
      count = w.sum(axis=1)
      keep = count[:, 0] > 0  # a group whose weights are all 0 has no statistics
      x, w, count = x[keep], w[keep], count[keep]
      if not len(count):
        return
      mean = (w * x).sum(axis=1) / count
      m2 = (w * np.square(x - mean[:, None])).sum(axis=1)
      first = w[:, :, 0]  # Kish's effective sample size of the weights
      effective = np.square(first.sum(axis=1)) / np.square(first).sum(axis=1)
    batch_count = count.sum(axis=0)
    batch_mean = (count * mean).sum(axis=0) / batch_count
    batch_between = (count * np.square(mean - batch_mean)).sum(axis=0)
    delta = batch_mean - self.mean
    total = self.count + batch_count
    self.between += batch_between + np.square(delta) * self.count * batch_count / total
    self.mean += delta * batch_count / total
    self.count = total
    self.within += m2.sum(axis=0)
    self.within_sample += (m2 * _bessel(values)).sum(axis=0)
    variance = m2 / count
    stddev = np.sqrt(variance + self.epsilon)
    self.normalized += (count * variance / np.square(stddev)).sum(axis=0)
    self.normalized_cross += (count * variance / stddev).sum(axis=0)
    self.values += values * len(count)
    self.batches += len(count)
    self.effective += float(effective.sum())

  @property
  def population_variance(self):
    return (self.within + self.between) / self.count

  def estimate(self, estimator, variance_kind):
    """(mean, variance) in the layer's convention; see recompute_statistics."""
    if estimator == 'population':
      variance = self.population_variance
      if variance_kind == 'sample':
        variance = variance * _bessel(self.values)
    else:
      variance = (self.within if variance_kind == 'population' else self.within_sample) / self.count
    # Count-weighted, the average of the batch means is the mean of all values.
    return self.mean.copy(), variance

  def mismatch(self, mean, variance):
    """RMS over all values and channels of x_hat(inference) - x_hat(training).

    x_hat(training) = (x - m_b) / sqrt(v_b + eps) with the batch's moments,
    x_hat(inference) = (x - mean) / sqrt(variance + eps). Per batch and
    channel the mean square difference is
    v_b (1 / s_b - a)^2 + a^2 (m_b - mean)^2 with s_b = sqrt(v_b + eps) and
    a = 1 / sqrt(variance + eps); summed over batches (count-weighted) it
    needs only the sums add() keeps.
    """
    a = 1.0 / np.sqrt(np.asarray(variance, np.float64).reshape(-1) + self.epsilon)
    spread = self.within + self.between + self.count * np.square(
        self.mean - np.asarray(mean, np.float64).reshape(-1))
    square = self.normalized - 2 * a * self.normalized_cross + np.square(a) * spread
    return float(np.sqrt(np.maximum(square, 0).sum() / self.count.sum()))

  def shift(self, old, new):
    """RMS over all values and channels of how far x_hat(inference) moves when
    the statistics change from `old` to `new` (each a (mean, variance) pair)."""
    (old_mean, old_var), (new_mean, new_var) = [
        (np.asarray(m, np.float64).reshape(-1), np.asarray(s, np.float64).reshape(-1))
        for m, s in (old, new)]
    a_old, a_new = (1.0 / np.sqrt(s + self.epsilon) for s in (old_var, new_var))
    offset = self.mean * (a_new - a_old) - new_mean * a_new + old_mean * a_old
    square = self.population_variance * np.square(a_new - a_old) + np.square(offset)
    return float(np.sqrt((square * self.count).sum() / self.count.sum()))


# --- reports -------------------------------------------------------------------------
def _range(values):
  values = np.asarray(values).reshape(-1)
  return f'[{values.min():.4g}, {values.max():.4g}]'


@dataclasses.dataclass
class LayerReport:
  """One layer's recomputed statistics, and how they compare with the moving ones.

  Attributes:
    scope: the layer's variable scope.
    variance_kind: 'population', or 'sample' (the legacy fused kernel's
      semantics: the moving variance holds a Bessel-corrected variance).
    channels: the number of normalized channels.
    count: N, the number of values per channel over all batches.
    batches: the number of (ghost) batches that had values.
    values_per_batch: the effective number of values per channel per (ghost)
      batch (Kish's for slim's batch weights), averaged over batches.
    old_mean, old_variance, new_mean, new_variance: per channel, shaped like
      the variables; `new_*` are what `assign=True` writes.
    epsilon: the layer's epsilon.
    mean_change: max over channels of |new - old mean| / sqrt(new variance + eps).
    variance_change: max over channels of |new - old variance| / (new variance + eps).
    near_zero_channels: channels whose new variance is at most
      NEAR_ZERO_VARIANCE_EPS_MULTIPLE * epsilon.
    mismatch_now, mismatch_recomputed: RMS difference between the normalized
      values inference computes (with the old / the new statistics) and the
      ones training computes with each batch's own moments, on these batches.
    inference_shift: RMS of how far recomputing moves the normalized values
      inference computes, on these batches.
    updated_in_training: False when training never updates the moving
      statistics (tf.layers / slim `trainable=False`).
  """
  scope: str
  variance_kind: str
  channels: int
  count: int
  batches: int
  values_per_batch: float
  old_mean: np.ndarray
  old_variance: np.ndarray
  new_mean: np.ndarray
  new_variance: np.ndarray
  epsilon: float
  mean_change: float
  variance_change: float
  near_zero_channels: int
  mismatch_now: float
  mismatch_recomputed: float
  inference_shift: float
  updated_in_training: bool

  def audit_cells(self):
    """The cells of this layer's row of the audit table (AUDIT_COLUMNS)."""
    return [self.scope, f'{self.values_per_batch:.4g}',
            f'{self.mean_change:.3g}, {self.variance_change:.3g}',
            f'{self.near_zero_channels}/{self.channels}',
            f'{self.mismatch_now:.3f} -> {self.mismatch_recomputed:.3f}', self.verdict]

  @property
  def largest_relative_change(self):
    return max(self.mean_change, self.variance_change)

  def _findings(self):
    labels, notes = [], []
    if self.inference_shift > STALE_SHIFT:
      labels.append('stale')
      notes.append(f'recomputing moves the inference output by {self.inference_shift:.2f} '
                   f'(train/inference mismatch {self.mismatch_now:.2f} -> '
                   f'{self.mismatch_recomputed:.2f})')
    if self.mismatch_recomputed > NOISY_MISMATCH:
      labels.append('noisy batches')
      notes.append(f'{self.values_per_batch:.3g} values per channel per batch: inference '
                   'cannot match training\'s batch statistics '
                   f'(mismatch {self.mismatch_recomputed:.2f} even recomputed)')
    if self.near_zero_channels:
      labels.append('near-zero variance')
      notes.append(f'{self.near_zero_channels} of {self.channels} channel(s) with a variance '
                   f'<= {NEAR_ZERO_VARIANCE_EPS_MULTIPLE:g} * eps')
    if not self.updated_in_training:
      notes.append('training never updates its moving statistics (trainable=False)')
    if not labels:
      labels.append('ok')
      notes.insert(0, f'moving statistics agree with the data (shift {self.inference_shift:.2f})')
    return labels, notes

  @property
  def verdict_label(self):
    """'ok', or the problems found: 'stale', 'noisy batches', 'near-zero
    variance', joined by ', '."""
    return ', '.join(self._findings()[0])

  @property
  def verdict(self):
    """One line: the verdict label, a colon and the numbers behind it."""
    labels, notes = self._findings()
    return f'{", ".join(labels)}: ' + '; '.join(notes)


@dataclasses.dataclass
class OutputReport:
  """A model output computed in training mode and in inference mode on the
  same batches: ||train - inference|| / ||train|| over all values, the largest
  absolute difference and, for rank-2 outputs, the fraction of rows whose
  argmax (the predicted class) agrees."""
  name: str
  relative_difference: float
  max_abs_difference: float
  argmax_agreement: object = None


@dataclasses.dataclass
class Report:
  """What recompute_statistics / audit found. `str(report)` is its table."""
  estimator: str
  assigned: bool
  feeds: int
  layers: list
  outputs: list = dataclasses.field(default_factory=list)
  audited: bool = False
  # {scope: reason}: layers whose statistics could not be recomputed and were
  # left as they are (SKIPPED_IN_LOOP, SKIPPED_TENSOR_STEP).
  skipped: dict = dataclasses.field(default_factory=dict)

  def __getitem__(self, scope):
    for layer in self.layers:
      if layer.scope == scope:
        return layer
    raise KeyError(f'no layer {scope!r}; the layers are {[layer.scope for layer in self.layers]}')

  def table(self):
    """Markdown: per layer, N, the old and new statistics' ranges over channels
    and the largest relative change."""
    lines = ['| layer | variance | channels | N | mean: old -> new | variance: old -> new | '
             'largest relative change |', '|---|---|---:|---:|---|---|---:|']
    for r in self.layers:
      lines.append(f'| {r.scope} | {r.variance_kind} | {r.channels} | {r.count} | '
                   f'{_range(r.old_mean)} -> {_range(r.new_mean)} | '
                   f'{_range(r.old_variance)} -> {_range(r.new_variance)} | '
                   f'{r.largest_relative_change:.3g} |')
    return '\n'.join(lines)

  def audit_table(self):
    """Markdown: per layer the audit's numbers and verdict; then the outputs."""
    lines = ['| ' + ' | '.join(AUDIT_COLUMNS) + ' |', '|---|---:|---|---:|---|---|']
    lines += ['| ' + ' | '.join(r.audit_cells()) + ' |' for r in self.layers]
    if self.outputs:
      lines += ['', '| output | relative difference, training vs inference mode | '
                'largest difference | argmax agreement |', '|---|---:|---:|---:|']
      for o in self.outputs:
        agreement = '-' if o.argmax_agreement is None else f'{o.argmax_agreement:.4f}'
        lines.append(f'| {o.name} | {o.relative_difference:.4f} | {o.max_abs_difference:.4g} | '
                     f'{agreement} |')
    return '\n'.join(lines)

  def skipped_lines(self):
    """One line per layer left as it was, with the reason."""
    return [f'not recomputed: {scope} {reason}.' for scope, reason in self.skipped.items()]

  def __str__(self):
    table = self.audit_table() if self.audited else self.table()
    return '\n'.join([table] + self.skipped_lines())


# --- the pass ------------------------------------------------------------------------
def _iterate(feeds):
  if isinstance(feeds, Mapping):
    raise TypeError('`feeds` must be an iterable of feed dicts, one per batch; received a single '
                    'dict. Pass [feed_dict] for one batch.')
  if isinstance(feeds, (str, bytes)) or not isinstance(feeds, Iterable):
    raise TypeError('`feeds` must be an iterable of feed dicts, one per batch (a list or a '
                    f'generator), received {type(feeds).__name__}.')
  return iter(feeds)


def _check_outputs(outputs, graph):
  """[(label, tensor)] from None, a tensor or name, a list or a dict of them."""
  if outputs is None:
    return []
  if isinstance(outputs, Mapping):
    items = list(outputs.items())
  elif isinstance(outputs, (list, tuple)):
    items = [(None, o) for o in outputs]
  else:
    items = [(None, outputs)]
  checked = []
  for label, output in items:
    try:
      tensor = graph.as_graph_element(output, allow_operation=False)
    except (TypeError, ValueError, KeyError) as error:
      raise TypeError('`outputs` must be tensors (or tensor names) of the session\'s graph, '
                      f'received {output!r}: {error}') from error
    checked.append((label if label is not None else tensor.name, tensor))
  return checked


def _feed_dict(graph, feed, index):
  if not isinstance(feed, Mapping):
    raise TypeError(f'`feeds` must yield feed dicts (one per batch); item {index} is a '
                    f'{type(feed).__name__}. Nothing was assigned.')
  return {graph.as_graph_element(k) if isinstance(k, str) else k: value
          for k, value in feed.items()}


def _read(sess, variables):
  try:
    return dict(zip(variables, sess.run(list(variables.values()))))
  except tf.errors.FailedPreconditionError as error:
    raise RecomputeError('Reading the BN variables failed (are they initialized or '
                         f'restored?): {error.message}') from error


def _assign(sess, variables, values):
  """Writes numpy values into variables (by name), every replica's copy."""
  assignment.assign_by_feeding(sess, {variables[name]: value for name, value in values.items()})


class _Pass:
  """The one pass over `feeds`: fetches, accumulates, shows the bar."""

  def __init__(self, sess, layers, outputs, progress):
    self.sess, self.layers, self.outputs = sess, layers, outputs
    graph = sess.graph
    placeholders = graph.get_collection(switch_lib.TRAINING_PLACEHOLDER_KEY)
    self.placeholder = placeholders[0] if placeholders else None
    switches = sorted({call['training'] for layer in layers for call in layer.calls
                       if isinstance(call['training'], str)})
    self.switches = [graph.get_tensor_by_name(name) for name in switches]
    self.inference_switches = self.switches + (
        [self.placeholder] if self.placeholder is not None else [])
    names = []
    for layer in layers:
      for call in layer.calls:
        names.append(call['input'])
        if isinstance(call['batch_weights'], str):
          names.append(call['batch_weights'])
    self.names = list(dict.fromkeys(names))
    self.fetches = ([graph.get_tensor_by_name(n) for n in self.names] + self.switches +
                    [tensor for _, tensor in outputs])
    self.moments = {layer.scope: _Moments(layer.channels, layer.epsilon) for layer in layers}
    self.output_sums = [collections.defaultdict(float) for _ in outputs]
    self.progress = progress
    self.feeds = 0

  def run(self, feeds, total):
    iterator = _iterate(feeds)
    index = 0
    # On a terminal (progress=None) the bar appears once the pass has run
    # LONG_RUN_SECONDS; progress=True shows it at once, False never.
    with progress_lib.bar(total, 'recompute_statistics', self.progress, unit='batch',
                          delay=LONG_RUN_SECONDS if self.progress is None else 0.0) as bar:
      while True:
        try:
          feed = next(iterator)
        except StopIteration:
          break
        except Exception as error:
          raise RecomputeError(f'`feeds` raised {type(error).__name__} while producing batch '
                               f'{index}: {error}. Nothing was assigned.') from error
        self._batch(_feed_dict(self.sess.graph, feed, index), index)
        index += 1
        bar.update()
    self.feeds = index
    if not index:
      raise ValueError('`feeds` yielded no feed dict: recomputing needs at least one batch. '
                       'Nothing was assigned.')
    empty = [layer.scope for layer in self.layers if not self.moments[layer.scope].batches]
    if empty:
      raise ValueError(f'No value reached BN layer(s) {", ".join(empty)} in the {index} '
                       'batch(es) of `feeds` (empty batches, or weights all 0). Nothing was '
                       'assigned.')

  def _run(self, fetches, feed, index, mode):
    try:
      return self.sess.run(fetches, feed)
    except tf.errors.OpError as error:
      raise RecomputeError(f'Batch {index} of `feeds` failed in {mode} mode: '
                           f'{type(error).__name__}: {error.message} Nothing was '
                           'assigned.') from error

  def _batch(self, feed, index):
    train_feed = dict(feed)
    if self.placeholder is not None and self.placeholder not in train_feed:
      train_feed[self.placeholder] = True
    results = self._run(self.fetches, train_feed, index, 'training')
    values = dict(zip(self.names, results[:len(self.names)]))
    switches = results[len(self.names):len(self.names) + len(self.switches)]
    off = [t.name for t, value in zip(self.switches, switches) if not value]
    if off:
      raise ValueError(
          f'In batch {index} of `feeds` the training switch(es) {", ".join(off)} of BN layers '
          'evaluated to False, so layers ran in inference mode. Feed your training placeholder '
          'True in every feed dict (recompute_statistics feeds only '
          'tf1_bn.training_placeholder() True). Nothing was assigned.')
    for layer in self.layers:
      for call in layer.calls:
        self._accumulate(layer, call, values, index)
    if self.outputs:
      trained = results[len(self.names) + len(self.switches):]
      infer_feed = dict(feed)
      infer_feed.update({switch: False for switch in self.inference_switches})
      inferred = self._run([t for _, t in self.outputs], infer_feed, index, 'inference')
      for sums, a, b in zip(self.output_sums, trained, inferred):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        sums['difference'] += float(np.square(a - b).sum())
        sums['reference'] += float(np.square(a).sum())
        sums['largest'] = max(sums['largest'], float(np.abs(a - b).max(initial=0.0)))
        if a.ndim == 2 and a.shape[1] > 1:
          sums['agree'] += float(np.sum(a.argmax(axis=1) == b.argmax(axis=1)))
          sums['rows'] += a.shape[0]

  def _accumulate(self, layer, call, values, index):
    x = values[call['input']]
    vbs = call['virtual_batch_size']
    if vbs and x.shape[0] % vbs:
      raise ValueError(f'BN layer {layer.scope!r}: batch {index} of `feeds` has {x.shape[0]} '
                       f'examples, not a multiple of its virtual_batch_size={vbs}. Nothing was '
                       'assigned.')
    weights = call['batch_weights']
    if isinstance(weights, str):
      weights = values[weights]
    elif weights is not None:
      weights = weights['value']
    grouped, w = _as_groups(x, call['axes'], vbs, weights)
    self.moments[layer.scope].add(grouped, w)

  def output_reports(self):
    reports = []
    for (label, _), sums in zip(self.outputs, self.output_sums):
      difference, reference = np.sqrt(sums['difference']), np.sqrt(sums['reference'])
      relative = difference / reference if reference else difference
      agreement = sums['agree'] / sums['rows'] if sums['rows'] else None
      reports.append(OutputReport(label, float(relative), sums['largest'], agreement))
    return reports


def _layer_report(layer, moments, estimator, old_mean, old_variance):
  new_mean, new_variance = moments.estimate(estimator, layer.variance_kind)
  shape = layer.shape
  old = (np.asarray(old_mean, np.float64).reshape(-1),
         np.asarray(old_variance, np.float64).reshape(-1))
  scale = new_variance + layer.epsilon
  return LayerReport(
      scope=layer.scope, variance_kind=layer.variance_kind, channels=layer.channels,
      count=int(moments.values), batches=moments.batches,
      values_per_batch=moments.effective / moments.batches,
      old_mean=old_mean, old_variance=old_variance,
      new_mean=new_mean.reshape(shape), new_variance=new_variance.reshape(shape),
      epsilon=layer.epsilon,
      mean_change=float(np.max(np.abs(new_mean - old[0]) / np.sqrt(scale))),
      variance_change=float(np.max(np.abs(new_variance - old[1]) / scale)),
      near_zero_channels=int(np.sum(
          new_variance <= NEAR_ZERO_VARIANCE_EPS_MULTIPLE * layer.epsilon)),
      mismatch_now=moments.mismatch(*old),
      mismatch_recomputed=moments.mismatch(new_mean, new_variance),
      inference_shift=moments.shift(old, (new_mean, new_variance)),
      updated_in_training=layer.updated_in_training)


def _new_values(layer, report, snapshot, written=None):
  """{variable name: value} that assigning the report writes for one layer
  (a per-step layer's row into the variable as `written` or `snapshot` has it)."""
  if layer.row is not None:
    values = {}
    for variable, new in ((layer.mean, report.new_mean), (layer.variance, report.new_variance)):
      whole = np.array((written or {}).get(variable.name, snapshot[variable.name]))
      whole[layer.row] = new
      values[variable.name] = whole
    return values
  values = {layer.mean.name: report.new_mean, layer.variance.name: report.new_variance}
  if layer.moving_stddev is not None:
    # tf.layers' renorm keeps the stddev and derives the variance from it
    # (relu(stddev^2 - eps)): both are written, consistently.
    values[layer.moving_stddev.name] = np.sqrt(report.new_variance + layer.epsilon)
  if layer.zero_debias is not None:
    # Keep slim's invariant moving_mean = biased / (1 - decay^local_step), so
    # further training continues the average from the recomputed mean.
    biased, local_step = layer.zero_debias
    step = float(snapshot[local_step.name])
    values[biased.name] = report.new_mean * (1.0 - (1.0 - layer.decay_factor) ** step)
  return values


def _recompute(sess, feeds, estimator, assign, outputs, progress, audited):
  v.check_session(sess)
  v.check_choice(estimator, ESTIMATORS, 'estimator')
  assign = v.check_bool(assign, 'assign')
  if progress is not None:
    v.check_bool(progress, 'progress')
  _iterate(feeds)  # a type error before anything runs
  graph = sess.graph
  outputs = _check_outputs(outputs, graph)
  layers, written, skipped = _find_layers(graph)
  total = len(feeds) if hasattr(feeds, '__len__') else None
  snapshot = _read(sess, written)
  run = _Pass(sess, layers, outputs, progress)
  try:
    run.run(feeds, total)
  finally:
    # Inline updates ran with the batches: put back every byte they wrote.
    _assign(sess, written, snapshot)
  reports = [_layer_report(layer, run.moments[layer.scope], estimator,
                           layer.old(snapshot, layer.mean), layer.old(snapshot, layer.variance))
             for layer in layers]
  if assign:
    broken = [r.scope for r in reports
              if not (np.all(np.isfinite(r.new_mean)) and np.all(np.isfinite(r.new_variance)))]
    if broken:
      # The layers' own update skips non-finite statistics; so does this.
      raise ValueError(f'The recomputed statistics of BN layer(s) {", ".join(broken)} are not '
                       'finite (NaN or inf in their inputs). Nothing was assigned.')
    new = {}
    for layer, report in zip(layers, reports):
      new.update(_new_values(layer, report, snapshot, new))
    _assign(sess, written, new)
  return Report(estimator, assign, run.feeds, reports, run.output_reports(), audited, skipped)


def recompute_statistics(sess, feeds, estimator='population', assign=True, *, progress=None):
  """Recomputes every tf1_bn BN layer's moving statistics from data (precise BN).

  Runs each batch of `feeds` once in training mode (the graph's
  `tf1_bn.training_placeholder()` fed True unless the feed sets it; feed your
  own training placeholder True yourself: a layer whose switch evaluates False
  is an error), fetches every BN layer's input and nothing else, and reduces
  per channel in float64: per batch the sum and the centred sum of squares,
  merged across batches with Chan et al.'s formula. No update op or train op
  runs and no trainable variable changes; inline updates that ran are undone
  (bytes identical) before anything is assigned. One pass, whatever the number
  of layers; `feeds` may be a generator. Adds no op: a finalized graph works.
  On replicas, each feed dict feeds every replica.

  Feed large batches when you can: in training mode each layer's input is
  normalized by the layers before it with the batch's own statistics; with
  large batches those are close to the recomputed ones, so every layer is
  recomputed from the input inference will give it. (With one batch holding
  all the data, inference after recomputing reproduces training mode on it.)

  Estimators (both share the mean: count-weighted, the average of the batch
  means is the mean of all values):
  * 'population': the variance of all N values of all batches (divided by N).
  * 'batch_average': the count-weighted average of the batches' own
    population variances. It is smaller than 'population' by the variance of
    the batch means (the law of total variance), about a factor (n - 1) / n
    for batches of n independent values per channel: what a moving average of
    population variances converges to.

  The value written is in each layer's own convention:
  * 'population' layers (bn_layer, the tf.layers and slim general paths): the
    estimate above.
  * 'sample' layers (the legacy fused kernel's semantics: the moving average
    averages the Bessel-corrected batch variance). 'population' writes the
    variance of all values times N / (N - 1), N the total number of values per
    channel over all batches: that and the layer's average of per-batch sample
    variances are unbiased estimates of the same variance, and the per-batch
    n / (n - 1) on top of all-data statistics would count the correction twice
    (twice the variance at n = 2). 'batch_average' corrects each batch's
    variance with its own n / (n - 1) (n: values per channel in that batch),
    as the layer's moving average does: the original BN paper's inference
    estimate, m / (m - 1) * E_B[var_B].
  * renorm layers (tf.layers): `moving_stddev = sqrt(variance + eps)` is written
    with the variance, as the layer derives one from the other; renorm's own
    `renorm_mean` / `renorm_stddev` (training-time corrections) are kept.
  * slim's zero-debias helpers: `biased` becomes
    `mean * (1 - decay^local_step)` so the layer's invariant holds and further
    training continues from the recomputed mean; `local_step` is kept.
  * ghost batches (`virtual_batch_size`): each ghost batch is one batch of
    'batch_average'; 'population' does not depend on the grouping.
  * slim's `batch_weights`: the weighted moments, as training computes them
    (N still counts values; the weights weigh them); a `mask`: the unmasked
    positions only.
  * per-step statistics (`step`, `max_steps`): each row from the calls that
    use it (reported as `<scope>[step <row>]`).
  * not recomputed, and listed in `report.skipped` with the reason (one
    line each under the table): a layer called inside a loop body (its
    per-iteration inputs cannot be fetched from outside the loop) and a
    per-step layer whose `step` is a tensor (its row is only known when it
    runs). Their variables are still restored after the pass, like every
    variable an update writes.

  Args:
    sess: the tf.compat.v1.Session holding the model (variables initialized).
    feeds: an iterable of feed dicts, one per batch (sizes may differ),
      consumed once.
    estimator: 'population' or 'batch_average'.
    assign: False changes nothing and only returns the report.
    progress: True always shows a progress bar on stderr, False never; None
      shows it only when stderr is a terminal, once the pass has run
      LONG_RUN_SECONDS (a tqdm bar).

  Returns:
    A Report: per layer (`report.layers`, or `report[scope]`) the scope,
    channels, N, old and new mean and variance and the largest relative
    change, with the audit's numbers; `print(report)` prints the table.

  Raises:
    TypeError: `sess` is not a session, or `feeds` not an iterable of dicts.
    ValueError: no tf1_bn layer in the graph can be recomputed (none
      normalizes with batch statistics, or all are skipped as above),
      `feeds` is empty, a layer's training switch evaluated False, a batch is
      not a multiple of a layer's virtual_batch_size, or (with assign=True)
      a recomputed statistic is not finite.
    RecomputeError: a batch failed (the generator raised, or Session.run did).
    In every case nothing is assigned and the variables are as before.
  """
  return _recompute(sess, feeds, estimator, assign, None, progress, audited=False)


def audit(sess, feeds, outputs=None, estimator='population', *, progress=None):
  """Audits the moving statistics against the data; changes nothing.

  The pass of `recompute_statistics(sess, feeds, estimator, assign=False)`.
  Feed batches of the training batch size, so that the per-batch numbers
  describe training. Per layer: how far the moving statistics are from the
  recomputed ones, the channels with near-zero variance, the effective number
  of values per channel per batch, the RMS difference between the normalized
  values inference and training compute on these batches (with the moving
  and with recomputed statistics), and a one-line verdict
  (`LayerReport.verdict`; docs/precise.md explains it).

  Args:
    outputs: model tensors (one, a list, or a {label: tensor} dict) to run on
      every batch in training mode and again in inference mode (every tf1_bn
      switch fed False): the report gives their relative difference and, for
      rank-2 outputs such as logits, how often the argmax agrees. Layers built
      with a Python `training=True` stay in training mode in both.
    sess, feeds, estimator, progress: as for recompute_statistics.

  Returns:
    A Report with `audited=True`: `print(report)` prints the audit table.
  """
  return _recompute(sess, feeds, estimator, False, outputs, progress, audited=True)
