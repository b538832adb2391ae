"""Runs the benchmark: `python scripts/bench.py [--cases ...] [--repeat N] [--write-docs]`,
the same as `tf1-bn bench` (see `tf1_bn.studies.bench` for how it measures and how to
add a case kind)."""
import sys

from tf1_bn.studies import cli

if __name__ == '__main__':
  sys.exit(cli.main(['bench', *sys.argv[1:]]))
