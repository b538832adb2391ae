"""Inference export: a SavedModel in which training is the constant False.

A session graph built with a training placeholder holds, per tf1_bn layer, a
cond with a training path and the moving-statistics update. Freezing it as is
serves whatever the placeholder defaults to, keeps both paths, and keeps the
update ops. `export_inference` instead:

1. wires every tf1_bn switch output to the inference path tf1_bn built beside
   the cond (see `switch.switch`), and drops control dependencies on update ops
   (`updates='inline'`), so no cond, no training path and no update is
   reachable from the outputs;
2. replaces any training placeholder still reachable (a cond of your own) by
   the constant False, and removes the branches that rules out (the stages
   are `tf1_bn.deploy.pipeline`'s, shared with `tf1_bn.export_graph`);
3. freezes the variables into constants and keeps only what the outputs need;
4. with `fold=True`, folds each BN layer into the conv / matmul before it;
   every other layer (all of them with `fold=False`) becomes explicit
   `(x - mean) * s + beta` ops (see `tf1_bn.deploy.folding`): left as
   FusedBatchNormV3 with constant parameters, a float32 layer would be
   rewritten by grappler's remapper into `x * s + (beta - mean * s)`, which
   cancels when the mean is large against the spread;
5. turns off XLA compilation for what is left of tf1_bn's inference kernel
   (16-bit layers that do not fold), so the model also serves where XLA cannot
   run (a GPU server without CUDA's libdevice, converters): it runs as
   FusedBatchNormV3;
6. writes a SavedModel with one serving signature from `inputs` / `outputs`;
   an input that no output depends on is refused, naming it (serving would
   demand a value that nothing reads, such as the labels).

Only layers built by tf1_bn are rewired and folded; a hand-written recipe or a
legacy layer in the same graph is frozen with training False but keeps its ops.
"""
import logging
import os

import tensorflow as tf

from tf1_bn.bn import core
from tf1_bn.deploy import folding
from tf1_bn.deploy import pipeline
from tf1_bn.bn import switch as switch_lib
from tf1_bn.common import validation as v

log = logging.getLogger('tf1_bn')

OUTPUT_SCOPE = pipeline.OUTPUT_SCOPE


def _check_signature(mapping, arg_name, graph):
  if not isinstance(mapping, dict) or not mapping:
    raise TypeError(f'`{arg_name}` must be a non-empty dict of signature name to tensor, '
                    f'received {mapping!r}.')
  for key, tensor in mapping.items():
    if not isinstance(key, str) or not tf.is_tensor(tensor) or tensor.graph is not graph:
      raise TypeError(f'`{arg_name}` must map strings to tensors of the session\'s graph, '
                      f'received {key!r}: {tensor!r}.')


def _check_training_tensors(training, graph):
  for tensor in training if isinstance(training, (list, tuple)) else [training]:
    if tensor is None:
      continue
    if not tf.is_tensor(tensor) or tensor.dtype.base_dtype != tf.bool or tensor.graph is not graph:
      raise TypeError(f'`training` must be None or tf.bool tensors of the session\'s graph '
                      f'(your own training switches), received {tensor!r}.')


def _inference_twins(graph):
  """{switched tensor name: the inference tensor built beside its cond}."""
  return dict(pair.split(' ') for pair in graph.get_collection(switch_lib.INFERENCE_SHADOWS_KEY))


def _wire_inference_paths(graph_def, twins):
  """Points every consumer of a tf1_bn switch output at its inference twin."""
  update_marker = '/' + core.UPDATE_SCOPE + '/'
  for node in graph_def.node:
    inputs = []
    for name in node.input:
      if name.startswith('^'):
        if update_marker in name:
          continue  # an inline update: inference never runs it
        inputs.append(name)
      else:
        canonical = folding.canonical_tensor_name(name)
        inputs.append(twins.get(canonical, name))
    del node.input[:]
    node.input.extend(inputs)


def inference_graph_def(sess, outputs, training=None, fold=True):
  """The frozen inference GraphDef computing `outputs` (a list of tensors).

  Returns (graph_def, names of the output tensors in it, folding.Report).
  """
  graph = sess.graph
  graph_def = graph.as_graph_def()
  output_names = pipeline.add_output_identities(graph_def, [(t.name, t.dtype) for t in outputs])
  twins = _inference_twins(graph)
  _wire_inference_paths(graph_def, twins)
  training_tensors = [t for t in (training if isinstance(training, (list, tuple))
                                  else [training]) if t is not None]
  training_tensors += graph.get_collection(switch_lib.TRAINING_PLACEHOLDER_KEY)
  pipeline.bind_constants(graph_def, {t.op.name: False for t in training_tensors})
  pipeline.prune_dead_branches(graph_def)
  pipeline.drop_function_updates(graph_def)
  # A layer fed by another layer's switch reads that layer's inference twin now.
  layer_records = [dict(r, input=twins.get(r['input'], r['input'])) for r in folding.records(graph)]
  frozen = pipeline.freeze(sess, graph_def, output_names)
  frozen, report = pipeline.rewrite_bn(frozen, layer_records,
                                       folding.parameter_values(sess, layer_records),
                                       output_names, fold=fold)
  return frozen, [n + ':0' for n in output_names], report


def _check_inputs_used(inputs, graph_def):
  """Every signature input must still be in the pruned inference graph."""
  kept = {node.name for node in graph_def.node}
  unused = {key: t.name for key, t in inputs.items() if t.op.name not in kept}
  if unused:
    listed = ', '.join(f'{key!r} ({name})' for key, name in sorted(unused.items()))
    raise ValueError(
        f'`inputs` has entries that no output depends on in inference: {listed}. A serving '
        f'signature would make every caller send them and nothing would read them (labels '
        f'or training-only inputs, for example); remove them from `inputs`.')


def export_inference(sess, inputs, outputs, export_dir, fold=True, training=None):
  """Writes a serving SavedModel of the session's model with training False.

  Args:
    sess: the session holding the trained variables.
    inputs: dict of signature input name to placeholder tensor.
    outputs: dict of signature output name to tensor.
    export_dir: a directory that must not exist yet.
    fold: fold each tf1_bn BN layer into the conv2d / conv2d_transpose /
      depthwise conv2d / conv3d / conv3d_transpose / matmul (with or without
      a bias add, through reshapes and transposes that keep the batch first)
      before it; a layer that does not fold, and every layer with
      `fold=False`, becomes explicit `(x - mean) * s + beta` ops.
    training: your own training switch tensor(s), if any, to freeze to
      False as well; `tf1_bn.training_placeholder()` always is.

  Returns:
    A `tf1_bn.deploy.folding.Report`: how many BN layers were folded into an op,
    how many became a multiply-add, which 16-bit ones kept the kernel, and
    their names. Also logged (logger 'tf1_bn', INFO).

  Raises:
    TypeError: `sess`, `inputs` or `outputs` are not what is described above.
    ValueError: `export_dir` exists, or an `inputs` entry is not needed by
      any output (the message names it).

  The SavedModel loads with `tf.saved_model.load(export_dir)` in eager
  TensorFlow 2: `loaded.signatures['serving_default'](**inputs)` returns the
  outputs dict.
  """
  v.check_session(sess)
  _check_signature(inputs, 'inputs', sess.graph)
  _check_signature(outputs, 'outputs', sess.graph)
  export_dir = v.check_path(export_dir, 'export_dir')
  if os.path.exists(export_dir):
    raise ValueError(f'`export_dir` must not exist yet (SavedModel refuses to overwrite), '
                     f'received {export_dir!r}, which exists.')
  fold = v.check_bool(fold, 'fold')
  _check_training_tensors(training, sess.graph)
  graph_def, output_names, report = inference_graph_def(sess, list(outputs.values()), training,
                                                        fold)
  _check_inputs_used(inputs, graph_def)
  pipeline.write_saved_model(graph_def, {k: t.name for k, t in inputs.items()},
                             dict(zip(outputs, output_names)), export_dir)
  log.info('export_inference: %s', report.summary())
  return report
