"""Runs the demo: `python scripts/train_digits.py [--steps N --seed S --out DIR]` (same as `tf1-bn demo`)."""
import sys

from tf1_bn.studies import cli

if __name__ == '__main__':
  sys.exit(cli.main(['demo', *sys.argv[1:]]))
