"""`tf1-bn demo`: BN studies on real data, TF1 style.

Every model is a graph-mode MLP on scikit-learn's 8x8 digits, trained in a
session loop that feeds `{tf1_bn.training_placeholder(): True}` and evaluated
on the held-out split without that feed (the moving statistics normalize).
All models share the seed, the steps, the optimizer and the data order, so
the table compares the layers only.
"""
import argparse
import dataclasses
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf

from tf1_bn.studies import digits
from tf1_bn.bn import precise
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

  result = Result(model, [], [], [], 0.0)
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


def plot(results, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
  for r in results:
    style = '--' if r.model.bn is None else '-'
    axes[0].plot(r.eval_steps, r.test_accuracy, style, label=r.model.name)
    axes[1].plot(r.eval_steps, r.train_loss, style, label=r.model.name)
  axes[0].axhline(TARGET_ACCURACY, color='grey', lw=0.5)
  axes[0].set(title='test accuracy (inference mode, no feed)', xlabel='step', ylim=(0, 1))
  axes[1].set(title='training loss (running average)', xlabel='step', yscale='log')
  axes[0].legend(fontsize=7)
  tracked = [r for r in results if r.statistics]
  for r in tracked:
    steps, mean_gap, variance_gap = statistics_gap(r)
    axes[2].plot(steps, mean_gap, label=f'{r.model.name}: |moving mean - population mean| / std')
    axes[2].plot(steps, variance_gap, label=f'{r.model.name}: |moving var - population var| / var')
  axes[2].set(title='first BN layer: moving vs population statistics', xlabel='step',
              yscale='log')
  axes[2].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=72)
  plt.close(fig)


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
  precise.recompute_statistics(sess, [{x: split.train_x}], progress=False)
  return PreciseResult(accuracy, test_accuracy(), audit)


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


def build_parser(parser=None):
  parser = parser or argparse.ArgumentParser(prog='tf1-bn demo', description=__doc__)
  parser.add_argument('--steps', type=int, default=3000, help='training steps per model')
  parser.add_argument('--seed', type=int, default=0,
                      help='seed of the data split, the initial weights and the batch order')
  parser.add_argument('--eval-every', type=int, default=10,
                      help='steps between test-set evaluations')
  parser.add_argument('--out', default='demo_out', help='folder for demo.md and demo.png')
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  for name in ('steps', 'eval_every'):
    if getattr(args, name) < 1:
      raise SystemExit(f'--{name.replace("_", "-")} must be >= 1, received {getattr(args, name)}.')
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  results = run(args.steps, args.seed, args.eval_every, after_training=precise_bn)
  studied = precise_study(results, args.steps, args.seed)
  at_scale = replica_study(args.steps, args.seed, args.eval_every)
  text = '\n\n'.join([table(results), '## Precise BN', precise_table(studied),
                       'Audit (before recomputing):', precise_audit_table(studied),
                       f'## Small batches at scale ({at_scale[0].eval_steps[-1]} steps)',
                       table(at_scale)])
  (out / 'demo.md').write_text(text + '\n', encoding='utf-8')
  plot(results, out / 'demo.png')
  print(text)
  bn_best = max(r.final_accuracy for r in results if r.model.bn)
  print(f'\nbest BN model: {bn_best:.4f} test accuracy. Wrote {out / "demo.md"} and '
        f'{out / "demo.png"}.')
  return 0


if __name__ == '__main__':
  sys.exit(main())
