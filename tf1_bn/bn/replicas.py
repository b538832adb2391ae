"""Replicas: which replica a layer is built for, and the all-sum between them.

A synchronized layer computes its training statistics over the global batch:
the batches of every replica of the model, summed by one collective op per
layer call. Replicas come from one of two places:

* the replica context of a `tf.distribute` strategy in graph mode
  (`MirroredStrategy` on several devices, `MultiWorkerMirroredStrategy`
  across hosts), inside `strategy.extended.call_for_each_replica(fn)`;
* hand-built TF1 towers: `with tf.device(d), tf1_bn.tower(index, count):`
  around each tower's construction, the variables shared by reuse.

The collective is `CollectiveReduceV2`, called directly rather than through
`ReplicaContext.all_reduce`: the latter is a `merge_call`, which raises inside
`tf.cond` (a training placeholder). Every replica's n-th layer call uses the
same instance key, so the replicas must build their layers in the same order;
`register` checks that at build time. A collective can be given a timeout
(`set_collective_timeout`; none by default, as each call with a timeout holds
a sleeping thread for the whole timeout), so a replica that never runs its
part (a fetch of one replica's outputs only, a tower missing a layer) is an
error naming the layer's op, not a hang; two towers on one device are refused
while building.
"""
import contextlib
import dataclasses
import numbers
import threading
import weakref
from typing import Optional

import numpy as np
import tensorflow as tf

from tf1_bn.common import validation as v

# Far above the group keys tf.distribute allocates (1, 2, ...), so a
# strategy's own all-reduces never share a group with these.
STRATEGY_GROUP_KEY_BASE = 0x7F1B0000
TOWER_GROUP_KEY_BASE = 0x7F1B8000
# Each layer call owns a block of instance keys: the forward all-sum, the
# all-sum of the update's statistics, then one per gradient construction.
INSTANCE_KEY_BASE = 1 << 20
KEYS_PER_CALL = 16
FORWARD_SLOT, UPDATE_SLOT, FIRST_GRADIENT_SLOT = 0, 1, 2
MAX_LAYER_CALLS = (2 ** 31 - 1 - INSTANCE_KEY_BASE) // KEYS_PER_CALL
# No timeout by default: TensorFlow implements a collective's timeout with one
# OS thread per collective call that sleeps for the whole timeout
# (Env::SchedClosureAfter). With a timeout of T seconds, a training loop holds
# (collectives per step) x (steps in T seconds) sleeping threads: measured, 8
# towers with one synchronized layer and a 600 s timeout added 16 threads per
# step, and the process hit the system's thread limit after about 2,000 steps.
DEFAULT_TIMEOUT_SECONDS = None

_timeout_seconds = DEFAULT_TIMEOUT_SECONDS
_local = threading.local()


def set_collective_timeout(seconds):
  """Sets the timeout of the collectives of layers built from now on.

  With a timeout, a synchronized layer waits at most this long for its peers,
  then its session run fails with `DeadlineExceededError` naming the layer's
  all-sum op (`<layer>/cross_replica_sum`) instead of hanging. The default is
  no timeout (None), as TensorFlow's own collectives: TensorFlow keeps one
  sleeping OS thread per collective call for the whole timeout, so a
  timeout of T seconds holds (all-sums per step) x (steps run in T seconds)
  threads, and a fast training loop with a long timeout runs out of threads.
  Set one to debug a hang (a replica that never runs its part), short, and
  for short runs. A value is baked into the ops at build time.

  Args:
    seconds: a positive, finite number of seconds, or None for no timeout.

  Returns:
    The previous timeout (None: none).
  """
  global _timeout_seconds
  if seconds is not None:
    seconds = v.check_positive(seconds, 'seconds')
  previous, _timeout_seconds = _timeout_seconds, seconds
  return previous


def collective_timeout():
  """The timeout, in seconds, given to collectives built now (None: none)."""
  return _timeout_seconds


def _tower_stack():
  if not hasattr(_local, 'towers'):
    _local.towers = []
  return _local.towers


@contextlib.contextmanager
def tower(index, count):
  """Builds tower `index` of `count` hand-built TF1 towers.

  Synchronized layers built inside compute their statistics over the
  batches of all `count` towers; only tower 0 builds the moving-statistics
  update (so UPDATE_OPS holds one update per layer, as TF1 multi-tower code
  expects); the other towers' layers build none. Build each tower on its own
  device, with the variables shared by reuse, and build every tower's
  synchronized layers in the same order::

      for i in range(count):
        with tf.device(f'/gpu:{i}'), tf1_bn.tower(i, count), \\
            tf.compat.v1.variable_scope('model', reuse=i > 0):
          loss_i = model(inputs[i])

  Args:
    index: this tower, 0 <= index < count.
    count: the number of towers (1 is a single device: local statistics).
  """
  count = v.check_integer(count, 'count', low=1)
  index = v.check_integer(index, 'index', low=0, high=count - 1)
  stack = _tower_stack()
  if stack:
    raise ValueError(f'tf1_bn.tower({index}, {count}) inside tf1_bn.tower{stack[-1]}: towers '
                     'do not nest.')
  if _strategy_replica_context() is not None:
    raise ValueError('tf1_bn.tower() inside a tf.distribute replica context: the strategy '
                     'already says which replica this is; use one or the other.')
  stack.append((index, count))
  try:
    yield
  finally:
    stack.pop()


def _strategy_replica_context():
  """The replica context of a multi-replica strategy, else None."""
  if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
    return None
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync <= 1:
    return None
  return context


def _replica_index(context):
  index = getattr(context, '_replica_id_in_sync_group', None)
  if isinstance(index, (numbers.Integral, np.integer)):
    return int(index)
  return int(tf.get_static_value(context.replica_id_in_sync_group))


@dataclasses.dataclass(frozen=True)
class Replicas:
  """The replica group a layer is built in and this replica's place in it.

  `kind` is 'strategy' (a tf.distribute replica context) or 'tower'.
  """
  kind: str
  index: int
  count: int

  @property
  def group_key(self):
    base = STRATEGY_GROUP_KEY_BASE if self.kind == 'strategy' else TOWER_GROUP_KEY_BASE
    return base + self.count

  @property
  def builds_update(self):
    """Towers share one set of variables: tower 0 updates them. A strategy
    keeps a copy per replica: every replica updates its own."""
    return self.kind == 'strategy' or self.index == 0


def current():
  """The replicas a layer built here belongs to, or None on one device."""
  stack = _tower_stack()
  if stack:
    index, count = stack[-1]
    return Replicas('tower', index, count) if count > 1 else None
  context = _strategy_replica_context()
  if context is None:
    return None
  return Replicas('strategy', _replica_index(context), int(context.num_replicas_in_sync))


@dataclasses.dataclass
class _Call:
  """What the first replica to build the n-th layer call registered."""
  layer: str
  channels: int
  synchronized: bool
  replica: int


class _Registry:
  """Layer calls of one replica group in one graph, in build order."""

  def __init__(self):
    self.calls = []
    self.next_call = {}  # replica index -> its next call number
    self.gradients_built = {}  # (call number, replica index) -> count
    self.devices = {}  # call number -> {device: replica index}


_registries = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def _registry(graph, replicas):
  with _registries_lock:
    by_group = _registries.setdefault(graph, {})
    return by_group.setdefault((replicas.kind, replicas.group_key), _Registry())


def _describe(call):
  kind = 'synchronized' if call.synchronized else 'local'
  return f'{call.layer!r} ({call.channels} channels, {kind})'


@dataclasses.dataclass
class LayerCall:
  """One layer call on one replica: its slot in the group's key space."""
  replicas: Replicas
  layer: str
  number: int
  graph: object

  def key(self, slot):
    return INSTANCE_KEY_BASE + self.number * KEYS_PER_CALL + slot

  def gradient_key(self):
    """The key of the next gradient built for this call on this replica.

    Every replica builds the gradients of its n-th layer call in the same
    order, so counting them per call pairs them up, however the gradient
    constructions of different layers interleave.
    """
    registry = _registry(self.graph, self.replicas)
    with _registries_lock:
      slot_key = (self.number, self.replicas.index)
      built = registry.gradients_built.get(slot_key, 0)
      registry.gradients_built[slot_key] = built + 1
    slot = FIRST_GRADIENT_SLOT + built
    if slot >= KEYS_PER_CALL:
      raise ValueError(f'The gradient of synchronized layer {self.layer!r} was built more than '
                       f'{KEYS_PER_CALL - FIRST_GRADIENT_SLOT} times; each construction needs '
                       'its own collective key. Build the gradients once and reuse them.')
    return self.key(slot)


def register(replicas, layer, channels, synchronized):
  """Reserves this replica's next layer call; checks it against the peers'.

  The n-th call of every replica must be the same layer with the same
  number of channels, or the collectives would pair the wrong tensors (or
  wait forever). Raises ValueError naming both layers otherwise, before
  anything is built.
  """
  graph = tf.compat.v1.get_default_graph()
  registry = _registry(graph, replicas)
  this = _Call(layer, int(channels), bool(synchronized), replicas.index)
  with _registries_lock:
    number = registry.next_call.get(replicas.index, 0)
    if number >= MAX_LAYER_CALLS:
      raise ValueError(f'More than {MAX_LAYER_CALLS} layer calls in one replica group.')
    if number < len(registry.calls):
      first = registry.calls[number]
      if (first.layer, first.channels, first.synchronized) != (
          this.layer, this.channels, this.synchronized):
        raise ValueError(
            f'Replicas build different batch-norm layers at call {number}: replica '
            f'{first.replica} built {_describe(first)}, replica {replicas.index} builds '
            f'{_describe(this)}. Every replica must build the same layers in the same order '
            '(their collectives pair up by position).')
    else:
      registry.calls.append(this)
    registry.next_call[replicas.index] = number + 1
  return LayerCall(replicas, layer, number, graph)


def _check_device(call, op):
  """Two replicas of one group on one device never pair up: their
  collectives would wait for each other until the timeout. Caught when the
  second one builds its first all-sum of a layer (the layer is then half
  built: the setup, not an argument, is wrong)."""
  device = tf.DeviceSpec.from_string(op.device or '').to_string()
  registry = _registry(call.graph, call.replicas)
  with _registries_lock:
    seen = registry.devices.setdefault(call.number, {})
    other = seen.setdefault(device, call.replicas.index)
  if other != call.replicas.index:
    raise ValueError(
        f'Replicas {other} and {call.replicas.index} of {call.replicas.count} build '
        f'synchronized layer {call.layer!r} on the same device ({device or "no device set"}): '
        'their all-sums would wait for each other until the timeout. Build each tower under '
        "its own tf.device(...), e.g. with tf.device(f'/gpu:{i}'), tf1_bn.tower(i, count).")


def _collective_sum(tensor, call, key, name):
  summed = tf.raw_ops.CollectiveReduceV2(
      input=tensor, group_size=tf.constant(call.replicas.count, tf.int32),
      group_key=tf.constant(call.replicas.group_key, tf.int32),
      instance_key=tf.constant(key, tf.int32), ordering_token=[], merge_op='Add',
      final_op='Id', communication_hint='auto', timeout_seconds=_timeout_seconds or 0, name=name)
  if key == call.key(FORWARD_SLOT):
    _check_device(call, summed.op)
  return summed


def _op_name(call, suffix):
  # Inside a cond branch an op's name loses the enclosing scopes; spelling
  # the layer out there keeps it in the timeout error. Outside, the name
  # scope already ends with the layer (uniquified for a reused scope:
  # `model_1/bn` for the layer `model/bn`).
  scope = tf.compat.v1.get_default_graph().get_name_scope()
  if scope.rpartition('/')[2] == call.layer.rpartition('/')[2]:
    return suffix
  return f'{call.layer}/{suffix}'


def all_sum(tensor, call, slot=FORWARD_SLOT, name='cross_replica_sum'):
  """The sum of `tensor` over the replicas; its gradient is the all-sum of
  the incoming gradients (each replica's output is the same sum)."""

  @tf.custom_gradient
  def summed(value):
    result = _collective_sum(value, call, call.key(slot), _op_name(call, name))
    device = result.op.device

    def gradient(upstream):
      with tf.device(device):
        return gradient_all_sum(upstream, call, name + '_gradient')

    return result, gradient

  return summed(tensor)


def all_sum_constant(tensor, call, slot, name):
  """The sum of `tensor` over the replicas, for values with no gradient."""
  return _collective_sum(tf.stop_gradient(tensor), call, call.key(slot), _op_name(call, name))


def gradient_all_sum(tensor, call, name):
  """An all-sum built while building a gradient of `call`'s layer."""
  return _collective_sum(tensor, call, call.gradient_key(), _op_name(call, name))


def layer_call(replicas: Optional[Replicas], layer, channels, synchronized):
  """The LayerCall of a layer built now, or None when it needs no collective.

  Synchronized layers need one whenever there are replicas; local layers
  only under a strategy, where each replica's copy of the moving statistics
  must receive the same update.
  """
  if replicas is None or not (synchronized or replicas.kind == 'strategy'):
    return None
  return register(replicas, layer, channels, synchronized)
