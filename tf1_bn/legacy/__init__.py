"""The legacy surfaces: exact drop-ins for `tf.compat.v1.layers` and tf-slim built on the BN core, the recurrent BN LSTM cell (`bn_lstm.BNLSTMCell`), and the patches that install them into unmodified code.

Imports `tf1_bn.bn` and `tf1_bn.common`.
"""
