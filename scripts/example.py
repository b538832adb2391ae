"""Runs the README example: `python scripts/example.py` (same as `tf1-bn example`)."""
import sys

from tf1_bn.studies import cli

if __name__ == '__main__':
  sys.exit(cli.main(['example', *sys.argv[1:]]))
