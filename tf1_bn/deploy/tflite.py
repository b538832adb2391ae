"""TFLite conversion of an exported SavedModel, verified like the SavedModel.

`tf.lite.TFLiteConverter.from_saved_model` converts; LiteRT's interpreter
(`ai_edge_litert`, the `deploy` extra) runs the result, else
`tf.lite.Interpreter` where it still exists. Conversion and the runs happen in
a child process (`python -m tf1_bn.deploy.tflite`): the int8 converter has
been seen to abort the whole process (SIGABRT) on graphs it does not expect,
and a crash must not take `tf1-bn export`'s exit status with it.

Pitfalls the report accounts for:

* the converter folds inference-mode BN itself and turns a training-mode
  FusedBatchNormV3 into MEAN / SQUARED_DIFFERENCE / RSQRT without Flex ops,
  so a TFLite op list proves neither folding nor a bound switch: the
  SavedModel is verified first;
* full-integer quantization uses one scale per tensor for activations: a BN
  channel with a tiny variance has a huge `s = gamma / sqrt(var + eps)`, its
  folded weights and outputs outgrow their neighbours and the other channels
  round to a few levels. Such channels are flagged (|s| more than
  `FLAG_RATIO` times the layer's median |s|).
"""
import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np

from tf1_bn.deploy import verify

FLOAT_FILE = 'model.tflite'
INT8_FILE = 'model_int8.tflite'
FLAG_RATIO = 10.0
CHILD_TIMEOUT_S = 600
_UNSUPPORTED_OP = re.compile(r"'tf\.(\w+)' op is neither")
_LISTED_OPS = re.compile(r'^(?:Custom|Flex) ops: (.+)$', re.MULTILINE)


@dataclasses.dataclass
class Result:
  """One converted model (TFLite float or int8, ONNX): where it is, its ops,
  how it compares with the reference; `error` when converting or running
  failed."""
  kind: str
  path: str = None
  ops: dict = dataclasses.field(default_factory=dict)
  comparisons: list = dataclasses.field(default_factory=list)
  error: str = None
  interpreter: str = None
  flagged: list = dataclasses.field(default_factory=list)
  held_to_rtol: bool = True

  @property
  def ok(self):
    if self.error is not None:
      return False
    return all(c.ok for c in self.comparisons) if self.held_to_rtol else True

  def summary(self):
    if self.error is not None:
      return f'{self.kind}: FAILED: {self.error}'
    worst = max((c.relative for c in self.comparisons), default=0.0)
    text = f'{self.kind}: {os.path.basename(self.path)}, relative error {worst:.3g}'
    agreement = [c.argmax_agreement for c in self.comparisons if c.argmax_agreement is not None]
    if agreement:
      text += f', argmax agreement {min(agreement):.0%}'
    return text

  def markdown(self, title):
    lines = [f'## {title}', '']
    if self.error is not None:
      return lines + [f'Failed: {self.error}', '']
    lines += [f'Runtime: {self.interpreter}. Ops: ' +
              ', '.join(f'{op} x{n}' for op, n in sorted(self.ops.items())) + '.', '']
    if self.kind != 'onnx':
      flex = [op for op in self.ops if op.startswith('Flex')]
      lines += [f'Flex (TensorFlow) ops: {", ".join(flex) if flex else "none"}.', '']
    if self.held_to_rtol:
      lines += ['Against the original graph:', '']
    else:
      lines += ['Agreement with the float model (the original graph), not held to --rtol:', '']
    lines += [verify.table_of(self.comparisons, self.held_to_rtol), '']
    agreement = [(c.output, c.argmax_agreement) for c in self.comparisons
                 if c.argmax_agreement is not None]
    if self.held_to_rtol:
      lines += [f'Argmax agreement of `{o}`: {a:.1%}.' for o, a in agreement]
    if self.flagged:
      lines += ['', f'BN channels whose scale |s| is more than {FLAG_RATIO:g} times their '
                f'layer\'s median (tiny variance: their folded weights outgrow their '
                f'neighbours and ruin per-tensor int8 scales):', '']
      lines += [f'- `{layer}` channel {c}: variance {var:.3g}, |s| = {ratio:.0f} x median'
                for layer, c, var, ratio in self.flagged]
    elif self.kind == 'int8':
      lines += ['', f'No BN channel has |s| above {FLAG_RATIO:g} times its layer\'s median.']
    return lines + ['']


def tiny_variance_channels(found):
  """[(BN output, channel, variance, |s| / median |s|)] above FLAG_RATIO."""
  from tf1_bn.deploy import folding
  flagged = []
  for record in found.records:
    mean, scale, _ = folding.inference_parameters(record, found.values)
    magnitude = np.abs(scale).reshape(-1)
    median = float(np.median(magnitude))
    if median <= 0 or magnitude.size < 2:
      continue
    variance = np.broadcast_to(np.asarray(found.values[record['variance']], np.float64).reshape(
        -1), magnitude.shape)
    for channel in np.flatnonzero(magnitude > FLAG_RATIO * median):
      flagged.append((record['output'], int(channel), float(variance[channel]),
                      float(magnitude[channel] / median)))
  return flagged


def one_line(text):
  """The converter's failure in one line, naming the ops it cannot convert."""
  ops = sorted(set(_UNSUPPORTED_OP.findall(text)))
  for listed in _LISTED_OPS.findall(text):
    ops = sorted(set(ops) | {op.strip() for op in listed.split(',') if op.strip()})
  if ops:
    return (f'TFLite cannot convert the op(s) {", ".join(ops)} (neither TFLite builtins nor '
            f'allowed as Flex ops)')
  lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
  for line in reversed(lines):
    if 'error' in line.lower():
      return line[:500]
  return lines[-1][:500] if lines else 'no message'


def convert_and_verify(saved_model, out_dir, inputs, reference, rtol, int8=False, found=None):
  """(float Result, int8 Result or None) for the SavedModel in `saved_model`,
  written to `out_dir`. One child process converts and runs both models,
  float first, leaving each one's outputs in a file as soon as it has them:
  when it dies on the int8 model, the float one is still reported."""
  kinds = ('float', 'int8') if int8 else ('float',)
  data = os.path.join(out_dir, '.tflite_inputs.npz')
  np.savez(data, **inputs)
  files = {kind: os.path.join(out_dir, INT8_FILE if kind == 'int8' else FLOAT_FILE)
           for kind in kinds}
  ran = {kind: os.path.join(out_dir, f'.tflite_{kind}_outputs.npz') for kind in kinds}
  info = {kind: ran[kind] + '.json' for kind in kinds}
  command = [sys.executable, '-m', 'tf1_bn.deploy.tflite', saved_model, data] + [
      f'{kind}={files[kind]}' for kind in kinds]
  failure = None
  try:
    child = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    if child.returncode < 0:
      failure = f'the converter process died (signal {-child.returncode})'
    elif child.returncode != 0:
      failure = one_line(child.stderr)
  except subprocess.TimeoutExpired:
    failure = f'conversion took over {CHILD_TIMEOUT_S} s'
  results = []
  try:
    for kind in kinds:
      result = Result(kind, held_to_rtol=kind == 'float')
      if not os.path.exists(info[kind]):
        if os.path.exists(files[kind]):
          os.remove(files[kind])
        result.error = failure or 'no result'
        failure = failure and f'not tried: {failure}'
        results.append(result)
        continue
      with open(info[kind], encoding='utf-8') as f:
        details = json.load(f)
      result.path, result.ops, result.interpreter = files[kind], details['ops'], details[
          'interpreter']
      with np.load(ran[kind]) as outputs:
        result.comparisons = [verify.compare(k, outputs[k], reference[k], rtol)
                              for k in reference]
      if kind == 'int8' and found is not None:
        result.flagged = tiny_variance_channels(found)
      results.append(result)
  finally:
    for path in [data] + list(ran.values()) + list(info.values()):
      if os.path.exists(path):
        os.remove(path)
  return results[0], (results[1] if len(results) > 1 else None)


# --- the child process --------------------------------------------------------
def _interpreter(path):
  try:
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_path=path), 'ai_edge_litert'
  except ImportError:
    import tensorflow as tf
    return tf.lite.Interpreter(model_path=path), 'tf.lite.Interpreter'


def _convert(saved_model, kind, inputs):
  import tensorflow as tf
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
  if kind == 'int8':
    samples = min(len(v) for v in inputs.values())

    def representative():
      for i in range(samples):
        yield {k: v[i:i + 1] for k, v in inputs.items()}

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  return converter.convert()


def _child(saved_model, data, *targets):
  with np.load(data) as loaded:
    inputs = {k: loaded[k] for k in loaded.files}
  for target in targets:
    kind, path = target.split('=', 1)
    outputs = os.path.join(os.path.dirname(path), f'.tflite_{kind}_outputs.npz')
    model = _convert(saved_model, kind, inputs)
    with open(path, 'wb') as f:
      f.write(model)
    interpreter, name = _interpreter(path)
    ops = {}
    for op in interpreter._get_ops_details():  # the only op listing both interpreters have
      ops[op['op_name']] = ops.get(op['op_name'], 0) + 1
    ran = interpreter.get_signature_runner('serving_default')(**inputs)
    np.savez(outputs, **{k: np.asarray(v) for k, v in ran.items()})
    with open(outputs + '.json', 'w', encoding='utf-8') as f:
      json.dump({'ops': ops, 'interpreter': name}, f)


if __name__ == '__main__':
  import logging
  import warnings
  warnings.simplefilter('ignore')
  logging.disable(logging.WARNING)
  _child(*sys.argv[1:])
