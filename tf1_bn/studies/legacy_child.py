"""The legacy peer: tf.compat.v1.layers.batch_normalization from tf-keras.

It exists only when tf-keras is installed and TF_USE_LEGACY_KERAS=1 was set
before TensorFlow was imported, so commands that compare with it re-run
themselves in a child process with the variable set.
"""
import importlib.util
import os
import subprocess
import sys

SKIP_MESSAGE = ('tf-keras is not installed, so the legacy tf.compat.v1.layers.batch_normalization '
                'cannot run here (pip install "tf-keras~=<your TensorFlow version>").')


def installed():
  return importlib.util.find_spec('tf_keras') is not None


def active():
  """True when this process can call the legacy layer."""
  return installed() and os.environ.get('TF_USE_LEGACY_KERAS') == '1'


def parse_or_rerun(module, build_parser, argv=None):
  """The entry point of a command that compares with the legacy layer.

  Parses `argv` (sys.argv[1:] when None) here, so bad options fail before any
  re-run. Returns (args, None) when this process should do the work (the
  legacy layer is active, or tf-keras is missing), or (None, status) after
  running `python -m module *argv` with TF_USE_LEGACY_KERAS=1.
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  args = build_parser().parse_args(argv)
  if not installed() or active():
    return args, None
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1')
  return None, subprocess.call([sys.executable, '-m', module, *argv], env=env)
