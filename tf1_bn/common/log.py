"""One-time warnings that point at the caller's line, and TensorFlow's log level
for the command line. Below every other module; imports no TensorFlow.
"""
import contextlib
import importlib
import os
import re
import sys
import tempfile
import warnings

# TensorFlow's C++ log level: 0 everything, 1 no INFO, 2 no WARNING, 3 no ERROR.
# The command line uses 3 unless the user set the variable: on a machine
# without a GPU driver TensorFlow logs `failed call to cuInit` as an ERROR on
# every run. Failures still surface as Python exceptions; level 3 hides only
# C++ log lines. `TF_CPP_MIN_LOG_LEVEL=0 tf1-bn ...` brings everything back.
TF_LOG_LEVEL_ENV = 'TF_CPP_MIN_LOG_LEVEL'
QUIET_TF_LOG_LEVEL = '3'
# TensorFlow 2.21 writes INFO lines while its libraries load, through absl
# before absl's log is initialized and before any level applies (no value of
# TF_CPP_MIN_LOG_LEVEL hides them): oneDNN's `port.cc`, `cudart_stub.cc`, and
# absl's notice about it. import_tensorflow() drops exactly these lines when
# the level asks for no INFO lines.
_STARTUP_LINE = re.compile(
    r'(WARNING: All log messages before absl::InitializeLog\(\) is called are written to '
    r'STDERR|I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*|To enable the following instructions: .*)$')
# TensorFlow's Python logger: only errors under the command line (absl's too).
QUIET_PYTHON_LOGGER = 'tensorflow'

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Frames in these packages are not the user's line either: a warning raised while
# tf-slim, Keras or TensorFlow calls into tf1_bn points at the code that called them.
_LIBRARIES = ('tensorflow', 'tf_keras', 'keras', 'tf_slim')

_warned = set()


def quiet_tensorflow():
  """Sets TensorFlow's C++ log level to QUIET_TF_LOG_LEVEL unless the user set
  it, and TensorFlow's and absl's Python loggers to errors. Effective only
  before TensorFlow is imported; child processes inherit the variable.
  Returns True when the level was set here (the user had not chosen one)."""
  if TF_LOG_LEVEL_ENV in os.environ:
    return False
  os.environ[TF_LOG_LEVEL_ENV] = QUIET_TF_LOG_LEVEL
  quiet_python_loggers()
  return True


def quiet_python_loggers():
  """TensorFlow's and absl's Python loggers to errors only (their WARNING
  lines are deprecation notices, not the command's messages)."""
  import logging
  logging.getLogger(QUIET_PYTHON_LOGGER).setLevel(logging.ERROR)
  try:  # absl's logger is its own class: through absl, not logging.getLogger
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.ERROR)
  except ImportError:
    pass


def _hides_info():
  try:
    return int(os.environ.get(TF_LOG_LEVEL_ENV, '0')) >= 1
  except ValueError:
    return False


@contextlib.contextmanager
def _stderr_descriptor_to(fileno):
  """Points file descriptor 2 (C++ and Python writes alike) at `fileno` for
  the duration, then back; without a usable descriptor 2, changes nothing."""
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # no usable stderr: nothing to redirect
    yield
    return
  os.dup2(fileno, 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


@contextlib.contextmanager
def _startup_lines_dropped():
  """Collects what is written to file descriptor 2 (C++ and Python alike)
  and writes it back without TensorFlow's start-up lines."""
  with tempfile.TemporaryFile() as captured:
    try:
      with _stderr_descriptor_to(captured.fileno()):
        yield
    finally:
      captured.seek(0)
      text = captured.read().decode('utf-8', 'replace')
      kept = [line for line in text.splitlines(keepends=True)
              if not _STARTUP_LINE.match(line.rstrip('\n'))]
      if kept:
        sys.stderr.write(''.join(kept))
        sys.stderr.flush()


def quiet_import(name):
  """Imports module `name`; if that imports TensorFlow, without TensorFlow's
  start-up INFO lines when TF_CPP_MIN_LOG_LEVEL hides INFO lines (1 or more).
  Returns the module."""
  if 'tensorflow' in sys.modules or not _hides_info():
    return importlib.import_module(name)
  with _startup_lines_dropped():
    return importlib.import_module(name)


def import_tensorflow():
  """TensorFlow, imported by quiet_import."""
  return quiet_import('tensorflow')


def _library_dirs():
  dirs = [_PACKAGE_DIR]
  for name in _LIBRARIES:
    module = sys.modules.get(name)
    path = getattr(module, '__file__', None)
    if path:
      dirs.append(os.path.dirname(os.path.abspath(path)))
  return tuple(d + os.sep for d in dirs)


def user_stacklevel():
  """The `stacklevel` for warnings.warn, called from here, that names the first
  frame outside tf1_bn (and outside TensorFlow, Keras and tf-slim): the user's
  line. Frames without a file (`<string>`, frozen importlib) are skipped too."""
  libraries = _library_dirs()
  frame = sys._getframe(1)  # the caller of user_stacklevel: stacklevel 1 of its warn
  level = 1
  while frame is not None:
    path = frame.f_code.co_filename
    inside = path.startswith('<frozen') or os.path.abspath(path).startswith(libraries)
    if not inside:
      return level
    frame = frame.f_back
    level += 1
  return 1


def warn_once(key, message, category=UserWarning):
  """Warns `message` once per process for each `key`, through `warnings`
  (so the user's filters apply), at the user's line that led here."""
  if key in _warned:
    return
  _warned.add(key)
  warnings.warn(message, category, stacklevel=user_stacklevel())


@contextlib.contextmanager
def native_stderr_silenced():
  """Sends file descriptor 2 to /dev/null for the duration: TensorFlow's C++
  lines (grappler, the TFLite converter's MLIR passes) ignore the Python
  loggers. Python's own sys.stderr, when it is not fd 2 (pytest's capture), is
  untouched; errors propagate as exceptions and are reported after the
  descriptor is restored."""
  with open(os.devnull, 'w') as null, _stderr_descriptor_to(null.fileno()):
    yield
