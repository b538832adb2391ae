"""The `tf1-bn` command: one subcommand per module, each with its own --help.

    tf1-bn [--version] [--debug] COMMAND [options] [--debug]

`--debug` (before or after the subcommand) adds the Python traceback to an
error. Each subcommand's --help shows its options with their defaults and
its own exit statuses: 0 success; 1 problems found (`inspect` flagged a layer,
`pitfalls` saw a remedy fail, `export` could not verify); 2 the input could not be read (a missing or
damaged checkpoint) or the arguments are wrong, with one line on stderr.

Quiet by default: TensorFlow's C++ log level is set before TensorFlow loads
(see tf1_bn.common.log.quiet_tensorflow) unless TF_CPP_MIN_LOG_LEVEL is set;
`TF_CPP_MIN_LOG_LEVEL=0 tf1-bn ...` shows everything. `tf1-bn --help` and
`tf1-bn --version` do not import TensorFlow; a subcommand's module loads only
when that subcommand runs (or shows its --help).

Adding a subcommand: a module with `build_parser(parser=None)` (adds its
arguments to `parser`, or to a new parser when None, and returns it) and
`main(argv=None)` (parses `argv`, returns the exit status; errors propagate as
exceptions), plus one `Command` row in COMMANDS below with its exit statuses.
Give every option a help line: the tests check that each one has one.
"""
import argparse
import dataclasses
import os
import sys
import textwrap
import traceback

import tf1_bn
from tf1_bn.common import log

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2
DEBUG_FLAG = '--debug'
# Set while a subcommand runs with --debug, for the child processes it starts.
DEBUG_ENV = 'TF1_BN_DEBUG'
DEBUG_HELP = 'on an error, print the Python traceback too'
_ERROR_MEANING = ('the arguments are wrong, or the work failed: one line on stderr '
                  f'({DEBUG_FLAG} adds the traceback)')


@dataclasses.dataclass(frozen=True)
class Command:
  """One subcommand: `module` defines `<prefix>build_parser(parser=None)` and
  `<prefix>main(argv=None)`; `exits` maps each exit status it can return to
  what that status means for it."""
  module: str
  prefix: str
  help: str
  exits: dict


COMMANDS = {
    'demo': Command(
        'tf1_bn.studies.demo', '', 'train BN studies on the digits data; tables and plots',
        {EXIT_OK: 'the studies ran; tables and plots written',
         EXIT_ERROR: _ERROR_MEANING + ' (scikit-learn and matplotlib: pip install '
                     '"tf1_bn[demo]")'}),
    'pitfalls': Command(
        'tf1_bn.studies.pitfalls', '', 'reproduce the classic TF1 batch-norm pitfalls',
        {EXIT_OK: 'tf1_bn gave the right result for every pitfall that ran (skipped ones do '
                  'not count)',
         EXIT_PROBLEMS: 'tf1_bn gave a wrong result for a pitfall (named on stdout)',
         EXIT_ERROR: _ERROR_MEANING}),
    'inspect': Command(
        'tf1_bn.deploy.checkpoints', 'inspect_',
        'list the BN layers of a checkpoint and flag broken statistics',
        {EXIT_OK: 'no problem flagged',
         EXIT_PROBLEMS: 'a layer was flagged (use it as a release gate)',
         EXIT_ERROR: 'the checkpoint could not be found or read (missing, damaged, several '
                     'in one directory), or the arguments are wrong: one line on stderr'}),
    'port': Command(
        'tf1_bn.deploy.checkpoints', 'port_',
        'rename the BN variables of a checkpoint into another convention',
        {EXIT_OK: 'the ported checkpoint and its `checkpoint` state file were written',
         EXIT_ERROR: 'nothing was written: the input could not be found or read, the output '
                     'would overwrite or overlap the input, or the arguments are wrong'}),
    'export': Command(
        'tf1_bn.deploy.graph_export', '',
        'export any TF1 model (meta graph, frozen .pb, SavedModel) as a verified serving model',
        {EXIT_OK: 'written and verified (SavedModel, and each TFLite / ONNX model asked for)',
         EXIT_PROBLEMS: 'written, but an output is beyond --rtol or a conversion failed '
                        '(report.md says which)',
         EXIT_ERROR: 'nothing was written: the source or checkpoint could not be read, a name '
                     'is not in the graph, the training switch is ambiguous, OUT is not empty, '
                     'or the arguments are wrong'}),
    'bench': Command(
        'tf1_bn.studies.bench', '', 'time tf1_bn against the recipe and the legacy layer',
        {EXIT_OK: 'timed; table written', EXIT_ERROR: _ERROR_MEANING}),
    'example': Command(
        'tf1_bn.studies.example', '', 'train the README example (an MLP with bn_layer)',
        {EXIT_OK: 'trained; test accuracy printed', EXIT_ERROR: _ERROR_MEANING}),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """Descriptions and epilogs as written; every option's help ends with its
  default, when it has one worth showing (not None, not a flag's False)."""

  def _get_help_string(self, action):
    text = action.help or ''
    default = action.default
    if ('%(default)' in text or default is None or default is False
        or default == argparse.SUPPRESS or action.required or not action.option_strings):
      return text
    if isinstance(default, (list, tuple)):
      default = ' '.join(map(str, default))
    return f'{text} (default: {str(default).replace("%", "%%")})'


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors are one line on stderr, exit status 2."""

  def __init__(self, *args, **kwargs):
    kwargs.setdefault('formatter_class', HelpFormatter)
    super().__init__(*args, **kwargs)

  def error(self, message):
    self.exit(EXIT_ERROR, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def exit_status_help(exits, width=79):
  lines = ['exit status:']
  for status, meaning in sorted(exits.items()):
    lines += textwrap.wrap(meaning, width, initial_indent=f'  {status}  ',
                           subsequent_indent=' ' * 5)
  return '\n'.join(lines)


def build_parser():
  """The top-level parser: options, and the subcommand with its arguments
  unparsed (`args.rest`), so nothing of the subcommands is imported."""
  parser = ArgumentParser(
      prog='tf1-bn', description='Batch normalization for TF1 graph-mode models.',
      epilog='Run `tf1-bn COMMAND --help` for its options and exit statuses.\n\n'
      + exit_status_help({EXIT_OK: 'success',
                          EXIT_PROBLEMS: 'problems found (inspect flagged a layer; '
                                         'pitfalls: a remedy failed; export: not verified)',
                          EXIT_ERROR: _ERROR_MEANING}))
  parser.add_argument('--version', action='version', version=f'tf1-bn {tf1_bn.__version__}',
                      help='print the version and exit')
  parser.add_argument(DEBUG_FLAG, action='store_true', help=DEBUG_HELP)
  sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
  for name, command in COMMANDS.items():
    # Every argument after the name goes to command_parser(name), untouched.
    rest = sub.add_parser(name, help=command.help, add_help=False, prefix_chars='\0')
    rest.add_argument('rest', nargs=argparse.REMAINDER)
  return parser


def _function(name, kind):
  command = COMMANDS[name]
  # Most subcommands import TensorFlow with their module: without its start-up lines.
  return getattr(log.quiet_import(command.module), command.prefix + kind)


def command_parser(name):
  """The full parser of subcommand `name` (imports its module)."""
  command = COMMANDS[name]
  parser = ArgumentParser(prog=f'tf1-bn {name}', description=command.help,
                          epilog=exit_status_help(command.exits))
  _function(name, 'build_parser')(parser)
  parser.add_argument(DEBUG_FLAG, action='store_true', help=DEBUG_HELP)
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
  log.quiet_tensorflow()  # before any subcommand imports TensorFlow
  top = build_parser().parse_args(argv)
  args = command_parser(top.command).parse_args(top.rest)
  debug = top.debug or args.debug
  # Each module parses its own arguments again: the ones that compare with the
  # legacy layer re-run themselves with the same argv.
  previous = os.environ.get(DEBUG_ENV)
  if debug:
    os.environ[DEBUG_ENV] = '1'
  try:
    return _function(top.command, 'main')(_without_debug(top.rest))
  except Exception as error:  # every failure is one line and status 2, never 1
    if debug:
      traceback.print_exc()
    # Bad arguments and unreadable inputs say what is wrong themselves; anything
    # else is named by its type and points to the traceback.
    message = _one_line(error)
    if not isinstance(error, (ValueError, TypeError, OSError)):
      message = f'{type(error).__name__}: {message}'
      if not debug:
        message += f' (run with {DEBUG_FLAG} for the traceback)'
    print(f'tf1-bn {top.command}: error: {message}', file=sys.stderr)
    return EXIT_ERROR
  finally:
    if debug and previous is None:
      del os.environ[DEBUG_ENV]


if __name__ == '__main__':
  sys.exit(main())
