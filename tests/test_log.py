"""One-time warnings: emitted once, through `warnings` only, at the user's line."""
import inspect
import logging
import warnings

import tensorflow as tf

import tf1_bn
from tf1_bn.common import log

v1 = tf.compat.v1


def test_one_time_warning_names_the_callers_line_once(monkeypatch, caplog):
  monkeypatch.setattr(log, '_warned', set())
  caplog.set_level(logging.DEBUG)
  with tf.Graph().as_default(), warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    x = v1.placeholder(tf.float32, [None, 7])
    line = inspect.currentframe().f_lineno + 1
    tf1_bn.batch_normalization(x, fused=True, renorm=True, training=True)
    tf1_bn.batch_normalization(x, fused=True, renorm=True, training=True)
  ours = [w for w in caught if 'fused=True falls back' in str(w.message)]
  assert len(ours) == 1
  assert (ours[0].filename, ours[0].lineno) == (__file__, line)
  assert ours[0].category is UserWarning and 'renorm' in str(ours[0].message)
  assert not [r for r in caplog.records if r.name.startswith('tf1_bn')]  # no logger line


def test_stacklevel_skips_every_tf1_bn_frame():
  def inside_tf1_bn():
    # A frame whose file is under tf1_bn/, as the library's own code is.
    code = compile('def call(f):\n  return f()\n', log.__file__, 'exec')
    namespace = {}
    exec(code, namespace)
    return namespace['call'](log.user_stacklevel)

  # user_stacklevel's caller is the `call` frame (in tf1_bn): level 1 is
  # skipped, level 2 is inside_tf1_bn, this test's helper (not in tf1_bn).
  assert inside_tf1_bn() == 2
