"""Non-numeric inputs are named in words ('strings'), not by numpy's dtype
code ('<U1'), on every front-end; nothing is built."""
import numpy as np
import pytest
import tensorflow as tf

import tf1_bn

FRONT_ENDS = {
    'bn_layer': lambda x: tf1_bn.bn_layer(x, training=True),
    'batch_normalization': lambda x: tf1_bn.batch_normalization(x, training=True),
    'batch_norm': lambda x: tf1_bn.batch_norm(x, is_training=True),
}
INPUTS = {
    'list of str': ([['a', 'b']], 'received strings (a list of str)'),
    'array of str': (np.array([['a', 'b']]), 'received strings (a numpy array of str)'),
    'array of bytes': (np.array([[b'a']]), 'received byte strings (a numpy array of bytes)'),
    'list of None': ([[None, None]], 'received Python objects (a list of NoneType)'),
}


@pytest.mark.parametrize('front_end', sorted(FRONT_ENDS))
@pytest.mark.parametrize('case', sorted(INPUTS))
def test_non_numeric_inputs_are_named_in_words(graph, front_end, case):
  value, words = INPUTS[case]
  with pytest.raises(TypeError) as error:
    FRONT_ENDS[front_end](value)
  message = str(error.value)
  assert message.startswith('`inputs` must be a numeric tensor or array, ' + words), message
  assert 'dtype <' not in message and 'dtype |' not in message
  assert graph.get_operations() == []
