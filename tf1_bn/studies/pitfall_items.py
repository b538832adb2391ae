"""The machinery of a `tf1-bn pitfalls` item, shared by the modules that
define items (`pitfalls.py`, `pitfalls_sequences.py`).

An item is a function decorated with `pitfall(title, ...)`: it receives an
empty `Outcome` (key = its name) and fills it: `reproduced` and `evidence`
(the problem on the installed TensorFlow: the real error text or the wrong
numbers), `remedy` and `remedy_ok` (what tf1_bn does, checked against
numpy), `details` (the numbers the tests check). `pitfall(...)` skips an item
with a message when what it needs is missing (the legacy layer, scikit-learn).
"""
import dataclasses
import functools

import numpy as np

from tf1_bn.studies import legacy_child as legacy

SKLEARN_MESSAGE = ('needs scikit-learn, which provides the digits data: pip install '
                   '"tf1_bn[demo]".')


def sklearn_missing():
  try:
    import sklearn.datasets  # noqa: F401  (what digits.load imports)
  except ImportError:
    return True
  return False


@dataclasses.dataclass
class Outcome:
  key: str
  title: str
  reproduced: bool = False
  evidence: str = ''
  remedy: str = ''
  remedy_ok: bool = False
  skipped: str = ''
  details: dict = dataclasses.field(default_factory=dict)


def tf_modules():
  import tensorflow as tf
  return tf, tf.compat.v1


def error_text(build):
  """The `Type: message` of the exception `build()` raises, or None."""
  try:
    build()
  except Exception as error:  # the text is the evidence, whatever its type
    return f'{type(error).__name__}: {error}'
  return None


def first_lines(text, count=2):
  return '\n'.join([line for line in text.strip().splitlines() if line.strip()][:count])


def error_lines(message):
  """The first line, the message and the failing node of a runtime error
  (without the Python traceback TensorFlow inserts between them)."""
  lines = [line for line in message.strip().splitlines() if line.strip()]
  keep = [lines[0]] + [line for line in lines[1:]
                       if 'Incompatible shapes' in line or '{{node' in line]
  return '\n'.join(keep)


def normalized(x, eps):
  """numpy reference: batch-normalized columns (population variance)."""
  x = np.asarray(x, np.float64)
  return (x - x.mean(0)) / np.sqrt(x.var(0) + eps)


def max_error(actual, expected):
  return float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))


def pitfall(title, needs_legacy=False, needs_sklearn=False):
  """Registers a pitfall: it receives an empty Outcome (key = its name) to fill.
  One that `needs_legacy` is skipped with a message when the legacy layer
  cannot run in this process; one that `needs_sklearn` (trains on the
  digits) when scikit-learn cannot be imported."""
  def register(fill):
    @functools.wraps(fill)
    def run():
      outcome = Outcome(fill.__name__, title)
      if needs_legacy and not legacy.active():
        outcome.skipped = legacy.SKIP_MESSAGE
        return outcome
      if needs_sklearn and sklearn_missing():
        outcome.skipped = SKLEARN_MESSAGE
        return outcome
      fill(outcome)
      return outcome
    return run
  return register
