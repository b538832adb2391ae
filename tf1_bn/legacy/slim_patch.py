"""`patch_slim()`: tf-slim's own code runs with `tf1_bn.batch_norm`.

tf-slim 1.1.0 imports on current TensorFlow, and its conv2d, fully_connected,
pooling, separable_conv2d and dropout build; only its `batch_norm` breaks (it
loads `tf_keras.legacy_tf_layers`, gone from tf-keras, and its fused path uses
`ops.Tensor`, gone from TensorFlow). Every slim net calls it, as
`normalizer_fn=slim.batch_norm` and through `slim.arg_scope([slim.batch_norm],
...)`, so replacing it is the whole port of a slim model.

How: slim's `batch_norm` is the `add_arg_scope` wrapper of its own function,
which it reaches through one closure cell (`func`). The patch puts
`tf1_bn.batch_norm` in that cell, so every reference to slim's function,
including those taken before the patch (`from tf_slim import batch_norm`, a
net's module attribute, a dict of `normalizer_fn`), calls tf1_bn's; and it
gives `tf1_bn.batch_norm` the key under which slim's arg scopes store
`batch_norm` defaults, so `arg_scope([slim.batch_norm], ...)` and
`arg_scope([tf1_bn.batch_norm], ...)` both work and are the same entry, also
for arg scopes built before the patch. Variable names, collections, update
ops and checkpoints are the drop-in's, which are slim's.

tf-slim is imported only when `patch_slim` is called; tf1_bn never needs it.
"""
import importlib
import importlib.util

from tf1_bn.legacy import slim_bn as slim_lib
from tf1_bn.legacy.patch_handle import PatchHandle

SLIM_LAYERS_MODULE = 'tf_slim.layers.layers'
INSTALL_HINT = 'pip install tf-slim==1.1.0'
# The closure variable of tf-slim's add_arg_scope wrapper that holds the function.
_WRAPPED_CELL = 'func'

# The applied patch: (slim's wrapper, its original function), or None.
_state = {'patched': None}


def _slim_layers():
  if importlib.util.find_spec('tf_slim') is None:
    raise ImportError(f'tf1_bn.patch_slim() patches tf-slim, which is not installed here: '
                      f'{INSTALL_HINT} (tf1_bn itself does not need it).')
  return importlib.import_module(SLIM_LAYERS_MODULE)


def _wrapped_cell(slim_batch_norm):
  """The closure cell through which slim's wrapper calls its function."""
  code = getattr(slim_batch_norm, '__code__', None)
  if code is None or _WRAPPED_CELL not in code.co_freevars or not hasattr(
      slim_batch_norm, '_key_op'):
    raise RuntimeError(
        f'tf1_bn.patch_slim() expects tf-slim 1.1.0, whose batch_norm is an add_arg_scope '
        f'wrapper; {SLIM_LAYERS_MODULE}.batch_norm here is {slim_batch_norm!r}. '
        f'Install the supported version ({INSTALL_HINT}) or call tf1_bn.batch_norm directly.')
  return slim_batch_norm.__closure__[code.co_freevars.index(_WRAPPED_CELL)]


def patch_slim():
  """Makes tf-slim's `batch_norm` tf1_bn's, everywhere slim code calls it.

  After it, unmodified slim code (tf_slim.nets' ResNet and Inception nets
  under their own arg scopes, your own models with
  `normalizer_fn=slim.batch_norm`) builds with `tf1_bn.batch_norm`: same
  variable names, collections, UPDATE_OPS and checkpoints as slim's, and
  `slim.arg_scope([tf1_bn.batch_norm], ...)` works.

  Idempotent: a second call changes nothing. Reversible: `unpatch_slim()`, or
  use the returned object as a context manager (`with tf1_bn.patch_slim():`).

  Returns:
    A `PatchHandle`; its `applied` is False when slim was already patched;
    `with tf1_bn.patch_slim(): ...` patches for the block and restores slim's
    own `batch_norm` on exit, unless slim was already patched on entry.

  Raises:
    ImportError: tf-slim is not installed (the message says how to install it).
    RuntimeError: the installed tf-slim's batch_norm is not the add_arg_scope
      wrapper of tf-slim 1.1.0, so the patch cannot apply.
  """
  layers = _slim_layers()
  slim_batch_norm = layers.batch_norm
  cell = _wrapped_cell(slim_batch_norm)
  ours = slim_lib.batch_norm
  if cell.cell_contents is ours:
    return PatchHandle(applied=False, undo=unpatch_slim)
  _state['patched'] = (slim_batch_norm, cell.cell_contents)
  # slim's wrapper looks up the arg scope under its function's key, taken
  # from the function it calls: ours answers with slim's key.
  ours._key_op = slim_batch_norm._key_op
  cell.cell_contents = ours
  return PatchHandle(applied=True, undo=unpatch_slim)


def unpatch_slim():
  """Gives tf-slim its own `batch_norm` back; a no-op when not patched."""
  if _state['patched'] is None:
    return
  slim_batch_norm, original = _state['patched']
  _wrapped_cell(slim_batch_norm).cell_contents = original
  del slim_lib.batch_norm._key_op
  _state['patched'] = None


def slim_is_patched():
  """Whether `patch_slim()` is in effect."""
  return _state['patched'] is not None
