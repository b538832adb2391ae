"""`export_graph` / `tf1-bn export`: a verified serving model from any TF1 graph.

`export_inference` exports a model tf1_bn built in the same process. The
model a user brings was built years ago by tf.layers, tf-slim, Keras 2 or the
hand-written recipe, and saved as a meta graph + checkpoint, a frozen
GraphDef or a TF1 SavedModel (see `tf1_bn.deploy.sources`). `export_graph`
takes it through the same pipeline (`tf1_bn.deploy.pipeline`):

1. loads it into a session, variables restored;
2. binds its training switch to False and dropout's keep probability to 1.0
   (`tf1_bn.deploy.switches`: named with `training`, or found);
3. removes the dead branches before freezing, then the Switch / Merge ops,
   the moving-statistics and EMA updates and the batch moments go with them;
4. freezes the variables, finds every BN in inference mode
   (`tf1_bn.deploy.bn_forms`) and folds it into the conv / matmul before it
   in float64, else writes it as the exact `(x - mean) * s + beta`;
5. writes OUT/saved_model (signature `serving_default`) and verifies it
   against the original graph run with the switch False
   (`tf1_bn.deploy.verify`), always;
6. with `tflite` / `int8`, converts it to TFLite in a child process
   (`tf1_bn.deploy.tflite`) and verifies that too; with `onnx`, to ONNX
   (`tf1_bn.deploy.onnx_export`);
7. writes OUT/report.md: what was bound, folded, rewritten, removed and
   verified, op counts before and after, sizes.

OUT is written in a temporary directory beside it and renamed at the end:
after an error nothing is there. An existing OUT is refused unless it is an
empty directory or `force=True` (then it is replaced only once the new one is
complete).
"""
import dataclasses
import os
import re
import shutil
import sys
import tempfile
import time

import tensorflow as tf

from tf1_bn.common import log
from tf1_bn.common import validation as v
from tf1_bn.deploy import bn_forms
from tf1_bn.deploy import checkpoints
from tf1_bn.deploy import dropout_masks
from tf1_bn.deploy import folding
from tf1_bn.deploy import onnx_export
from tf1_bn.deploy import pipeline
from tf1_bn.deploy import sources
from tf1_bn.deploy import switches
from tf1_bn.deploy import tflite as tflite_lib
from tf1_bn.deploy import verify

SAVED_MODEL_DIR = 'saved_model'
REPORT_FILE = 'report.md'
# Op families whose counts the report follows before / after.
REMOVED_FAMILIES = {
    'Switch / Merge': pipeline.SWITCH_OPS + pipeline.MERGE_OPS,
    'assignments (moving statistics, EMA)': pipeline.ASSIGN_OPS,
    'random ops (dropout)': ('RandomUniform', 'RandomStandardNormal', 'TruncatedNormal'),
    'batch moments': ('Mean', 'SquaredDifference', 'StopGradient'),
    'BN ops': bn_forms.FUSED_OPS + (bn_forms.GLOBAL_NORMALIZATION_OP, 'Rsqrt'),
}


@dataclasses.dataclass
class ExportReport:
  """What `export_graph` did; `ok` when every verification passed."""
  source: str
  kind: str
  checkpoint: str
  bound: list
  candidates: tuple
  inputs: dict
  outputs: dict
  forms: dict
  folding: object
  training_mode: list
  ops_before: dict
  ops_after: dict
  pruned: int
  updates_dropped: int
  masks_removed: int
  conds_lowered: int
  saved_model: list = dataclasses.field(default_factory=list)  # verify.Comparison
  sizes: dict = dataclasses.field(default_factory=dict)
  tflite: object = None  # tflite.Result
  int8: object = None
  onnx: object = None
  seconds: float = 0.0
  data: str = None

  @property
  def ok(self):
    checks = list(self.saved_model)
    if self.tflite is not None:
      checks += self.tflite.comparisons
      if not self.tflite.ok:
        return False
    for result in (self.int8, self.onnx):
      if result is not None and not result.ok:
        return False
    return bool(checks) and all(c.ok for c in checks)

  def markdown(self):
    return _markdown(self)


def _key(name, taken):
  """A signature key from a tensor name: 'scope/x:0' -> 'scope_x'."""
  key = re.sub(r'[^A-Za-z0-9_]', '_', folding.node_name(name)) or 'tensor'
  base, index = key, 1
  while key in taken:
    key, index = f'{base}_{index}', index + 1
  taken.add(key)
  return key


def _tensors(graph, graph_def, names, arg_name, defaults):
  """{signature key: tensor name} for `names` (defaults: a SavedModel signature)."""
  if not names:
    if defaults:
      return dict(defaults)
    raise ValueError(f'{arg_name} is required for this SOURCE (no signature to take it from).')
  result, taken = {}, set()
  for name in names:
    if not isinstance(name, str) or not name:
      raise TypeError(f'{arg_name} must be tensor names, received {name!r}.')
    tensor = folding.canonical_tensor_name(name)
    try:
      graph.get_tensor_by_name(tensor)
    except (KeyError, ValueError):
      raise switches.not_found(graph_def, name, arg_name) from None
    result[_key(tensor, taken)] = tensor
  return result


def _prepare_out(out, force):
  out = os.path.abspath(v.check_path(out, 'OUT'))
  if os.path.exists(out):
    if not os.path.isdir(out):
      raise ValueError(f'OUT {out!r} exists and is not a directory.')
    if os.listdir(out) and not force:
      raise ValueError(f'OUT {out!r} exists and is not empty; remove it or pass --force '
                       f'(it is replaced only once the new export is complete).')
  return out


def _commit(temporary, out):
  """Renames the finished `temporary` to `out` (replacing an old one last)."""
  old = None
  if os.path.exists(out):
    old = tempfile.mkdtemp(prefix=f'.{os.path.basename(out)}.old-', dir=os.path.dirname(out))
    os.rmdir(old)
    os.rename(out, old)
  os.rename(temporary, out)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def _inference_graph(source, inputs, outputs, bound, fold):
  """(frozen inference graph_def, signature outputs, bn_forms.Found, report
  numbers) through the shared pipeline stages."""
  graph_def = source.graph.as_graph_def()
  output_nodes = pipeline.add_output_identities(
      graph_def, [(t, source.graph.get_tensor_by_name(t).dtype) for t in outputs.values()])
  before = pipeline.op_counts(pipeline.reachable(graph_def, output_nodes))
  graph_def, lowered = pipeline.lower_functional_conds(graph_def, output_nodes)
  pipeline.bind_constants(graph_def, {b.name: b.value for b in bound})
  pruned = pipeline.prune_dead_branches(graph_def)
  dropped = pipeline.drop_update_dependencies(graph_def)
  dropped += pipeline.drop_function_updates(graph_def)
  pipeline.drop_ordering_constraints(graph_def)  # colocations with pruned nodes
  frozen = pipeline.freeze(source.sess, graph_def, output_nodes)
  frozen, masks = dropout_masks.remove(frozen, output_nodes)
  found = bn_forms.find(frozen)
  rewritten, report = pipeline.rewrite_bn(frozen, found.records, found.values, output_nodes,
                                          fold=fold)
  kept = {n.name for n in rewritten.node}
  unused = [t for t in inputs.values() if folding.node_name(t) not in kept]
  if unused:
    raise ValueError(f'--inputs {", ".join(unused)}: no output depends on them once training '
                     f'is False; remove them (labels or training-only inputs).')
  numbers = dict(before=before, after=pipeline.op_counts(rewritten), pruned=pruned,
                 dropped=dropped, masks=masks, lowered=lowered, folding=report)
  return rewritten, dict(zip(outputs, (n + ':0' for n in output_nodes))), found, numbers


def _reference(source, inputs, outputs, bound, data):
  feeds = {source.graph.get_tensor_by_name(t): data[k] for k, t in inputs.items()}
  for binding in bound:
    tensor = source.graph.get_tensor_by_name(binding.name + ':0')
    if tensor.op.type in pipeline.PLACEHOLDER_OPS:
      feeds[tensor] = binding.value
  variables = [b for b in bound if source.graph.get_operation_by_name(b.name).type
               in pipeline.VARIABLE_OPS]
  if variables:  # a bool variable switch: the reference runs it as False
    for binding in variables:
      variable = [var for var in source.graph.get_collection(
          tf.compat.v1.GraphKeys.GLOBAL_VARIABLES) if var.op.name == binding.name][0]
      with source.graph.as_default():  # our own session: nothing of the user's changes
        source.sess.run(variable.assign(binding.value))
  fetched = source.sess.run({k: source.graph.get_tensor_by_name(t)
                             for k, t in outputs.items()}, feeds)
  return fetched


def _source_size(source):
  if source.kind == sources.KINDS[0]:
    files = [source.path] + checkpoints.data_files(source.checkpoint) + [
        source.checkpoint + '.index']
    return sum(os.path.getsize(f) for f in files if os.path.isfile(f))
  if os.path.isdir(source.path):
    return pipeline.directory_size(source.path)
  return os.path.getsize(source.path)


def export_graph(source, out, inputs=None, outputs=None, checkpoint=None, tag=None,
                 signature=None, training=(), data=None, batch=verify.DEFAULT_BATCH,
                 rtol=verify.DEFAULT_RTOL, tflite=False, int8=False, onnx=False, fold=True,
                 force=False):
  """Exports a TF1 model tf1_bn did not build as a verified serving model.

  Args:
    source: a .meta file, a checkpoint prefix or directory with its .meta, a
      frozen GraphDef .pb, or a TF1 SavedModel directory.
    out: the directory to write: OUT/saved_model, OUT/report.md, with
      `tflite` OUT/model.tflite, with `int8` OUT/model_int8.tflite.
    inputs, outputs: tensor names ('x' or 'x:0'); the signature keys are
      their op names with '/' as '_'. Default: the SavedModel's signature.
    checkpoint: the checkpoint of a .meta (default: the .meta's prefix).
    tag, signature: which meta graph and signature of a SavedModel.
    training: 'NAME' or 'NAME=false' strings naming the training switches
      (bool placeholders, placeholder_with_defaults, bool variables) to bind
      to False, or 'NAME=0.5'-style for a float placeholder; without them the
      only bool candidate is bound (several: ValueError listing them).
    data: an .npz of inputs keyed by input name, for the verification and
      the int8 representative dataset; default random normal inputs with
      unknown dimensions set to `batch`.
    rtol: the relative error an output may have (see `tf1_bn.deploy.verify`).
    tflite, int8: also convert to TFLite (float; full-integer quantized).
    onnx: also convert to ONNX with tf2onnx, run by onnxruntime (the `onnx`
      extra; ValueError when they are not installed).
    fold: fold BN into the op before it (else every BN becomes the exact form).
    force: replace an existing non-empty OUT.

  Returns:
    An `ExportReport`; `ok` when every verification passed (the command's
    exit status 0, else 1 with everything written).

  Raises:
    CheckpointError: a missing or damaged checkpoint, or one without a
      variable of the graph; nothing is written.
    ValueError / TypeError: bad arguments (a name not in the graph is listed
      with the close names); nothing is written.
  """
  started = time.perf_counter()
  out = _prepare_out(out, force)
  batch = v.check_integer(batch, 'batch', low=1)
  rtol = v.check_positive(rtol, 'rtol')
  tflite = v.check_bool(tflite, 'tflite') or v.check_bool(int8, 'int8')
  if v.check_bool(onnx, 'onnx'):
    onnx_export.check_available()
  loaded = sources.load(source, checkpoint, tag, signature)
  try:
    graph, graph_def = loaded.graph, loaded.graph.as_graph_def()
    input_keys = _tensors(graph, graph_def, inputs, '--inputs', loaded.signature_inputs)
    output_keys = _tensors(graph, graph_def, outputs, '--outputs', loaded.signature_outputs)
    bound, switch_names, keep_names = switches.bindings(graph_def, list(training or ()))
    values = (verify.load_data(data, input_keys) if data is not None
              else verify.random_inputs(graph, input_keys, batch))
    rewritten, signature_outputs, found, numbers = _inference_graph(
        loaded, input_keys, output_keys, bound, v.check_bool(fold, 'fold'))
    reference = _reference(loaded, input_keys, output_keys, bound, values)
    report = ExportReport(
        source=os.fspath(source), kind=loaded.kind, checkpoint=loaded.checkpoint, bound=bound,
        candidates=(switch_names, keep_names), inputs=input_keys, outputs=output_keys,
        forms=found.forms, folding=numbers['folding'], training_mode=found.training_mode,
        ops_before=numbers['before'], ops_after=numbers['after'], pruned=numbers['pruned'],
        updates_dropped=numbers['dropped'], masks_removed=numbers['masks'],
        conds_lowered=numbers['lowered'], data=None if data is None else os.fspath(data))
    report.sizes['source'] = _source_size(loaded)
  finally:
    loaded.close()
  parent = os.path.dirname(out)
  created = checkpoints.new_directories(parent)
  os.makedirs(parent, exist_ok=True)
  temporary = tempfile.mkdtemp(prefix=f'.{os.path.basename(out)}.tmp-', dir=parent)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(temporary, 0o777 & ~umask)  # mkdtemp's 0700 is for the temporary name only
  try:
    saved_model = os.path.join(temporary, SAVED_MODEL_DIR)
    pipeline.write_saved_model(rewritten, input_keys, signature_outputs, saved_model)
    exported = verify.run_saved_model(saved_model, values)
    report.saved_model = [verify.compare(k, exported[k], reference[k], rtol) for k in output_keys]
    report.sizes['saved_model'] = pipeline.directory_size(saved_model)
    if tflite:
      report.tflite, report.int8 = tflite_lib.convert_and_verify(
          saved_model, temporary, values, reference, rtol, int8=int8, found=found)
    if onnx:
      report.onnx = onnx_export.convert_and_verify(saved_model, temporary, values, reference, rtol)
    for result in (report.tflite, report.int8, report.onnx):
      if result is not None and result.path:
        report.sizes[os.path.basename(result.path)] = os.path.getsize(result.path)
    report.seconds = time.perf_counter() - started
    with open(os.path.join(temporary, REPORT_FILE), 'w', encoding='utf-8') as f:
      f.write(report.markdown())
    _commit(temporary, out)
  except BaseException:
    shutil.rmtree(temporary, ignore_errors=True)
    for directory in reversed(created):
      if os.path.isdir(directory) and not os.listdir(directory):
        os.rmdir(directory)
    raise
  return report


# --- the report ---------------------------------------------------------------
def _family_rows(report):
  rows = []
  for family, ops in REMOVED_FAMILIES.items():
    before = sum(report.ops_before.get(op, 0) for op in ops)
    after = sum(report.ops_after.get(op, 0) for op in ops)
    rows.append((family, before, after))
  rows.append(('all ops', sum(report.ops_before.values()), sum(report.ops_after.values())))
  return rows


def _markdown(report):
  switch_names, keep_names = report.candidates
  lines = [f'# tf1-bn export: {report.source}', '',
           f'- source: {report.kind}' + (f', checkpoint `{report.checkpoint}`'
                                         if report.checkpoint else ''),
           f'- inputs: ' + ', '.join(f'`{k}` = `{t}`' for k, t in report.inputs.items()),
           f'- outputs: ' + ', '.join(f'`{k}` = `{t}`' for k, t in report.outputs.items()),
           f'- verification inputs: ' + (f'`{report.data}`' if report.data
                                         else 'random normal (seed 0)'),
           f'- status: ' + ('verified' if report.ok else '**not verified**'), '',
           '## Bound', '']
  lines += [f'- `{b.name}` = {b.value!r} ({b.why})' for b in report.bound] or ['- nothing']
  lines += ['', f'Training switch candidates: {", ".join(switch_names) or "none"}; '
            f'keep-probability candidates: {", ".join(keep_names) or "none"}.', '',
            '## BN layers', '']
  folded = report.folding.into_ops
  for output, form in report.forms.items():
    if output in folded:
      lines.append(f'- `{output}` ({form}): folded into `{folded[output]}`')
    elif output in report.folding.multiply_add:
      lines.append(f'- `{output}` ({form}): rewritten as the exact (x - mean) * s + beta')
    elif output in report.folding.kept:
      lines.append(f'- `{output}` ({form}): 16-bit, kept as FusedBatchNormV3')
  if not report.forms:
    lines.append('- none found in inference mode')
  lines += [f'- `{name}`: a FusedBatchNorm with is_training=True left on the output path '
            f'(it normalizes by the batch)' for name in report.training_mode]
  lines += ['', f'{report.folding.folded} folded, {len(report.folding.multiply_add)} rewritten '
            f'exactly.', '', '## Removed', '',
            f'{report.pruned} Switch / Merge ops of the graph resolved by pruning dead branches; '
            f'{report.updates_dropped} control dependencies on updates dropped; '
            f'{report.masks_removed} dropout mask(s) that keep everything removed.' + (
                f' {report.conds_lowered} functional cond(s) (If) lowered to Switch / Merge '
                f'first.' if report.conds_lowered else ''), '',
            verify.markdown_table(('ops', 'before', 'after'), _family_rows(report)), '',
            '## Verification (SavedModel against the original graph, training False)', '',
            verify.table_of(report.saved_model), '']
  if report.tflite is not None:
    lines += report.tflite.markdown('TFLite (float)')
  if report.int8 is not None:
    lines += report.int8.markdown('TFLite (int8, full-integer post-training quantization)')
  if report.onnx is not None:
    lines += report.onnx.markdown('ONNX (tf2onnx, onnxruntime)')
  lines += ['## Sizes', '', verify.markdown_table(('artefact', 'bytes'), report.sizes.items()), '',
            '## Op counts', '',
            verify.markdown_table(('op', 'before', 'after'),
                   [(op, report.ops_before.get(op, 0), report.ops_after.get(op, 0))
                    for op in sorted(set(report.ops_before) | set(report.ops_after))]), '',
            f'Export took {report.seconds:.1f} s.', '']
  return '\n'.join(lines)


# --- the command --------------------------------------------------------------
def build_parser(parser=None):
  import argparse
  parser = parser or argparse.ArgumentParser(prog='tf1-bn export')
  parser.add_argument('source', metavar='SOURCE',
                      help='a .meta file, a checkpoint prefix or directory with its .meta, a '
                      'frozen GraphDef .pb, or a TF1 SavedModel directory')
  parser.add_argument('out', metavar='OUT', help='directory to write (saved_model/, report.md)')
  parser.add_argument('--inputs', nargs='+', metavar='NAME', help='input tensors (x or x:0)')
  parser.add_argument('--outputs', nargs='+', metavar='NAME', help='output tensors')
  parser.add_argument('--checkpoint', metavar='PREFIX',
                      help='checkpoint of a .meta (default: the same prefix)')
  parser.add_argument('--tag', help=f'SavedModel tag (default {sources.DEFAULT_TAG})')
  parser.add_argument('--signature',
                      help=f'SavedModel signature (default {sources.DEFAULT_SIGNATURE})')
  parser.add_argument('--training', action='append', default=[], metavar='NAME[=false]',
                      help='a training switch to bind to False (repeatable); default: the only '
                      'bool candidate')
  parser.add_argument('--data', metavar='FILE.npz',
                      help='inputs keyed by input name (verification, int8 calibration)')
  parser.add_argument('--batch', type=int, default=verify.DEFAULT_BATCH,
                      help='batch size of random inputs (default %(default)s)')
  parser.add_argument('--rtol', type=float, default=verify.DEFAULT_RTOL,
                      help='relative tolerance of the verification (default %(default)s)')
  parser.add_argument('--tflite', action='store_true', help='also write OUT/model.tflite')
  parser.add_argument('--int8', action='store_true',
                      help='also write OUT/model_int8.tflite (implies --tflite)')
  parser.add_argument('--onnx', action='store_true',
                      help='also write OUT/model.onnx (needs tf2onnx and onnxruntime)')
  parser.add_argument('--no-fold', dest='fold', action='store_false',
                      help='write every BN as the exact form instead of folding it')
  parser.add_argument('--force', action='store_true', help='replace a non-empty OUT')
  return parser


def main(argv=None):
  """Exit status 0 verified, 1 written but not verified (the report says
  which output), 2 (raised) unreadable input or bad arguments."""
  args = build_parser().parse_args(argv)
  tf.get_logger().setLevel('ERROR')  # TensorFlow's deprecation notices are not the tool's
  with log.native_stderr_silenced():  # and neither are its C++ lines
    report = export_graph(args.source, args.out, args.inputs, args.outputs, args.checkpoint,
                          args.tag, args.signature, args.training, args.data, args.batch,
                          args.rtol, args.tflite, args.int8, args.onnx, args.fold, args.force)
  status = 'verified' if report.ok else 'NOT verified (see report.md)'
  print(f'wrote {args.out} ({report.folding.summary()}); {status}')
  for comparison in report.saved_model:
    print(f'  saved_model {comparison.output}: relative error {comparison.relative:.3g}')
  for result in (report.tflite, report.int8, report.onnx):
    if result is not None:
      print(f'  {result.summary()}')
  return 0 if report.ok else 1


if __name__ == '__main__':
  sys.exit(main())
