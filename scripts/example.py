"""Runs the README example: `python scripts/example.py` (same as `tf1-bn example`)."""
from tf1_bn.studies import example

if __name__ == '__main__':
  example.main()
