"""`PatchHandle`: what the patch functions return (`patch_slim`, `patch_layers`).

`applied` says whether this call changed anything (False when the patch was
already in effect). As a context manager the handle undoes its own patch on
exit, and only its own: `with tf1_bn.patch_layers(): ...` inside code that
had already patched leaves the patch in place.
"""


class PatchHandle:

  def __init__(self, applied, undo):
    self.applied = applied
    self._undo = undo

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    if self.applied:
      self._undo()
    return False
