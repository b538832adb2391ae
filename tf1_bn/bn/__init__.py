"""The BN core: one normalization core (`core`), its kernels and statistics, replicas, the training switch, the update-op discipline, and the `bn_layer` / `dropout` front-ends and precise BN built on it.

Imports only `tf1_bn.common`.
"""
