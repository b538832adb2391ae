"""Porting and deployment: checkpoints (inspect, port, restore) and inference export with BN folding.

Imports `tf1_bn.bn` and `tf1_bn.common`.
"""
