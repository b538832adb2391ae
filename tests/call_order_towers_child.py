"""Child process of tests/test_call_order.py: synchronized layers on two
hand-built towers (two logical CPUs, configured before TensorFlow starts),
each applying the discriminator to its real then its fake batch.

    python call_order_towers_child.py OUT_JSON

Writes, for each front-end, the moving statistics after every step of
every run, and each step's BN inputs of the first run per tower and call
(for the parent's numpy replay over the global batch).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import replicated  # noqa: E402

replicated.configure_cpus(2)

import tf1_bn  # noqa: E402
import test_call_order as cases  # noqa: E402

v1 = tf.compat.v1
TOWERS = 2
STEPS, RUNS = 6, 3
COLLECTIVE_TIMEOUT_S = 60  # a hang is an error, soon
FRONT_ENDS = {
    'bn_layer': lambda n, x, t: cases._bn_layer(n, x, t, synchronized=True),
    'batch_normalization': lambda n, x, t: cases._layers(n, x, t, synchronized=True),
    'batch_norm': lambda n, x, t: cases._slim(n, x, t, synchronized=True),
}


def _build(bn):
  training = v1.placeholder(tf.bool, [], name='is_training')
  reals, noises, inputs, outputs = [], [], [], []
  for i in range(TOWERS):
    with tf.device(f'/cpu:{i}'), tf1_bn.tower(i, TOWERS), \
        v1.variable_scope('', reuse=i > 0):
      real = v1.placeholder(tf.float32, [cases.BATCH, 8, 8, 3])
      noise = v1.placeholder(tf.float32, [cases.BATCH, 16])
      generator = v1.get_variable('generator', initializer=cases._weights(2, [16, 192]))
      fake = tf.reshape(tf.tanh(noise @ generator), [cases.BATCH, 8, 8, 3])
      start = len(v1.get_collection(cases.BN_INPUTS))
      outputs.append(cases._discriminator(real, bn, training, reuse=i > 0))
      outputs.append(cases._discriminator(fake, bn, training, reuse=True))
      inputs.append(v1.get_collection(cases.BN_INPUTS)[start:])
      reals.append(real)
      noises.append(noise)
  return training, reals, noises, inputs, outputs


def run(bn, data):
  with tf.Graph().as_default():
    # Every tower's outputs are fetched: a synchronized layer's all-sum
    # needs every tower's call.
    training, reals, noises, inputs, outputs = _build(bn)
    updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
    # Tower 0 updates for both towers (its scopes: discriminator, _1).
    names = {getattr(u, 'op', u).name.split('/')[0] for u in updates}
    assert names == {'discriminator', 'discriminator_1'}, names
    leaves = ('moving_mean', 'moving_variance')
    moving = [v for v in v1.global_variables() if v.op.name.split('/')[-1] in leaves]
    # replicated's session: enough inter-op threads that blocked
    # collectives cannot starve the pool.
    config = replicated.session_config()
    runs, first_inputs = [], None
    with v1.Session(config=config) as sess:
      for r in range(RUNS):
        sess.run(v1.global_variables_initializer())
        states, step_inputs = [], []
        for step in data:
          feed = {training: True}
          for i in range(TOWERS):
            feed[reals[i]], feed[noises[i]] = step[i]
          _, _, got = sess.run([outputs, updates, inputs], feed)
          step_inputs.append([[x.tolist() for x in tower] for tower in got])
          states.append([m.tolist() for m in sess.run(moving)])
        runs.append(states)
        if r == 0:
          first_inputs = step_inputs
  return {'runs': runs, 'inputs': first_inputs}


def main(out):
  tf1_bn.set_collective_timeout(COLLECTIVE_TIMEOUT_S)
  rng = np.random.RandomState(11)
  data = [[((rng.rand(cases.BATCH, 8, 8, 3) * 2 - 1 + 0.2 * i).astype(np.float32),
            rng.randn(cases.BATCH, 16).astype(np.float32)) for i in range(TOWERS)]
          for _ in range(STEPS)]
  report = {name: run(bn, data) for name, bn in FRONT_ENDS.items()}
  with open(out, 'w') as f:
    json.dump(report, f)


if __name__ == '__main__':
  main(sys.argv[1])
