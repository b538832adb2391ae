"""The `tf1-bn` command: one subcommand per module, each with its own --help."""
import argparse
import importlib
import sys

# subcommand: (module, prefix of its <prefix>build_parser(parser) and
# <prefix>main(argv) functions, one-line help)
COMMANDS = {
    'demo': ('tf1_bn.demo', '', 'train BN studies on the digits data; table and plots'),
    'pitfalls': ('tf1_bn.pitfalls', '', 'reproduce the classic TF1 batch-norm pitfalls'),
    'inspect': ('tf1_bn.checkpoints', 'inspect_',
                'list the BN layers of a checkpoint and flag broken statistics'),
    'port': ('tf1_bn.checkpoints', 'port_',
             'rename the BN variables of a checkpoint into another convention'),
    'bench': ('tf1_bn.bench', '', 'time tf1_bn against the recipe and the legacy layer'),
    'example': ('tf1_bn.example', '', 'train the README example (an MLP with bn_layer)'),
}


def _function(command, kind):
  module, prefix, _ = COMMANDS[command]
  return getattr(importlib.import_module(module), prefix + kind)


def build_parser():
  parser = argparse.ArgumentParser(
      prog='tf1-bn', description='Batch normalization for TF1 graph-mode models.')
  sub = parser.add_subparsers(dest='command', metavar='COMMAND')
  sub.required = True
  for name, (_, _, help_text) in COMMANDS.items():
    _function(name, 'build_parser')(sub.add_parser(name, help=help_text, description=help_text))
  return parser


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  args = build_parser().parse_args(argv)
  # Each module parses its own arguments again: the ones that compare with the
  # legacy layer re-run themselves with the same argv.
  return _function(args.command, 'main')(argv[1:])


if __name__ == '__main__':
  sys.exit(main())
