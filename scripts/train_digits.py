"""Runs the demo: `python scripts/train_digits.py [--steps N --seed S --out DIR]` (same as `tf1-bn demo`)."""
import sys

from tf1_bn.studies import demo

if __name__ == '__main__':
  sys.exit(demo.main())
