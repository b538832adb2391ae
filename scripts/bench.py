"""Runs the benchmark: `python scripts/bench.py [--cases ...]` (same as `tf1-bn bench`)."""
import sys

from tf1_bn.studies import bench

if __name__ == '__main__':
  sys.exit(bench.main())
