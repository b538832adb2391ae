import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture
def graph():
  """A fresh default graph for one test."""
  g = tf.Graph()
  with g.as_default():
    yield g


@pytest.fixture
def rng():
  return np.random.RandomState(1234)


def run(graph, fetches, feed=None, init=True):
  with tf.compat.v1.Session(graph=graph) as sess:
    if init:
      sess.run(tf.compat.v1.global_variables_initializer())
    return sess.run(fetches, feed)
