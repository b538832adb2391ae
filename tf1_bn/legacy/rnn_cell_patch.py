"""Installs tf1_bn's cells as `tf.compat.v1.nn.rnn_cell`.

Why it is needed: on TensorFlow 2.16+ `tf.compat.v1.nn.rnn_cell` is a
`KerasLazyLoader` that routes to Keras; with Keras 3 every name raises
"`LSTMCell` is not available with Keras 3." (with tf-keras and
`TF_USE_LEGACY_KERAS=1` it loads tf-keras's legacy cells).
`tf.compat.v1.nn.dynamic_rnn`, `static_rnn` and `bidirectional_dynamic_rnn`
still exist and accept any object that follows the cell protocol.

What `patch()` changes, each recorded so `unpatch()` restores it exactly:

* `rnn_cell` on every `tf.compat.v1.nn` module object this process has:
  `tf.compat.v1.nn`, `import tensorflow.compat.v1 as v1; v1.nn` and the
  `tensorflow._api.v2.compat.v1` module are different wrapper objects
  depending on the import order, and each holds its own attribute;
* the cell names inside the objects those attributes held before (the lazy
  loader, or the generated `tensorflow.compat.v1.nn.rnn_cell` module), so a
  reference taken before the patch (`rnn_cell = tf.compat.v1.nn.rnn_cell`,
  `from tensorflow.compat.v1.nn import rnn_cell`) also gets tf1_bn's cells.
  A lazy loader is written through its `__dict__`, which never loads Keras;
* `sys.modules['tensorflow.compat.v1.nn.rnn_cell']` (and the `_api` twin)
  where not imported yet, so a later `from tensorflow.compat.v1.nn.rnn_cell
  import LSTMCell` finds tf1_bn's instead of importing TensorFlow's generated
  module (which would reset the attribute).

It imports neither Keras nor tf-keras, and works whatever
`TF_USE_LEGACY_KERAS` says.
"""
import sys
import types

import tensorflow as tf

from tf1_bn.legacy import rnn_cell as namespace

# Where TensorFlow keeps compat.v1 module objects (which ones exist depends on
# how the program imported TensorFlow).
V1_MODULE_NAMES = ('tensorflow.compat.v1', 'tensorflow._api.v2.compat.v1',
                   'tensorflow._api.v2.compat.v2.compat.v1')
ATTRIBUTE = 'rnn_cell'
_MISSING = object()

# The applied patch: a list of undo steps (callables), or None.
_state = {'undo': None}


def _v1_modules():
  found = [tf.compat.v1]
  found.extend(sys.modules.get(name) for name in V1_MODULE_NAMES)
  return _unique(found)


def _unique(objects):
  seen, result = set(), []
  for obj in objects:
    if obj is not None and id(obj) not in seen:
      seen.add(id(obj))
      result.append(obj)
  return result


def _is_lazy_loader(obj):
  return isinstance(obj, types.ModuleType) and type(obj).__module__.endswith('lazy_loader')


def _set_attribute(obj, name, value, undo):
  """Sets `obj.name`, recording how to put back the previous state."""
  if _is_lazy_loader(obj):
    # setattr on a LazyLoader would import its target (Keras); its __dict__ is
    # where attribute lookup looks first.
    previous = obj.__dict__.get(name, _MISSING)
    obj.__dict__[name] = value

    def restore():
      if previous is _MISSING:
        obj.__dict__.pop(name, None)
      else:
        obj.__dict__[name] = previous
    undo.append(restore)
    return
  previous = obj.__dict__.get(name, _MISSING)
  if previous is _MISSING:
    previous = getattr(obj, '_tfmw_wrapped_module', obj).__dict__.get(name, _MISSING)
  listed = getattr(obj, '__all__', None)
  was_listed = listed is not None and name in listed
  setattr(obj, name, value)

  def restore_module():
    if previous is _MISSING:
      delattr(obj, name)
    else:
      setattr(obj, name, previous)
    current = getattr(obj, '__all__', None)
    if current is not None and not was_listed and name in current:
      current.remove(name)
  undo.append(restore_module)


def patch():
  """Makes `tf.compat.v1.nn.rnn_cell.<name>` tf1_bn's cells, in every wrapper.

  Idempotent (a second call changes nothing) and exactly reversible with
  `unpatch()`. Returns True when it applied, False when already patched.
  """
  if _state['undo'] is not None:
    return False
  undo = []
  try:
    v1_modules = _v1_modules()
    nn_modules = _unique([getattr(m, 'nn', None) for m in v1_modules] +
                         [sys.modules.get(f'{name}.nn') for name in V1_MODULE_NAMES])
    originals = _unique([nn.__dict__.get(ATTRIBUTE) or getattr(
        getattr(nn, '_tfmw_wrapped_module', nn), ATTRIBUTE, None) for nn in nn_modules] +
                        [sys.modules.get(f'{name}.nn.{ATTRIBUTE}') for name in V1_MODULE_NAMES])
    for original in originals:
      if original is namespace:
        continue
      for name in namespace.__all__:
        _set_attribute(original, name, getattr(namespace, name), undo)
    for nn in nn_modules:
      _set_attribute(nn, ATTRIBUTE, namespace, undo)
    for name in V1_MODULE_NAMES:
      key = f'{name}.nn.{ATTRIBUTE}'
      if key not in sys.modules:
        sys.modules[key] = namespace
        undo.append(lambda key=key: sys.modules.pop(key, None))
  except BaseException:
    for step in reversed(undo):
      step()
    raise
  _state['undo'] = undo
  return True


def unpatch():
  """Puts back everything `patch()` changed; a no-op when not patched."""
  undo = _state['undo']
  if undo is None:
    return False
  for step in reversed(undo):
    step()
  _state['undo'] = None
  return True


def is_patched():
  """Whether `patch()` is in effect."""
  return _state['undo'] is not None
