"""The `tf1_bn` logger and one-time warnings, below every other module."""
import contextlib
import logging
import os
import sys
import warnings

logger = logging.getLogger('tf1_bn')

_warned = set()


def warn_once(key, message):
  """Logs and warns `message` once per process for each `key`."""
  if key not in _warned:
    _warned.add(key)
    logger.warning(message)
    warnings.warn(message, stacklevel=3)


@contextlib.contextmanager
def native_stderr_silenced():
  """Sends file descriptor 2 to /dev/null for the duration: TensorFlow 2.21's
  C++ lines written before absl's logging is initialized ("cuInit",
  "oneDNN custom operations") ignore TF_CPP_MIN_LOG_LEVEL. Python's own
  sys.stderr, when it is not fd 2 (pytest's capture), is untouched; errors
  are reported after the descriptor is restored."""
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, 'w') as null:
      os.dup2(null.fileno(), 2)
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
