"""A checkpoint written by TensorFlow 2.12's own tf.compat.v1.layers restores into tf1_bn's layers.

tests/fixtures/tf_layers/ (scripts/make_layers_fixtures.py, run on TensorFlow
2.12.1) holds a trained model's checkpoint and its logits. The same model
code (tests/layers_fixture_model.py) runs here after `tf1_bn.patch_layers()`:
the same variable names, a default `Saver` restores the checkpoint, and the
inference and training-mode logits match the recorded ones.
"""
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import layers_fixture_model as model
import tf1_bn
from reference import max_relative_error

FIXTURE = pathlib.Path(__file__).resolve().parent / 'fixtures' / 'tf_layers'


@pytest.fixture(scope='module')
def restored():
  recorded = np.load(FIXTURE / 'model.npz')
  with tf1_bn.patch_layers(), tf.Graph().as_default():
    training = tf.compat.v1.placeholder(tf.bool, [], name='training')
    x, logits = model.build(tf, training)
    names = sorted(v.name for v in tf.compat.v1.global_variables())
    with tf.compat.v1.Session() as sess:
      tf.compat.v1.train.Saver().restore(sess, str(FIXTURE / 'model.ckpt'))
      infer = sess.run(logits, {x: recorded['x'], training: False})
      train = sess.run(logits, {x: recorded['x'], training: True})
  return recorded, names, infer, train


def test_same_variable_names(restored):
  recorded, names, _, _ = restored
  assert names == list(recorded['names'])


@pytest.mark.parametrize('mode', ['infer', 'train'])
def test_restored_outputs_match_legacy(restored, mode):
  recorded, _, infer, train = restored
  ours = {'infer': infer, 'train': train}[mode]
  assert max_relative_error(ours, recorded[mode]) <= 1e-5
