"""The moving statistics get no gradient, on every path of every front-end.

The legacy layers give `None` on some paths (slim's fused path under a
tensor is_training) and a gradient on others (the unfused inference formula
differentiates the moving mean); an optimizer asked for the gradients of
every global variable then creates slots for them, or not. tf1_bn reads the
moving variables behind a stop-gradient everywhere: `tf.gradients` is
[None] for each of them and Adam over tf.global_variables() creates slots
only for the trained parameters.
"""
import itertools

import pytest
import tensorflow as tf

import tf1_bn

v1 = tf.compat.v1
UPDATE_OPS = v1.GraphKeys.UPDATE_OPS


def _bn_layer(x, training, fused, in_place, extra):
  return tf1_bn.bn_layer(x, training=training, fused=fused,
                         updates='inline' if in_place else 'collection',
                         synchronized=extra == 'synchronized')


def _layers(x, training, fused, in_place, extra):
  return tf1_bn.batch_normalization(x, training=training, fused=fused,
                                    renorm=extra == 'renorm',
                                    synchronized=extra == 'synchronized')


def _slim(x, training, fused, in_place, extra):
  return tf1_bn.batch_norm(x, is_training=training, fused=fused, scale=True,
                           updates_collections=None if in_place else UPDATE_OPS,
                           zero_debias_moving_mean=extra == 'zero-debias',
                           renorm=extra == 'renorm', synchronized=extra == 'synchronized')


FRONT_ENDS = {'bn_layer': _bn_layer, 'batch_normalization': _layers, 'batch_norm': _slim}
EXTRAS = ('none', 'renorm', 'zero-debias', 'synchronized')
CASES = [case for case in itertools.product(sorted(FRONT_ENDS), (True, False),
                                            (True, False, 'placeholder'), (False, True), EXTRAS)
         if not (case[0] != 'batch_norm' and case[4] == 'zero-debias')
         and not (case[0] == 'bn_layer' and case[4] == 'renorm')
         # tf.layers has no in-place update; slim refuses renorm with one.
         and not (case[0] == 'batch_normalization' and case[3])
         and not (case[0] == 'batch_norm' and case[3] and case[4] == 'renorm')]


def _ids(case):
  front_end, fused, training, in_place, extra = case
  return (f'{front_end}-{"fused" if fused else "unfused"}-training={training}-'
          f'{"in place" if in_place else "collection"}-{extra}')


def _build(case):
  front_end, fused, training, in_place, extra = case
  x = v1.placeholder(tf.float32, [4, 3, 3, 5])
  switch = v1.placeholder(tf.bool, []) if training == 'placeholder' else training
  y = FRONT_ENDS[front_end](x, switch, fused, in_place, extra)
  moving = [v for v in v1.global_variables()
            if v.op.name.split('/')[-1] not in ('gamma', 'beta')]
  assert len(moving) >= 2
  return tf.reduce_sum(tf.square(y) * tf.range(5, dtype=tf.float32)), moving


@pytest.mark.parametrize('case', CASES, ids=_ids)
@pytest.mark.filterwarnings('ignore:tf1_bn.batch_normalization. fused=True falls back')
def test_no_gradient_for_any_moving_variable(graph, case):
  loss, moving = _build(case)
  assert tf.gradients(loss, moving) == [None] * len(moving)


@pytest.mark.parametrize('case', [c for c in CASES if c[4] == 'none' and c[2] == 'placeholder'],
                         ids=_ids)
def test_adam_over_every_variable_has_slots_for_the_parameters_only(graph, case):
  loss, moving = _build(case)
  parameters = [v for v in v1.global_variables() if v not in moving]
  v1.train.AdamOptimizer(0.1).minimize(loss, var_list=v1.global_variables())
  slots = sorted(v.op.name for v in v1.global_variables() if '/Adam' in v.op.name)
  assert slots == sorted(f'{p.op.name}/{s}' for p in parameters for s in ('Adam', 'Adam_1'))
