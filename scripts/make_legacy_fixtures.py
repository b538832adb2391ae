"""Writes tests/fixtures/legacy/ with the real tf-slim and tf.layers.

tf-slim 1.1.0 imports on current TensorFlow but its batch_norm does not run
there unaided (tests/slim_nets_harness.py shows the two aliases that make it
run). These fixtures come from an old TensorFlow that runs it as released
(TensorFlow 2.12.1 with its Keras 2.12 is the newest that runs tf-slim 1.1.0
on Python 3.11):

  python3 -m venv /tmp/old && /tmp/old/bin/pip install tensorflow-cpu==2.12.1 tf-slim==1.1.0
  /tmp/old/bin/python scripts/make_legacy_fixtures.py

Each configuration runs tests/legacy_harness.py's protocol with 3 warm-up
training steps, then keeps the checkpoint written after them and the
recorded arrays (training and inference outputs, gradients, moving
statistics after one more training step). tests/test_legacy_fixtures.py
restores each checkpoint into tf1_bn and compares.
"""
import json
import os
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tests'))
OUT = ROOT / 'tests' / 'fixtures' / 'legacy'
CONFIGS = ROOT / 'tests' / 'fixtures' / 'legacy_configs.json'


def main():
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  import legacy_harness
  configs = json.loads(CONFIGS.read_text())
  if OUT.exists():
    shutil.rmtree(OUT)
  OUT.mkdir(parents=True)
  for config in configs:
    legacy_harness.run('legacy', config, str(OUT))
    shutil.rmtree(OUT / f"{config['id']}_legacy_final")
    start = OUT / f"{config['id']}_legacy_start"
    (start / 'checkpoint').unlink()  # holds absolute paths
  write_versions(OUT, ('tensorflow-cpu', 'tf-slim', 'keras', 'numpy'))
  print(f'wrote {len(configs)} fixtures to {OUT}')


def write_versions(out, packages):
  """`out`/VERSIONS.txt: the installed version of each package, one a line."""
  from importlib import metadata
  (out / 'VERSIONS.txt').write_text(
      ''.join(f'{name} {metadata.version(name)}\n' for name in packages))


if __name__ == '__main__':
  main()
