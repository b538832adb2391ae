"""Exceptions raised by tf1_bn."""


class MissingUpdateOpsError(RuntimeError):
  """A train op does not run the moving-statistics updates of some BN layers.

  Raised by `tf1_bn.check_update_ops`. `layers` holds the names of the layers
  whose update is not an ancestor of the fetches.
  """

  def __init__(self, message, layers=()):
    super().__init__(message)
    self.layers = tuple(layers)
