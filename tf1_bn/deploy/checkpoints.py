"""BN checkpoints of every TF1 convention: inspect, port, restore.

Conventions, by the names their variables get (`P` is the layer's path):

| convention | gamma / beta | moving mean | moving variance |
|---|---|---|---|
| `tf.layers` (and Keras 2) | `P/gamma`, `P/beta`, P ends in `batch_normalization[_N]` | `P/moving_mean` | `P/moving_variance` |
| `slim` (tf.contrib.layers) | same, P ends in `BatchNorm` | `P/moving_mean` | `P/moving_variance` |
| `sonnet` (Sonnet 1) | same, P ends in `batch_norm`; shapes keep the reduced axes as 1 | `P/moving_mean` | `P/moving_variance` |
| `tensorpack` | `P/gamma`, `P/beta` | `P/mean/EMA` | `P/variance/EMA` |
| `recipe` (moments + ExponentialMovingAverage) | `P/gamma`, `P/beta` (or the blog's `P/beat`) | `P/<op scope>/moments/Squeeze/<ema name>` | `.../moments/Squeeze_1/<ema name>` |
| `bn_layer` (tf1_bn) | `P/gamma`, `P/beta`, any other P | `P/moving_mean` | `P/moving_variance` |

Helper variables that only one convention understands (slim's and the
EMA's zero-debias `biased` / `local_step`) are kept when porting to that
convention and dropped otherwise; the moving statistics they belong to
already hold the debiased values. Other variables under a layer's path
(renorm statistics, optimizer slots) move with the layer.
"""
import collections
import dataclasses
import glob
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from tf1_bn.common import assignment
from tf1_bn.common import validation as v
from tf1_bn.common.errors import CheckpointError, RestoreError

v1 = tf.compat.v1

CONVENTIONS = ('tf.layers', 'slim', 'sonnet', 'tensorpack', 'recipe', 'bn_layer')
PORT_TARGETS = ('tf.layers', 'slim', 'bn_layer')
ROLES = ('gamma', 'beta', 'moving_mean', 'moving_variance')
STATISTICS = ('moving_mean', 'moving_variance')
DEBIAS_LEAVES = ('biased', 'local_step')

_LAYER_SCOPES = (('tf.layers', re.compile(r'batch_normalization(_\d+)?$')),
                 ('slim', re.compile(r'BatchNorm$')),
                 ('sonnet', re.compile(r'batch_norm(_\d+)?$')))
_RECIPE_SHADOW = re.compile(r'^(?P<prefix>.+)/moments/Squeeze(?P<variance>_1)?/(?P<ema>[^/]+)$')
_TENSORPACK = re.compile(r'^(?P<path>.+)/(?P<stat>mean|variance)/EMA$')
_MOVING = re.compile(r'^(?:(?P<path>.+)/)?(?P<stat>moving_mean|moving_variance)$')


@dataclasses.dataclass
class Layer:
  """One BN layer: its path, convention, role -> variable name, and the other
  variables under it (`extras`) or only its convention uses (`helpers`)."""
  path: str
  convention: str
  names: dict
  extras: list = dataclasses.field(default_factory=list)
  helpers: list = dataclasses.field(default_factory=list)

  @property
  def parent(self):
    return self.path.rpartition('/')[0]

  def all_names(self):
    return list(self.names.values()) + self.extras + self.helpers


def _natural_key(text):
  return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', text)]


def _scope_convention(path):
  leaf = path.rpartition('/')[2]
  for convention, pattern in _LAYER_SCOPES:
    if pattern.match(leaf):
      return convention
  return 'bn_layer'


def _recipe_scope(prefix, names):
  """The variable scope of a recipe layer from its shadows' prefix
  (`VS/<op name scope>`): the split whose VS holds gamma or beta, else the
  doubled scope (`bn/bn`), else all but the last component."""
  parts = prefix.split('/')
  for cut in range(len(parts) - 1, 0, -1):
    scope = '/'.join(parts[:cut])
    if any(f'{scope}/{leaf}' in names for leaf in ('gamma', 'beta', 'beat')):
      return scope
  half = len(parts) // 2
  if len(parts) % 2 == 0 and parts[:half] == parts[half:]:
    return '/'.join(parts[:half])
  return '/'.join(parts[:-1]) or prefix


def find_layers(names):
  """The BN layers among variable `names`, in a stable order: by parent path,
  then tf.layers' index or the natural order of their names."""
  names = set(names)
  layers = {}

  def layer(path, convention):
    if path not in layers:
      layers[path] = Layer(path, convention, {})
      for leaf in ('gamma', 'beta'):
        if f'{path}/{leaf}' in names:
          layers[path].names[leaf] = f'{path}/{leaf}'
    return layers[path]

  for name in sorted(names):
    match = _RECIPE_SHADOW.match(name)
    if match:
      scope = _recipe_scope(match['prefix'], names)
      found = layer(scope, 'recipe')
      found.names['moving_variance' if match['variance'] else 'moving_mean'] = name
      if 'beta' not in found.names and f'{scope}/beat' in names:
        found.names['beta'] = f'{scope}/beat'
      continue
    match = _TENSORPACK.match(name)
    if match:
      layer(match['path'], 'tensorpack').names['moving_' + match['stat']] = name
      continue
    match = _MOVING.match(name)
    if match:
      path = match['path'] or ''
      layer(path, _scope_convention(path)).names[match['stat']] = name
  claimed = {n for found in layers.values() for n in found.names.values()}
  for found in sorted(layers.values(), key=lambda found: -len(found.path)):  # deepest first
    statistics = list(found.names.values())
    for name in sorted(names - claimed):
      under_layer = bool(found.path) and name.startswith(found.path + '/')
      under_statistic = any(name.startswith(s + '/') for s in statistics)
      if name.rpartition('/')[2] in DEBIAS_LEAVES and (under_layer or under_statistic):
        found.helpers.append(name)
      elif under_layer:
        found.extras.append(name)
      else:
        continue
      claimed.add(name)

  def order(found):
    leaf = found.path.rpartition('/')[2]
    match = re.match(r'batch_normalization(?:_(\d+))?$', leaf)
    index = int(match.group(1) or 0) if match else -1
    return (_natural_key(found.parent), index, _natural_key(found.path))

  return sorted(layers.values(), key=order)


# --- reading and writing ------------------------------------------------------
# What TensorFlow's reader says about a damaged checkpoint, and what it means.
_DAMAGE = (
    ('Read less bytes than requested', 'truncated: the file is shorter than its index says'),
    ('Checksum does not match', 'corrupted: the stored bytes do not match their checksum'),
    ('bad magic number', 'not a checkpoint index (garbage, or truncated)'),
    ('Permission denied', 'not readable (permission denied)'),
)
_MISSING_FILE = re.compile(r'(?P<file>\S+); No such file or directory')
_SHARD = re.compile(r'shard (?P<shard>\d+)')
DATA_SUFFIX = '.data-{:05d}-of-{:05d}'


def _first_line(error):
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def _reason(error):
  message = str(error)
  for marker, meaning in _DAMAGE:
    if marker in message:
      return meaning
  return f'not readable ({type(error).__name__}: {_first_line(error)})'


def data_files(prefix):
  return sorted(glob.glob(glob.escape(prefix) + '.data-[0-9]*-of-[0-9]*'))


def _damaged_data_file(prefix, error):
  """The data file a reader error is about: the one it names, the shard it
  numbers, or the only one there is; else the data files' pattern."""
  message = str(error)
  missing = _MISSING_FILE.search(message)
  if missing:
    return missing['file']
  files = data_files(prefix)
  shard = _SHARD.search(message)
  if shard and files:
    count = int(files[0].rsplit('-of-', 1)[1])
    return prefix + DATA_SUFFIX.format(int(shard['shard']), count)
  if len(files) == 1:
    return files[0]
  return prefix + '.data-*'


# What users type for a checkpoint: its prefix, one of its files, or its folder.
INDEX_SUFFIX = '.index'
_DATA_FILE = re.compile(r'^(?P<prefix>.+)\.data-\d+-of-\d+$')
STATE_FILE = 'checkpoint'  # the file Saver and port write next to a checkpoint


def _prefixes_in(directory):
  """The checkpoint prefixes of a folder: its files NAME.index, sorted."""
  return sorted(os.path.join(directory, name[:-len(INDEX_SUFFIX)])
                for name in tf.io.gfile.listdir(directory)
                if name.endswith(INDEX_SUFFIX) and len(name) > len(INDEX_SUFFIX))


def _directory_prefix(directory):
  state = tf.train.get_checkpoint_state(directory)
  if state is not None and state.model_checkpoint_path:
    named = state.model_checkpoint_path  # joined to `directory` when relative
    if tf.io.gfile.exists(named + INDEX_SUFFIX):
      return named
    raise CheckpointError(named + INDEX_SUFFIX, f'missing: the `{STATE_FILE}` file of '
                          f'{directory!r} names {named!r}, whose index is not there '
                          '(incomplete checkpoint).')
  found = _prefixes_in(directory)
  if len(found) == 1:
    return found[0]
  if found:
    raise CheckpointError(directory, f'{len(found)} checkpoints in this directory and no '
                          f'`{STATE_FILE}` file naming one: pass one of the prefixes '
                          f'{", ".join(found)}.')
  raise CheckpointError(directory, 'No checkpoint found in this directory (no `checkpoint` '
                        f'file naming an existing checkpoint, no *{INDEX_SUFFIX} file).')


def checkpoint_prefix(path, arg_name='path'):
  """The checkpoint prefix of a path as users type it.

  Accepted, in this order:
    - a prefix: `model.ckpt-1000` (its `model.ckpt-1000.index` exists);
    - one of its files: `model.ckpt-1000.index`, `model.ckpt-1000.data-00000-of-00001`;
    - a directory: the checkpoint its `checkpoint` state file names (as
      tf.train.latest_checkpoint), else its only `*.index` file. With several
      and no state file, CheckpointError lists them: pass one.

  Raises TypeError for a path that is not a str or os.PathLike, and
  CheckpointError when no checkpoint index is found there.
  """
  path = v.check_path(path, arg_name)
  if tf.io.gfile.isdir(path):
    return _directory_prefix(path)
  if tf.io.gfile.exists(path + INDEX_SUFFIX):
    return path
  data_file = _DATA_FILE.match(path)
  prefix = (path[:-len(INDEX_SUFFIX)] if path.endswith(INDEX_SUFFIX)
            else data_file['prefix'] if data_file else None)
  if prefix is not None and tf.io.gfile.exists(path):
    if tf.io.gfile.exists(prefix + INDEX_SUFFIX):
      return prefix
    raise CheckpointError(prefix + INDEX_SUFFIX, f'missing: {path!r} is a data file of the '
                          f'checkpoint {prefix!r}, whose index is not there (incomplete '
                          'checkpoint).')
  raise CheckpointError(path + INDEX_SUFFIX, f'missing. No checkpoint at {path!r}: expected '
                        f'{path}{INDEX_SUFFIX} (pass the prefix, e.g. model.ckpt-1000, one of '
                        'its files, or its directory).')


def checkpoint_files(prefix):
  """The files of the checkpoint at `prefix`: its index and data files."""
  return [prefix + INDEX_SUFFIX] + data_files(prefix)


def read_checkpoint(path, arg_name='path'):
  """{name: numpy value} of every variable in a checkpoint.

  Every value is read, so a truncated, corrupted or missing file raises
  CheckpointError (naming it) here, before the caller assigns or writes.
  """
  prefix = checkpoint_prefix(path, arg_name)
  index = prefix + '.index'
  try:
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
  except Exception as error:  # any failure to open the index: a damaged checkpoint
    raise CheckpointError(index, _reason(error)) from error
  values = {}
  for name in sorted(shapes):
    try:
      values[name] = reader.get_tensor(name)
    except Exception as error:  # the data of this variable is damaged
      missing = _MISSING_FILE.search(str(error))
      reason = ('missing (incomplete checkpoint: its index needs this data file)' if missing
                else _reason(error))
      raise CheckpointError(_damaged_data_file(prefix, error),
                            f'{reason}; reading variable {name!r}.') from error
  return values


def new_directories(directory):
  """The directories `os.makedirs(directory)` would create, outermost first."""
  created = []
  while directory and not os.path.exists(directory):
    created.insert(0, directory)
    parent = os.path.dirname(directory)
    if parent == directory:
      break
    directory = parent
  return created


def _text_proto_string(text):
  return '"' + text.replace('\\', '\\\\').replace('"', '\\"') + '"'


def _record_in_state_file(prefix):
  """Makes `prefix` the latest checkpoint of its directory's `checkpoint`
  state file (as Saver does; the entries already listed are kept), so the
  directory works where TensorFlow or tf1_bn expects a checkpoint folder.
  The file names the checkpoint relative to itself and is replaced atomically
  (written as the CheckpointState text proto Saver writes)."""
  directory = os.path.dirname(os.path.abspath(prefix))
  name = os.path.basename(prefix)
  state = tf.train.get_checkpoint_state(directory)
  listed = [os.path.relpath(p, directory) if os.path.isabs(p) else p
            for p in (state.all_model_checkpoint_paths if state is not None else [])]
  listed = [p for p in listed if p != name] + [name]
  lines = [f'model_checkpoint_path: {_text_proto_string(name)}'] + [
      f'all_model_checkpoint_paths: {_text_proto_string(p)}' for p in listed]
  staged = os.path.join(directory, f'.{STATE_FILE}.tf1_bn-{os.getpid()}')
  try:
    with open(staged, 'w', encoding='utf-8') as f:
      f.write('\n'.join(lines) + '\n')
    os.replace(staged, os.path.join(directory, STATE_FILE))
  finally:
    if os.path.exists(staged):
      os.remove(staged)


def write_checkpoint(values, prefix, state_file=False):
  """Writes {name: numpy value} as a TensorFlow (V2) checkpoint at `prefix`.

  The files are written under a temporary name in the target directory and
  renamed into place, data before index, so a failure leaves neither a
  half-written checkpoint nor a directory this call created. `state_file`
  also records the checkpoint, last, in its directory's `checkpoint` file.
  """
  prefix = os.fspath(prefix)
  directory = os.path.dirname(os.path.abspath(prefix))
  created = new_directories(directory)
  names = sorted(values)
  placed = []
  staging = None
  try:
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.tf1_bn-write-', dir=directory)
    staged = os.path.join(staging, 'ckpt')
    with tf.Graph().as_default():
      feeds = [v1.placeholder(tf.as_dtype(values[n].dtype), values[n].shape) for n in names]
      save = tf.raw_ops.SaveV2(prefix=staged, tensor_names=names,
                               shape_and_slices=[''] * len(names), tensors=feeds)
      with v1.Session() as sess:
        try:
          sess.run(save, dict(zip(feeds, (values[n] for n in names))))
        except tf.errors.OpError as error:
          raise OSError(f'Could not write the checkpoint {prefix!r}: '
                        f'{_first_line(error.message)}') from error
    # A reader opens the index first: it appears once its data is in place.
    for file_name in sorted(os.listdir(staging), key=lambda n: n.endswith('.index')):
      target = prefix + file_name[len('ckpt'):]
      os.replace(os.path.join(staging, file_name), target)
      placed.append(target)
    if state_file:
      _record_in_state_file(prefix)
  except BaseException:
    for target in placed:
      os.remove(target)
    if staging is not None:
      shutil.rmtree(staging, ignore_errors=True)
      staging = None
    for new in reversed(created):
      try:
        os.rmdir(new)
      except OSError:
        break
    raise
  finally:
    if staging is not None:
      shutil.rmtree(staging, ignore_errors=True)
  return prefix


# --- inspect -------------------------------------------------------------------
@dataclasses.dataclass
class LayerReport:
  path: str
  convention: str
  channels: int
  mean_range: tuple
  variance_range: tuple
  flags: list
  steps: object = None  # per-step statistics ([T, C], tf1_bn.bn.steps): T


@dataclasses.dataclass
class Report:
  checkpoint: str
  layers: list
  other_variables: int

  @property
  def ok(self):
    return not any(layer.flags for layer in self.layers)

  def text(self):
    lines = [f'{self.checkpoint}: {len(self.layers)} batch-norm layer(s), '
             f'{self.other_variables} other variable(s)']
    for layer in self.layers:
      mean = '-' if layer.mean_range is None else '[{:.4g}, {:.4g}]'.format(*layer.mean_range)
      var = '-' if layer.variance_range is None else '[{:.4g}, {:.4g}]'.format(
          *layer.variance_range)
      steps = '' if layer.steps is None else f'  steps {layer.steps}'
      lines.append(f'  {layer.path or "(root)"}  {layer.convention}  channels {layer.channels}'
                   f'{steps}  '
                   f'moving mean {mean}  moving variance {var}'
                   + ('  OK' if not layer.flags else ''))
      lines.extend(f'    PROBLEM: {flag}' for flag in layer.flags)
    lines.append('OK' if self.ok else 'problems found')
    return '\n'.join(lines)


def _initial_variance(convention):
  # EMA shadows of a tensor start at 0; every layer's variable starts at 1.
  return 0.0 if convention == 'recipe' else 1.0


def _layer_flags(layer, values):
  flags = []
  missing = [role for role in STATISTICS if role not in layer.names]
  if missing:
    flags.append(f'missing {", ".join(missing)}: a restore would leave it at its initial value')
  for role, name in layer.names.items():
    if not np.all(np.isfinite(values[name])):
      flags.append(f'non-finite values in {role} ({name})')
  if 'moving_variance' in layer.names:
    variance = values[layer.names['moving_variance']]
    if np.all(np.isfinite(variance)) and np.any(variance <= 0) and not (
        layer.convention == 'recipe' and np.all(variance == 0)):
      flags.append(f'non-positive moving variance in {int(np.sum(variance <= 0))} channel(s)')
  if not missing:
    mean = values[layer.names['moving_mean']]
    variance = values[layer.names['moving_variance']]
    if np.all(mean == 0) and np.all(variance == _initial_variance(layer.convention)):
      flags.append(f'never updated: moving mean exactly 0 and variance exactly '
                   f'{_initial_variance(layer.convention):g} everywhere; the update ops were '
                   'probably never run (see tf1_bn.check_update_ops)')
  return flags


def _channels_and_steps(shape):
  """(channels, steps) of a statistic's shape: per-step statistics are
  [T, C] (T > 1; gamma and beta stay [C]); any other shape counts its values
  (a multi-axis layer's [1, H, 1, C] is H * C channels)."""
  if len(shape) == 2 and shape[0] > 1:
    return int(shape[1]), int(shape[0])
  return int(np.prod(shape, dtype=np.int64)), None


def inspect_checkpoint(path):
  """Lists every BN layer of a checkpoint with its convention, channel count and
  moving statistics, and flags problems. Returns a Report (`.ok`, `.text()`).

  A checkpoint that cannot be read (missing, truncated, corrupted, a data
  shard missing) raises CheckpointError rather than giving a report."""
  prefix = checkpoint_prefix(path)
  values = read_checkpoint(prefix)
  layers = find_layers(values)
  reports = []
  for layer in layers:
    stats = {role: values[layer.names[role]] for role in STATISTICS if role in layer.names}
    anchor = next(iter(stats.values()), None)
    if anchor is None:
      anchor = values[next(iter(layer.names.values()))]

    def value_range(role):
      value = stats.get(role)
      if value is None or not np.all(np.isfinite(value)):
        return None
      return float(value.min()), float(value.max())

    channels, steps = _channels_and_steps(np.shape(anchor))
    reports.append(LayerReport(layer.path, layer.convention, channels,
                               value_range('moving_mean'), value_range('moving_variance'),
                               _layer_flags(layer, values), steps))
  claimed = {n for layer in layers for n in layer.all_names()}
  return Report(prefix, reports, len(set(values) - claimed))


# --- port ------------------------------------------------------------------------
def _target_paths(layers, to):
  by_parent = collections.defaultdict(list)
  for layer in layers:
    by_parent[layer.parent].append(layer)
  paths = {}
  for parent, group in by_parent.items():
    prefix = parent + '/' if parent else ''
    if to == 'slim' and len(group) > 1:
      raise ValueError(
          f'`to`="slim" names every layer `<parent>/BatchNorm`, but {len(group)} layers share '
          f'the parent {parent or "(root)"!r}: {", ".join(l.path for l in group)}. Port to '
          '"tf.layers" or "bn_layer" instead.')
    for index, layer in enumerate(group):
      if to == 'tf.layers':
        paths[layer.path] = prefix + 'batch_normalization' + (f'_{index}' if index else '')
      elif to == 'slim':
        paths[layer.path] = prefix + 'BatchNorm'
      else:
        paths[layer.path] = layer.path
  return paths


def _as_channels(value, layer):
  # Sonnet keeps the reduced axes as 1: [1, C] or [1, 1, 1, C].
  return value.reshape(-1) if layer.convention == 'sonnet' else value


def _check_output_apart(in_prefix, out_path):
  """Refuses an output that would overwrite or mix with the input checkpoint:
  the same prefix, a file of the input, or the input's directory (whose
  `checkpoint` state file and set of checkpoints the port would change)."""
  real = os.path.realpath
  in_directory, out_directory = (real(os.path.dirname(os.path.abspath(p)))
                                 for p in (in_prefix, out_path))
  inputs = {real(f) for f in checkpoint_files(in_prefix)}
  if real(out_path) == real(in_prefix) or real(out_path) in inputs:
    overlap = 'is the input checkpoint: porting would overwrite it'
  elif out_directory == in_directory:
    overlap = (f'is in the input\'s directory {in_directory!r}: its files and its '
               f'`{STATE_FILE}` file would mix with the input\'s')
  else:
    return
  raise ValueError(f'`out_path` {out_path!r} {overlap}. Write the ported checkpoint into '
                   f'another directory, e.g. {os.path.join("ported", "model.ckpt")!r}. Nothing '
                   'was written.')


def port_checkpoint(in_path, out_path, to):
  """Rewrites BN variable names of a checkpoint into the `to` convention.

  Each layer keeps its parent path: `tf.layers` names the layers of a parent
  `batch_normalization`, `batch_normalization_1`, ... in order; `slim` names
  them `BatchNorm` (one per parent); `bn_layer` keeps each layer's path. Leaf
  names become gamma / beta / moving_mean / moving_variance. Every other
  variable and every value not converted is copied bit for bit.

  `in_path` is a checkpoint as `checkpoint_prefix` accepts it (prefix, one of
  its files, or its directory). The output directory gets a `checkpoint` state
  file naming the new checkpoint, so the directory itself can be inspected,
  restored or ported. The output must be apart from the input: the same
  prefix, or any file in the input's directory, raises ValueError.

  Nothing is written unless the whole input reads and converts: a missing
  or damaged input raises CheckpointError, and the output files appear under
  their names only once complete (see `write_checkpoint`).

  Returns {old name: new name or None when dropped}.
  """
  v.check_path(in_path, 'in_path')
  out_path = v.check_path(out_path, 'out_path')
  if os.path.isdir(out_path) or out_path.endswith(('/', os.sep)):
    example = os.path.join(out_path, 'model.ckpt')
    raise ValueError(f'`out_path` must be a checkpoint prefix such as {example!r}, received '
                     f'{out_path!r}, a directory.')
  v.check_choice(to, PORT_TARGETS, 'to')
  in_prefix = checkpoint_prefix(in_path, 'in_path')
  _check_output_apart(in_prefix, out_path)
  values = read_checkpoint(in_prefix, 'in_path')
  layers = find_layers(values)
  paths = _target_paths(layers, to)
  renamed, output = {}, {}
  for layer in layers:
    new_path = paths[layer.path]
    prefix = new_path + '/' if new_path else ''
    for role, name in layer.names.items():
      renamed[name] = prefix + role
      output[prefix + role] = _as_channels(values[name], layer)
    for name in layer.extras:
      renamed[name] = prefix + name[len(layer.path) + 1:]
      output[renamed[name]] = values[name]
    for name in layer.helpers:
      keep = to == layer.convention
      renamed[name] = (prefix + name[len(layer.path) + 1:] if layer.path else name) if keep \
          else None
      if keep:
        output[renamed[name]] = values[name]
  for name, value in values.items():
    if name not in renamed:
      renamed[name] = name
      output[name] = value
  clashes = [n for n, count in collections.Counter(
      n for n in renamed.values() if n is not None).items() if count > 1]
  if clashes:
    raise ValueError(f'Porting to {to!r} would give several variables the name(s) '
                     f'{clashes}; rename them first.')
  write_checkpoint(output, out_path, state_file=True)
  return renamed


# --- restore -------------------------------------------------------------------
def _check_var_list(var_list, graph):
  """The variables to restore: all global ones, or a list of the graph's."""
  if var_list is None:
    return graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)
  variables = v.check_variable_list(var_list, 'var_list', graph)
  if not variables:
    raise ValueError('`var_list` is empty: nothing would be restored. Pass None for every '
                     'global variable.')
  return variables


def _match_layers(graph_layers, checkpoint_layers):
  by_path = {layer.path: layer for layer in checkpoint_layers}
  by_parent = collections.defaultdict(list)
  for layer in checkpoint_layers:
    by_parent[layer.parent].append(layer)
  graph_by_parent = collections.defaultdict(list)
  for layer in graph_layers:
    graph_by_parent[layer.parent].append(layer)
  matches = {}
  for layer in graph_layers:
    if layer.path in by_path:
      matches[layer.path] = by_path[layer.path]
      continue
    siblings, sources = graph_by_parent[layer.parent], by_parent.get(layer.parent, [])
    if len(siblings) == len(sources):
      matches[layer.path] = sources[siblings.index(layer)]
  return matches


def restore(sess, ckpt_path, var_list=None):
  """Restores a checkpoint of any BN convention into the session's graph.

  BN variables are mapped layer by layer: a checkpoint layer with the same
  path, else the one at the same position among the layers of the same
  parent scope (graph layers in creation order, checkpoint layers in
  `find_layers` order). Other variables are restored by name. Any variable of
  `var_list` (default: all global variables) that finds no source raises
  RestoreError listing them all, before anything is assigned: a BN layer is
  never silently left at mean 0 / variance 1.

  A missing, unreadable or damaged checkpoint raises CheckpointError, also
  before anything is assigned.

  Returns {graph variable name: checkpoint variable name}.
  """
  v.check_session(sess)
  prefix = checkpoint_prefix(ckpt_path, 'ckpt_path')
  variables = _check_var_list(var_list, sess.graph)
  by_name = {variable.op.name: variable for variable in variables}
  values = read_checkpoint(prefix, 'ckpt_path')
  checkpoint_layers = find_layers(values)
  # Creation order of the graph's layers: the order of their variables.
  graph_layers = sorted(find_layers(by_name), key=lambda layer: min(
      list(by_name).index(n) for n in layer.all_names()))
  matches = _match_layers(graph_layers, checkpoint_layers)
  sources, missing = {}, []
  for layer in graph_layers:
    source = matches.get(layer.path)
    for role, name in layer.names.items():
      if source is not None and role in source.names:
        sources[name] = (source.names[role], source)
      else:
        missing.append(name)
    for name in layer.extras + layer.helpers:
      if source is None:
        missing.append(name)
        continue
      candidate = (source.path + '/' if source.path else '') + name[len(layer.path) + 1:]
      if candidate in values:
        sources[name] = (candidate, source)
      else:
        missing.append(name)
  claimed = {n for layer in graph_layers for n in layer.all_names()}
  for name in by_name:
    if name not in claimed:
      if name in values:
        sources[name] = (name, None)
      else:
        missing.append(name)
  assignments, mismatched = {}, []
  for name, (source_name, source_layer) in sources.items():
    variable = by_name[name]
    value = values[source_name]
    if source_layer is not None and source_layer.convention == 'sonnet':
      value = value.reshape(-1)
    shape = variable.shape.as_list()
    if list(value.shape) != shape:
      if np.size(value) == np.prod(shape, dtype=np.int64):
        value = value.reshape(shape)
      else:
        mismatched.append(f'{name} {shape} <- {source_name} {list(value.shape)}')
        continue
    assignments[variable] = value
  if missing or mismatched:
    raise RestoreError(
        f'Restoring {prefix!r}: '
        + (f'{len(missing)} variable(s) of the graph found no source in the checkpoint: '
           f'{", ".join(sorted(missing))}. ' if missing else '')
        + (f'Shapes differ: {"; ".join(mismatched)}. ' if mismatched else '')
        + f'The checkpoint holds BN layers {[l.path for l in checkpoint_layers]}. Nothing was '
        'restored.', missing=sorted(missing))
  assignment.assign_by_feeding(sess, assignments)
  return {name: source for name, (source, _) in sources.items()}


# --- the `tf1-bn inspect` and `tf1-bn port` commands -----------------------------
# Errors (a damaged checkpoint, a bad argument) propagate: `tf1_bn.studies.cli` turns
# them into one line on stderr and exit status 2.
def inspect_build_parser(parser=None):
  import argparse
  parser = parser or argparse.ArgumentParser(prog='tf1-bn inspect')
  parser.add_argument('checkpoint', help='the checkpoint: its prefix (model.ckpt-1000), one of '
                      'its files (model.ckpt-1000.index) or its directory')
  return parser


def inspect_main(argv=None):
  """Prints the report; exit status 1 when a problem is flagged (a release gate)."""
  args = inspect_build_parser().parse_args(argv)
  report = inspect_checkpoint(args.checkpoint)
  print(report.text())
  return 0 if report.ok else 1


def port_build_parser(parser=None):
  import argparse
  parser = parser or argparse.ArgumentParser(prog='tf1-bn port')
  parser.add_argument('in_checkpoint', help='the checkpoint to read: its prefix, one of its '
                      'files, or its directory')
  parser.add_argument('out_checkpoint', help='the prefix to write, e.g. ported/model.ckpt, in '
                      'a directory other than the input\'s; a `checkpoint` state file is '
                      'written next to it')
  parser.add_argument('--to', required=True, choices=PORT_TARGETS,
                      help='the naming convention to write')
  return parser


def port_main(argv=None):
  args = port_build_parser().parse_args(argv)
  renamed = port_checkpoint(args.in_checkpoint, args.out_checkpoint, args.to)
  for old, new in sorted(renamed.items()):
    if new != old:
      print(f'{old} -> {new if new is not None else "(dropped: helper of another convention)"}')
  print(f'wrote {args.out_checkpoint} ({sum(n is not None for n in renamed.values())} variables)')
  return 0
