"""Loading a TF1 model that tf1_bn did not build, for `export_graph`.

A SOURCE is one of:

* a meta graph `model.ckpt.meta`, restored from the checkpoint of the same
  prefix (or `checkpoint=` another prefix or directory);
* a checkpoint prefix (`model.ckpt-1000`) or a directory with a `checkpoint`
  file, with the `.meta` of that prefix beside it (a directory without a
  `checkpoint` file but with one `.meta`: that one);
* a frozen GraphDef `.pb` (binary, or text `.pbtxt`): no variables;
* a TF1 SavedModel directory (`saved_model.pb` in it), loaded with `tag`
  (default 'serve'); its `signature` (default 'serving_default', or its only
  one) gives default inputs and outputs.

The model is imported into its own graph and session, its variables
restored: the same session serves the reference outputs of the verification
and the freezing. A missing or damaged checkpoint, or one without a value for
a variable of the graph, raises `CheckpointError` before anything is written.
"""
import dataclasses
import os

import tensorflow as tf
from google.protobuf import message as protobuf_message
from google.protobuf import text_format

from tf1_bn.common.errors import CheckpointError
from tf1_bn.common import validation as v
from tf1_bn.deploy import checkpoints

v1 = tf.compat.v1

META_SUFFIX = '.meta'
FROZEN_SUFFIXES = ('.pb', '.pbtxt')
SAVED_MODEL_FILES = ('saved_model.pb', 'saved_model.pbtxt')
DEFAULT_TAG = 'serve'
DEFAULT_SIGNATURE = 'serving_default'
MISSING_LISTED = 5
KINDS = ('meta graph + checkpoint', 'frozen GraphDef', 'TF1 SavedModel')


@dataclasses.dataclass
class Source:
  """A loaded model: its session (variables restored) and what it is."""
  sess: object
  kind: str
  path: str
  checkpoint: str = None
  # {key: tensor name} of the SavedModel signature, when there is one.
  signature_inputs: dict = dataclasses.field(default_factory=dict)
  signature_outputs: dict = dataclasses.field(default_factory=dict)

  @property
  def graph(self):
    return self.sess.graph

  def close(self):
    self.sess.close()


def _is_saved_model(path):
  return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, f))
                                     for f in SAVED_MODEL_FILES)


def _restore(sess, saver, prefix):
  """Restores every global variable, after checking the checkpoint holds them."""
  values = checkpoints.read_checkpoint(prefix, 'checkpoint')  # CheckpointError when damaged
  variables = sess.graph.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)
  missing = sorted(var.op.name for var in variables if var.op.name not in values)
  if missing:
    listed = ', '.join(missing[:MISSING_LISTED]) + (
        f' and {len(missing) - MISSING_LISTED} more' if len(missing) > MISSING_LISTED else '')
    raise CheckpointError(prefix, f'has no value for the variable(s) {listed} of the graph '
                          f'({len(values)} variables in the checkpoint).')
  try:
    with sess.graph.as_default():
      (saver or v1.train.Saver(variables)).restore(sess, prefix)
  except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as error:
    raise CheckpointError(prefix, 'does not match the graph: ' + ' '.join(
        str(error).split())[:300]) from error


def _load_meta(meta, checkpoint):
  prefix = checkpoints.checkpoint_prefix(checkpoint or meta[:-len(META_SUFFIX)], 'checkpoint')
  graph = tf.Graph()
  with graph.as_default():
    try:
      saver = v1.train.import_meta_graph(meta, clear_devices=True)
    except (OSError, protobuf_message.DecodeError, tf.errors.OpError, ValueError) as error:
      raise ValueError(f'SOURCE {meta!r} is not a readable meta graph: '
                       f'{str(error).strip().splitlines()[0]}') from error
  sess = v1.Session(graph=graph)
  try:
    _restore(sess, saver, prefix)
  except Exception:
    sess.close()
    raise
  return Source(sess, KINDS[0], meta, prefix)


def _load_frozen(path):
  graph_def = tf.compat.v1.GraphDef()
  try:
    with open(path, 'rb') as f:
      data = f.read()
    if path.endswith('.pbtxt'):
      text_format.Parse(data.decode('utf-8'), graph_def)
    else:
      graph_def.ParseFromString(data)
  except (OSError, protobuf_message.DecodeError, text_format.ParseError,
          UnicodeDecodeError) as error:
    raise ValueError(f'SOURCE {path!r} is not a readable GraphDef: {error}') from error
  graph = tf.Graph()
  with graph.as_default():
    try:
      tf.graph_util.import_graph_def(graph_def, name='')
    except (ValueError, tf.errors.OpError) as error:
      raise ValueError(f'SOURCE {path!r} does not import: '
                       f'{str(error).strip().splitlines()[0]}') from error
  return Source(v1.Session(graph=graph), KINDS[1], path)


def _load_saved_model(path, tag, signature):
  graph = tf.Graph()
  sess = v1.Session(graph=graph)
  try:
    with graph.as_default():
      meta_graph = v1.saved_model.loader.load(sess, [tag or DEFAULT_TAG], path)
  except RuntimeError as error:  # no meta graph with that tag
    sess.close()
    raise ValueError(f'SOURCE {path!r}: {str(error).strip().splitlines()[0]} '
                     f'(--tag, default {DEFAULT_TAG!r})') from error
  except (tf.errors.NotFoundError, tf.errors.DataLossError, OSError) as error:
    sess.close()
    raise CheckpointError(os.path.join(path, 'variables'),
                          str(error).strip().splitlines()[0]) from error
  signatures = dict(meta_graph.signature_def)
  source = Source(sess, KINDS[2], path, os.path.join(path, 'variables', 'variables'))
  if signature is None and DEFAULT_SIGNATURE not in signatures and len(signatures) == 1:
    signature = next(iter(signatures))
  chosen = signatures.get(signature or DEFAULT_SIGNATURE)
  if chosen is None and signature is not None:
    sess.close()
    raise ValueError(f'--signature {signature!r} is not in the SavedModel {path!r}, whose '
                     f'signatures are {sorted(signatures)}.')
  if chosen is not None:
    source.signature_inputs = {k: t.name for k, t in chosen.inputs.items()}
    source.signature_outputs = {k: t.name for k, t in chosen.outputs.items()}
  return source


def load(source, checkpoint=None, tag=None, signature=None):
  """Loads SOURCE (see the module docstring); returns a `Source`."""
  path = v.check_path(source, 'SOURCE')
  if checkpoint is not None:
    checkpoint = v.check_path(checkpoint, 'checkpoint')
  if _is_saved_model(path):
    return _load_saved_model(path, tag, signature)
  if not os.path.exists(path) and not tf.io.gfile.exists(path + '.index'):
    raise ValueError(f'SOURCE {path!r} does not exist.')
  if path.endswith(META_SUFFIX):
    return _load_meta(path, checkpoint)
  if path.endswith(FROZEN_SUFFIXES) and os.path.isfile(path):
    return _load_frozen(path)
  metas = sorted(f for f in os.listdir(path) if f.endswith(META_SUFFIX)) if os.path.isdir(
      path) else []
  if os.path.isdir(path) and tf.train.latest_checkpoint(path) is None and len(metas) == 1:
    return _load_meta(os.path.join(path, metas[0]), checkpoint)  # no `checkpoint` file
  if os.path.isdir(path) or tf.io.gfile.exists(path + '.index'):
    prefix = checkpoints.checkpoint_prefix(path, 'SOURCE')
    meta = prefix + META_SUFFIX
    if not os.path.isfile(meta):
      raise ValueError(f'SOURCE {path!r} is a checkpoint without its meta graph: expected '
                       f'{meta!r} beside it (pass the .meta, a frozen .pb or a SavedModel).')
    return _load_meta(meta, checkpoint or prefix)
  raise ValueError(f'SOURCE {path!r} is none of: a .meta file, a checkpoint prefix or '
                   f'directory with its .meta, a frozen GraphDef .pb, a SavedModel directory.')
