"""The studies and the command line: the demo on the digits, the sequence study, the pitfalls, the benchmark, the README example, the `tf1-bn` CLI.

The top of the import graph: nothing in tf1_bn imports from here.
"""
