"""`tf1-bn pitfalls`: the classic TF1 batch-norm pitfalls, reproduced on the
installed TensorFlow with the real error text or the wrong numbers, each
followed by what tf1_bn does about it.

The TensorFlow errors it prints are reproduced on purpose: each is the
evidence of a pitfall. The pitfalls that belong to
tf.compat.v1.layers.batch_normalization run the real legacy layer (tf-keras
with TF_USE_LEGACY_KERAS=1; the command re-runs itself with it set) and are
skipped with a message when tf-keras is missing; the two that train on the
digits need scikit-learn (the [demo] extra) and are skipped with a message
without it. Skipped pitfalls do not change the exit status.

An item is a function decorated with `pitfall_items.pitfall`; this module
defines the classic ones and lists them in `PITFALLS`, followed by those of
`pitfalls_sequences` (BN in a while_loop, padding in sequences).
"""
import argparse
import dataclasses
import json
import os
import sys
import tempfile

import numpy as np

from tf1_bn.common import log
from tf1_bn.studies import legacy_child as legacy
from tf1_bn.studies.pitfall_items import (SKLEARN_MESSAGE,  # noqa: F401 (read here)
                                          error_lines, error_text, first_lines,
                                          max_error, normalized, pitfall, tf_modules)
from tf1_bn.studies.pitfalls_sequences import PITFALLS as SEQUENCE_PITFALLS

BATCH_MOMENT_OPS = ('Mean', 'SquaredDifference')
HEADER = ('The TensorFlow errors below are reproduced on purpose: each pitfall shows what '
          'goes wrong, then what tf1_bn does instead. (With TF_CPP_MIN_LOG_LEVEL below 2, '
          "TensorFlow's own log lines about them, such as `Local rendezvous is aborting`, "
          'reach stderr too; they are expected.)\n')

# 1 ---------------------------------------------------------------------------
@pitfall('Input has undefined `axis` dimension: a (features, batch) layout', needs_legacy=True)
def undefined_axis(outcome):
  import tf1_bn
  tf, v1 = tf_modules()
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 5], name='x')
    features_by_batch = tf.transpose(x)  # (5, ?): each column one example
    legacy_error = error_text(lambda: v1.layers.batch_normalization(
        features_by_batch, axis=-1, training=True))
    ours_error = error_text(lambda: tf1_bn.bn_layer(features_by_batch, training=True))
  outcome.reproduced = bool(legacy_error) and 'undefined `axis` dimension' in legacy_error
  outcome.evidence = ('x: (?, 5); tf.compat.v1.layers.batch_normalization(tf.transpose(x), '
                      f'axis=-1)\n{legacy_error}')
  batch = np.random.RandomState(1).randn(6, 5).astype(np.float32) * 3 + 2
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 5], name='x')
    y = tf1_bn.bn_layer(x, training=True)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      out = sess.run(y, {x: batch})
  error = max_error(out, normalized(batch, 1e-5))
  outcome.remedy = (f'tf1_bn.bn_layer(tf.transpose(x)) raises at build time:\n{ours_error}\n'
                    f'Normalizing the (batch, features) tensor, axis=-1, works for any batch '
                    f'size: max |error| vs numpy {error:.1e}.')
  outcome.remedy_ok = bool(ours_error) and '(features, batch)' in ours_error and error < 1e-4
  outcome.details = dict(batch=batch.tolist(), output=out.tolist(), eps=1e-5)


# 2 ---------------------------------------------------------------------------
CSV_ROWS = (5, 4)  # two files; batch(7) leaves a last minibatch of 2
MINIBATCH = 7


def _write_csv_files(folder, seed=0):
  rng = np.random.RandomState(seed)
  paths = []
  for index, rows in enumerate(CSV_ROWS, 1):
    path = os.path.join(folder, f'train{index}.csv')
    with open(path, 'w', encoding='utf-8') as f:
      f.write('f1,f2,f3,f4,f5,label\n')
      for row in range(rows):
        f.write(','.join(f'{value:.4f}' for value in rng.randn(5) * 2 + 1) + f',{row % 2}\n')
    paths.append(path)
  return paths


def _csv_minibatches():
  """The asker's pipeline: TextLineDataset per file, decode_csv, shuffle, batch(7)."""
  tf, v1 = tf_modules()

  def decode_csv(line):
    columns = v1.decode_csv(line, [[0.0]] * 5 + [[0]])
    return tf.stack(columns[:5]), columns[5]

  filenames = v1.placeholder(tf.string, shape=[None], name='filenames')
  dataset = tf.data.Dataset.from_tensor_slices(filenames)
  dataset = dataset.flat_map(lambda name: tf.data.TextLineDataset(name).skip(1).map(decode_csv))
  dataset = dataset.shuffle(buffer_size=1000, seed=0).batch(MINIBATCH)
  iterator = v1.data.make_initializable_iterator(dataset)
  features, _ = iterator.get_next()
  return filenames, iterator, features


def _epoch(sess, iterator, filenames, paths, fetches, feed):
  sess.run(iterator.initializer, {filenames: paths})
  results = []
  while True:
    try:
      results.append(sess.run(fetches, feed))
    except tf_modules()[0].errors.OutOfRangeError:
      return results


@pitfall('Incompatible shapes: [7] vs. [2] in the moving-average update', needs_legacy=True)
def incompatible_shapes(outcome):
  import tf1_bn
  tf, v1 = tf_modules()
  with tempfile.TemporaryDirectory() as folder:
    paths = _write_csv_files(folder)
    with tf.Graph().as_default():
      filenames, iterator, features = _csv_minibatches()
      training = v1.placeholder(tf.bool, [], name='training')
      fixed = tf.reshape(features, [MINIBATCH, 5])  # "fixes" the undefined axis
      w = v1.get_variable('W1', [6, 5], initializer=v1.glorot_uniform_initializer(seed=0))
      z = tf.matmul(w, tf.transpose(fixed))  # (6, 7): features by examples
      # center/scale off: with them on, the forward pass's `* gamma` can meet
      # the mismatch first ("[2] vs. [7]"), depending on the op order.
      z = v1.layers.batch_normalization(z, axis=-1, training=training, center=False,
                                        scale=False)
      loss = tf.reduce_mean(tf.square(z))
      with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        train_op = v1.train.AdamOptimizer(0.01).minimize(loss)
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        message = error_text(lambda: _epoch(sess, iterator, filenames, paths, train_op,
                                             {training: True}))
    outcome.reproduced = bool(message) and 'Incompatible shapes: [7] vs. [2]' in message
    outcome.evidence = (f'{sum(CSV_ROWS)} CSV rows, batch({MINIBATCH}), '
                        f'tf.reshape(X, [{MINIBATCH}, 5]), tf.transpose, axis=-1 (center and '
                        'scale off); '
                        f'the last minibatch has {sum(CSV_ROWS) % MINIBATCH} rows:\n'
                        + error_lines(message or 'no error'))

    with tf.Graph().as_default():
      filenames, iterator, features = _csv_minibatches()
      w = v1.get_variable('W1', [5, 6], initializer=v1.glorot_uniform_initializer(seed=0))
      z = tf.matmul(features, w)  # (?, 6): examples by features
      y = tf1_bn.batch_normalization(z, training=True)
      with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        batches = _epoch(sess, iterator, filenames, paths, [z, y], None)
  sizes = [len(b[0]) for b in batches]
  errors = [max_error(out, normalized(pre, 1e-3)) for pre, out in batches]
  outcome.remedy = (
      'Keep (batch, features) and normalize axis=-1 with no reshape: the batch size stays '
      f'dynamic. tf1_bn.batch_normalization on the same pipeline ran minibatches of {sizes} '
      f'rows; max |error| vs numpy per minibatch {", ".join(f"{e:.1e}" for e in errors)}.')
  outcome.remedy_ok = sizes == [MINIBATCH, sum(CSV_ROWS) - MINIBATCH] and max(errors) < 1e-4
  outcome.details = dict(sizes=sizes, pre_bn=[b[0].tolist() for b in batches],
                         outputs=[b[1].tolist() for b in batches], eps=1e-3)


# 3, 4 ------------------------------------------------------------------------
HIDDEN = (64, 64)


def _digits_model(layer, split, steps, with_update_ops, seed=0):
  """A digits MLP (`digits.mlp`) with `layer(h, training, name)` before each ReLU,
  trained `steps` steps. Returns the test accuracy with training True and
  False, the moving statistics, and the session objects for more runs."""
  from tf1_bn.studies import digits
  from tf1_bn.bn import update_ops
  tf, v1 = tf_modules()
  graph = tf.Graph()
  with graph.as_default():
    v1.set_random_seed(seed)
    x = v1.placeholder(tf.float32, [None, digits.NUM_FEATURES], name='x')
    y = v1.placeholder(tf.int64, [None], name='y')
    training = v1.placeholder_with_default(False, [], name='is_training')
    logits = digits.mlp(x, hidden=HIDDEN, bn='before', seed=seed,
                        normalize=lambda h, name: layer(h, training, name))
    loss = digits.cross_entropy(logits, y)
    optimizer = v1.train.MomentumOptimizer(0.01, 0.9)
    train_op = (update_ops.minimize(optimizer, loss) if with_update_ops
                else optimizer.minimize(loss))
    accuracy = digits.accuracy(logits, y)
    moving = sorted((var for var in v1.global_variables() if 'moving_' in var.op.name),
                    key=lambda var: var.op.name)
    init = v1.global_variables_initializer()
  sess = digits.single_thread_session(graph)
  sess.run(init)
  for batch in digits.minibatches(len(split.train_x), steps, 32, seed):
    sess.run(train_op, {x: split.train_x[batch], y: split.train_y[batch], training: True})
  test = {x: split.test_x, y: split.test_y}
  return dict(sess=sess, graph=graph, x=x, logits=logits, training=training, train_op=train_op,
              accuracy_training_true=float(sess.run(accuracy, {**test, training: True})),
              accuracy_inference=float(sess.run(accuracy, test)),
              moving={var.op.name: sess.run(var) for var in moving})


@pitfall('Train op without the UPDATE_OPS dependency: moving statistics stay 0 / 1',
          needs_sklearn=True)
def missing_update_ops(outcome, steps=300):
  from tf1_bn.studies import digits
  import tf1_bn
  tf, v1 = tf_modules()
  # Pixels as stored (0..16): BN is expected to handle the scale.
  split = digits.load(seed=0, scale=False)
  if legacy.active():
    name, layer = 'tf.compat.v1.layers.batch_normalization', (
        lambda h, training, name: v1.layers.batch_normalization(h, training=training))
  else:
    name, layer = 'tf1_bn.batch_normalization (tf-keras not installed; same UPDATE_OPS ' \
                  'contract)', lambda h, training, name: tf1_bn.batch_normalization(
                      h, training=training)
  broken = _digits_model(layer, split, steps, with_update_ops=False)
  broken['sess'].close()
  stats = broken['moving']
  untouched = all(np.all(value == (0.0 if name_.endswith('mean') else 1.0))
                  for name_, value in stats.items())
  outcome.reproduced = (untouched and broken['accuracy_inference'] <
                        broken['accuracy_training_true'] - 0.3)
  outcome.evidence = (
      f'{name}, train_op = optimizer.minimize(loss), {steps} steps on the digits:\n'
      + '\n'.join(f'{n}: min {v.min():g}, max {v.max():g}' for n, v in stats.items())
      + f'\ntest accuracy, training=True (batch statistics): '
      f'{broken["accuracy_training_true"]:.4f}\n'
      f'test accuracy, inference (moving statistics):     {broken["accuracy_inference"]:.4f}')

  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 64])
    out = tf1_bn.batch_normalization(tf1_bn.batch_normalization(x, training=True, name='bn_a'),
                                     training=True, name='bn_b')
    loss = tf.reduce_sum(out * v1.get_variable('w', [64]))
    train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    check_error = error_text(lambda: tf1_bn.check_update_ops(train_op))
  fixed = _digits_model(
      lambda h, training, name: tf1_bn.batch_normalization(h, training=training),
      split, steps, with_update_ops=True)
  fixed['sess'].close()
  outcome.remedy = (
      f'tf1_bn.check_update_ops(train_op) on such a graph:\n{first_lines(check_error or "")}\n'
      f'Built with tf1_bn.minimize(optimizer, loss): test accuracy in inference '
      f'{fixed["accuracy_inference"]:.4f} (training=True: {fixed["accuracy_training_true"]:.4f}).')
  outcome.remedy_ok = (bool(check_error) and 'bn_a' in check_error and 'bn_b' in check_error
                       and fixed['accuracy_inference'] >= 0.9)
  outcome.details = dict(broken_moving={n: v.tolist() for n, v in stats.items()},
                         broken_accuracy_training_true=broken['accuracy_training_true'],
                         broken_accuracy_inference=broken['accuracy_inference'],
                         fixed_accuracy_inference=fixed['accuracy_inference'],
                         check_error=check_error)


@pitfall('training left True at test time: a prediction depends on the rest of its batch',
          needs_sklearn=True)
def training_true_at_test(outcome, steps=300):
  from tf1_bn.studies import digits
  import tf1_bn
  split = digits.load(seed=0)
  model = _digits_model(
      lambda h, training, name: tf1_bn.bn_layer(h, training=training, name=name),
      split, steps, with_update_ops=True)
  sess, x, logits, training = model['sess'], model['x'], model['logits'], model['training']
  example = split.test_x[0]
  digit = split.test_y[0]
  same_digit = split.test_x[split.test_y == digit][1:16]
  mixed = split.test_x[split.test_y != digit][:15]
  batches = {'with 15 examples of the same digit': np.vstack([example, same_digit]),
             'with 15 examples of other digits': np.vstack([example, mixed])}
  rows, logit_rows = {}, {}
  for mode, feed_training in (('training=True', True), ('inference', False)):
    for label, batch in batches.items():
      row = sess.run(logits, {x: batch, training: feed_training})[0]
      logit_rows[(mode, label)] = row
      rows[(mode, label)] = int(np.argmax(row))
  sess.close()
  labels = list(batches)
  train_gap = max_error(logit_rows[('training=True', labels[0])],
                         logit_rows[('training=True', labels[1])])
  infer_gap = max_error(logit_rows[('inference', labels[0])], logit_rows[('inference', labels[1])])
  outcome.reproduced = train_gap > 1e-2
  outcome.evidence = (f'one test example (a {digit}), evaluated in two batches with training=True:\n'
                      + '\n'.join(f'  {label}: predicted {rows[("training=True", label)]}'
                                  for label in labels)
                      + f'\n  its logits differ by up to {train_gap:.3f}')
  outcome.remedy = ('Evaluate without the feed (training_placeholder defaults to False): '
                    + ', '.join(f'predicted {rows[("inference", label)]} {label}' for label in labels)
                    + f'; logits differ by {infer_gap:.1e}.')
  outcome.remedy_ok = infer_gap <= 1e-5
  outcome.details = dict(train_gap=train_gap, infer_gap=infer_gap)


# 5 ---------------------------------------------------------------------------
PRETRAINED_MEAN, PRETRAINED_VARIANCE = 5.0, 4.0


def _frozen_layer_run(build):
  """Builds `build(x)` on a 3-channel input whose moving statistics hold
  'pre-trained' values, runs it in training mode and in inference on one
  batch, then runs every UPDATE_OPS op. Returns the numbers."""
  tf, v1 = tf_modules()
  batch = np.random.RandomState(2).randn(16, 3).astype(np.float32) * 3 + 8
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 3])
    training = v1.placeholder(tf.bool, [])
    y = build(x, training)
    moving = sorted((var for var in v1.global_variables() if 'moving_' in var.op.name),
                    key=lambda var: var.op.name)
    trainable = [var.op.name for var in v1.trainable_variables()]
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for var in moving:
        var.load(np.full([3], PRETRAINED_MEAN if var.op.name.endswith('mean')
                         else PRETRAINED_VARIANCE, np.float32), sess)
      fine_tune = sess.run(y, {x: batch, training: True})
      if updates:
        sess.run(updates, {x: batch, training: True})
      inference = sess.run(y, {x: batch, training: False})
      after = {var.op.name: sess.run(var).tolist() for var in moving}
  return dict(batch=batch, fine_tune=fine_tune, inference=inference, trainable=trainable,
              update_ops=len(updates), moving_after=after)


@pitfall('trainable=False is not training=False (frozen BN in fine-tuning)', needs_legacy=True)
def trainable_vs_training(outcome):
  import tf1_bn
  tf, v1 = tf_modules()
  frozen = _frozen_layer_run(lambda x, training: v1.layers.batch_normalization(
      x, training=training, trainable=False))
  gap = max_error(frozen['fine_tune'], frozen['inference'])
  batch = frozen['batch']
  outcome.reproduced = gap > 0.1
  outcome.evidence = (
      f'tf.compat.v1.layers.batch_normalization(x, training=True, trainable=False), moving mean '
      f'{PRETRAINED_MEAN:g} / variance {PRETRAINED_VARIANCE:g} loaded:\n'
      f'trainable variables {frozen["trainable"]}, update ops {frozen["update_ops"]}; but the '
      f'fine-tuning pass normalizes with the batch (mean {batch.mean():.2f}) and differs from '
      f'inference by up to {gap:.3f}: the network fine-tunes on activations it never sees at '
      f'test time.')
  ours = _frozen_layer_run(lambda x, training: tf1_bn.bn_layer(x, training=training,
                                                               trainable=False))
  expected = (ours['batch'] - PRETRAINED_MEAN) / np.sqrt(PRETRAINED_VARIANCE + 1e-5)
  ours_gap = max_error(ours['fine_tune'], ours['inference'])
  ours_error = max_error(ours['fine_tune'], expected)
  outcome.remedy = (
      f'tf1_bn.bn_layer(x, trainable=False) freezes: trainable variables {ours["trainable"]}, '
      f'update ops {ours["update_ops"]}, fine-tuning equals inference (gap {ours_gap:.1e}) and '
      f'uses the loaded statistics (max |error| vs numpy {ours_error:.1e}). '
      f'tf1_bn.batch_normalization(trainable=False) keeps the legacy meaning above for parity.')
  unchanged = all(np.allclose(v, PRETRAINED_MEAN if n.endswith('mean') else PRETRAINED_VARIANCE)
                  for n, v in ours['moving_after'].items())
  outcome.remedy_ok = (not ours['trainable'] and ours_gap == 0 and ours_error < 1e-4
                       and unchanged)
  outcome.details = dict(legacy_gap=gap, batch=batch.tolist(), ours_fine_tune=ours['fine_tune'].tolist(),
                         ours_moving_after=ours['moving_after'])


# 6 ---------------------------------------------------------------------------
def _executed_op_types(sess, fetch, feed):
  _, v1 = tf_modules()
  metadata = v1.RunMetadata()
  sess.run(fetch, feed, options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE),
           run_metadata=metadata)
  labels = [node.timeline_label for dev in metadata.step_stats.dev_stats for node in dev.node_stats]
  return [label.split(' = ', 1)[1].split('(', 1)[0] for label in labels if ' = ' in label]


def _recipe_then_bn_layer(features):
  """Yields (name, x, training, y) for the classic recipe, then bn_layer, each
  built on a [None, features] placeholder in a new graph that stays the
  default graph until the caller asks for the next one."""
  import tf1_bn
  from tf1_bn.studies.recipe import classic_recipe
  tf, v1 = tf_modules()
  for name, build in (('recipe', classic_recipe), ('bn_layer', lambda x, t: tf1_bn.bn_layer(x, t))):
    with tf.Graph().as_default():
      x = v1.placeholder(tf.float32, [None, features])
      training = tf1_bn.training_placeholder()
      yield name, x, training, build(x, training)


@pitfall('The recipe computes batch moments at inference too')
def recipe_inference_moments(outcome):
  _, v1 = tf_modules()
  batch = np.random.RandomState(3).randn(32, 8).astype(np.float32)
  counts = {}
  for name, x, _, y in _recipe_then_bn_layer(8):
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      types = _executed_op_types(sess, y, {x: batch})  # no feed: inference
    counts[name] = sum(types.count(t) for t in BATCH_MOMENT_OPS)
  outcome.reproduced = counts['recipe'] > 0
  outcome.evidence = (f'one inference step (training False) of the recipe executed '
                      f'{counts["recipe"]} batch-moment ops ({"/".join(BATCH_MOMENT_OPS)}): '
                      'tf.nn.moments sits outside its tf.cond.')
  outcome.remedy = (f'bn_layer inference executed {counts["bn_layer"]}: the moments live in the '
                    'training branch only (and training=False builds no moments at all).')
  outcome.remedy_ok = counts['bn_layer'] == 0
  outcome.details = counts


@pitfall("The recipe's moving variance starts at 0: inference before (or early in) training explodes")
def recipe_variance_starts_at_zero(outcome):
  _, v1 = tf_modules()
  data = np.random.RandomState(4).randn(64, 8).astype(np.float32) * 2
  checkpoints = (0, 1, 10, 50)
  stds = {}
  for name, x, training, y in _recipe_then_bn_layer(8):
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      stds[name] = []
      for step in range(max(checkpoints) + 1):
        if step in checkpoints:
          stds[name].append(float(sess.run(y, {x: data}).std()))
        sess.run([y, updates], {x: data, training: True})
  outcome.reproduced = stds['recipe'][0] > 100 * data.std()
  header = 'inference output std (ideal 1.0) after ' + ', '.join(f'{c}' for c in checkpoints)
  outcome.evidence = (f'input std {data.std():.2f}, decay 0.9, eps 1e-5; {header} training steps:\n'
                      f'recipe:   {", ".join(f"{s:.2f}" for s in stds["recipe"])}')
  outcome.remedy = (f'bn_layer: {", ".join(f"{s:.2f}" for s in stds["bn_layer"])} (moving '
                    'variance starts at 1: the untrained layer is the identity, never x / sqrt(eps))')
  outcome.remedy_ok = (stds['bn_layer'][0] <= data.std() * 1.001
                       and abs(stds['bn_layer'][-1] - 1.0) < 0.05)
  outcome.details = dict(stds=stds, checkpoints=list(checkpoints), input_std=float(data.std()))


@pitfall("Reusing the recipe for an eval tower: its second ema.apply finds no variable")
def recipe_reuse(outcome):
  import tf1_bn
  from tf1_bn.studies.recipe import classic_recipe
  tf, v1 = tf_modules()
  batch = np.random.RandomState(5).randn(16, 4).astype(np.float32)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4])
    training = tf1_bn.training_placeholder()
    classic_recipe(x, training)

    def eval_tower():
      with v1.variable_scope(v1.get_variable_scope(), reuse=True):
        classic_recipe(x, False)

    message = error_text(eval_tower)
  outcome.reproduced = bool(message) and 'does not exist' in message
  outcome.evidence = ('classic_recipe(x, training); then, under reuse=True, classic_recipe(x, '
                      f'False):\n{first_lines(message or "no error", 1)}')
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 4])
    train_tower = tf1_bn.bn_layer(x, name='bn')
    count = len(v1.global_variables())
    eval_tower = tf1_bn.bn_layer(x, training=False, name='bn', reuse=True)
    created = len(v1.global_variables()) - count
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      gap = max_error(*sess.run([train_tower, eval_tower], {x: batch}))
  outcome.remedy = (f'bn_layer(x, training=False, name="bn", reuse=True) created {created} '
                    f'variables and matches the first tower in inference (gap {gap:.1e}).')
  outcome.remedy_ok = created == 0 and gap == 0
  outcome.details = dict(created=created, gap=gap)


PITFALLS = (undefined_axis, incompatible_shapes, missing_update_ops, training_true_at_test,
            trainable_vs_training, recipe_inference_moments, recipe_variance_starts_at_zero,
            recipe_reuse) + SEQUENCE_PITFALLS


def _plain(value):
  """JSON for numpy scalars."""
  return value.item() if hasattr(value, 'item') else str(value)


def _indent(text):
  return '\n'.join('    ' + line for line in text.splitlines())


def report(index, outcome, tf_version):
  lines = [f'{index}. {outcome.title}']
  if outcome.skipped:
    lines.append(f'  skipped: {outcome.skipped}')
  else:
    status = 'reproduced' if outcome.reproduced else 'DOES NOT reproduce'
    lines += [f'  {status} on TensorFlow {tf_version}:', _indent(outcome.evidence),
              f'  with tf1_bn ({"ok" if outcome.remedy_ok else "FAILED"}):',
              _indent(outcome.remedy)]
  return '\n'.join(lines)


def build_parser(parser=None):
  parser = parser or argparse.ArgumentParser(prog='tf1-bn pitfalls', description=__doc__)
  parser.add_argument('--only', nargs='+', choices=[p.__name__ for p in PITFALLS],
                      help='run these pitfalls only')
  parser.add_argument('--json', help='also write the outcomes to this JSON file')
  return parser


def main(argv=None):
  args, status = legacy.parse_or_rerun('tf1_bn.studies.pitfalls', build_parser, argv)
  if status is not None:
    return status
  import warnings
  tf = log.import_tensorflow()
  # The legacy layer's deprecation notices would bury the evidence.
  warnings.filterwarnings('ignore', message='.*is deprecated')
  tf.get_logger().setLevel('ERROR')
  selected = [p for p in PITFALLS if not args.only or p.__name__ in args.only]
  print(HEADER, flush=True)
  outcomes = []
  for index, pitfall in enumerate(selected, 1):
    outcome = pitfall()
    outcomes.append(outcome)
    print(report(index, outcome, tf.__version__) + '\n', flush=True)
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump([dataclasses.asdict(o) for o in outcomes], f, default=_plain)
  failed = [o.key for o in outcomes if not o.skipped and not o.remedy_ok]
  if failed:
    print(f'tf1_bn did not give the right result for: {", ".join(failed)}')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
