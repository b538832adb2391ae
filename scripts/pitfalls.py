"""Reproduces the classic pitfalls: `python scripts/pitfalls.py [--only NAME ...]` (same as `tf1-bn pitfalls`)."""
import sys

from tf1_bn.studies import cli

if __name__ == '__main__':
  sys.exit(cli.main(['pitfalls', *sys.argv[1:]]))
