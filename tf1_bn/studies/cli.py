"""The `tf1-bn` command: one subcommand per module, each with its own --help.

Exit status, for scripts and release gates: 0 success; 1 problems found
(`inspect` flagged a layer, `pitfalls` saw a remedy fail); 2 the input could
not be read (a missing or damaged checkpoint) or the arguments are wrong, with
one line on stderr and no traceback unless `--debug` is given.
"""
import argparse
import importlib
import sys
import traceback

# subcommand: (module, prefix of its <prefix>build_parser(parser) and
# <prefix>main(argv) functions, one-line help)
COMMANDS = {
    'demo': ('tf1_bn.studies.demo', '', 'train BN studies on the digits data; table and plots'),
    'pitfalls': ('tf1_bn.studies.pitfalls', '', 'reproduce the classic TF1 batch-norm pitfalls'),
    'inspect': ('tf1_bn.deploy.checkpoints', 'inspect_',
                'list the BN layers of a checkpoint and flag broken statistics'),
    'port': ('tf1_bn.deploy.checkpoints', 'port_',
             'rename the BN variables of a checkpoint into another convention'),
    'export': ('tf1_bn.deploy.graph_export', '',
               'export any TF1 model (meta, frozen .pb, SavedModel) as a verified serving model'),
    'bench': ('tf1_bn.studies.bench', '', 'time tf1_bn against the recipe and the legacy layer'),
    'example': ('tf1_bn.studies.example', '', 'train the README example (an MLP with bn_layer)'),
}
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2
EXIT_STATUS_HELP = f"""exit status:
  {EXIT_OK}  success (inspect: no problem flagged)
  {EXIT_PROBLEMS}  problems found (inspect flagged a layer; pitfalls: a remedy failed)
  {EXIT_ERROR}  the input could not be read (missing or damaged checkpoint) or the
     arguments are wrong: one line on stderr (--debug adds the traceback)"""
DEBUG_FLAG = '--debug'


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors are one line on stderr, exit status 2."""

  def error(self, message):
    self.exit(EXIT_ERROR, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def _function(command, kind):
  module, prefix, _ = COMMANDS[command]
  return getattr(importlib.import_module(module), prefix + kind)


def build_parser():
  parser = ArgumentParser(
      prog='tf1-bn', description='Batch normalization for TF1 graph-mode models.',
      epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', metavar='COMMAND')
  sub.required = True
  for name, (_, _, help_text) in COMMANDS.items():
    command = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_STATUS_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    _function(name, 'build_parser')(command)
    command.add_argument(DEBUG_FLAG, action='store_true',
                         help='on an error, print the Python traceback too')
  return parser


def _without_debug(argv):
  """argv without the --debug flag (or an abbreviation argparse took for it),
  for the module's own parser, which does not know it."""
  if '--' in argv:
    cut = argv.index('--')
    return _without_debug(argv[:cut]) + argv[cut:]
  return [a for a in argv if not (len(a) > 2 and DEBUG_FLAG.startswith(a))]


def _one_line(error):
  return ' '.join(str(error).split()) or type(error).__name__


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  args = build_parser().parse_args(argv)
  # Each module parses its own arguments again: the ones that compare with the
  # legacy layer re-run themselves with the same argv.
  try:
    return _function(args.command, 'main')(_without_debug(argv[1:]))
  except Exception as error:  # every failure is one line and status 2, never 1
    if args.debug:
      traceback.print_exc()
    # Bad arguments and unreadable inputs say what is wrong themselves; anything
    # else is named by its type and points to the traceback.
    message = _one_line(error)
    if not isinstance(error, (ValueError, TypeError, OSError)):
      message = f'{type(error).__name__}: {message}'
      if not args.debug:
        message += f' (run with {DEBUG_FLAG} for the traceback)'
    print(f'tf1-bn {args.command}: error: {message}', file=sys.stderr)
    return EXIT_ERROR


if __name__ == '__main__':
  sys.exit(main())
