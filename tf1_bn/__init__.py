"""tf1_bn: batch normalization for TF1-style graph-mode models on current TensorFlow."""
from tf1_bn.bn.bn_layer import bn_layer
from tf1_bn.deploy.checkpoints import inspect_checkpoint, port_checkpoint, restore
from tf1_bn.bn.dropout import dropout
from tf1_bn.common.errors import CheckpointError, MissingUpdateOpsError, RestoreError
from tf1_bn.deploy.export import export_inference
from tf1_bn.legacy.bn_lstm import BNLSTMCell, BNLSTMState
from tf1_bn.legacy.layers_bn import batch_normalization
from tf1_bn.bn.precise import RecomputeError, audit, recompute_statistics
from tf1_bn.bn.replicas import collective_timeout, set_collective_timeout, tower
from tf1_bn.legacy.slim_bn import batch_norm
from tf1_bn.legacy.slim_patch import patch_slim, unpatch_slim
from tf1_bn.bn.switch import training_placeholder
from tf1_bn.bn.update_ops import check_update_ops, minimize

__version__ = '0.1.0'

__all__ = [
    'audit',
    'batch_norm',
    'batch_normalization',
    'BNLSTMCell',
    'BNLSTMState',
    'bn_layer',
    'CheckpointError',
    'check_update_ops',
    'collective_timeout',
    'dropout',
    'export_inference',
    'inspect_checkpoint',
    'minimize',
    'patch_slim',
    'port_checkpoint',
    'recompute_statistics',
    'RecomputeError',
    'restore',
    'set_collective_timeout',
    'tower',
    'RestoreError',
    'MissingUpdateOpsError',
    'training_placeholder',
    'unpatch_slim',
]
