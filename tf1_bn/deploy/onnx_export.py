"""ONNX conversion of an exported SavedModel (`tf1-bn export --onnx`).

tf2onnx (the `onnx` extra: `tf2onnx`, `onnxruntime`) converts the exported
SavedModel, not the original graph: the switch is bound, the dead branches
are gone and BN is folded, so nothing training-only reaches the converter
(tf2onnx warns "is_training set to true ... please re-save the model with
training set to false" on an unbound graph). tf2onnx 1.17 runs on TensorFlow
2.21 for such graphs; it is no longer actively maintained, so it runs in a
child process (`python -m tf2onnx.convert`) and a failure is reported, not
raised. onnxruntime runs the model, verified like the SavedModel.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np

from tf1_bn.deploy import tflite
from tf1_bn.deploy import verify

ONNX_FILE = 'model.onnx'
OPSET = 17
REQUIRED = ('tf2onnx', 'onnxruntime')


def check_available():
  """Raises ValueError when the converter or the runtime is not installed."""
  missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
  if missing:
    raise ValueError(f'--onnx needs {" and ".join(missing)} (pip install tf1_bn[onnx]).')


def convert_and_verify(saved_model, out_dir, inputs, reference, rtol):
  """A `tflite.Result` of kind 'onnx' for OUT/model.onnx."""
  path = os.path.join(out_dir, ONNX_FILE)
  result = tflite.Result('onnx', interpreter='onnxruntime')
  command = [sys.executable, '-m', 'tf2onnx.convert', '--saved-model', saved_model,
             '--output', path, '--opset', str(OPSET)]
  try:
    child = subprocess.run(command, capture_output=True, text=True,
                           timeout=tflite.CHILD_TIMEOUT_S,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  except subprocess.TimeoutExpired:
    result.error = f'tf2onnx took over {tflite.CHILD_TIMEOUT_S} s'
    return result
  if child.returncode != 0 or not os.path.exists(path):
    result.error = (f'tf2onnx died (signal {-child.returncode})' if child.returncode < 0
                    else 'tf2onnx: ' + tflite.one_line(child.stderr))
    if os.path.exists(path):
      os.remove(path)
    return result
  import onnx
  import onnxruntime
  model = onnx.load(path)
  for node in model.graph.node:
    result.ops[node.op_type] = result.ops.get(node.op_type, 0) + 1
  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  names = [o.name for o in session.get_outputs()]
  values = session.run(names, {k: np.asarray(v) for k, v in inputs.items()})
  ran = dict(zip(names, values))
  result.path = path
  result.comparisons = [verify.compare(k, ran[k], reference[k], rtol) for k in reference]
  return result
