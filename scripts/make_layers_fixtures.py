"""Writes tests/fixtures/tf_layers/ with the real tf.compat.v1.layers of TensorFlow 2.12.

Run with a TensorFlow 2.12 environment (the same one as
scripts/make_legacy_fixtures.py):

  /work/tf212/bin/python scripts/make_layers_fixtures.py

Builds tests/layers_fixture_model.py with TensorFlow 2.12's own legacy layers,
trains 3 steps (so the moving statistics move), then saves its checkpoint
(model.ckpt, a default Saver) and model.npz: the variable names, and the
inference and training-mode logits on a fixed batch.
tests/test_tf_layers_fixtures.py restores the checkpoint into the same code
run on tf1_bn's layers and compares.
"""
import os
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
sys.path.insert(0, str(ROOT / 'scripts'))
OUT = ROOT / 'tests' / 'fixtures' / 'tf_layers'


def main():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import numpy as np
  import tensorflow as tf
  import layers_fixture_model as model
  from make_legacy_fixtures import write_versions
  v1 = tf.compat.v1
  tmp = OUT.with_name('tf_layers.tmp')
  if tmp.exists():
    shutil.rmtree(tmp)
  tmp.mkdir(parents=True)
  with tf.Graph().as_default():
    v1.set_random_seed(0)
    training = v1.placeholder(tf.bool, [], name='training')
    x, logits = model.build(tf, training)
    loss = tf.reduce_mean(tf.square(logits - 0.5))
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
      step = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
    batches = model.batches(4)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for batch in batches[1:]:
        sess.run(step, {x: batch, training: True})
      v1.train.Saver().save(sess, str(tmp / 'model.ckpt'), write_meta_graph=False)
      infer = sess.run(logits, {x: batches[0], training: False})
      train = sess.run(logits, {x: batches[0], training: True})
      names = sorted(v.name for v in v1.global_variables())
  (tmp / 'checkpoint').unlink()  # holds absolute paths
  np.savez(tmp / 'model.npz', x=batches[0], infer=infer, train=train, names=np.array(names))
  write_versions(tmp, ('tensorflow-cpu', 'keras', 'numpy'))
  if OUT.exists():
    shutil.rmtree(OUT)
  tmp.rename(OUT)
  print(f'wrote {OUT}: {len(names)} variables')


if __name__ == '__main__':
  main()
