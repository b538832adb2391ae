"""The `tf.compat.v1.nn.rnn_cell` namespace, on tf.compat.v1 variables and tf.nn ops.

`tf1_bn.legacy.rnn_cell_patch.patch()` installs this module as
`tf.compat.v1.nn.rnn_cell`; the cells are also importable from here (and
from `tf1_bn`). The protocol a cell follows, and how scopes and variable
sharing work, are described in `tf1_bn.legacy.rnn_cell_base`; the variable
names in `tf1_bn.legacy.rnn_cells`; DropoutWrapper's training switch in
`tf1_bn.legacy.rnn_wrappers`.
"""
from tf1_bn.legacy.rnn_cell_base import LayerRNNCell, LSTMStateTuple, RNNCell
from tf1_bn.legacy.rnn_cells import BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, MultiRNNCell
from tf1_bn.legacy.rnn_wrappers import DeviceWrapper, DropoutWrapper, ResidualWrapper

# The public names of tf.compat.v1.nn.rnn_cell (TensorFlow 2.15), in its order.
__all__ = [
    'BasicLSTMCell',
    'BasicRNNCell',
    'DeviceWrapper',
    'DropoutWrapper',
    'GRUCell',
    'LSTMCell',
    'LSTMStateTuple',
    'MultiRNNCell',
    'RNNCell',
    'ResidualWrapper',
]
