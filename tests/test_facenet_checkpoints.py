"""facenet's pattern round-trips checkpoints both ways with the real slim.

davidsandberg/facenet puts the moving statistics in TRAINABLE_VARIABLES,
updates them in place with a tensor is_training, and asks Adam for the
gradients of every global variable. The real slim gives the moving
statistics no gradient, so Adam creates no slots for them; a port must do the
same, or its graph holds variables (`.../moving_mean/Adam`) that no legacy
checkpoint has and a default Saver cannot restore one. Here a facenet-style
model (tests/facenet_style_child.py) is trained and saved by the real slim,
restored, trained and saved by `tf1_bn.patch_slim()` (in this process), and
restored by the real slim again (each real run in a child process); the variables (slot variables
included) match by name and shape, and each restore reproduces the saver's
outputs.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tf1_bn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHILD_TIMEOUT_S = 300


def _child(tmp, impl, name, restore=None, save=None):
  out = str(tmp / f'{name}.json')
  command = [sys.executable, os.path.join(HERE, 'facenet_style_child.py'), impl, out]
  if restore:
    command += ['--restore', restore]
  if save:
    command += ['--save', save]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join([ROOT] + [p for p in env.get('PYTHONPATH', '').split(
      os.pathsep) if p])
  done = subprocess.run(command, env=env, capture_output=True, text=True,
                        timeout=CHILD_TIMEOUT_S)
  assert done.returncode == 0, done.stderr[-4000:]
  with open(out) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def round_trip(tmp_path_factory):
  pytest.importorskip('tf_slim')
  tmp = tmp_path_factory.mktemp('facenet')
  real_prefix, ours_prefix = str(tmp / 'real' / 'model.ckpt'), str(tmp / 'ours' / 'model.ckpt')
  real = _child(tmp, 'real', 'real', save=real_prefix)
  # The real slim's batch_norm needs aliases in TensorFlow itself, so it
  # runs in children; tf1_bn's side runs here, patched for the block.
  sys.path.insert(0, HERE)
  import facenet_style_child
  with tf1_bn.patch_slim():
    ours = facenet_style_child.train(restore=real_prefix, save=ours_prefix)
  back = _child(tmp, 'real', 'back', restore=ours_prefix)
  return real, ours, back


def test_the_same_variables_and_slots(round_trip):
  real, ours, back = round_trip
  assert ours['variables'] == real['variables'] == back['variables']
  names = [name for name, _ in real['variables']]
  assert any(n.endswith('BatchNorm/moving_mean') for n in names)
  assert any(n.endswith('BatchNorm/beta/Adam') for n in names)
  assert not any('moving_' in n and '/Adam' in n for n in names)


def test_the_moving_statistics_get_no_gradient(round_trip):
  real, ours, _ = round_trip
  assert ours['gradients'] == real['gradients']
  assert not any('moving_' in name for name in real['gradients'])


def test_restores_give_the_savers_outputs(round_trip):
  real, ours, back = round_trip
  # tf1_bn restoring the real slim's checkpoint, then the real slim
  # restoring tf1_bn's: each evaluates as the saving side did.
  np.testing.assert_allclose(ours['before'], real['after'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(back['before'], ours['after'], rtol=1e-5, atol=1e-6)
  # and training moved the model (the round trip carries trained values)
  assert np.max(np.abs(np.subtract(ours['after'], ours['before']))) > 1e-4
