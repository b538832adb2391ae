"""The `tf1-bn` command."""
import argparse
import sys


def build_parser():
  parser = argparse.ArgumentParser(
      prog='tf1-bn', description='Batch normalization for TF1 graph-mode models.')
  sub = parser.add_subparsers(dest='command', metavar='COMMAND')
  sub.required = True
  example = sub.add_parser('example', help='train the README example (an MLP with bn_layer)')
  example.add_argument('--steps', type=int, default=300)
  example.add_argument('--seed', type=int, default=0)
  example.set_defaults(run=_example)
  from tf1_bn import bench
  bench_parser = sub.add_parser('bench', help='time tf1_bn against the recipe and the legacy layer')
  bench.build_parser(bench_parser)
  bench_parser.set_defaults(run=lambda args: bench.main(args))
  return parser


def _example(args):
  from tf1_bn import example
  example.main(steps=args.steps, seed=args.seed)
  return 0


def main(argv=None):
  args = build_parser().parse_args(argv)
  return args.run(args)


if __name__ == '__main__':
  sys.exit(main())
