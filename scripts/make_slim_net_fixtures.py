"""Writes tests/fixtures/slim_nets/: what the real tf-slim builds for its nets.

For each full-size net of tests/slim_nets_harness.py (tf-slim 1.1.0's own
ResNet v1/v2 50 and Inception v1/v2/v3, under their own arg scopes), built
in training and in inference mode, the variables (name, shape, dtype, in
creation order), the TRAINABLE_VARIABLES, MODEL_VARIABLES and 'moving_vars'
names, the REGULARIZATION_LOSSES count and the UPDATE_OPS count per mode, with tf-slim's
own batch_norm (made to run on current TensorFlow by the harness's two
aliases; this process only). tests/test_slim_nets.py builds the same nets
with tf1_bn.patch_slim() and compares.

  .venv/bin/pip install tf-slim==1.1.0 tf-keras && .venv/bin/python scripts/make_slim_net_fixtures.py
"""
import json
import os
import pathlib
import sys

from make_legacy_fixtures import write_versions

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
OUT = ROOT / 'tests' / 'fixtures' / 'slim_nets'
FULL_NETS = ('resnet_v1_50', 'resnet_v2_50', 'inception_v1', 'inception_v2', 'inception_v3')
MODES = {'train': True, 'infer': False}


def _dump(structures):
  """Both modes in one file: the variables once (they do not depend on the
  mode; checked), the update-op count per mode; one variable per line."""
  train, infer = structures['train'], structures['infer']
  assert {k: v for k, v in train.items() if k != 'update_ops'} == {
      k: v for k, v in infer.items() if k != 'update_ops'}
  fields = dict(train, update_ops={mode: s['update_ops'] for mode, s in structures.items()})
  lines = []
  for key, value in fields.items():
    if key == 'variables':
      rows = ',\n'.join('  ' + json.dumps(row) for row in value)
      lines.append(f'"{key}": [\n{rows}\n]')
    else:
      lines.append(f'"{key}": {json.dumps(value)}')
  return '{\n' + ',\n'.join(lines) + '\n}\n'


def main():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  import slim_nets_harness as harness
  OUT.mkdir(parents=True, exist_ok=True)
  with harness.batch_norm_of('real'):
    for net in FULL_NETS:
      structures = {}
      for mode, is_training in MODES.items():
        with tf.Graph().as_default() as graph:
          harness.build(net, is_training)
          structures[mode] = harness.describe(graph)
      (OUT / f'{net}.json').write_text(_dump(structures))
  write_versions(OUT, ('tensorflow', 'tf-slim', 'tf-keras', 'numpy'))
  print(f'wrote {len(FULL_NETS)} fixtures to {OUT}')


if __name__ == '__main__':
  main()
