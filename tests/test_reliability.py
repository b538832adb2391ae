"""Reliability: bad arguments, damaged checkpoints, the CLI's exit codes, and
the fault cases (kill and resume, threads, a soak) kept as regression tests.

The bad-argument cases are one matrix, `BAD_ARGUMENTS`: a row per bad value
of an argument of a public function (`tf1_bn.__all__`), with the exception
type and a message fragment that names the argument (and, where the value
prints, what was received). A new argument gets its rows there. Every row
also checks that nothing is left behind: no op, no variable, nothing in
UPDATE_OPS, no file.

Run as a script (`python tests/test_reliability.py train DIR`) this file is
the child the kill-and-resume test kills.
"""
import dataclasses
import os
import pathlib
import pickle
import re
import types
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

import numpy as np
import pytest
import tensorflow as tf

import reference
import tf1_bn
from tf1_bn.deploy import checkpoints
from tf1_bn.studies import cli

v1 = tf.compat.v1
UPDATE_OPS = v1.GraphKeys.UPDATE_OPS
INF, NAN = float('inf'), float('nan')
# Every wait on a child process or a thread is bounded: CI fails, never hangs.
CHILD_TIMEOUT_S = 120
THREAD_TIMEOUT_S = 60
# The soak's length: short in CI, the full 3000 steps with TF1_BN_SOAK_STEPS=3000.
SOAK_STEPS = int(os.environ.get('TF1_BN_SOAK_STEPS', '500'))


# --- the bad-argument matrix ---------------------------------------------------

class Env:
  """What a row calls into, built before the graph is measured: a graph with
  inputs, a loss, a session, a checkpoint, and tensors of another graph."""

  def __init__(self, graph, tmp_path, ckpt):
    self.graph, self.tmp, self.ckpt = graph, tmp_path, ckpt
    self.x = v1.placeholder(tf.float32, [4, 3], name='x')          # static batch of 4
    self.w = v1.get_variable('w', [3, 1])
    self.loss = tf.reduce_sum(tf.matmul(self.x, self.w))
    self.y = tf.identity(self.x, name='y')
    self.int_loss = tf.constant(1)
    # Tensors the rows pass, made here so that a row itself builds nothing.
    self.float_scalar = self.x[0, 0]
    self.string_weights = tf.constant(['a'] * 4)
    self.float_shape = tf.constant([4.0, 3.0])
    self.shape_2_3 = tf.constant([2, 3])
    self.shape_matrix = tf.constant([[4, 3]])
    self.optimizer = v1.train.GradientDescentOptimizer(0.1)
    self.sess = v1.Session(graph=graph)
    self.closed = v1.Session(graph=graph)
    self.closed.close()
    self.out = str(tmp_path / 'out')                                 # never created
    with tf.Graph().as_default():
      self.foreign = v1.placeholder(tf.float32, [4, 3], name='foreign')
      self.foreign_bool = v1.placeholder(tf.bool, [], name='foreign_bool')
      self.foreign_var = v1.get_variable('foreign_var', [1])
      self.foreign_weights = v1.placeholder(tf.float32, [4], name='foreign_weights')


@dataclasses.dataclass
class Bad:
  entry: str
  case: str
  call: Callable
  error: type
  fragment: str

  @property
  def id(self):
    return f'{self.entry}-{self.case}'


def _rows(entry, cases):
  return [Bad(entry, case, call, error, fragment)
          for case, (call, error, fragment) in cases.items()]


BN_LAYER = {
    'inputs_str': (lambda e: tf1_bn.bn_layer('x'), TypeError, r'`inputs`.*string'),
    'inputs_none': (lambda e: tf1_bn.bn_layer(None), TypeError, r'`inputs`'),
    'inputs_int': (lambda e: tf1_bn.bn_layer(np.ones([2, 3], np.int32)), TypeError,
                   r'`inputs`.*int32'),
    'inputs_other_graph': (lambda e: tf1_bn.bn_layer(e.foreign), ValueError,
                           r'`inputs`.*another graph'),
    'training_str': (lambda e: tf1_bn.bn_layer(e.x, training='yes'), TypeError,
                     r'`training`.*yes'),
    'training_int': (lambda e: tf1_bn.bn_layer(e.x, training=1), TypeError, r'`training`'),
    'training_float_tensor': (lambda e: tf1_bn.bn_layer(e.x, training=e.float_scalar), TypeError,
                              r'`training`.*float32'),
    'training_other_graph': (lambda e: tf1_bn.bn_layer(e.x, training=e.foreign_bool),
                             ValueError, r'`training`.*another graph'),
    'name_int': (lambda e: tf1_bn.bn_layer(e.x, name=3), TypeError, r'`name`.*3'),
    'name_empty': (lambda e: tf1_bn.bn_layer(e.x, name=''), TypeError, r'`name`.*non-empty'),
    'name_space': (lambda e: tf1_bn.bn_layer(e.x, name='my bn'), ValueError,
                   r"`name`.*'my bn'"),
    'moving_decay_high': (lambda e: tf1_bn.bn_layer(e.x, moving_decay=1.5), ValueError,
                          r'`moving_decay`.*\[0, 1\].*1\.5'),
    'moving_decay_nan': (lambda e: tf1_bn.bn_layer(e.x, moving_decay=NAN), ValueError,
                         r'`moving_decay`.*finite.*nan'),
    'moving_decay_str': (lambda e: tf1_bn.bn_layer(e.x, moving_decay='0.9'), TypeError,
                         r'`moving_decay`.*0\.9'),
    'eps_zero': (lambda e: tf1_bn.bn_layer(e.x, eps=0.0), ValueError, r'`eps`.*> 0.*0\.0'),
    'eps_negative': (lambda e: tf1_bn.bn_layer(e.x, eps=-1e-5), ValueError, r'`eps`.*> 0'),
    'eps_inf': (lambda e: tf1_bn.bn_layer(e.x, eps=INF), ValueError, r'`eps`.*finite.*inf'),
    'eps_nan': (lambda e: tf1_bn.bn_layer(e.x, eps=NAN), ValueError, r'`eps`.*finite.*nan'),
    'eps_numpy_inf': (lambda e: tf1_bn.bn_layer(e.x, eps=np.float32('inf')), ValueError,
                      r'`eps`.*finite'),
    'eps_str': (lambda e: tf1_bn.bn_layer(e.x, eps='1e-5'), TypeError, r'`eps`.*1e-5'),
    'eps_bool': (lambda e: tf1_bn.bn_layer(e.x, eps=True), TypeError, r'`eps`.*True'),
    'axis_range': (lambda e: tf1_bn.bn_layer(e.x, axis=2), ValueError, r'`axis`.*out of range'),
    'axis_float': (lambda e: tf1_bn.bn_layer(e.x, axis=1.0), TypeError, r'`axis`.*1\.0'),
    'axis_empty': (lambda e: tf1_bn.bn_layer(e.x, axis=[]), TypeError, r'`axis`.*\[\]'),
    'axis_twice': (lambda e: tf1_bn.bn_layer(e.x, axis=[1, -1]), ValueError,
                   r'`axis`.*same dimension twice'),
    'center_str': (lambda e: tf1_bn.bn_layer(e.x, center='yes'), TypeError, r'`center`.*yes'),
    'scale_int': (lambda e: tf1_bn.bn_layer(e.x, scale=1), TypeError, r'`scale`.*1'),
    'trainable_none': (lambda e: tf1_bn.bn_layer(e.x, trainable=None), TypeError,
                       r'`trainable`.*None'),
    'updates_unknown': (lambda e: tf1_bn.bn_layer(e.x, updates='later'), ValueError,
                        r'`updates`.*later'),
    'reuse_str': (lambda e: tf1_bn.bn_layer(e.x, reuse='yes'), TypeError, r'`reuse`.*yes'),
    'fused_str': (lambda e: tf1_bn.bn_layer(e.x, fused='yes'), TypeError, r'`fused`.*yes'),
}


def _drop_in_rows(layer, switch):
  """Rows for the arguments both drop-ins share, under one rule: `layer` is
  tf1_bn.batch_normalization or tf1_bn.batch_norm, `switch` its `training`."""
  def bad(**kwargs):
    return lambda e: layer(e.x, **kwargs)

  def renorm(clipping):
    return lambda e: layer(e.x, renorm=True, renorm_clipping=clipping)

  return {
      'inputs_str': (lambda e: layer('x'), TypeError, r'`inputs`.*string'),
      'inputs_other_graph': (lambda e: layer(e.foreign), ValueError,
                             r'`inputs`.*another graph'),
      'epsilon_negative': (bad(epsilon=-1e-3), ValueError, r'`epsilon`.*>= 0.*-0\.001'),
      'epsilon_inf': (bad(epsilon=INF), ValueError, r'`epsilon`.*finite.*inf'),
      'epsilon_nan': (bad(epsilon=NAN), ValueError, r'`epsilon`.*finite.*nan'),
      'epsilon_str': (bad(epsilon='0.001'), TypeError, r"`epsilon`.*'0\.001'"),
      'center_str': (bad(center='no'), TypeError, r"`center`.*'no'"),
      'scale_str': (bad(scale='no'), TypeError, r"`scale`.*'no'"),
      f'{switch}_str': (bad(**{switch: 'yes'}), TypeError, rf"`{switch}`.*'yes'"),
      f'{switch}_int': (bad(**{switch: 2}), TypeError, rf'`{switch}`.*2'),
      f'{switch}_float_tensor': (lambda e: layer(e.x, **{switch: e.float_scalar}), TypeError,
                                 rf'`{switch}`.*float32'),
      f'{switch}_other_graph': (lambda e: layer(e.x, **{switch: e.foreign_bool}), ValueError,
                                rf'`{switch}`.*another graph'),
      'trainable_str': (bad(trainable='no'), TypeError, r'`trainable`'),
      'reuse_str': (bad(reuse='x'), TypeError, r"`reuse`.*'x'"),
      'fused_str': (bad(fused='yes'), TypeError, r"`fused`.*'yes'"),
      'renorm_str': (bad(renorm='yes'), TypeError, r"`renorm`.*'yes'"),
      'renorm_clipping_int': (renorm(5), TypeError, r'`renorm_clipping`.*dict.*5'),
      'renorm_clipping_int_without_renorm': (bad(renorm_clipping=5), TypeError,
                                             r'`renorm_clipping`.*5'),
      'renorm_clipping_list': (renorm([('rmax', 3)]), TypeError, r'`renorm_clipping`.*list'),
      'renorm_clipping_key': (renorm({'rmax': 3, 'r': 1}), ValueError,
                              r"`renorm_clipping`.*unknown keys \['r'\]"),
      'renorm_clipping_rmax_nan': (renorm({'rmax': NAN}), ValueError,
                                   r"`renorm_clipping\['rmax'\]`.*finite.*nan"),
      'renorm_clipping_rmax_inf': (renorm({'rmax': INF}), ValueError,
                                   r"`renorm_clipping\['rmax'\]`.*finite.*inf"),
      'renorm_clipping_rmax_below_1': (renorm({'rmax': 0.5}), ValueError,
                                       r"`renorm_clipping\['rmax'\]`.*>= 1.*0\.5"),
      'renorm_clipping_rmin_above_1': (renorm({'rmin': 2}), ValueError,
                                       r"`renorm_clipping\['rmin'\]`.*<= 1.*2"),
      'renorm_clipping_rmin_nan': (renorm({'rmin': NAN}), ValueError,
                                   r"`renorm_clipping\['rmin'\]`.*finite"),
      'renorm_clipping_dmax_negative': (renorm({'dmax': -1}), ValueError,
                                        r"`renorm_clipping\['dmax'\]`.*>= 0.*-1"),
      'renorm_clipping_dmax_inf': (renorm({'dmax': INF}), ValueError,
                                   r"`renorm_clipping\['dmax'\]`.*finite"),
      'renorm_clipping_str_value': (renorm({'rmax': '3'}), TypeError,
                                    r"`renorm_clipping\['rmax'\]`.*'3'"),
      'renorm_clipping_bool_value': (renorm({'dmax': True}), TypeError,
                                     r"`renorm_clipping\['dmax'\]`.*True"),
      'renorm_clipping_tensor_value': (lambda e: layer(e.x, renorm=True,
                                                       renorm_clipping={'rmax': e.loss}),
                                       TypeError, r"`renorm_clipping\['rmax'\]`.*Python number"),
      'adjustment_int': (bad(adjustment=1), TypeError, r'`adjustment`.*1'),
  }


BATCH_NORMALIZATION = {
    **_drop_in_rows(tf1_bn.batch_normalization, 'training'),
    'axis_range': (lambda e: tf1_bn.batch_normalization(e.x, axis=5), ValueError,
                   r'`axis`.*out of range'),
    'axis_str': (lambda e: tf1_bn.batch_normalization(e.x, axis='-1'), TypeError,
                 r"`axis`.*'-1'"),
    'momentum_high': (lambda e: tf1_bn.batch_normalization(e.x, momentum=2.0), ValueError,
                      r'`momentum`.*2\.0'),
    'momentum_nan': (lambda e: tf1_bn.batch_normalization(e.x, momentum=NAN), ValueError,
                     r'`momentum`.*finite'),
    'beta_initializer_int': (lambda e: tf1_bn.batch_normalization(e.x, beta_initializer=3),
                             TypeError, r'`beta_initializer`.*3'),
    'gamma_initializer_name': (lambda e: tf1_bn.batch_normalization(e.x, gamma_initializer='twos'),
                               ValueError, r'`gamma_initializer`.*twos'),
    'moving_mean_initializer_int': (
        lambda e: tf1_bn.batch_normalization(e.x, moving_mean_initializer=0), TypeError,
        r'`moving_mean_initializer`'),
    'moving_variance_initializer_list': (
        lambda e: tf1_bn.batch_normalization(e.x, moving_variance_initializer=[1.0]), TypeError,
        r'`moving_variance_initializer`'),
    'beta_regularizer': (lambda e: tf1_bn.batch_normalization(e.x, beta_regularizer=0.1),
                         TypeError, r'`beta_regularizer`.*0\.1'),
    'gamma_regularizer': (lambda e: tf1_bn.batch_normalization(e.x, gamma_regularizer='l2'),
                          TypeError, r'`gamma_regularizer`.*l2'),
    'beta_constraint': (lambda e: tf1_bn.batch_normalization(e.x, beta_constraint=1),
                        TypeError, r'`beta_constraint`'),
    'gamma_constraint': (lambda e: tf1_bn.batch_normalization(e.x, gamma_constraint='nonneg'),
                         TypeError, r'`gamma_constraint`'),
    'name_int': (lambda e: tf1_bn.batch_normalization(e.x, name=3), TypeError, r'`name`.*3'),
    'name_space': (lambda e: tf1_bn.batch_normalization(e.x, name='a b'), ValueError,
                   r"`name`.*'a b'"),
    'renorm_momentum_high': (
        lambda e: tf1_bn.batch_normalization(e.x, renorm=True, renorm_momentum=1.5), ValueError,
        r'`renorm_momentum`.*1\.5'),
    'renorm_momentum_inf': (
        lambda e: tf1_bn.batch_normalization(e.x, renorm=True, renorm_momentum=INF), ValueError,
        r'`renorm_momentum`.*finite'),
    'virtual_batch_size_float': (
        lambda e: tf1_bn.batch_normalization(e.x, virtual_batch_size=2.5), TypeError,
        r'`virtual_batch_size`.*2\.5'),
    'virtual_batch_size_zero': (
        lambda e: tf1_bn.batch_normalization(e.x, virtual_batch_size=0), ValueError,
        r'`virtual_batch_size`.*>= 1.*0'),
    'virtual_batch_size_bool': (
        lambda e: tf1_bn.batch_normalization(e.x, virtual_batch_size=True), TypeError,
        r'`virtual_batch_size`'),
    'virtual_batch_size_not_multiple': (
        lambda e: tf1_bn.batch_normalization(e.x, virtual_batch_size=3), ValueError,
        r'batch size 4.*virtual_batch_size=3'),
}

BATCH_NORM = {
    **_drop_in_rows(tf1_bn.batch_norm, 'is_training'),
    'inputs_rank1': (lambda e: tf1_bn.batch_norm(np.ones([3], np.float32)), ValueError,
                     r'`inputs`.*rank'),
    'decay_high': (lambda e: tf1_bn.batch_norm(e.x, decay=1.5), ValueError, r'`decay`.*1\.5'),
    'decay_nan': (lambda e: tf1_bn.batch_norm(e.x, decay=NAN), ValueError, r'`decay`.*finite'),
    'activation_fn_str': (lambda e: tf1_bn.batch_norm(e.x, activation_fn='relu'), TypeError,
                          r'`activation_fn`.*relu'),
    'param_initializers_int': (lambda e: tf1_bn.batch_norm(e.x, param_initializers=5), TypeError,
                               r'`param_initializers`.*dict.*5'),
    'param_initializers_key': (lambda e: tf1_bn.batch_norm(e.x, param_initializers={'gama': None}),
                               ValueError, r"`param_initializers`.*unknown keys \['gama'\]"),
    'param_initializers_value': (lambda e: tf1_bn.batch_norm(e.x, param_initializers={'beta': 3}),
                                 TypeError, r"`param_initializers\['beta'\]`"),
    'param_regularizers_int': (lambda e: tf1_bn.batch_norm(e.x, param_regularizers=5), TypeError,
                               r'`param_regularizers`'),
    'param_regularizers_key': (
        lambda e: tf1_bn.batch_norm(e.x, param_regularizers={'moving_mean': None}), ValueError,
        r'`param_regularizers`.*unknown keys'),
    'param_regularizers_value': (
        lambda e: tf1_bn.batch_norm(e.x, param_regularizers={'gamma': 0.1}), TypeError,
        r"`param_regularizers\['gamma'\]`.*0\.1"),
    'updates_collections_int': (lambda e: tf1_bn.batch_norm(e.x, updates_collections=5),
                                TypeError, r'`updates_collections`.*5'),
    'updates_collections_list_of_int': (
        lambda e: tf1_bn.batch_norm(e.x, updates_collections=[1]), TypeError,
        r'`updates_collections`'),
    'variables_collections_int': (lambda e: tf1_bn.batch_norm(e.x, variables_collections=5),
                                  TypeError, r'`variables_collections`.*5'),
    'variables_collections_value': (
        lambda e: tf1_bn.batch_norm(e.x, variables_collections={'beta': 5}), TypeError,
        r"`variables_collections\['beta'\]`"),
    'outputs_collections_int': (lambda e: tf1_bn.batch_norm(e.x, outputs_collections=5),
                                TypeError, r'`outputs_collections`'),
    'batch_weights_str': (lambda e: tf1_bn.batch_norm(e.x, batch_weights='w'), TypeError,
                          r"`batch_weights`.*string 'w'"),
    'batch_weights_string_tensor': (
        lambda e: tf1_bn.batch_norm(e.x, batch_weights=e.string_weights), TypeError,
        r'`batch_weights`.*string'),
    'batch_weights_shape': (lambda e: tf1_bn.batch_norm(e.x, batch_weights=np.ones(5, np.float32)),
                            ValueError, r'`batch_weights`.*\[batch\].*\(5,\)'),
    'batch_weights_rank2': (
        lambda e: tf1_bn.batch_norm(e.x, batch_weights=np.ones([4, 1], np.float32)), ValueError,
        r'`batch_weights`.*\(4, 1\)'),
    'batch_weights_other_graph': (
        lambda e: tf1_bn.batch_norm(e.x, batch_weights=e.foreign_weights), ValueError,
        r'`batch_weights`.*another graph'),
    'data_format': (lambda e: tf1_bn.batch_norm(e.x, data_format='NCWH'), ValueError,
                    r'`data_format`.*NCWH'),
    'zero_debias_str': (lambda e: tf1_bn.batch_norm(e.x, zero_debias_moving_mean='x'),
                        TypeError, r'`zero_debias_moving_mean`'),
    'scope_int': (lambda e: tf1_bn.batch_norm(e.x, scope=5), TypeError, r'`scope`.*5'),
    'scope_space': (lambda e: tf1_bn.batch_norm(e.x, scope='my bn'), ValueError,
                    r"`scope`.*'my bn'"),
    'renorm_decay_negative': (lambda e: tf1_bn.batch_norm(e.x, renorm=True, renorm_decay=-0.1),
                              ValueError, r'`renorm_decay`.*-0\.1'),
    'renorm_with_batch_weights': (
        lambda e: tf1_bn.batch_norm(e.x, renorm=True, batch_weights=np.ones(4, np.float32)),
        ValueError, r'renorm.*batch_weights'),
}

DROPOUT = {
    'inputs_int': (lambda e: tf1_bn.dropout(np.ones([2, 3], np.int64), 0.5), TypeError,
                   r'`inputs`.*int64'),
    'inputs_other_graph': (lambda e: tf1_bn.dropout(e.foreign, 0.5), ValueError,
                           r'`inputs`.*another graph'),
    'rate_one': (lambda e: tf1_bn.dropout(e.x, 1.0), ValueError, r'`rate`.*\[0, 1\).*1\.0'),
    'rate_negative': (lambda e: tf1_bn.dropout(e.x, -0.1), ValueError, r'`rate`'),
    'rate_nan': (lambda e: tf1_bn.dropout(e.x, NAN), ValueError, r'`rate`.*finite'),
    'rate_str': (lambda e: tf1_bn.dropout(e.x, '0.5'), TypeError, r'`rate`'),
    'training_int_tensor': (lambda e: tf1_bn.dropout(e.x, 0.5, training=e.int_loss),
                            TypeError, r'`training`.*int32'),
    'noise_shape_incompatible': (lambda e: tf1_bn.dropout(e.x, 0.5, noise_shape=[1, 5]),
                                 ValueError, r'`noise_shape`.*\[1, 5\].*\(4, 3\).*1 or 3'),
    'noise_shape_too_long': (lambda e: tf1_bn.dropout(e.x, 0.5, noise_shape=[1, 4, 3]),
                             ValueError, r'`noise_shape`.*more dimensions'),
    'noise_shape_str': (lambda e: tf1_bn.dropout(e.x, 0.5, noise_shape='4,3'), TypeError,
                        r'`noise_shape`.*4,3'),
    'noise_shape_float_entry': (lambda e: tf1_bn.dropout(e.x, 0.5, noise_shape=[4, 1.5]),
                                TypeError, r'`noise_shape\[1\]`.*1\.5'),
    'noise_shape_negative': (lambda e: tf1_bn.dropout(e.x, 0.5, noise_shape=[-1, 3]),
                             ValueError, r'`noise_shape\[0\]`'),
    'noise_shape_float_tensor': (
        lambda e: tf1_bn.dropout(e.x, 0.5, noise_shape=e.float_shape), TypeError,
        r'`noise_shape`.*float32'),
    'noise_shape_constant_incompatible': (
        lambda e: tf1_bn.dropout(e.x, 0.5, noise_shape=e.shape_2_3), ValueError,
        r'`noise_shape`.*expected 1 or 4'),
    'noise_shape_matrix_tensor': (
        lambda e: tf1_bn.dropout(e.x, 0.5, noise_shape=e.shape_matrix), ValueError,
        r'`noise_shape`.*1-D'),
    'seed_str': (lambda e: tf1_bn.dropout(e.x, 0.5, seed='s'), TypeError, r"`seed`.*'s'"),
    'seed_float': (lambda e: tf1_bn.dropout(e.x, 0.5, seed=1.5), TypeError, r'`seed`.*1\.5'),
    'seed_bool': (lambda e: tf1_bn.dropout(e.x, 0.5, seed=True), TypeError, r'`seed`'),
    'seed_too_large': (lambda e: tf1_bn.dropout(e.x, 0.5, seed=2 ** 64), ValueError,
                       r'`seed`.*int'),
    'name_int': (lambda e: tf1_bn.dropout(e.x, 0.5, name=3), TypeError, r'`name`.*3'),
    'name_space': (lambda e: tf1_bn.dropout(e.x, 0.5, name='my dropout'), ValueError,
                   r'`name`'),
    'scale_at_inference_str': (lambda e: tf1_bn.dropout(e.x, 0.5, scale_at_inference='yes'),
                               TypeError, r'`scale_at_inference`'),
}

UPDATE_HELPERS = {
    'minimize-optimizer_none': (lambda e: tf1_bn.minimize(None, e.loss), TypeError,
                                r'`optimizer`.*None'),
    'minimize-optimizer_str': (lambda e: tf1_bn.minimize('adam', e.loss), TypeError,
                               r"`optimizer`.*'adam'"),
    'minimize-loss_str': (lambda e: tf1_bn.minimize(e.optimizer, 'loss'), TypeError,
                          r"`loss`.*'loss'"),
    'minimize-loss_float': (lambda e: tf1_bn.minimize(e.optimizer, 1.0), TypeError,
                            r'`loss`.*1\.0'),
    'minimize-loss_int_tensor': (lambda e: tf1_bn.minimize(e.optimizer, e.int_loss), TypeError,
                                 r'`loss`.*int32'),
    'minimize-loss_callable': (lambda e: tf1_bn.minimize(e.optimizer, lambda: e.loss), TypeError,
                               r'`loss`.*function'),
    'minimize-var_list_ints': (lambda e: tf1_bn.minimize(e.optimizer, e.loss, var_list=[1]),
                               TypeError, r'`var_list\[0\]`.*tf\.Variable.*1'),
    'minimize-var_list_other_graph': (
        lambda e: tf1_bn.minimize(e.optimizer, e.loss, var_list=[e.foreign_var]), ValueError,
        r'`var_list\[0\]`.*another graph'),
    'minimize-global_step_str': (lambda e: tf1_bn.minimize(e.optimizer, e.loss, global_step='x'),
                                 TypeError, r"`global_step`.*'x'"),
    'minimize-global_step_float_variable': (
        lambda e: tf1_bn.minimize(e.optimizer, e.loss, global_step=e.w), TypeError,
        r'`global_step`.*integer'),
    'minimize-name_int': (lambda e: tf1_bn.minimize(e.optimizer, e.loss, name=3), TypeError,
                          r'`name`.*3'),
    'minimize-unknown_kwarg': (lambda e: tf1_bn.minimize(e.optimizer, e.loss, var_lst=[e.w]),
                               TypeError, r'var_lst'),
    'check_update_ops-graph_str': (lambda e: tf1_bn.check_update_ops(e.loss, graph='g'),
                                   TypeError, r"`graph`.*'g'"),
    'check_update_ops-fetches_none': (lambda e: tf1_bn.check_update_ops(None), TypeError,
                                      r'`fetches`.*None'),
    'check_update_ops-fetches_name': (lambda e: tf1_bn.check_update_ops('train_op'), TypeError,
                                      r"`fetches`.*'train_op'"),
    'check_update_ops-fetches_other_graph': (
        lambda e: tf1_bn.check_update_ops(e.foreign, graph=e.graph), ValueError,
        r'`fetches`.*another graph'),
    'training_placeholder-graph_str': (lambda e: tf1_bn.training_placeholder('g'), TypeError,
                                       r"`graph`.*'g'"),
}

CHECKPOINT_TOOLS = {
    'restore-sess_none': (lambda e: tf1_bn.restore(None, e.ckpt), TypeError, r'`sess`.*None'),
    'restore-sess_graph': (lambda e: tf1_bn.restore(e.graph, e.ckpt), TypeError, r'`sess`'),
    'restore-sess_closed': (lambda e: tf1_bn.restore(e.closed, e.ckpt), ValueError,
                            r'`sess`.*closed'),
    'restore-ckpt_path_int': (lambda e: tf1_bn.restore(e.sess, 5), TypeError,
                              r'`ckpt_path`.*5'),
    'restore-ckpt_path_none': (lambda e: tf1_bn.restore(e.sess, None), TypeError,
                               r'`ckpt_path`.*None'),
    'restore-ckpt_path_missing': (lambda e: tf1_bn.restore(e.sess, e.out), tf1_bn.CheckpointError,
                                  r'out\.index: missing'),
    'restore-var_list_ints': (lambda e: tf1_bn.restore(e.sess, e.ckpt, var_list=[1, 2]),
                              TypeError, r'`var_list\[0\]`.*tf\.Variable.*1'),
    'restore-var_list_str': (lambda e: tf1_bn.restore(e.sess, e.ckpt, var_list='w'), TypeError,
                             r"`var_list`.*'w'"),
    'restore-var_list_dict': (lambda e: tf1_bn.restore(e.sess, e.ckpt, var_list={'w': e.w}),
                              TypeError, r'`var_list`.*dict'),
    'restore-var_list_empty': (lambda e: tf1_bn.restore(e.sess, e.ckpt, var_list=[]), ValueError,
                               r'`var_list` is empty'),
    'restore-var_list_other_graph': (
        lambda e: tf1_bn.restore(e.sess, e.ckpt, var_list=[e.foreign_var]), ValueError,
        r'`var_list\[0\]`.*another graph'),
    'inspect_checkpoint-path_int': (lambda e: tf1_bn.inspect_checkpoint(5), TypeError,
                                    r'`path`.*5'),
    'inspect_checkpoint-path_bytes': (lambda e: tf1_bn.inspect_checkpoint(b'model.ckpt'),
                                      TypeError, r'`path`'),
    'inspect_checkpoint-path_empty': (lambda e: tf1_bn.inspect_checkpoint(''), ValueError,
                                      r'`path`.*non-empty'),
    'inspect_checkpoint-missing': (lambda e: tf1_bn.inspect_checkpoint(e.out),
                                   tf1_bn.CheckpointError, r'No checkpoint at'),
    'inspect_checkpoint-empty_directory': (lambda e: tf1_bn.inspect_checkpoint(str(e.tmp)),
                                           tf1_bn.CheckpointError, r'No checkpoint found'),
    'port_checkpoint-in_path_none': (lambda e: tf1_bn.port_checkpoint(None, e.out, 'slim'),
                                     TypeError, r'`in_path`.*None'),
    'port_checkpoint-out_path_none': (lambda e: tf1_bn.port_checkpoint(e.ckpt, None, 'slim'),
                                      TypeError, r'`out_path`.*None'),
    'port_checkpoint-out_path_directory': (
        lambda e: tf1_bn.port_checkpoint(e.ckpt, str(e.tmp), 'slim'), ValueError,
        r'`out_path`.*a directory'),
    'port_checkpoint-to_unknown': (lambda e: tf1_bn.port_checkpoint(e.ckpt, e.out, 'keras'),
                                   ValueError, r"`to`.*one of.*'keras'"),
    'port_checkpoint-to_none': (lambda e: tf1_bn.port_checkpoint(e.ckpt, e.out, None),
                                ValueError, r'`to`.*None'),
    'port_checkpoint-in_path_missing': (lambda e: tf1_bn.port_checkpoint(e.out, e.out, 'slim'),
                                        tf1_bn.CheckpointError, r'No checkpoint at'),
    'export_inference-sess_none': (
        lambda e: tf1_bn.export_inference(None, {'x': e.x}, {'y': e.y}, e.out), TypeError,
        r'`sess`.*None'),
    'export_inference-sess_closed': (
        lambda e: tf1_bn.export_inference(e.closed, {'x': e.x}, {'y': e.y}, e.out), ValueError,
        r'`sess`.*closed'),
    'export_inference-inputs_list': (
        lambda e: tf1_bn.export_inference(e.sess, [e.x], {'y': e.y}, e.out), TypeError,
        r'`inputs`.*dict'),
    'export_inference-inputs_empty': (
        lambda e: tf1_bn.export_inference(e.sess, {}, {'y': e.y}, e.out), TypeError,
        r'`inputs`.*non-empty dict'),
    'export_inference-inputs_other_graph': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.foreign}, {'y': e.y}, e.out),
        TypeError, r'`inputs`.*graph'),
    'export_inference-outputs_value': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.x}, {'y': 3}, e.out), TypeError,
        r'`outputs`.*3'),
    'export_inference-outputs_key': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.x}, {1: e.y}, e.out), TypeError,
        r'`outputs`'),
    'export_inference-export_dir_none': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.x}, {'y': e.y}, None), TypeError,
        r'`export_dir`.*None'),
    'export_inference-export_dir_int': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.x}, {'y': e.y}, 5), TypeError,
        r'`export_dir`.*5'),
    'export_inference-export_dir_exists': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.x}, {'y': e.y}, str(e.tmp)),
        ValueError, r'`export_dir` must not exist yet'),
    'export_inference-fold_str': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.x}, {'y': e.y}, e.out, fold='yes'),
        TypeError, r'`fold`.*yes'),
    'export_inference-training_str': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.x}, {'y': e.y}, e.out,
                                          training='training'), TypeError, r'`training`'),
    'export_inference-training_float_tensor': (
        lambda e: tf1_bn.export_inference(e.sess, {'x': e.x}, {'y': e.y}, e.out,
                                          training=[e.x]), TypeError, r'`training`.*tf\.bool'),
}


def _enter(context):
  with context:
    pass


def _without_tf_slim(function):
  """Calls `function` as if tf-slim were not installed."""
  import importlib.util
  find_spec = importlib.util.find_spec
  importlib.util.find_spec = lambda name, *a: None if name == 'tf_slim' else find_spec(name, *a)
  try:
    return function()
  finally:
    importlib.util.find_spec = find_spec


SLIM_PATCH = {
    'patch_slim-tf_slim_missing': (lambda e: _without_tf_slim(tf1_bn.patch_slim), ImportError,
                                   r'tf-slim.*not installed.*pip install tf-slim'),
    'patch_slim-argument': (lambda e: tf1_bn.patch_slim(True), TypeError, r'positional argument'),
    'unpatch_slim-argument': (lambda e: tf1_bn.unpatch_slim(True), TypeError,
                              r'positional argument'),
    'patch_layers-argument': (lambda e: tf1_bn.patch_layers(True), TypeError,
                              r'positional argument'),
    'unpatch_layers-argument': (lambda e: tf1_bn.unpatch_layers(True), TypeError,
                                r'positional argument'),
}


PRECISE_BN = {
    'recompute_statistics-sess_none': (lambda e: tf1_bn.recompute_statistics(None, [{}]),
                                       TypeError, r'`sess`.*None'),
    'recompute_statistics-feeds_dict': (lambda e: tf1_bn.recompute_statistics(e.sess, {e.x: 1}),
                                        TypeError, r'`feeds`.*single dict'),
    'recompute_statistics-feeds_int': (lambda e: tf1_bn.recompute_statistics(e.sess, 3),
                                       TypeError, r'`feeds`.*int'),
    'recompute_statistics-estimator': (
        lambda e: tf1_bn.recompute_statistics(e.sess, [{}], estimator='median'), ValueError,
        r'`estimator`.*median'),
    'recompute_statistics-assign_str': (
        lambda e: tf1_bn.recompute_statistics(e.sess, [{}], assign='yes'), TypeError,
        r'`assign`.*yes'),
    'audit-sess_str': (lambda e: tf1_bn.audit('sess', [{}]), TypeError, r'`sess`.*sess'),
    'audit-feeds_dict': (lambda e: tf1_bn.audit(e.sess, {e.x: 1}), TypeError,
                         r'`feeds`.*single dict'),
}


REPLICA_HELPERS = {
    'tower-index_float': (lambda e: _enter(tf1_bn.tower(1.0, 2)), TypeError,
                          r'`index`.*1\.0'),
    'tower-count_str': (lambda e: _enter(tf1_bn.tower(0, '2')), TypeError, r"`count`.*'2'"),
    'tower-count_zero': (lambda e: _enter(tf1_bn.tower(0, 0)), ValueError,
                         r'`count`.*>= 1.*0'),
    'tower-index_out_of_range': (lambda e: _enter(tf1_bn.tower(3, 2)), ValueError,
                                 r'`index`.*\[0, 1\].*3'),
    'set_collective_timeout-zero': (lambda e: tf1_bn.set_collective_timeout(0), ValueError,
                                    r'`seconds`.*> 0.*0'),
    'set_collective_timeout-inf': (lambda e: tf1_bn.set_collective_timeout(INF), ValueError,
                                   r'`seconds`.*finite.*inf'),
    'set_collective_timeout-str': (lambda e: tf1_bn.set_collective_timeout('10'), TypeError,
                                   r"`seconds`.*'10'"),
    'collective_timeout-argument': (lambda e: tf1_bn.collective_timeout(5), TypeError,
                                    r'positional argument'),
    'bn_layer-synchronized_int': (lambda e: tf1_bn.bn_layer(e.x, synchronized=1), TypeError,
                                  r'`synchronized`.*1'),
    'batch_normalization-synchronized_str': (
        lambda e: tf1_bn.batch_normalization(e.x, synchronized='yes'), TypeError,
        r'`synchronized`.*yes'),
    'batch_normalization-synchronized_ghost_batches': (
        lambda e: tf1_bn.batch_normalization(e.x, synchronized=True, virtual_batch_size=2),
        ValueError, r'`synchronized=True`.*`virtual_batch_size`.*2'),
    'batch_norm-synchronized_none': (lambda e: tf1_bn.batch_norm(e.x, synchronized=None),
                                     TypeError, r'`synchronized`.*None'),
}


EXPORT_FIXTURES = pathlib.Path(__file__).parent / 'fixtures' / 'export'
FROZEN = str(EXPORT_FIXTURES / 'frozen.pb')
META = str(EXPORT_FIXTURES / 'layers' / 'model.ckpt.meta')


def _export(source=FROZEN, out=None, **kwargs):
  """tf1_bn.export_graph of a legacy fixture with the names it has."""
  kwargs.setdefault('inputs', ['x'])
  kwargs.setdefault('outputs', ['logits'])
  return lambda e: tf1_bn.export_graph(source, e.out if out is None else out(e), **kwargs)


EXPORT_GRAPH = {
    'export_graph-source_none': (_export(source=None), TypeError, r'`SOURCE`.*None'),
    'export_graph-source_missing': (_export(source='no/such/model.pb'), ValueError,
                                    r"SOURCE 'no/such/model.pb' does not exist"),
    'export_graph-out_int': (_export(out=lambda e: 5), TypeError, r'`OUT`.*5'),
    'export_graph-out_not_empty': (_export(out=lambda e: str(EXPORT_FIXTURES)), ValueError,
                                   r'OUT .*not empty.*--force'),
    'export_graph-outputs_unknown': (_export(outputs=['logit']), ValueError,
                                     r"--outputs 'logit' is not in the graph; close names: "
                                     r'logits'),
    'export_graph-inputs_unknown': (_export(inputs=['image']), ValueError,
                                    r"--inputs 'image' is not in the graph"),
    'export_graph-training_true': (_export(training=['is_training=true']), ValueError,
                                   r"--training 'is_training=true'"),
    'export_graph-training_not_a_switch': (_export(training=['logits']), ValueError,
                                           r"--training 'logits' is an op of type Identity"),
    'export_graph-checkpoint_missing': (
        _export(source=META, checkpoint='no/such/model.ckpt'), tf1_bn.CheckpointError,
        r'No checkpoint at'),
    'export_graph-data_without_input': (
        _export(data=str(EXPORT_FIXTURES / 'expected.npz')), ValueError,
        r"--data .*expected.npz' has no array for input 'x:0'"),
    'export_graph-rtol_zero': (_export(rtol=0), ValueError, r'`rtol`.*0'),
    'export_graph-batch_zero': (_export(batch=0), ValueError, r'`batch`.*>= 1.*0'),
    'export_graph-tflite_str': (_export(tflite='yes'), TypeError, r'`tflite`.*yes'),
}


def _split_rows(cases):
  """Rows whose case id is '<entry point>-<case>'."""
  return [Bad(*key.split('-', 1), call, error, fragment)
          for key, (call, error, fragment) in cases.items()]


BAD_ARGUMENTS = (_rows('bn_layer', BN_LAYER) + _rows('batch_normalization', BATCH_NORMALIZATION) +
                 _rows('batch_norm', BATCH_NORM) + _rows('dropout', DROPOUT) +
                 _split_rows(UPDATE_HELPERS) + _split_rows(CHECKPOINT_TOOLS) +
                 _split_rows(REPLICA_HELPERS) + _split_rows(SLIM_PATCH) +
                 _split_rows(PRECISE_BN) + _split_rows(EXPORT_GRAPH))


def _tiny_checkpoint(directory):
  """A valid checkpoint of the matrix graph's one variable."""
  return checkpoints.write_checkpoint({'w': np.ones([3, 1], np.float32)},
                                      str(directory / 'tiny' / 'model.ckpt'))


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
  return _tiny_checkpoint(tmp_path_factory.mktemp('tiny'))


def _graph_state(graph):
  return (len(graph.get_operations()), list(graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)),
          list(graph.get_collection(UPDATE_OPS)))


def test_every_public_function_has_rows():
  """Each callable of tf1_bn.__all__ (classes and the `layers` namespace module
  aside) is in the matrix."""
  functions = {name for name in tf1_bn.__all__
               if not isinstance(getattr(tf1_bn, name), (type, types.ModuleType))}
  assert functions == {row.entry for row in BAD_ARGUMENTS}


@pytest.mark.parametrize('row', BAD_ARGUMENTS, ids=lambda row: row.id)
def test_bad_argument(row, tmp_path, tiny_checkpoint):
  with tf.Graph().as_default() as graph:
    env = Env(graph, tmp_path, tiny_checkpoint)
    before = _graph_state(graph)
    files_before = sorted(tmp_path.rglob('*'))
    try:
      with pytest.raises(row.error, match=row.fragment) as raised:
        row.call(env)
    finally:
      env.sess.close()
    assert '\n' not in str(raised.value).strip(), 'a message of one line'
    assert _graph_state(graph) == before, 'an op, variable or update op left in the graph'
    assert sorted(tmp_path.rglob('*')) == files_before, 'a file left on disk'


# --- values the legacy accepts, and what they compute -----------------------------

def _normalized(x, axes, epsilon):
  mean, variance = reference.moments(x, axes)
  return reference.normalize(x, mean, variance, None, None, epsilon, axes)


# (layer, input shape, kwargs); `exact`: every legacy version uses epsilon as
# given on that path. On the others (the legacy's fused kernel) the epsilon
# floor depends on the TensorFlow version; the data there has variance >= 1,
# so a floor of 1e-5 moves the outputs by less than 1e-5 relative.
EPSILON_ZERO_PATHS = {
    'tf.layers 2-D (general path)': (tf1_bn.batch_normalization, [16, 3], {}, True),
    'tf.layers 4-D (fused)': (tf1_bn.batch_normalization, [4, 3, 3, 2], {}, False),
    'tf.layers 4-D NCHW (fused)': (tf1_bn.batch_normalization, [4, 2, 3, 3], {'axis': 1}, False),
    'tf.layers 4-D fused=False': (tf1_bn.batch_normalization, [4, 3, 3, 2], {'fused': False}, True),
    'tf.layers ghost batches': (tf1_bn.batch_normalization, [16, 3],
                                {'virtual_batch_size': 16}, True),
    'slim 2-D (fused)': (tf1_bn.batch_norm, [16, 3], {}, False),
    'slim 2-D fused=False': (tf1_bn.batch_norm, [16, 3], {'fused': False}, True),
    'slim 4-D (tf.layers path)': (tf1_bn.batch_norm, [4, 3, 3, 2], {}, False),
    'slim 4-D in place (fused)': (tf1_bn.batch_norm, [4, 3, 3, 2],
                                  {'updates_collections': None}, False),
    'slim zero-debiased (fused)': (tf1_bn.batch_norm, [16, 3], {'zero_debias_moving_mean': True},
                                   False),
    'tf.layers adjustment (general path)': (
        tf1_bn.batch_normalization, [16, 3],
        {'adjustment': lambda shape: (tf.ones(shape[-1:]), tf.zeros(shape[-1:]))}, True),
    'slim batch weights (general path)': (tf1_bn.batch_norm, [16, 3],
                                          {'batch_weights': np.ones(16, np.float32)}, True),
    'slim 4-D NCHW fused=False': (tf1_bn.batch_norm, [4, 2, 3, 3],
                                  {'data_format': 'NCHW', 'fused': False}, True),
}


@pytest.mark.parametrize('path', sorted(EPSILON_ZERO_PATHS))
def test_epsilon_zero_is_accepted_and_normalizes(path):
  layer, shape, kwargs, exact = EPSILON_ZERO_PATHS[path]
  scale = 1e-3 if exact else 3.0  # where exact, eps = 1e-5 would be 10x the variance
  data = (np.random.RandomState(0).randn(*shape) * scale + 0.5 * scale).astype(np.float32)
  axes = 1 if kwargs.get('axis') == 1 or kwargs.get('data_format') == 'NCHW' else -1
  slim = layer is tf1_bn.batch_norm
  switch, name = ('is_training', 'scope') if slim else ('training', 'name')
  with tf.Graph().as_default():
    x = tf.constant(data)
    train = layer(x, epsilon=0.0, **{switch: True, name: 'bn'}, **kwargs)
    infer = layer(x, epsilon=0.0, **{switch: False, name: 'bn'}, reuse=True, **kwargs)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      out_train, out_infer = sess.run([train, infer])
  assert reference.max_relative_error(out_train, _normalized(data, axes, 0.0)) < (
      1e-4 if exact else 1e-5)
  # Inference before any update: moving mean 0 and variance 1, so x / sqrt(1 + 0).
  assert reference.max_relative_error(out_infer, data) < (1e-6 if exact else 1e-5)


def test_epsilon_zero_in_renorm_gives_the_identity_on_the_first_step():
  """Batch renorm's first step with epsilon 0: r = batch stddev and d = batch
  mean (the averages start at 0 and 1), so the output is the input."""
  data = (np.random.RandomState(1).randn(16, 3) * 2 + 1).astype(np.float32)
  with tf.Graph().as_default():
    y = tf1_bn.batch_normalization(tf.constant(data), epsilon=0.0, renorm=True, training=True)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      np.testing.assert_allclose(sess.run(y), data, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('layer', ['batch_normalization', 'batch_norm'])
def test_renorm_clipping_at_its_bounds_is_plain_batch_norm(layer):
  """rmin = rmax = 1 and dmax = 0 clip r to 1 and d to 0: the output is plain
  BN of the batch (where unclipped renorm's first step is the identity)."""
  data = (np.random.RandomState(2).randn(16, 3) * 2 + 1).astype(np.float32)
  clipping = {'rmin': 1, 'rmax': 1.0, 'dmax': 0}
  with tf.Graph().as_default():
    x = tf.constant(data)
    if layer == 'batch_norm':
      y = tf1_bn.batch_norm(x, renorm=True, renorm_clipping=clipping, epsilon=1e-3)
    else:
      y = tf1_bn.batch_normalization(x, renorm=True, renorm_clipping=clipping, training=True)
    unclipped = tf1_bn.batch_normalization(x, renorm=True, training=True,
                                           renorm_clipping={'rmax': None, 'dmax': None})
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      clipped_out, unclipped_out = sess.run([y, unclipped])
  assert reference.max_relative_error(clipped_out, _normalized(data, -1, 1e-3)) < 1e-5
  np.testing.assert_allclose(unclipped_out, data, rtol=1e-4, atol=1e-4)


# --- dropout's noise_shape: None sizes, and the run-time check ----------------------

def test_noise_shape_none_takes_the_input_size():
  data = np.ones([50, 20], np.float32)
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [None, 20])
    y = tf1_bn.dropout(x, 0.5, training=True, noise_shape=[None, 1], seed=1)
    with v1.Session() as sess:
      out = sess.run(y, {x: data})
  assert all(len(np.unique(row)) == 1 for row in out)  # whole rows kept or dropped
  assert set(np.unique(out)) == {0.0, 2.0}


@pytest.mark.parametrize('kind', ['static list, dynamic batch', 'placeholder'])
def test_noise_shape_is_checked_when_the_op_runs(kind):
  with tf.Graph().as_default() as graph:
    x = v1.placeholder(tf.float32, [None, 4])
    feed = {}
    if kind == 'placeholder':
      noise = v1.placeholder(tf.int32, [2])
      feed[noise] = [3, 1]
    else:
      noise = [3, 1]
    y = tf1_bn.dropout(x, 0.5, training=True, noise_shape=noise, seed=1)
    graph.finalize()
    with v1.Session() as sess:
      out = sess.run(y, {x: np.ones([3, 4], np.float32), **feed})
      assert all(len(np.unique(row)) == 1 for row in out)
      with pytest.raises(tf.errors.InvalidArgumentError, match='`noise_shape`'):
        sess.run(y, {x: np.ones([5, 4], np.float32), **feed})
    if kind == 'placeholder':
      with v1.Session() as sess:
        with pytest.raises(tf.errors.InvalidArgumentError, match='`noise_shape`'):
          sess.run(y, {x: np.ones([3, 4], np.float32), noise: [3, 2]})


# --- damaged checkpoints × restore, inspect, port and the CLI ------------------------

def _data_file(prefix):
  return prefix + '.data-00000-of-00001'


def _truncate(prefix):
  path = _data_file(prefix)
  data = pathlib.Path(path).read_bytes()
  pathlib.Path(path).write_bytes(data[:len(data) // 2])
  return path


def _garbage_index(prefix):
  pathlib.Path(prefix + '.index').write_bytes(np.random.RandomState(0).bytes(300))
  return prefix + '.index'


def _garbage_data(prefix):
  path = pathlib.Path(_data_file(prefix))
  path.write_bytes(np.random.RandomState(1).bytes(path.stat().st_size))
  return str(path)


def _remove_data(prefix):
  os.remove(_data_file(prefix))
  return _data_file(prefix)


def _remove_index(prefix):
  os.remove(prefix + '.index')
  return prefix + '.index'


# damage: (what it does to the checkpoint, returning the file at fault; what
# the message must say about it)
DAMAGE = {
    'truncated_data': (_truncate, 'truncated'),
    'garbage_index': (_garbage_index, 'not a checkpoint index'),
    'garbage_data': (_garbage_data, 'corrupted'),
    'missing_data_shard': (_remove_data, 'missing'),
    'missing_index': (_remove_index, 'missing'),
}
CHANNELS = 64


def _bn_model():
  x = v1.placeholder(tf.float32, [None, CHANNELS])
  with v1.variable_scope('net'):
    return tf1_bn.bn_layer(x, name='bn')


def _damaged_checkpoint(tmp_path, damage):
  """A trained-looking bn_layer checkpoint with `damage` done to it; returns
  (prefix, the damaged file, what the message must say)."""
  with tf.Graph().as_default():
    _bn_model()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for variable in v1.global_variables():
        variable.load(np.random.RandomState(3).uniform(0.5, 2, CHANNELS), sess)
      prefix = v1.train.Saver().save(sess, str(tmp_path / 'ckpt' / 'model.ckpt'))
  damage_fn, reason = DAMAGE[damage]
  return prefix, damage_fn(prefix), reason


def _check_message(message, damaged_file, reason):
  assert damaged_file in message and reason in message, message
  assert '\n' not in message.strip()


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_damaged_checkpoint_restore_assigns_nothing(damage, tmp_path):
  prefix, damaged_file, reason = _damaged_checkpoint(tmp_path, damage)
  with tf.Graph().as_default():
    _bn_model()
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      before = sess.run(v1.global_variables())
      with pytest.raises(tf1_bn.CheckpointError) as raised:
        tf1_bn.restore(sess, prefix)
      after = sess.run(v1.global_variables())
  _check_message(str(raised.value), damaged_file, reason)
  assert raised.value.path == damaged_file
  assert [a.tobytes() for a in after] == [b.tobytes() for b in before]


@pytest.mark.parametrize('given', ['prefix', 'directory'])
@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_damaged_checkpoint_inspect_raises(damage, given, tmp_path):
  prefix, damaged_file, reason = _damaged_checkpoint(tmp_path, damage)
  with pytest.raises(tf1_bn.CheckpointError) as raised:
    tf1_bn.inspect_checkpoint(prefix if given == 'prefix' else os.path.dirname(prefix))
  _check_message(str(raised.value), damaged_file, reason)


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_damaged_checkpoint_port_writes_nothing(damage, tmp_path):
  prefix, damaged_file, reason = _damaged_checkpoint(tmp_path, damage)
  listing = sorted(tmp_path.rglob('*'))
  with pytest.raises(tf1_bn.CheckpointError) as raised:
    tf1_bn.port_checkpoint(prefix, str(tmp_path / 'ported' / 'model.ckpt'), 'tf.layers')
  _check_message(str(raised.value), damaged_file, reason)
  assert sorted(tmp_path.rglob('*')) == listing


@pytest.mark.parametrize('command', ['inspect', 'port'])
@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_damaged_checkpoint_cli_exits_2_with_one_line(damage, command, tmp_path, capsys):
  prefix, damaged_file, reason = _damaged_checkpoint(tmp_path, damage)
  listing = sorted(tmp_path.rglob('*'))
  argv = [command, prefix] + ([str(tmp_path / 'out' / 'model.ckpt'), '--to', 'slim']
                              if command == 'port' else [])
  assert cli.main(argv) == cli.EXIT_ERROR
  out, err = capsys.readouterr()
  assert out == ''
  assert err.startswith(f'tf1-bn {command}: error: ') and err.count('\n') == 1, err
  _check_message(err, damaged_file, reason)
  assert 'Traceback' not in err
  assert sorted(tmp_path.rglob('*')) == listing


def test_cli_debug_adds_the_traceback(tmp_path, capsys):
  prefix, damaged_file, _ = _damaged_checkpoint(tmp_path, 'truncated_data')
  assert cli.main(['inspect', '--debug', prefix]) == cli.EXIT_ERROR
  err = capsys.readouterr().err
  assert 'Traceback (most recent call last)' in err and 'CheckpointError' in err
  assert err.splitlines()[-1].startswith('tf1-bn inspect: error: ' + damaged_file)


def test_cli_exit_codes_clean_problems_and_bad_arguments(tmp_path, capsys):
  healthy = {'bn/moving_mean': np.full(3, 0.1, np.float32),
             'bn/moving_variance': np.full(3, 2.0, np.float32)}
  clean = checkpoints.write_checkpoint(healthy, str(tmp_path / 'clean' / 'model.ckpt'))
  flagged = checkpoints.write_checkpoint({**healthy, 'bn/moving_variance': -np.ones(3, np.float32)},
                                         str(tmp_path / 'flagged' / 'model.ckpt'))
  assert cli.main(['inspect', clean]) == cli.EXIT_OK
  assert cli.main(['inspect', flagged]) == cli.EXIT_PROBLEMS
  assert 'PROBLEM' in capsys.readouterr().out
  assert cli.main(['port', clean, str(tmp_path / 'ported' / 'model.ckpt'), '--to', 'slim']) == 0
  assert 'BatchNorm/moving_mean' in checkpoints.read_checkpoint(str(tmp_path / 'ported'
                                                                    / 'model.ckpt'))
  capsys.readouterr()
  for argv in (['inspect'], ['inspect', clean, 'extra'], ['port', clean, 'out', '--to', 'keras'],
               ['port', clean]):
    with pytest.raises(SystemExit) as exit_info:
      cli.main(argv)
    assert exit_info.value.code == cli.EXIT_ERROR, argv
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and ': error: ' in err and '--help' in err, (argv, err)


def test_cli_port_to_an_unwritable_place_exits_2(tmp_path, capsys):
  source = checkpoints.write_checkpoint({'bn/moving_mean': np.zeros(2, np.float32)},
                                        str(tmp_path / 'source' / 'model.ckpt'))
  (tmp_path / 'a_file').write_text('not a directory')
  listing = sorted(tmp_path.rglob('*'))
  assert cli.main(['port', source, str(tmp_path / 'a_file' / 'model.ckpt'), '--to', 'slim']) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'a_file' in err and 'Traceback' not in err, err
  assert sorted(tmp_path.rglob('*')) == listing


def test_error_families():
  """What a caller catches: a damaged file and a mismatched graph are both
  ValueErrors, told apart by their classes; both survive pickling (a worker
  process reporting to its parent)."""
  damaged = tf1_bn.CheckpointError('/ckpt/model.ckpt.index', 'not a checkpoint index')
  mismatch = tf1_bn.RestoreError('net/bn/gamma found no source', missing=['net/bn/gamma'])
  missing_updates = tf1_bn.MissingUpdateOpsError('bn skipped', layers=['bn'])
  assert isinstance(damaged, ValueError) and isinstance(mismatch, ValueError)
  assert not isinstance(damaged, tf1_bn.RestoreError)
  assert not isinstance(mismatch, tf1_bn.CheckpointError)
  assert isinstance(missing_updates, RuntimeError)
  for error, attribute in ((damaged, 'path'), (mismatch, 'missing'), (missing_updates, 'layers')):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert getattr(copy, attribute) == getattr(error, attribute)
  assert str(damaged) == '/ckpt/model.ckpt.index: not a checkpoint index'


def test_exit_codes_are_in_the_help(capsys):
  for argv, statuses in (([], ('0  success', '1  problems found', '2  the arguments are wrong')),
                         (['inspect'], ('0  no problem', '1  a layer was flagged',
                                        '2  the checkpoint could not be found')),
                         (['port'], ('0  the ported checkpoint', '2  nothing was written'))):
    with pytest.raises(SystemExit):
      cli.main(argv + ['--help'])
    out = ' '.join(capsys.readouterr().out.split(' '))
    assert 'exit status:' in out and all(status in out for status in statuses), (argv, out)


# TensorFlow's own start-up log lines (absl / C++) on stderr, not tf1_bn's.
_NATIVE_LOG = re.compile(r'^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl)')


def test_the_command_in_a_process_of_its_own(tmp_path):
  """`tf1-bn inspect` as a script runs it: status 2, one line, no traceback."""
  prefix, damaged_file, reason = _damaged_checkpoint(tmp_path, 'garbage_index')
  result = subprocess.run([sys.executable, '-m', 'tf1_bn.studies.cli', 'inspect', prefix],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 2
  ours = [line for line in result.stderr.splitlines() if not _NATIVE_LOG.match(line)]
  assert len(ours) == 1 and 'Traceback' not in result.stderr, result.stderr
  _check_message(ours[0], damaged_file, reason)


def test_port_replaces_an_existing_output_only_when_complete(tmp_path):
  """A port onto an existing checkpoint that fails leaves the old one intact;
  one that succeeds replaces it, leaving no temporary file behind."""
  old = checkpoints.write_checkpoint({'old': np.ones(2, np.float32)},
                                     str(tmp_path / 'out' / 'model.ckpt'))
  old_bytes = {p.name: p.read_bytes() for p in (tmp_path / 'out').iterdir()}
  prefix, _, _ = _damaged_checkpoint(tmp_path, 'garbage_data')
  with pytest.raises(tf1_bn.CheckpointError):
    tf1_bn.port_checkpoint(prefix, old, 'slim')
  assert {p.name: p.read_bytes() for p in (tmp_path / 'out').iterdir()} == old_bytes
  source = checkpoints.write_checkpoint({'m/bn/moving_mean': np.zeros(2, np.float32),
                                         'm/bn/moving_variance': np.ones(2, np.float32)},
                                        str(tmp_path / 'source' / 'model.ckpt'))
  tf1_bn.port_checkpoint(source, old, 'slim')
  # The old files replaced, and port's `checkpoint` state file next to them.
  assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == \
      sorted([*old_bytes, checkpoints.STATE_FILE])
  assert set(checkpoints.read_checkpoint(old)) == {'m/BatchNorm/moving_mean',
                                                   'm/BatchNorm/moving_variance'}


# --- faults that tf1_bn survives today, kept as regression tests -----------------

FAULT_FEATURES = 6
FAULT_SAVE_EVERY = 5


def _fault_model():
  """A small MLP with both BN styles and a momentum optimizer (whose slots are
  state too). No dropout: a stateful random op restarts its sequence in a
  new session, so no run with it resumes bit for bit."""
  v1.set_random_seed(7)
  x = v1.placeholder(tf.float32, [None, FAULT_FEATURES], name='x')
  labels = v1.placeholder(tf.int64, [None], name='labels')
  h = tf.matmul(x, v1.get_variable('w1', [FAULT_FEATURES, 16]))
  h = tf.nn.relu(tf1_bn.bn_layer(h, name='bn1'))
  h = tf.matmul(h, v1.get_variable('w2', [16, 8]))
  h = tf.nn.relu(tf1_bn.batch_normalization(h, training=tf1_bn.training_placeholder()))
  logits = tf.matmul(h, v1.get_variable('w3', [8, 3]))
  loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                       logits=logits))
  step = v1.train.get_or_create_global_step()
  train = tf1_bn.minimize(v1.train.MomentumOptimizer(0.05, 0.9), loss, global_step=step)
  return x, labels, logits, train, step


def _fault_batch(step, size=32):
  """The batch of a step: a function of the step only, so a resumed run sees
  the same data as an uninterrupted one."""
  rng = np.random.RandomState(1000 + step)
  features = rng.randn(size, FAULT_FEATURES).astype(np.float32)
  return features, (features[:, 0] > 0).astype(np.int64) + (features[:, 1] > 0)


def _single_threaded():
  return v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)


def train_from_latest(ckpt_dir, until_step=None):
  """Trains from the latest checkpoint in `ckpt_dir` (else from scratch) up
  to `until_step` (forever when None), saving every FAULT_SAVE_EVERY steps.
  Returns {variable name: value} at the end."""
  with tf.Graph().as_default():
    x, labels, _, train, step = _fault_model()
    saver = v1.train.Saver(max_to_keep=3)
    with v1.Session(config=_single_threaded()) as sess:
      latest = tf.train.latest_checkpoint(ckpt_dir)
      if latest:
        saver.restore(sess, latest)
      else:
        sess.run(v1.global_variables_initializer())
      current = sess.run(step)
      while until_step is None or current < until_step:
        features, targets = _fault_batch(current)
        sess.run(train, {x: features, labels: targets, tf1_bn.training_placeholder(): True})
        current = sess.run(step)  # not fetched with `train`: it may read before or after
        if current % FAULT_SAVE_EVERY == 0:
          saver.save(sess, os.path.join(ckpt_dir, 'model.ckpt'), global_step=current)
      return {v.op.name: sess.run(v) for v in v1.global_variables()}


def test_kill_9_mid_training_then_resume_is_bit_identical(tmp_path):
  killed_dir = str(tmp_path / 'killed')
  os.makedirs(killed_dir)
  child = subprocess.Popen([sys.executable, __file__, 'train', killed_dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  try:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    latest = None
    while time.monotonic() < deadline and child.poll() is None:
      latest = tf.train.latest_checkpoint(killed_dir)
      if latest and int(latest.rsplit('-', 1)[1]) >= 2 * FAULT_SAVE_EVERY:
        break
      time.sleep(0.05)
    assert child.poll() is None, f'the child ended: {child.stderr.read().decode()[-2000:]}'
    assert latest, 'no checkpoint before the deadline'
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=CHILD_TIMEOUT_S) == -signal.SIGKILL
  finally:
    if child.poll() is None:
      child.kill()
      child.wait(timeout=CHILD_TIMEOUT_S)
    child.stderr.close()
  # Resume from whatever the killed run left last, 20 steps further; the
  # reference trains as far in one go.
  stop = int(tf.train.latest_checkpoint(killed_dir).rsplit('-', 1)[1]) + 20
  resumed = train_from_latest(killed_dir, stop)
  uninterrupted = train_from_latest(str(tmp_path / 'uninterrupted'), stop)
  assert sorted(resumed) == sorted(uninterrupted)
  assert resumed['global_step'] == stop
  for name, value in uninterrupted.items():
    assert resumed[name].tobytes() == value.tobytes(), name


def _shared_session_model():
  x = v1.placeholder(tf.float32, [None, 5, 5, 4], name='x')
  h = tf1_bn.bn_layer(x, name='bn_layer')
  h = tf1_bn.batch_normalization(h, training=tf1_bn.training_placeholder(), axis=1)
  normalized = tf1_bn.batch_norm(h, is_training=tf1_bn.training_placeholder(), scale=True)
  return x, normalized, tf1_bn.dropout(normalized, 0.3)


def test_eight_threads_sharing_a_session_match_one_thread():
  """Inference and training-mode forward passes (no update run) from 8
  threads on one session give bit for bit what one thread gets. (Training
  mode fetches the BN output only: dropout's random mask comes from one
  stateful generator, so its values depend on the order of the runs.)"""
  rng = np.random.RandomState(5)
  batches = [rng.randn(8, 5, 5, 4).astype(np.float32) * 2 + 1 for _ in range(32)]
  with tf.Graph().as_default() as graph:
    x, normalized, dropped = _shared_session_model()
    with v1.Session() as sess:
      for variable in v1.global_variables():  # statistics away from the initial 0 / 1
        variable.load(rng.uniform(0.5, 2, variable.shape), sess)
      switch = tf1_bn.training_placeholder()  # the default graph is per thread
      graph.finalize()

      def run(batch):
        inference = sess.run([normalized, dropped], {x: batch})
        training = sess.run(normalized, {x: batch, switch: True})
        return [a.tobytes() for a in inference + [training]]

      expected = [run(batch) for batch in batches]
      results, errors = {}, []

      def worker(index):
        try:
          for i in range(index, len(batches), 8):
            results[i] = run(batches[i])
        except Exception as error:  # reported by the main thread
          errors.append(error)

      threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
      for thread in threads:
        thread.start()
      for thread in threads:
        thread.join(timeout=THREAD_TIMEOUT_S)
      assert not any(thread.is_alive() for thread in threads), 'a thread hung'
  assert not errors, errors
  assert [results.get(i) for i in range(len(batches))] == expected


def test_soak_on_a_finalized_graph(tmp_path):
  """SOAK_STEPS training steps with an evaluation every 10 and a checkpoint
  every 50, on a finalized graph: nothing adds an op, every step runs, the
  moving statistics stay finite and match the last batch's trend."""
  with tf.Graph().as_default() as graph:
    x, labels, logits, train, step = _fault_model()
    saver = v1.train.Saver(max_to_keep=2)
    check = tf1_bn.check_update_ops(train)
    initialize = v1.global_variables_initializer()
    graph.finalize()
    ops = len(graph.get_operations())
    with v1.Session(config=_single_threaded()) as sess:
      sess.run(initialize)
      for current in range(SOAK_STEPS):
        features, targets = _fault_batch(current)
        sess.run(train, {x: features, labels: targets, tf1_bn.training_placeholder(): True})
        if current % 10 == 0:
          sess.run(logits, {x: features})
        if current % 50 == 0:
          saver.save(sess, str(tmp_path / 'model.ckpt'), global_step=current)
      assert sess.run(step) == SOAK_STEPS
      statistics = {v.op.name: sess.run(v) for v in v1.global_variables()
                    if 'moving_' in v.op.name}
  assert check is None
  assert len(graph.get_operations()) == ops
  assert statistics and all(np.all(np.isfinite(value)) for value in statistics.values())
  assert not tf1_bn.inspect_checkpoint(str(tmp_path)).layers[0].flags


if __name__ == '__main__' and sys.argv[1:2] == ['train']:
  # The child of the kill-and-resume test: train until killed.
  train_from_latest(sys.argv[2])


# --- the data guard: effective examples --------------------------------------

@pytest.mark.parametrize('fused', [None, False])
def test_zero_total_batch_weight_is_an_empty_batch(fused):
  # slim's weighted moments of an all-zero weighting are 0 / 0: the moving
  # statistics must not move toward them. A batch with some weight does.
  data = np.random.RandomState(0).randn(4, 3).astype(np.float32) * 2 + 5
  with tf.Graph().as_default():
    x = v1.placeholder(tf.float32, [4, 3])
    weights = v1.placeholder(tf.float32, [4])
    tf1_bn.batch_norm(x, batch_weights=weights, decay=0.5, fused=fused)
    moving = [v for v in v1.global_variables() if 'moving' in v.op.name]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      before = sess.run(moving)
      sess.run(v1.get_collection(UPDATE_OPS), {x: data, weights: np.zeros(4, np.float32)})
      unchanged = sess.run(moving)
      sess.run(v1.get_collection(UPDATE_OPS), {x: data, weights: [0, 1, 1, 0]})
      after = sess.run(moving)
  for b, u in zip(before, unchanged):
    assert b.tobytes() == u.tobytes()
  mean, var = reference.moments(data[1:3], -1)
  np.testing.assert_allclose(after[0], 0.5 * mean, rtol=1e-5)
  np.testing.assert_allclose(after[1], 0.5 + 0.5 * var, rtol=1e-5)
