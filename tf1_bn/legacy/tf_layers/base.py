"""`Layer` and `InputSpec`: the base of every `tf.compat.v1.layers` layer, without Keras.

What TF1 code relies on, and this class keeps:

* **Names.** A layer made without `name` gets the snake-case class name made
  unique in its graph (`conv2d_1`, `conv2d_2`, ...: the legacy count starts at
  1): that is `layer.name`.
  Its *variables* live in a variable scope opened on first use with
  `variable_scope(None, default_name=<that base name>)`, which TensorFlow
  makes unique within the *current variable scope*: two `conv2d` calls under
  `with variable_scope('block')` give `block/conv2d/kernel` and
  `block/conv2d_1/kernel`, and a checkpoint written by the legacy layers
  names exactly these variables. Op names follow the same scope
  (`conv2d/Conv2D`, `conv2d/BiasAdd`).
* **`name=`.** The class form (`Conv2D(..., name='c')`) still opens its
  scope with `default_name='c'`, so a second `Conv2D(name='c')` gets `c_1`.
  The function form (`conv2d(x, ..., name='c')`) opens `variable_scope('c')`
  itself, as the legacy functions did: a second call with the same name and
  no `reuse` raises TensorFlow's "Variable c/kernel already exists" error, and
  `reuse=True` / `tf.compat.v1.AUTO_REUSE` shares the variables.
* **Sharing.** A layer instance called twice creates its variables on the
  first call (`build`) and reuses them on every later call, under any outer
  scope. `reuse=True` (function form) or `_reuse=True` needs the variables
  to exist; `AUTO_REUSE` creates or reuses.
* **Collections.** Variables come from `tf.compat.v1.get_variable`, so they
  are in GLOBAL_VARIABLES (and TRAINABLE_VARIABLES when trainable); weight
  and activity regularization losses go into REGULARIZATION_LOSSES once per
  variable (not again when it is reused); `layer.updates` go into
  UPDATE_OPS after each call.
* **Subclassing.** A custom layer overrides `build(input_shape)` (creating
  weights with `add_weight` / `add_variable`; `input_shape` is a
  `tf.TensorShape`) and `call(inputs, ...)`; `__call__` runs `build` once,
  with the layer's scope active, then `call`. If `call` takes a `scope`
  argument it receives the layer's variable scope. `self.built` is True
  after the first call.
* **dtype.** Without `dtype`, a layer takes the dtype of its first input
  (float64 inputs give float64 variables); inputs are not cast.

The rnn cells (`tf1_bn.legacy.rnn_cell_base.RNNCell`) subclass this class,
as the legacy cells did: they share the naming and scope state
(`_init_scoping`, `_set_scope`, `_entered_scope`) and the properties, and
override the call (a state in and out), `add_weight` and the weight lists.

Differences from the Keras-based legacy class, each deliberate: no Keras
model machinery (no `get_config`, no `compute_mask`, no eager execution: these
layers build TF1 graphs); sublayers held as attributes are not tracked into
`weights` (the legacy class did not track them either); a layer's inputs
are checked (rank, channel size) *before* its variable scope is opened, so a
bad input leaves nothing in the graph.
"""
import contextlib
import inspect
import re
import weakref

import numpy as np
import tensorflow as tf

from tf1_bn.common import validation as v

_GRAPH_NAME_UIDS = weakref.WeakKeyDictionary()


def to_snake_case(name):
  """'Conv2DTranspose' -> 'conv2d_transpose', as Keras names its layers."""
  intermediate = re.sub('(.)([A-Z][a-z0-9]+)', r'\1_\2', name)
  snake = re.sub('([a-z])([A-Z])', r'\1_\2', intermediate).lower()
  return snake if snake[0] != '_' else 'private' + snake


def unique_layer_name(base_name, graph=None, first=1, counts=_GRAPH_NAME_UIDS):
  """`base_name_1`, `base_name_2`, ... per graph: the legacy `layer.name` of a
  layer made without `name` (it counts from 1, unlike Keras' own layers; the
  variable scope is `base_name`, `base_name_1`, ... independently).

  `first=0` counts from 0 and leaves the first name bare (`base_name`,
  `base_name_1`, ...: the rnn cells' names); `counts` is the per-graph
  registry (one per naming family, so families do not share a count)."""
  graph = graph or tf.compat.v1.get_default_graph()
  uids = counts.setdefault(graph, {})
  uids[base_name] = uids.get(base_name, first - 1) + 1
  index = uids[base_name]
  return f'{base_name}_{index}' if index else base_name


class InputSpec:
  """What a layer accepts: rank (`ndim`, `min_ndim`, `max_ndim`), dtype, shape
  and fixed sizes of some axes (`axes={-1: 64}`). Same fields as the legacy
  `tf.compat.v1.layers.InputSpec`; a layer checks its inputs against
  `self.input_spec` (one spec, or a list for several inputs) before `build`
  and before every call."""

  def __init__(self, dtype=None, shape=None, ndim=None, max_ndim=None, min_ndim=None, axes=None,
               allow_last_axis_squeeze=False, name=None, optional=False):
    self.dtype = tf.as_dtype(dtype).name if dtype is not None else None
    shape = tf.TensorShape(shape)
    if shape.rank is not None:
      self.shape = tuple(shape.as_list())
      self.ndim = len(self.shape)
    else:
      self.shape = None
      self.ndim = ndim
    self.max_ndim = max_ndim
    self.min_ndim = min_ndim
    self.name = name
    self.allow_last_axis_squeeze = allow_last_axis_squeeze
    self.optional = optional
    try:
      axes = axes or {}
      self.axes = {int(k): axes[k] for k in axes}
    except (ValueError, TypeError):
      raise TypeError(f'`axes` must be a dict with integer keys, received axes={axes!r}.')

  def __repr__(self):
    fields = [f'{key}={value}' for key, value in (
        ('dtype', self.dtype), ('shape', self.shape), ('ndim', self.ndim),
        ('max_ndim', self.max_ndim), ('min_ndim', self.min_ndim), ('axes', self.axes)) if value]
    return f'InputSpec({", ".join(fields)})'


_RANK_FIX = ('Give the layer a tensor of that rank: add the missing dimensions (for example '
             'tf.reshape(x, [-1, height, width, channels]) for images, or a batch '
             'dimension with tf.expand_dims(x, 0)), or use the layer for that rank '
             '(dense for 2-D, conv1d / conv2d / conv3d for 3-D / 4-D / 5-D).')


def check_input_spec(input_spec, inputs, layer_name):
  """Raises the legacy errors (same first sentence) when `inputs` do not fit.

  `inputs` are tensors (or a nest of them); nothing is built.
  """
  if not input_spec:
    return
  specs = tf.nest.flatten(input_spec)
  flat = tf.nest.flatten(inputs)
  if len(flat) != len(specs):
    raise ValueError(f'Layer {layer_name} expects {len(specs)} input(s), but it received '
                     f'{len(flat)} input tensors. Inputs received: {flat}')
  for index, (x, spec) in enumerate(zip(flat, specs)):
    if spec is None or (x is None and spec.optional):
      continue
    shape = tf.TensorShape(x.shape)
    if shape.rank is None:
      continue
    head = f'Input {index} of layer {layer_name} is incompatible with the layer: '
    received = f'Full shape received: {shape.as_list()}.'
    rank = shape.rank
    if spec.ndim is not None and rank != spec.ndim:
      raise ValueError(f'{head}expected ndim={spec.ndim}, found ndim={rank}. {received} '
                       f'Cause: the layer needs a rank-{spec.ndim} input. Fix: {_RANK_FIX}')
    if spec.min_ndim is not None and rank < spec.min_ndim:
      # Layers that take extra leading batch dimensions still say "ndim"
      # here: the message users know (and search for) is the TF1 one.
      raise ValueError(f'{head}expected ndim={spec.min_ndim}, found ndim={rank}. {received} '
                       f'Cause: the layer needs at least rank {spec.min_ndim}. Fix: {_RANK_FIX}')
    if spec.max_ndim is not None and rank > spec.max_ndim:
      raise ValueError(f'{head}expected max_ndim={spec.max_ndim}, found ndim={rank}. {received}')
    if spec.dtype is not None and x.dtype.base_dtype.name != spec.dtype:
      raise ValueError(f'{head}expected dtype={spec.dtype}, found dtype={x.dtype.name}. '
                       f'Fix: tf.cast the input to {spec.dtype}.')
    dims = shape.as_list()
    for axis, value in (spec.axes or {}).items():
      if value is not None and dims[int(axis)] not in (value, None):
        raise ValueError(
            f'{head}expected axis {axis} of input shape to have value {value}, but received '
            f'input with shape {dims}. Cause: the layer was built (its variables created) for '
            f'inputs of size {value} on that axis, and a layer reuses its variables. Fix: '
            'call a new layer (or another name / variable scope) for inputs of another size.')
    if spec.shape is not None:
      for axis, (expected, got) in enumerate(zip(spec.shape, dims)):
        if expected is not None and got is not None and expected != got:
          raise ValueError(f'{head}expected shape={spec.shape}, found shape={tuple(dims)}')


def _to_tensor(value):
  if isinstance(value, (tf.Tensor, tf.Variable)) or tf.is_tensor(value):
    return value
  if isinstance(value, (np.ndarray, np.generic, float, int)) and not isinstance(value, bool):
    return tf.convert_to_tensor(value)
  return value


def accepts_argument(fn, name):
  """Whether `fn` takes an argument called `name` (a `scope` for `call`)."""
  try:
    return name in inspect.signature(fn).parameters
  except (TypeError, ValueError):  # pragma: no cover - builtins
    return False


# Keyword arguments of the legacy Layer constructor besides trainable, name, dtype.
_LAYER_KWARGS = ('_scope', '_reuse', 'activity_regularizer', 'input_spec')


class Layer:
  """Base class of the `tf.compat.v1.layers` layers and of TF1 custom layers.

  Args:
    trainable: whether the layer's variables are trainable (in
      TRAINABLE_VARIABLES) and its updates are built.
    name: the layer's name and the default name of its variable scope.
    dtype: the variables' dtype; None takes the first input's.
    activity_regularizer: a callable on the output; its value divided by
      the batch size is added to `losses` and REGULARIZATION_LOSSES.

  Subclasses override `build(input_shape)` and `call(inputs, ...)`; see the
  module doc for naming and reuse.
  """

  def __init__(self, trainable=True, name=None, dtype=None, **kwargs):
    unknown = [key for key in kwargs if key not in _LAYER_KWARGS]
    if unknown:
      raise TypeError(f'{type(self).__name__}() got unexpected keyword argument(s) {unknown}; '
                      f'a tf.compat.v1.layers layer takes trainable, name, dtype and '
                      f'activity_regularizer.')
    self.trainable = v.check_bool(trainable, 'trainable')
    self._activity_regularizer = v.check_callable(kwargs.get('activity_regularizer'),
                                                  'activity_regularizer')
    reuse = v.check_reuse(kwargs.get('_reuse'), 'reuse')
    self._dtype = None if dtype is None else tf.as_dtype(dtype).base_dtype.name
    self.input_spec = kwargs.get('input_spec')
    self._trainable_weights = []
    self._non_trainable_weights = []
    self._init_scoping(name, kwargs.get('_scope'), reuse)

  def _init_scoping(self, name, scope, reuse):
    """The state of naming, scoping and sharing (shared with the rnn cells,
    which subclass this class as the legacy cells did): `name` through
    `_init_set_name`, `scope` (`_scope`) opened now and kept, `reuse`
    (`_reuse`) already checked; not built, no losses or updates yet."""
    self._reuse = reuse
    self.built = False
    self._losses = []
    self._updates = []
    self._current_scope = None
    self._init_set_name(name)
    if scope:
      with tf.compat.v1.variable_scope(scope) as captured:
        self._scope = captured
    else:
      self._scope = None

  def _init_set_name(self, name):
    if isinstance(name, tf.compat.v1.VariableScope):
      self._base_name = name.name
      self._name = unique_layer_name(to_snake_case(type(self).__name__))
      return
    if name:
      if not isinstance(name, str):
        raise TypeError(f'`name` must be None or a string, received {name!r}.')
      self._name = self._base_name = name
      return
    self._base_name = to_snake_case(type(self).__name__)
    self._name = unique_layer_name(self._base_name)

  # -- read-only properties user code reads --------------------------------

  @property
  def name(self):
    return self._name

  @property
  def dtype(self):
    return self._dtype

  @property
  def activity_regularizer(self):
    return self._activity_regularizer

  @property
  def scope_name(self):
    if not self._scope:
      raise ValueError(f'No name available for layer scope because the layer "{self._name}" '
                       'has not been used yet. The scope name is determined the first time '
                       'the layer instance is called: call the layer before reading '
                       '`scope_name`.')
    return self._scope.name

  @property
  def trainable_weights(self):
    return list(self._trainable_weights) if self.trainable else []

  @property
  def non_trainable_weights(self):
    if self.trainable:
      return list(self._non_trainable_weights)
    return list(self._trainable_weights) + list(self._non_trainable_weights)

  @property
  def weights(self):
    return self.trainable_weights + self.non_trainable_weights

  # The TF1 names, following a subclass's own `trainable_weights` etc.
  trainable_variables = property(lambda self: self.trainable_weights)
  non_trainable_variables = property(lambda self: self.non_trainable_weights)
  variables = property(lambda self: self.weights)

  @property
  def losses(self):
    return list(self._losses)

  @property
  def updates(self):
    return list(self._updates) if self.trainable else []

  @property
  def graph(self):
    return None

  # -- what subclasses call ------------------------------------------------

  def add_loss(self, losses, inputs=None):
    """Adds loss tensors (or zero-argument callables) to `losses` and REGULARIZATION_LOSSES."""
    del inputs
    new = []
    for loss in tf.nest.flatten(losses):
      if loss is None:
        continue
      loss = loss() if callable(loss) else loss
      if loss is not None:
        new.append(tf.convert_to_tensor(loss))
    self._losses.extend(new)
    _add_to_collection(new, tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)

  def add_update(self, updates, inputs=None):
    """Adds update ops (or callables returning them); they go to UPDATE_OPS after the call."""
    del inputs
    for update in tf.nest.flatten(updates):
      self._updates.append(update() if callable(update) else update)

  def add_weight(self, name, shape, dtype=None, initializer=None, regularizer=None, trainable=None,
                 constraint=None, use_resource=None,
                 synchronization=tf.VariableSynchronization.AUTO,
                 aggregation=tf.compat.v1.VariableAggregation.NONE, partitioner=None, **kwargs):
    """Creates (or, on reuse, gets) a variable `<layer scope>/<name>` with get_variable.

    `initializer` None means the variable scope's initializer, else
    get_variable's default (glorot-uniform for floats, zeros for ints).
    `trainable` None means True (False with ON_READ synchronization); a
    layer made with `trainable=False` makes every variable non-trainable.
    `regularizer(variable)` is added to the losses once, when the variable is
    created.
    """
    for key in kwargs:
      if key != 'experimental_autocast':
        raise TypeError(f'add_weight() got an unexpected keyword argument {key!r}.')
    name = v.check_name(name, 'name', optional=False)
    v.check_callable(initializer, 'initializer')
    v.check_callable(regularizer, 'regularizer')
    v.check_callable(constraint, 'constraint')
    if synchronization == tf.VariableSynchronization.ON_READ:
      if trainable:
        raise ValueError('Synchronization value can be set to VariableSynchronization.ON_READ '
                         'only for non-trainable variables. You have specified trainable=True '
                         'and synchronization=VariableSynchronization.ON_READ.')
      trainable = False
    elif trainable is None:
      trainable = True
    dtype = tf.as_dtype(dtype or self._dtype or tf.float32)
    existing = set(id(var) for var in tf.compat.v1.global_variables())
    self._set_scope(None)
    with self._entered_scope() as scope:
      if initializer is None:
        initializer = scope.initializer
      variable = tf.compat.v1.get_variable(
          name, shape=shape, dtype=dtype, initializer=initializer,
          trainable=trainable and self.trainable, constraint=constraint,
          partitioner=partitioner, use_resource=use_resource,
          synchronization=synchronization, aggregation=aggregation)
      if regularizer is not None and not _already_existed(variable, existing):
        parts = list(variable) if _is_partitioned(variable) else [variable]
        for part in parts:
          with tf.name_scope(name + '/Regularizer'):
            self.add_loss(regularizer(part))
    in_collection = any(var is variable for var in tf.compat.v1.trainable_variables())
    if trainable and (in_collection or _is_partitioned(variable)):
      self._trainable_weights.append(variable)
    else:
      self._non_trainable_weights.append(variable)
    return variable

  def add_variable(self, *args, **kwargs):
    """The TF1 name of `add_weight`."""
    return self.add_weight(*args, **kwargs)

  def build(self, input_shape):
    """Creates the layer's variables; called once, with the first input's shape."""
    del input_shape
    self.built = True

  def call(self, inputs, **kwargs):
    """The layer's computation; the default is the identity."""
    del kwargs
    return inputs

  def compute_output_shape(self, input_shape):
    raise NotImplementedError(f'{type(self).__name__} does not define compute_output_shape.')

  def apply(self, inputs, *args, **kwargs):
    """The TF1 name of `__call__`."""
    return self(inputs, *args, **kwargs)

  # -- scoping -------------------------------------------------------------

  def _set_scope(self, scope=None):
    """Opens the layer's variable scope once (see the module doc)."""
    if self._scope is not None:
      return
    if self._reuse:
      with tf.compat.v1.variable_scope(scope if scope is not None else self._base_name) as cap:
        self._scope = cap
    else:
      with tf.compat.v1.variable_scope(scope, default_name=self._base_name) as cap:
        self._scope = cap

  @contextlib.contextmanager
  def _entered_scope(self, custom_getter=None):
    """Re-enters the layer's variable scope (opened by `_set_scope`) for a
    call: reusing its variables once built (or with `_reuse`), ops named in
    the scope's own name scope; yields that scope."""
    reuse = True if self.built else self._reuse
    with tf.compat.v1.variable_scope(self._scope, reuse=reuse, auxiliary_name_scope=False,
                                     custom_getter=custom_getter) as current:
      self._current_scope = current
      with tf.name_scope(current.original_name_scope):
        yield current

  def __call__(self, inputs, *args, **kwargs):
    """Builds the layer on first use, then applies `call` in the layer's scope."""
    scope = kwargs.pop('scope', None)
    v.check_graph_mode(f'layers.{type(self).__name__}')
    inputs = tf.nest.map_structure(_to_tensor, inputs)
    check_input_spec(self.input_spec, inputs, self._name)
    if not self.built:
      self._check_before_build(inputs)
    self._set_scope(scope)
    with self._entered_scope() as current:
      if not self.built:
        first = tf.nest.flatten(inputs)[0] if tf.nest.flatten(inputs) else None
        if self._dtype is None and hasattr(first, 'dtype'):
          self._dtype = first.dtype.base_dtype.name
        shapes = tf.nest.map_structure(lambda x: getattr(x, 'shape', None), inputs)
        with tf.init_scope() if _building_function() else contextlib.nullcontext():
          self.build(shapes)
        self.built = True
      if accepts_argument(self.call, 'scope'):
        kwargs['scope'] = current
      outputs = self.call(inputs, *args, **kwargs)
      if outputs is None:
        raise ValueError(f'A layer\'s `call` method should return a Tensor or a list of '
                         f'Tensors, not None (layer: {self._name}).')
      self._activity_regularization(outputs)
    _add_to_collection(self.updates, tf.compat.v1.GraphKeys.UPDATE_OPS)
    return outputs

  def _check_before_build(self, inputs):
    """Shape checks a layer makes before it opens its scope (see subclasses)."""

  def _activity_regularization(self, outputs):
    if self._activity_regularizer is None:
      return
    with tf.name_scope('ActivityRegularizer'):
      for output in tf.nest.flatten(outputs):
        loss = tf.convert_to_tensor(self._activity_regularizer(output))
        batch_size = tf.cast(tf.compat.v1.shape(output)[0], loss.dtype)
        # As the legacy layers: the strength does not depend on the batch size.
        self.add_loss(loss / batch_size)


def _building_function():
  return tf.compat.v1.get_default_graph().building_function


def _is_partitioned(variable):
  """A PartitionedVariable (get_variable under a partitioner): a list of parts."""
  return hasattr(variable, '_get_variable_list')


def _already_existed(variable, existing_ids):
  if _is_partitioned(variable):
    return any(id(part) in existing_ids for part in variable)
  return id(variable) in existing_ids


def _add_to_collection(elements, key):
  collection = tf.compat.v1.get_collection_ref(key)
  present = {id(element) for element in collection}
  for element in tf.nest.flatten(elements):
    if id(element) not in present:
      collection.append(element)
      present.add(id(element))


def apply_function(layer_class, inputs, arguments, call_kwargs=None):
  """The function form of a layer: builds `layer_class` from the function's
  arguments (`locals()`) and applies it to `inputs`.

  As the legacy functions, `name` is also the layer's `_scope` (opened as
  `variable_scope(name)`, not made unique) and `reuse` its `_reuse`.
  """
  kwargs = {key: value for key, value in arguments.items() if key not in ('inputs', 'reuse')}
  layer = layer_class(**kwargs, _scope=kwargs.get('name'), _reuse=arguments.get('reuse'))
  return layer(inputs, **(call_kwargs or {}))
