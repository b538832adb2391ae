"""tf1_bn: batch normalization for TF1-style graph-mode models on current TensorFlow.

The public names load on first use (PEP 562), so `import tf1_bn` and
`tf1_bn.__version__` do not import TensorFlow: `tf1-bn --help` and
`tf1-bn --version` answer at once, and the command line can set TensorFlow's
log level before TensorFlow loads. `from tf1_bn import bn_layer` and
`tf1_bn.bn_layer` import what they need as usual.
"""
import importlib

__version__ = '0.1.0'

# public name -> the module that defines it (`layers` is a module itself)
_PUBLIC = {
    'BasicLSTMCell': 'tf1_bn.legacy.rnn_cell',
    'BNLSTMCell': 'tf1_bn.legacy.bn_lstm',
    'BNLSTMState': 'tf1_bn.legacy.bn_lstm',
    'BasicRNNCell': 'tf1_bn.legacy.rnn_cell',
    'DeviceWrapper': 'tf1_bn.legacy.rnn_cell',
    'DropoutWrapper': 'tf1_bn.legacy.rnn_cell',
    'GRUCell': 'tf1_bn.legacy.rnn_cell',
    'LSTMCell': 'tf1_bn.legacy.rnn_cell',
    'LSTMStateTuple': 'tf1_bn.legacy.rnn_cell',
    'MultiRNNCell': 'tf1_bn.legacy.rnn_cell',
    'RNNCell': 'tf1_bn.legacy.rnn_cell',
    'ResidualWrapper': 'tf1_bn.legacy.rnn_cell',
    'audit': 'tf1_bn.bn.precise',
    'batch_norm': 'tf1_bn.legacy.slim_bn',
    'batch_normalization': 'tf1_bn.legacy.layers_bn',
    'bn_layer': 'tf1_bn.bn.bn_layer',
    'CheckpointError': 'tf1_bn.common.errors',
    'check_update_ops': 'tf1_bn.bn.update_ops',
    'collective_timeout': 'tf1_bn.bn.replicas',
    'dropout': 'tf1_bn.bn.dropout',
    'export_graph': 'tf1_bn.deploy.graph_export',
    'export_inference': 'tf1_bn.deploy.export',
    'inspect_checkpoint': 'tf1_bn.deploy.checkpoints',
    'layers': 'tf1_bn.layers',
    'minimize': 'tf1_bn.bn.update_ops',
    'patch_layers': 'tf1_bn.legacy.layers_patch',
    'patch_slim': 'tf1_bn.legacy.slim_patch',
    'port_checkpoint': 'tf1_bn.deploy.checkpoints',
    'recompute_statistics': 'tf1_bn.bn.precise',
    'RecomputeError': 'tf1_bn.bn.precise',
    'restore': 'tf1_bn.deploy.checkpoints',
    'set_collective_timeout': 'tf1_bn.bn.replicas',
    'tower': 'tf1_bn.bn.replicas',
    'RestoreError': 'tf1_bn.common.errors',
    'MissingUpdateOpsError': 'tf1_bn.common.errors',
    'training_placeholder': 'tf1_bn.bn.switch',
    'unpatch_layers': 'tf1_bn.legacy.layers_patch',
    'unpatch_slim': 'tf1_bn.legacy.slim_patch',
}

__all__ = list(_PUBLIC)


def __getattr__(name):
  module = _PUBLIC.get(name)
  if module is None:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = importlib.import_module(module)
  if name != 'layers':
    value = getattr(value, name)
  globals()[name] = value  # later look-ups skip this function
  return value


def __dir__():
  return sorted(set(globals()) | set(_PUBLIC))
