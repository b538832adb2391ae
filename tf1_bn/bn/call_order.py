"""Call order: a layer called several times in one step updates in that order.

A layer whose variables are reused within one step (a GAN discriminator
applied to the real batch, then to the generated one; siamese towers; any
`reuse=True` call) builds one moving-statistics update per call. Nothing in
the data orders those updates against each other, so without help the
executor picks: each update reads the moving variables when its own call's
statistics are ready, and may or may not see the other call's write. Runs of
the same program then end with different moving statistics.

`core.build` asks this module, for every call, which update ops came before
it, and orders the call after them:

* the update of call k reads and writes the moving variables after the
  update of call k-1 has written them, so the step's result is the
  sequential one: call k-1's update, then call k's, each from the value the
  previous one left (as if each call were its own step);
* what the forward pass of call k reads of those variables (the moving
  statistics on the inference path, renorm's statistics, the shift of a
  synchronized layer) is read after call k-1's update too, so the outputs do
  not depend on the executor either.

Only a call that follows another in the same graph and the same control-flow
context (the same `tf.cond` branch or loop body, built with the same
`tf.compat.v1` control flow) is ordered: an op in a branch that does not run
cannot be waited for. The first call of a step reads what the previous step
left, as always.

Replicas: under a `tf.distribute` strategy every replica orders its own
copies. Hand-built towers share one set of variables that tower 0 updates;
call k of every tower reads after tower 0's update of call k-1 (never of
call k, which waits for every tower's statistics), so build tower 0 first,
as `tf1_bn.tower` shows.
"""
import dataclasses
import threading
import weakref

import tensorflow as tf

from tf1_bn.bn import replicas as replicas_lib

_histories = weakref.WeakKeyDictionary()  # graph -> {key: _History}
_lock = threading.Lock()


@dataclasses.dataclass
class _Entry:
  ops: list
  context: object  # the control-flow context they were built in


@dataclasses.dataclass
class _History:
  """The calls of one layer's variables in one graph (on one replica)."""
  after_call: list = dataclasses.field(default_factory=list)  # _Entry per call
  calls: dict = dataclasses.field(default_factory=dict)  # replica index -> calls


@dataclasses.dataclass
class Call:
  """One call's place in its layer's order (from `begin`)."""
  history: _History
  number: int
  updater: bool
  previous: list  # the update ops this call's reads and writes wait for


def _context(graph):
  return graph._get_control_flow_context()  # pylint: disable=protected-access


def begin(variable):
  """Registers a call of the layer whose moving mean is `variable`.

  Returns a `Call` whose `previous` lists the update ops (of an earlier call
  of the same layer, in this graph and control-flow context) that
  everything this call reads or writes of the moving variables must follow;
  empty for the first call.
  """
  graph = tf.compat.v1.get_default_graph()
  replicas = replicas_lib.current()
  shared = replicas is None or replicas.kind == 'tower'
  index = 0 if replicas is None else replicas.index
  key = (variable.name, None if shared else index)
  with _lock:
    history = _histories.setdefault(graph, {}).setdefault(key, _History())
    number = history.calls.get(index, 0)
    history.calls[index] = number + 1
    entry = history.after_call[number - 1] if 0 < number <= len(history.after_call) else None
  previous = []
  if entry is not None and entry.context is _context(graph):
    previous = list(entry.ops)
  # Towers: tower 0 updates the shared variables for every tower.
  return Call(history, number, updater=index == 0 or not shared, previous=previous)


def end(call, update_ops):
  """Records what the call's update wrote (None: it built none), for the
  next call to follow."""
  if not call.updater:
    return
  graph = tf.compat.v1.get_default_graph()
  if update_ops:
    entry = _Entry(list(update_ops), _context(graph))
  elif call.number > 0 and call.number <= len(call.history.after_call):
    entry = call.history.after_call[call.number - 1]
  else:
    entry = _Entry([], _context(graph))
  with _lock:
    after = call.history.after_call
    if len(after) == call.number:
      after.append(entry)
