"""`patch_layers()`: unmodified `tf.compat.v1.layers` code runs on tf1_bn's layers.

On TensorFlow 2.16+ with Keras 3, `tf.compat.v1.layers` is a `KerasLazyLoader`
that routes to Keras' `__internal__.legacy.layers`, and every name raises
``AttributeError: `conv2d` is not available with Keras 3`` (with tf-keras
installed and `TF_USE_LEGACY_KERAS=1` set before TensorFlow's import, it routes
to tf-keras instead, which switches the whole process to Keras 2).

The patch puts `tf1_bn.layers` (tf1_bn.legacy.tf_layers.namespace) in its
place, wherever TensorFlow keeps it:

* the `layers` attribute of each `tf.compat.v1` module object: the
  `TFModuleWrapper` that `tf.compat.v1` and `import tensorflow.compat.v1`
  return, the module it wraps, and any other module in `sys.modules` that
  holds the loader (`tf.compat.v2.compat.v1`, ...);
* the loader object itself: a reference taken before the patch
  (`layers = tf.compat.v1.layers`, `from tensorflow.compat.v1 import layers`)
  finds tf1_bn's names in it (written into its `__dict__`, where attribute
  lookup looks before the loader's `__getattr__`);
* the module `tensorflow._api.v2.compat.v1.layers` (`from
  tensorflow._api.v2.compat.v1.layers import conv2d`).

It does not depend on Keras, tf-keras or `TF_USE_LEGACY_KERAS` and imports
none of them. `unpatch_layers()` puts back exactly the objects it replaced.

The rnn cells of `tf.compat.v1.nn.rnn_cell` are patched by the same call,
through the hooks in `EXTRA_PATCHES`.
"""
import importlib
import sys
import types

import tensorflow as tf

from tf1_bn.legacy import rnn_cell_patch

from tf1_bn.legacy.patch_handle import PatchHandle
from tf1_bn.legacy.tf_layers import namespace

# `import tensorflow.compat.v1` (first time) makes a second module object for
# tf.compat.v1, with its own loader, and rebinds `tf.compat.v1` to it; the
# patch imports it first so that object exists and is patched too.
_V1_IMPORT_NAME = 'tensorflow.compat.v1'
# Every module in sys.modules whose name ends so exposes tf.compat.v1's names
# (tensorflow.compat.v1, tensorflow._api.v2.compat.v1,
# tensorflow._api.v2.compat.v2.compat.v1, ...).
_V1_MODULE_SUFFIX = '.compat.v1'
_LAYERS_MODULE_NAME = 'tensorflow._api.v2.compat.v1.layers'
_MISSING = object()

# Further (patch, unpatch) pairs that patch_layers() applies after the layers
# (and unpatch_layers() undoes, in reverse order): the rnn cells of
# tf.compat.v1.nn.rnn_cell. Each is idempotent and reversible.
EXTRA_PATCHES = [(rnn_cell_patch.patch, rnn_cell_patch.unpatch)]

# The undo actions of the applied patch, in order of application; None when
# not patched.
_state = {'undo': None}


def _is_legacy_loader(value):
  """The Keras lazy loader of tf.compat.v1.layers (or tf-keras' module it loaded)."""
  return (isinstance(value, types.ModuleType) and value is not namespace and
          getattr(type(value), '__name__', '') == 'KerasLazyLoader' and
          vars(value).get('_tfll_submodule') == '__internal__.legacy.layers')


def _v1_modules():
  """Every distinct module object that exposes tf.compat.v1's names."""
  importlib.import_module(_V1_IMPORT_NAME)
  candidates = [tf.compat.v1] + [module for name, module in list(sys.modules.items())
                                 if name.endswith(_V1_MODULE_SUFFIX) and
                                 name.startswith('tensorflow')]
  seen, modules = set(), []
  for module in candidates:
    if module is None or id(module) in seen:
      continue
    seen.add(id(module))
    modules.append(module)
    wrapped = vars(module).get('_tfmw_wrapped_module')
    if wrapped is not None and id(wrapped) not in seen:
      seen.add(id(wrapped))
      modules.append(wrapped)
  return modules


def _current(obj, name):
  """`obj.name` without triggering a lazy import: its own dict, else the wrapped module's."""
  value = vars(obj).get(name, _MISSING)
  wrapped = vars(obj).get('_tfmw_wrapped_module')
  if value is _MISSING and wrapped is not None:
    value = vars(wrapped).get(name, _MISSING)
  return value


def _set_attributes(assignments, undo):
  """Sets each (obj, name, value): a plain module or a TFModuleWrapper (whose
  setattr also updates the module it wraps and its lookup cache). Every
  previous value is read before the first change, so objects that share a
  dict restore correctly."""
  previous = [(obj, name, _current(obj, name)) for obj, name, _ in assignments]
  for obj, name, value in assignments:
    setattr(obj, name, value)

  def restore():
    for obj, name, value in reversed(previous):
      if value is _MISSING:
        if name in vars(obj):
          delattr(obj, name)
      else:
        setattr(obj, name, value)
  undo.append(restore)


def _set_in_dict(obj, name, value, undo):
  """Writes into `obj.__dict__` directly (a lazy loader's setattr would load Keras)."""
  namespace_dict = vars(obj)
  previous = namespace_dict.get(name, _MISSING)
  namespace_dict[name] = value

  def restore():
    if previous is _MISSING:
      namespace_dict.pop(name, None)
    else:
      namespace_dict[name] = previous
  undo.append(restore)


def _patch_namespace(undo):
  modules = _v1_modules()
  loaders = []
  for module in modules:
    current = _current(module, 'layers')
    if _is_legacy_loader(current) and all(current is not seen for seen in loaders):
      loaders.append(current)
  assignments = [(module, 'layers', namespace) for module in modules]
  layers_module = sys.modules.get(_LAYERS_MODULE_NAME)
  if layers_module is not None:
    assignments += [(layers_module, name, getattr(namespace, name))
                    for name in namespace.__all__]
  _set_attributes(assignments, undo)
  for loader in loaders:
    for name in namespace.__all__:
      _set_in_dict(loader, name, getattr(namespace, name), undo)


def patch_layers():
  """Makes `tf.compat.v1.layers` tf1_bn's, for all code in this process.

  After it, unmodified TF1 code (`tf.compat.v1.layers.conv2d`, `dense`,
  `batch_normalization`, `Conv2D`, ..., see docs/layers.md) builds with
  tf1_bn's layers: the legacy variable names, collections, update ops and
  checkpoints, no Keras. Call it once, before building the model.

  Idempotent: a second call changes nothing. Reversible: `unpatch_layers()`,
  or use the returned object as a context manager.

  Returns:
    A `PatchHandle`; its `applied` is False when already patched; as a
    context manager (`with tf1_bn.patch_layers(): ...`) it patches for the
    block only, unless the layers were already patched on entry.
  """
  if _state['undo'] is not None:
    return PatchHandle(applied=False, undo=unpatch_layers)
  undo = []
  try:
    _patch_namespace(undo)
    for patch, unpatch in EXTRA_PATCHES:
      patch()
      undo.append(unpatch)
  except BaseException:
    for restore in reversed(undo):
      restore()
    raise
  _state['undo'] = undo
  return PatchHandle(applied=True, undo=unpatch_layers)


def unpatch_layers():
  """Puts back the objects `patch_layers()` replaced; a no-op when not patched."""
  undo = _state['undo']
  if undo is None:
    return
  for restore in reversed(undo):
    restore()
  _state['undo'] = None


def layers_are_patched():
  """Whether `patch_layers()` is in effect."""
  return _state['undo'] is not None
