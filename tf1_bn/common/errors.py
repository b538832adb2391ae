"""Exceptions raised by tf1_bn.

Bad arguments raise the built-in `TypeError` (wrong type) or `ValueError`
(wrong value); the classes here are the families a caller catches on purpose:

* `CheckpointError` (a `ValueError`): a checkpoint that cannot be read;
* `RestoreError` (a `ValueError`): a readable checkpoint that does not hold
  what the graph needs;
* `MissingUpdateOpsError` (a `RuntimeError`): a train op that skips updates.
"""


class CheckpointError(ValueError):
  """A checkpoint that cannot be read: missing, unreadable, truncated, corrupted
  or incomplete (a data shard or the index missing).

  Raised by `tf1_bn.restore`, `tf1_bn.inspect_checkpoint` and
  `tf1_bn.port_checkpoint` (and `tf1-bn inspect` / `port`, with exit status
  2) before anything is assigned or written. The message names the file and
  what is wrong with it; `path` is that file (an index or data file, or the
  path given when nothing is found there) and `reason` what is wrong. The
  TensorFlow error, if any, is the `__cause__`.

  A `ValueError`, not an `OSError`: the value passed does not name a usable
  checkpoint, whatever the operating system said on the way (TensorFlow
  reports most damage as a checksum or format error, not an OS error), and
  code that caught the `ValueError` tf1_bn raised for a missing checkpoint
  keeps working.
  """

  def __init__(self, path, reason):
    super().__init__(f'{path}: {reason}')
    self.path = path
    self.reason = reason

  def __reduce__(self):  # the default would call __init__ with the message only
    return type(self), (self.path, self.reason)


class RestoreError(ValueError):
  """Some variables of the graph found no source in a (readable) checkpoint,
  or their shapes differ. `missing` lists the variables without a source."""

  def __init__(self, message, missing):
    super().__init__(message)
    self.missing = missing

  def __reduce__(self):
    return type(self), (str(self), self.missing)


class MissingUpdateOpsError(RuntimeError):
  """A train op does not run the moving-statistics updates of some BN layers.

  Raised by `tf1_bn.check_update_ops`. `layers` holds the names of the layers
  whose update is not an ancestor of the fetches.
  """

  def __init__(self, message, layers=()):
    super().__init__(message)
    self.layers = tuple(layers)

  def __reduce__(self):
    return type(self), (str(self), self.layers)
