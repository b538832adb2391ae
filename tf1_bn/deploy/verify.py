"""Verifying an export: its outputs against the original graph's.

The reference is the original graph, restored, run with its training switch
bound as the export binds it. The inputs come from an .npz file (arrays keyed
by input name) or are drawn from a normal distribution with the declared
shapes (unknown dimensions taken as the batch size).

Errors are measured per output as the largest absolute difference and the
relative error `max|y - ref| / max|ref|` (a norm-wise ratio: element-wise
ratios explode where the reference crosses zero). An output verifies when
the relative error is at most `rtol`.
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf

from tf1_bn.deploy import folding

DEFAULT_RTOL = 1e-5
DEFAULT_BATCH = 2
SEED = 0


@dataclasses.dataclass
class Comparison:
  output: str
  shape: tuple
  max_abs: float
  relative: float
  rtol: float
  argmax_agreement: float = None  # classifier outputs ([batch, classes])

  @property
  def ok(self):
    return bool(np.isfinite(self.relative) and self.relative <= self.rtol)


def compare(name, value, reference, rtol):
  value = np.asarray(value, np.float64)
  reference = np.asarray(reference, np.float64)
  if value.shape != reference.shape:
    return Comparison(name, value.shape, float('inf'), float('inf'), rtol)
  difference = float(np.max(np.abs(value - reference))) if value.size else 0.0
  scale = float(np.max(np.abs(reference))) if reference.size else 0.0
  relative = difference / scale if scale > 0 else (0.0 if difference == 0 else float('inf'))
  agreement = None
  if reference.ndim == 2 and reference.shape[1] > 1:
    agreement = float(np.mean(np.argmax(value, 1) == np.argmax(reference, 1)))
  return Comparison(name, tuple(reference.shape), difference, relative, rtol, agreement)


def load_data(path, input_keys):
  """{input key: array} from an .npz whose keys are the inputs' names
  (`x`, `x:0`) or signature keys; raises ValueError for a missing one."""
  try:
    with np.load(os.fspath(path)) as data:
      arrays = {key: data[key] for key in data.files}
  except (OSError, ValueError) as error:
    raise ValueError(f'--data {path!r} is not a readable .npz file: {error}') from error
  chosen = {}
  for key, tensor in input_keys.items():
    for candidate in (key, tensor, folding.node_name(tensor)):
      if candidate in arrays:
        chosen[key] = arrays[candidate]
        break
    else:
      raise ValueError(f'--data {path!r} has no array for input {tensor!r} (keys: '
                       f'{", ".join(sorted(arrays))}).')
  return chosen


def random_inputs(graph, input_keys, batch, seed=SEED):
  """{key: array} drawn for each input placeholder's declared shape and dtype."""
  rng = np.random.default_rng(seed)
  inputs = {}
  for key, tensor_name in input_keys.items():
    tensor = graph.get_tensor_by_name(tensor_name)
    if tensor.shape.rank is None:
      raise ValueError(f'input {tensor_name!r} has no declared rank; pass --data FILE.npz.')
    shape = [batch if size is None else size for size in tensor.shape.as_list()]
    dtype = tensor.dtype.base_dtype
    if dtype.is_floating:
      inputs[key] = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
    elif dtype.is_integer:
      inputs[key] = rng.integers(0, 2, shape).astype(dtype.as_numpy_dtype)
    elif dtype == tf.bool:
      inputs[key] = np.zeros(shape, bool)
    else:
      raise ValueError(f'input {tensor_name!r} is a {dtype.name} tensor; pass --data FILE.npz.')
  return inputs


def run_saved_model(export_dir, inputs):
  """{output key: array} of the SavedModel's serving signature, run eagerly."""
  loaded = tf.saved_model.load(export_dir)
  function = loaded.signatures['serving_default']
  result = function(**{k: tf.constant(v) for k, v in inputs.items()})
  return {k: t.numpy() for k, t in result.items()}


def markdown_table(header, rows):
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)


def table_of(comparisons, held_to_rtol=True):
  """The report's table of `Comparison`s (without a verdict when they are not
  held to the tolerance, as int8 is not)."""
  if not held_to_rtol:
    rows = [(c.output, 'x'.join(map(str, c.shape)), f'{c.max_abs:.3g}', f'{c.relative:.3g}',
             '-' if c.argmax_agreement is None else f'{c.argmax_agreement:.1%}')
            for c in comparisons]
    return markdown_table(('output', 'shape', 'max abs error', 'relative error',
                           'argmax agreement'), rows)
  rows = [(c.output, 'x'.join(map(str, c.shape)), f'{c.max_abs:.3g}', f'{c.relative:.3g}',
           f'{c.rtol:g}', 'yes' if c.ok else '**no**') for c in comparisons]
  return markdown_table(('output', 'shape', 'max abs error', 'relative error', 'rtol', 'verified'),
                        rows)
