"""The legacy peer: tf.compat.v1.layers.batch_normalization from tf-keras.

It exists only when tf-keras is installed and TF_USE_LEGACY_KERAS=1 was set
before TensorFlow was imported, so commands that compare with it re-run
themselves in a child process with the variable set:
`python -m tf1_bn.studies.legacy_child MODULE ARGS...` runs MODULE's
subcommand through the command line (`tf1-bn COMMAND ARGS...`: TensorFlow
imported without its start-up lines at the inherited log level, an error one
line and status 2, the traceback when the parent had --debug), or a module
that is no subcommand as `python -m MODULE ARGS...`.
"""
import importlib.util
import os
import runpy
import subprocess
import sys

from tf1_bn.common import log

CHILD_MODULE = 'tf1_bn.studies.legacy_child'
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
  return None, subprocess.call([sys.executable, '-m', CHILD_MODULE, module, *argv], env=env)


def _quiet_legacy_warnings():
  """Hides the Python WARNING lines (deprecation notices from tf-keras'
  legacy code, which the user did not write) unless TF_CPP_MIN_LOG_LEVEL
  asks for them (0 or 1)."""
  if os.environ.get(log.TF_LOG_LEVEL_ENV, '0') not in ('0', '1'):
    log.quiet_python_loggers()


def _run_child(argv):
  """The child: `argv` is MODULE ARGS...; returns MODULE's exit status."""
  from tf1_bn.studies import cli
  _quiet_legacy_warnings()
  module, args = argv[0], argv[1:]
  for name, command in cli.COMMANDS.items():
    if command.module == module:
      debug = [cli.DEBUG_FLAG] if os.environ.get(cli.DEBUG_ENV) == '1' else []
      return cli.main([*debug, name, *args])
  sys.argv[1:] = args
  log.import_tensorflow()
  try:
    runpy.run_module(module, run_name='__main__', alter_sys=True)
  except SystemExit as done:
    return done.code
  return 0


if __name__ == '__main__':
  sys.exit(_run_child(sys.argv[1:]))
