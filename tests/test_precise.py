"""Precise BN (recompute_statistics, audit) against a numpy float64 reference
computed from the layers' inputs, fetched in training mode."""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn
from reference import broadcast, max_relative_error, moments, precise_statistics

v1 = tf.compat.v1
UPDATE_OPS = v1.GraphKeys.UPDATE_OPS
ESTIMATORS = ('population', 'batch_average')
# The bar: per-batch float32 moments merged in float64 miss it on
# channels with means around 50 and spreads of 0.1.
TOLERANCE = 1e-5
CHANNELS = 4
MEANS = 50.0 + np.array([-0.7, 0.2, 1.1, -2.0])
SPREADS = np.array([0.1, 0.5, 1.5, 3.0])
SIZES = (5, 9, 2, 7)  # uneven batches
# layout: (placeholder shape, channel axis, slim data_format)
LAYOUTS = {
    'dense': ([None, CHANNELS], -1, 'NHWC'),
    'nhwc': ([None, 3, 3, CHANNELS], -1, 'NHWC'),
    'nchw': ([None, CHANNELS, 3, 3], 1, 'NCHW'),
}
FRONTENDS = ('bn_layer', 'batch_normalization', 'batch_norm')


def _batches(rng, layout='dense', sizes=SIZES):
  shape, axis, _ = LAYOUTS[layout]
  batches = []
  for n in sizes:
    full = [n] + shape[1:]
    values = rng.randn(*full)
    batches.append((broadcast(MEANS, full, axis) + broadcast(SPREADS, full, axis) * values)
                   .astype(np.float32))
  return batches


def _bn(frontend, h, training, axis, data_format, name):
  if frontend == 'bn_layer':
    return tf1_bn.bn_layer(h, training=training, axis=axis, name=name)
  if frontend == 'batch_normalization':
    return tf1_bn.batch_normalization(h, axis=axis, training=training, name=name)
  return tf1_bn.batch_norm(h, is_training=training, data_format=data_format, scope=name,
                           scale=True)


def _model(frontend, switch, layout):
  """x -> BN 'first' -> * 0.5 + 50 -> BN 'second'.

  Returns x, the two layers' inputs, the output, the feed the training
  switch needs, and the variance convention the front-end documents.
  """
  shape, axis, data_format = LAYOUTS[layout]
  x = v1.placeholder(tf.float32, shape, name='x')
  extra = {}
  if switch == 'python':
    training = True
  elif frontend == 'batch_normalization':
    training = v1.placeholder(tf.bool, [], name='is_training')  # the user's own switch
    extra = {training: True}
  else:
    training = tf1_bn.training_placeholder() if frontend == 'batch_norm' else None
  h = _bn(frontend, x, training, axis, data_format, 'first') * 0.5 + 50.0
  y = _bn(frontend, h, training, axis, data_format, 'second')
  # tf.layers takes the fused kernel's (Bessel) semantics on 4-D inputs; slim
  # on 2-D inputs (its fused path) and on 4-D ones (through tf.layers).
  population = frontend == 'bn_layer' or (frontend == 'batch_normalization' and
                                          layout == 'dense')
  return x, [x, h], y, extra, 'population' if population else 'sample'


def _training(graph, feed):
  """The feed of a training step: the graph's switch (if any) fed True."""
  feed = dict(feed)
  for placeholder in graph.get_collection('tf1_bn_training_placeholder'):
    feed.setdefault(placeholder, True)
  return feed


def _bytes(sess):
  variables = v1.global_variables()
  return {var.op.name: value.tobytes() for var, value in zip(variables, sess.run(variables))}


def _value(sess, name):
  return sess.run(next(var for var in v1.global_variables() if var.op.name == name))


def _assert_stored(stored, layer):
  """The variables hold the report's float64 values rounded to their dtype."""
  for value, new in zip(stored, (layer.new_mean, layer.new_variance)):
    np.testing.assert_array_equal(value, new.astype(value.dtype))


def _assert_close(mean, variance, expected):
  """Mean within TOLERANCE standard deviations, variance within TOLERANCE
  relative (a mean of 50 makes a relative tolerance on it meaningless)."""
  ref_mean, ref_var = (np.asarray(e, np.float64).reshape(-1) for e in expected)
  mean, variance = (np.asarray(a, np.float64).reshape(-1) for a in (mean, variance))
  assert np.all(np.abs(mean - ref_mean) <= TOLERANCE * np.sqrt(ref_var)), (mean, ref_mean)
  assert np.all(np.abs(variance - ref_var) <= TOLERANCE * ref_var), (variance, ref_var)


# --- the reference ------------------------------------------------------------------
@pytest.mark.parametrize('layout', list(LAYOUTS))
@pytest.mark.parametrize('switch', ['python', 'tensor'])
@pytest.mark.parametrize('frontend', FRONTENDS)
def test_statistics_match_the_float64_reference(frontend, switch, layout, rng):
  batches = _batches(rng, layout)
  axis = LAYOUTS[layout][1]
  with tf.Graph().as_default() as graph:
    x, inputs, _, extra, kind = _model(frontend, switch, layout)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      feeds = [{x: b, **extra} for b in batches]
      fetched = [sess.run(inputs, _training(graph, f)) for f in feeds]
      before = _bytes(sess)
      audits = {e: tf1_bn.recompute_statistics(sess, feeds, estimator=e, assign=False)
                for e in ESTIMATORS}
      assert _bytes(sess) == before  # assign=False changes nothing
      report = tf1_bn.recompute_statistics(sess, (f for f in feeds))  # a generator, once
      after = _bytes(sess)
  for estimator, audit in [*audits.items(), ('population', report)]:
    for index, scope in enumerate(('first', 'second')):
      layer = audit[scope]
      assert layer.variance_kind == kind
      assert layer.count == sum(b[index].size for b in fetched) // CHANNELS
      expected = precise_statistics([b[index] for b in fetched], axis, estimator, kind)
      _assert_close(layer.new_mean, layer.new_variance, expected)
  written = {f'{scope}/{leaf}' for scope in ('first', 'second')
             for leaf in ('moving_mean', 'moving_variance')}
  assert {name for name in before if before[name] != after[name]} == written
  for scope in ('first', 'second'):
    assert after[f'{scope}/moving_mean'] == report[scope].new_mean.astype(np.float32).tobytes()
    assert after[f'{scope}/moving_variance'] == \
        report[scope].new_variance.astype(np.float32).tobytes()


def test_float32_moments_would_miss_the_reference():
  # The reference test above, with per-batch moments in float32 merged in
  # float64: it fails on the channel with mean 49.3 and spread 0.1.
  batches = _batches(np.random.RandomState(0))
  expected = precise_statistics(batches, -1)
  counts = np.array([len(b) for b in batches], np.float64)[:, None]
  means = np.array([b.mean(axis=0, dtype=np.float32) for b in batches], np.float64)
  variances = np.array([b.var(axis=0, dtype=np.float32) for b in batches], np.float64)
  mean = (counts * means).sum(0) / counts.sum()
  variance = (counts * (variances + np.square(means - mean))).sum(0) / counts.sum()
  with pytest.raises(AssertionError):
    _assert_close(mean, variance, expected)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    tf1_bn.bn_layer(x)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      layer = tf1_bn.recompute_statistics(sess, [{x: b} for b in batches])['bn']
  _assert_close(layer.new_mean, layer.new_variance, expected)


# --- what else must hold -------------------------------------------------------------
def test_inline_updates_leave_no_trace_and_collection_updates_never_run(rng):
  batches = _batches(rng)
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    h1 = tf1_bn.bn_layer(x, name='inline', updates='inline')
    h2 = tf1_bn.batch_norm(h1 + 3.0, updates_collections=None, scope='slim_inline',
                           is_training=tf1_bn.training_placeholder())
    h3 = h2 * 2.0
    tf1_bn.bn_layer(h3, name='collection')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      feeds = [{x: b} for b in batches]
      fetched = [sess.run([x, h1 + 3.0, h3], _training(graph, f)) for f in feeds]
      # The hazard: fetching a later layer's input runs the inline updates.
      moved = _bytes(sess)
      assert moved['inline/moving_mean'] != _bytes_of_initial(sess, 'inline/moving_mean')
      report = tf1_bn.recompute_statistics(sess, feeds, assign=False)
      assert _bytes(sess) == moved
      report = tf1_bn.recompute_statistics(sess, feeds)
      after = _bytes(sess)
  for index, (scope, kind) in enumerate([('inline', 'population'), ('slim_inline', 'sample'),
                                         ('collection', 'population')]):
    expected = precise_statistics([f[index] for f in fetched], -1, 'population', kind)
    _assert_close(report[scope].new_mean, report[scope].new_variance, expected)
  written = {f'{s}/{leaf}' for s in ('inline', 'slim_inline', 'collection')
             for leaf in ('moving_mean', 'moving_variance')}
  assert {n for n in moved if moved[n] != after[n]} == written


def _bytes_of_initial(sess, name):
  variable = next(var for var in v1.global_variables() if var.op.name == name)
  return sess.run(variable.initial_value).tobytes()


@pytest.mark.parametrize('weights_kind', ['placeholder', 'array'])
def test_slim_batch_weights_give_the_weighted_statistics(weights_kind, rng):
  batches = _batches(rng, 'nhwc', sizes=(6, 6, 6))
  weights = [rng.uniform(0.0, 2.0, 6).astype(np.float32) for _ in batches]
  weights[1][2] = 0.0
  if weights_kind == 'array':
    weights = [weights[0]] * len(batches)
  with tf.Graph().as_default():
    shape = [6, 3, 3, CHANNELS] if weights_kind == 'array' else LAYOUTS['nhwc'][0]
    x = v1.placeholder(tf.float32, shape)
    w = weights[0] if weights_kind == 'array' else v1.placeholder(tf.float32, [None])
    tf1_bn.batch_norm(x, batch_weights=w, scope='weighted')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      feeds = [{x: b} if weights_kind == 'array' else {x: b, w: wb}
               for b, wb in zip(batches, weights)]
      layer = tf1_bn.recompute_statistics(sess, feeds)['weighted']
      stored = _value(sess, 'weighted/moving_mean'), _value(sess, 'weighted/moving_variance')
  expected = precise_statistics(batches, -1, weights=weights)
  assert layer.variance_kind == 'population'  # slim's general path
  _assert_close(layer.new_mean, layer.new_variance, expected)
  _assert_stored(stored, layer)
  per_batch = [np.square(wb.sum()) / np.square(wb).sum() * 9 for wb in weights]
  assert layer.values_per_batch == pytest.approx(np.mean(per_batch))  # Kish's, 9 positions


def test_renorm_writes_moving_stddev_and_variance_consistently(rng):
  batches = _batches(rng)
  eps = 1e-3
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    tf1_bn.batch_normalization(x, renorm=True, training=True, epsilon=eps, name='rn')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for b in batches:  # move every renorm statistic off its initial value
        sess.run(v1.get_collection(UPDATE_OPS), {x: b})
      before = _bytes(sess)
      layer = tf1_bn.recompute_statistics(sess, [{x: b} for b in batches])['rn']
      after = _bytes(sess)
      mean, variance = _value(sess, 'rn/moving_mean'), _value(sess, 'rn/moving_variance')
      stddev = _value(sess, 'rn/moving_stddev')
  expected = precise_statistics(batches, -1)
  assert {n for n in before if before[n] != after[n]} == {
      'rn/moving_mean', 'rn/moving_variance', 'rn/moving_stddev'}  # renorm_* kept
  _assert_close(layer.new_mean, layer.new_variance, expected)
  _assert_stored((mean, variance), layer)
  np.testing.assert_allclose(stddev, np.sqrt(expected[1] + eps), rtol=1e-6)
  # The layer's own derivation, relu(stddev^2 - eps), gives the same variance.
  np.testing.assert_allclose(np.maximum(np.square(stddev.astype(np.float64)) - eps, 0), variance,
                             rtol=1e-5)


def test_ghost_batches_are_the_batches_of_batch_average(rng):
  batches = _batches(rng, 'nhwc', sizes=(4, 6, 2))
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, LAYOUTS['nhwc'][0])
    tf1_bn.batch_normalization(x, virtual_batch_size=2, training=True, name='ghost')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      feeds = [{x: b} for b in batches]
      reports = {e: tf1_bn.recompute_statistics(sess, feeds, e, assign=False)['ghost']
                 for e in ESTIMATORS}
      with pytest.raises(ValueError, match='3 examples, not a multiple of its '
                                           'virtual_batch_size=2'):
        tf1_bn.recompute_statistics(sess, [{x: batches[0][:3]}])
  # tf.layers' ghost batch j of a batch of n holds examples j, j + n/2, ...
  ghosts = [b[j::len(b) // 2] for b in batches for j in range(len(b) // 2)]
  _assert_close(reports['population'].new_mean, reports['population'].new_variance,
                precise_statistics(batches, -1))
  _assert_close(reports['batch_average'].new_mean, reports['batch_average'].new_variance,
                precise_statistics(ghosts, -1, 'batch_average'))
  assert reports['population'].batches == len(ghosts)
  assert reports['population'].values_per_batch == 2 * 3 * 3


def test_zero_debias_helpers_keep_slims_invariant(rng):
  batches = _batches(rng)
  decay = 0.9
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    tf1_bn.batch_norm(x, decay=decay, zero_debias_moving_mean=True, scope='debiased')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for b in batches[:3]:
        sess.run(v1.get_collection(UPDATE_OPS), {x: b})
      step_before = _value(sess, 'debiased/debiased/moving_mean/local_step')
      layer = tf1_bn.recompute_statistics(sess, [{x: b} for b in batches])['debiased']
      biased = _value(sess, 'debiased/debiased/moving_mean/biased')
      step = _value(sess, 'debiased/debiased/moving_mean/local_step')
      mean = _value(sess, 'debiased/moving_mean')
  assert step == step_before == 3
  np.testing.assert_allclose(biased / (1 - decay ** 3), mean, rtol=1e-6)
  np.testing.assert_array_equal(mean, layer.new_mean.astype(np.float32))


def test_calls_sharing_a_layer_are_one_layer_and_inference_towers_are_skipped(rng):
  first, second = _batches(rng, sizes=(5,)), _batches(rng, sizes=(8,))
  with tf.Graph().as_default():
    a = v1.placeholder(tf.float32, [None, CHANNELS])
    b = v1.placeholder(tf.float32, [None, CHANNELS])
    tf1_bn.bn_layer(a, training=True, name='shared')
    tf1_bn.bn_layer(b * 2.0, training=True, name='shared', reuse=True)
    tf1_bn.bn_layer(a, training=False, name='shared', reuse=True)  # an eval tower
    tf1_bn.bn_layer(a, training=False, name='eval_only')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      report = tf1_bn.recompute_statistics(sess, [{a: first[0], b: second[0]}])
  assert [layer.scope for layer in report.layers] == ['shared']
  _assert_close(report['shared'].new_mean, report['shared'].new_variance,
                precise_statistics([np.concatenate([first[0], second[0] * 2.0])], -1))


@pytest.mark.parametrize('frontend', ['bn_layer', 'batch_normalization'])
def test_stale_model_infers_what_it_trains_after_recompute(frontend, rng):
  # Centred data: with means of 50 the training kernel's own float32 moments
  # would limit the comparison (mean-dominated activations).
  data = (rng.randn(200, CHANNELS) * 2 + 1).astype(np.float32)
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    training = tf1_bn.training_placeholder()

    def bn(h, name):
      if frontend == 'bn_layer':
        return tf1_bn.bn_layer(h, moving_decay=0.999, name=name)
      return tf1_bn.batch_normalization(h, momentum=0.999, training=training, name=name)

    w1 = v1.get_variable('w1', [CHANNELS, 6], initializer=v1.glorot_uniform_initializer(seed=1))
    w2 = v1.get_variable('w2', [6, 3], initializer=v1.glorot_uniform_initializer(seed=2))
    h = tf.nn.relu(bn(tf.matmul(x, w1), 'bn1'))
    y = bn(tf.matmul(h, w2), 'bn2')
    loss = tf.reduce_mean(tf.square(y - 1.0))
    train_op = tf1_bn.minimize(v1.train.GradientDescentOptimizer(0.1), loss)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      graph.finalize()  # recompute_statistics adds no op
      for _ in range(20):  # decay 0.999: the moving statistics barely move
        sess.run(train_op, {x: data[:32], training: True})
      trained = sess.run(y, {x: data, training: True})
      before = sess.run(y, {x: data})
      weights = sess.run([w1, w2])
      tf1_bn.recompute_statistics(sess, [{x: data}])
      after = sess.run(y, {x: data})
      assert all(np.array_equal(a, b) for a, b in zip(weights, sess.run([w1, w2])))
  assert max_relative_error(before, trained) > 0.1  # stale: far from training mode
  assert max_relative_error(after, trained) < TOLERANCE


# --- the audit ----------------------------------------------------------------------
def _normalized(x, mean, variance, eps):
  return (x.astype(np.float64) - mean) / np.sqrt(np.asarray(variance, np.float64) + eps)


def test_audit_numbers_against_numpy(rng):
  batches = _batches(rng)
  for b in batches:
    b[:, 3] = 7.0  # a constant channel: near-zero variance
  eps = 1e-5
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    y = tf1_bn.bn_layer(x, name='bn', eps=eps)
    logits = tf.matmul(y, tf.constant(rng.randn(CHANNELS, 3).astype(np.float32)))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      sess.run(v1.get_collection(UPDATE_OPS), {x: batches[0], tf1_bn.training_placeholder(): True})
      old = sess.run(v1.global_variables('bn/moving_'))
      feeds = [{x: b} for b in batches]
      trained = [sess.run(logits, {**f, tf1_bn.training_placeholder(): True}) for f in feeds]
      inferred = [sess.run(logits, f) for f in feeds]
      before = _bytes(sess)
      report = tf1_bn.audit(sess, feeds, outputs={'logits': logits})
      assert _bytes(sess) == before
  layer = report['bn']
  new = precise_statistics(batches, -1)
  # Normalized values training computes (batch moments) against inference's.
  train_hat = [_normalized(b, *moments(b, -1), eps) for b in batches]

  def rms(stats):
    return np.sqrt(np.mean(np.concatenate(
        [np.square(t - _normalized(b, *stats, eps)) for t, b in zip(train_hat, batches)])))

  assert layer.mismatch_now == pytest.approx(rms(old), rel=1e-9)
  assert layer.mismatch_recomputed == pytest.approx(rms(new), rel=1e-9)
  shift = np.concatenate([_normalized(b, *new, eps) - _normalized(b, *old, eps) for b in batches])
  assert layer.inference_shift == pytest.approx(np.sqrt(np.mean(np.square(shift))), rel=1e-9)
  assert layer.near_zero_channels == 1
  assert layer.values_per_batch == pytest.approx(np.mean(SIZES))
  assert layer.mean_change == pytest.approx(np.max(np.abs(new[0] - old[0]) / np.sqrt(new[1] + eps)))
  assert layer.verdict.startswith('stale, noisy batches, near-zero variance: ')
  output = report.outputs[0]
  trained, inferred = np.concatenate(trained), np.concatenate(inferred)
  assert output.name == 'logits'
  assert output.relative_difference == pytest.approx(
      np.linalg.norm(trained - inferred) / np.linalg.norm(trained), rel=1e-5)
  assert output.argmax_agreement == np.mean(trained.argmax(1) == inferred.argmax(1))
  assert 'stale, noisy batches' in str(report) and '| logits |' in str(report)


def test_audit_verdict_ok_after_recompute_with_large_batches(rng):
  batches = _batches(rng, sizes=(64, 64, 64))
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    tf1_bn.bn_layer(x, name='bn')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      feeds = [{x: b} for b in batches]
      assert tf1_bn.audit(sess, feeds)['bn'].verdict.startswith('stale: ')
      tf1_bn.recompute_statistics(sess, feeds)
      layer = tf1_bn.audit(sess, feeds)['bn']
  # What is left is the float32 rounding of the stored statistics: half a
  # spacing of 50 (1.9e-6) is 2e-5 standard deviations of the 0.1 channel.
  rounding = np.spacing(np.float32(MEANS)) / 2 / SPREADS
  assert layer.inference_shift <= np.sqrt(np.mean(np.square(rounding)))
  assert layer.verdict.startswith('ok: ')


def test_report_table_and_progress_bar(rng, capsys):
  batches = _batches(rng)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    tf1_bn.bn_layer(x, name='bn')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      report = tf1_bn.recompute_statistics(sess, [{x: b} for b in batches], progress=True)
  assert f'{len(SIZES)}/{len(SIZES)}' in capsys.readouterr().err
  lines = str(report).splitlines()
  assert lines[0].startswith('| layer | variance | channels | N |')
  assert lines[2].startswith(f'| bn | population | {CHANNELS} | {sum(SIZES)} | ')


# --- errors ---------------------------------------------------------------------------
def test_bad_input_is_a_clear_error_and_nothing_is_assigned(rng):
  batches = _batches(rng)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    own = v1.placeholder(tf.bool, [])
    h = tf1_bn.bn_layer(x, name='inline', updates='inline')
    tf1_bn.batch_normalization(h, training=own, name='own_switch')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      before = _bytes(sess)

      def failing():
        yield {x: batches[0], own: True}
        yield {x: batches[1], own: True}
        raise OSError('disk gone')

      with pytest.raises(tf1_bn.RecomputeError, match='OSError while producing batch 2'):
        tf1_bn.recompute_statistics(sess, failing())
      with pytest.raises(ValueError, match='yielded no feed dict'):
        tf1_bn.recompute_statistics(sess, [])
      with pytest.raises(ValueError, match='is_training|Placeholder.*evaluated to False'):
        tf1_bn.recompute_statistics(sess, [{x: batches[0], own: False}])
      with pytest.raises(tf1_bn.RecomputeError, match='Batch 0 of `feeds` failed in training'):
        tf1_bn.recompute_statistics(sess, [{x: batches[0]}])  # `own` not fed
      with pytest.raises(TypeError, match='received a single dict'):
        tf1_bn.recompute_statistics(sess, {x: batches[0], own: True})
      with pytest.raises(TypeError, match='item 1 is a ndarray'):
        tf1_bn.recompute_statistics(sess, [{x: batches[0], own: True}, batches[1]])
      with pytest.raises(ValueError, match=r"`estimator` must be one of \['population', "
                                           r"'batch_average'\], received 'median'"):
        tf1_bn.recompute_statistics(sess, [{x: batches[0], own: True}], estimator='median')
      poisoned = batches[0].copy()
      poisoned[0, 1] = np.nan
      with pytest.raises(ValueError, match='inline, own_switch are not finite'):
        tf1_bn.recompute_statistics(sess, [{x: poisoned, own: True}])
      with pytest.raises(TypeError, match='`assign` must be a bool'):
        tf1_bn.recompute_statistics(sess, [{x: batches[0], own: True}], assign='yes')
      assert _bytes(sess) == before  # the inline layer's updates were undone
  with pytest.raises(TypeError, match='`sess` must be a tf.compat.v1.Session'):
    tf1_bn.recompute_statistics(None, [])


def test_graphs_without_layers_to_recompute(rng):
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    tf.matmul(x, v1.get_variable('w', [CHANNELS, 3]))
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      with pytest.raises(ValueError, match='has no tf1_bn BN layer'):
        tf1_bn.recompute_statistics(sess, [{x: _batches(rng)[0]}])
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, CHANNELS])
    tf1_bn.bn_layer(x, training=False, name='frozen_a')
    tf1_bn.bn_layer(x, trainable=False, name='frozen_b')
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      with pytest.raises(ValueError, match=r'can be recomputed: frozen_a is inference-only .*; '
                                           r'frozen_b is inference-only'):
        tf1_bn.recompute_statistics(sess, [{x: _batches(rng)[0]}])


def test_a_ported_fused_checkpoint_gets_population_statistics(rng, tmp_path):
  # The Bessel gap `port` cannot close: a fused legacy layer's moving variance
  # averages n / (n - 1) times the batch variance; bn_layer's the population one.
  batches = _batches(rng, 'nhwc', sizes=(4, 4, 4))
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, LAYOUTS['nhwc'][0])
    tf1_bn.batch_normalization(x, training=True, momentum=0.5)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for b in batches:
        sess.run(v1.get_collection(UPDATE_OPS), {x: b})
      saved = v1.train.Saver().save(sess, str(tmp_path / 'legacy' / 'model.ckpt'))
  ported = tf1_bn.port_checkpoint(saved, str(tmp_path / 'ported' / 'model.ckpt'), 'bn_layer')
  assert ported['batch_normalization/moving_variance'] == 'batch_normalization/moving_variance'
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, LAYOUTS['nhwc'][0])
    tf1_bn.bn_layer(x, name='batch_normalization')
    with v1.Session() as sess:
      tf1_bn.restore(sess, str(tmp_path / 'ported' / 'model.ckpt'))
      layer = tf1_bn.recompute_statistics(sess, [{x: b} for b in batches])['batch_normalization']
      stored = (_value(sess, 'batch_normalization/moving_mean'),
                _value(sess, 'batch_normalization/moving_variance'))
  assert layer.variance_kind == 'population'
  _assert_close(layer.new_mean, layer.new_variance, precise_statistics(batches, -1))
  _assert_stored(stored, layer)
