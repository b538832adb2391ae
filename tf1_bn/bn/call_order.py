"""Call order: a layer called several times in one step, deterministically.

A layer whose variables are reused within one step (a GAN discriminator
applied to the real batch, then to the generated one; siamese towers; any
`reuse=True` call) builds one moving-statistics update per call. Nothing in
the data orders those updates against each other, so unaided the executor
picks: each update reads the moving variables when its own call's
statistics are ready and may or may not see the other call's write, and
runs of one program end with different moving statistics (the legacy layers
behave so: usually both updates start from the step's starting value, not
always).

`core.build` registers every call here and orders it:

* Forward pass: every call reads the moving variables (the inference path,
  renorm's statistics, the shift of a synchronized layer) as they were at
  the start of the step, as a single call does (its update runs after its
  output). A later call's reads are plain reads with no input, and every
  earlier call's update waits for them: this costs nothing and makes no
  fetch run anything more.
* Updates in a collection (and synchronized layers' collection updates):
  call k's update reads and writes the moving variables after call k-1's
  update has written them, so the step's result is the sequential one, call
  after call in build order, each from the value the previous one left (as
  if each call were its own step). Running call k's update therefore runs
  call k-1's layer too; update collections are run together (a train op
  built with `tf1_bn.minimize`), which the legacy layers require as well.
* Updates in place: not chained. An in-place update runs whenever its
  call's output is computed; chaining it to the earlier call's update would
  make computing the later call's output compute the earlier call too (a
  DCGAN generator step that feeds only the noise would then need the real
  batch). Calls in series (one call's input computed from the other's
  output) are in order anyway; independent calls (a discriminator on real
  and fake batches) update in an order the executor picks, as with the
  legacy layers, and a one-time warning says so. Put the updates in a
  collection for a deterministic order.

Only calls in the same graph are ordered, and, for `tf.compat.v1` control
flow, in the same control-flow context with none around them: an op in a
branch that does not run cannot be waited for. Calls inside a loop body
(`tf.while_loop`, `dynamic_rnn`, `map_fn`, `scan`; v1 or v2) take no part:
their updates are in place and run in iteration order (`tf1_bn.bn.loops`),
and nothing is chained into or out of a loop's frame.

Per-step statistics (`tf1_bn.bn.steps`) are ordered the same way: calls
that share a row (steps past the last one) update it one after the other
with their updates in a collection.

Replicas: under a `tf.distribute` strategy every replica orders its own
copies. Hand-built towers share one set of variables that tower 0 updates:
call k of every tower reads at the start of the step, and tower 0's updates
are chained; build tower 0 first, as `tf1_bn.tower` shows.
"""
import dataclasses
import threading
import weakref

import tensorflow as tf

from tf1_bn.bn import replicas as replicas_lib

_histories = weakref.WeakKeyDictionary()  # graph -> {key: _History}
_lock = threading.Lock()
# The context of a call whose build failed before `end`: matches none.
_UNRECORDED = object()


@dataclasses.dataclass
class _History:
  """The calls of one layer's variables in one graph (on one replica)."""
  # Per call of the updating replica: (its update's ops, or [], the
  # control-flow context it was built in).
  updates: list = dataclasses.field(default_factory=list)
  calls: dict = dataclasses.field(default_factory=dict)  # replica index -> calls


@dataclasses.dataclass
class Call:
  """One call's place in its layer's order (from `begin`)."""
  history: _History
  number: int
  updater: bool
  # Update ops of earlier calls in this graph and context: all of them
  # (what must wait for this call's forward reads) and the latest one's
  # (what this call's update follows, in a collection).
  earlier: list
  previous: list


def _context(graph):
  return graph._get_control_flow_context()  # pylint: disable=protected-access


def begin(variable):
  """Registers a call of the layer whose moving mean is `variable`.

  Returns a `Call`: `earlier` and `previous` are empty for the first call,
  or when the earlier calls were built in another control-flow context.
  """
  graph = tf.compat.v1.get_default_graph()
  replicas = replicas_lib.current()
  shared = replicas is None or replicas.kind == 'tower'
  index = 0 if replicas is None else replicas.index
  key = (variable.name, None if shared else index)
  context = _context(graph)
  with _lock:
    history = _histories.setdefault(graph, {}).setdefault(key, _History())
    number = history.calls.get(index, 0)
    history.calls[index] = number + 1
    before = list(history.updates[:number])
  same = [ops for ops, built_in in before if built_in is context]
  if context is not None or len(same) != len(before):
    same = []
  earlier = [op for ops in same for op in ops]
  previous = next((ops for ops in reversed(same) if ops), [])
  # Towers: tower 0 updates the shared variables for every tower.
  return Call(history, number, updater=index == 0 or not shared, earlier=earlier,
              previous=list(previous))


def precede(reads, call):
  """Makes every earlier call's update wait for `reads` (ops with no
  inputs: the wait costs nothing), so they see the start of the step."""
  for op in call.earlier:
    op._add_control_inputs(reads)  # pylint: disable=protected-access


def end(call, update_ops):
  """Records the call's update ops (None or []: it built none). `call`
  None: a call outside the order (in a loop body, see `core._call_order`)."""
  if call is None or not call.updater:
    return
  entry = (list(update_ops or []), _context(tf.compat.v1.get_default_graph()))
  with _lock:
    updates = call.history.updates
    while len(updates) < call.number:
      updates.append(([], _UNRECORDED))
    if len(updates) == call.number:
      updates.append(entry)
