"""The BN core: one normalization core (`core`), its kernels and statistics, replicas, the training switch, the update-op discipline, BN inside loop bodies (`loops`), masks for padded batches (`masking`), per-time-step statistics (`steps`), and the `bn_layer` / `dropout` front-ends and precise BN built on it.

Imports only `tf1_bn.common`.
"""
