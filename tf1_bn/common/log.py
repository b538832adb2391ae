"""The `tf1_bn` logger and one-time warnings, below every other module."""
import logging
import warnings

logger = logging.getLogger('tf1_bn')

_warned = set()


def warn_once(key, message):
  """Logs and warns `message` once per process for each `key`."""
  if key not in _warned:
    _warned.add(key)
    logger.warning(message)
    warnings.warn(message, stacklevel=3)
