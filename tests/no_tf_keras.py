"""A meta-path blocker: in a process that calls `install()`, `import tf_keras`
fails with ImportError, as on a machine without tf-keras.

`importlib.util.find_spec('tf_keras')` answers a spec without an origin
(TensorFlow asks it while importing, and treats that as absent); loading it
raises ImportError, which is what TensorFlow's Keras routing catches.
"""
import importlib.abc
import importlib.machinery
import sys

BLOCKED = 'tf_keras'


class _BlockedLoader(importlib.abc.Loader):

  def create_module(self, spec):
    raise ImportError(f'{spec.name} is blocked in this process (no tf-keras here)',
                      name=spec.name)

  def exec_module(self, module):
    raise ImportError(f'{module.__name__} is blocked in this process', name=module.__name__)


class _Blocker(importlib.abc.MetaPathFinder):

  def find_spec(self, name, path=None, target=None):
    if name == BLOCKED or name.startswith(BLOCKED + '.'):
      return importlib.machinery.ModuleSpec(name, _BlockedLoader())
    return None


def install():
  if any(isinstance(finder, _Blocker) for finder in sys.meta_path):
    return
  if any(name == BLOCKED or name.startswith(BLOCKED + '.') for name in sys.modules):
    raise RuntimeError('tf_keras is already imported in this process; install the blocker first.')
  sys.meta_path.insert(0, _Blocker())
