"""Writes tests/fixtures/rnn/ with the legacy rnn cells of an old TensorFlow.

TensorFlow 2.12.1's `tf.compat.v1.nn.rnn_cell` is its bundled Keras 2.12's
legacy cells, as old checkpoints were written by them:

  python3 -m venv /tmp/old && /tmp/old/bin/pip install tensorflow-cpu==2.12.1
  /tmp/old/bin/python scripts/make_rnn_fixtures.py

Each case of tests/fixtures/rnn_cases.json is built by tests/rnn_harness.py,
initialized by the legacy initializers (graph seed 7) and saved with a
default Saver (`<id>/model.ckpt`, no meta graph); `<id>.npz` holds its
outputs and final state on the case's inputs. tests/test_rnn_fixtures.py
restores each checkpoint into tf1_bn's cells and compares. Tiny units keep
the whole directory a few KB.
"""
import json
import os
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
sys.path.insert(0, str(ROOT / 'scripts'))
OUT = ROOT / 'tests' / 'fixtures' / 'rnn'
CASES = ROOT / 'tests' / 'fixtures' / 'rnn_cases.json'


def main():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import numpy as np
  import rnn_harness
  from make_legacy_fixtures import write_versions
  cases = json.loads(CASES.read_text())
  staging = OUT.with_name(OUT.name + '.partial')
  if staging.exists():
    shutil.rmtree(staging)
  staging.mkdir(parents=True)
  for case in cases:
    directory = staging / case['id']
    arrays = rnn_harness.checkpoint_run(case, str(directory / 'model.ckpt'), save=True)
    (directory / 'checkpoint').unlink()  # holds absolute paths
    np.savez(staging / f"{case['id']}.npz", **arrays)
  write_versions(staging, ('tensorflow-cpu', 'keras', 'numpy'))
  # Replace the old fixtures only once every case is written.
  if OUT.exists():
    shutil.rmtree(OUT)
  staging.rename(OUT)
  print(f'wrote {len(cases)} fixtures to {OUT}')


if __name__ == '__main__':
  main()
