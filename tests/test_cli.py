"""The `tf1-bn` command: conventional options (--version, --debug anywhere,
--help with defaults and a line for every option, each subcommand's own exit
statuses), quiet on stderr, and every subcommand runs its module."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

import tf1_bn
from tf1_bn.studies import cli

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'legacy' / 'layers_2d_legacy_start'
STATUS_LINE = re.compile(r'^  (\d)  ', re.M)


def _child(code, env_update=(), unset=('TF_CPP_MIN_LOG_LEVEL',)):
  """Runs `python -c code` with this checkout first on the path and, by
  default, no TensorFlow log level chosen (as for a new user)."""
  env = {k: v for k, v in os.environ.items() if k not in unset}
  env['PYTHONPATH'] = os.pathsep.join(
      [str(pathlib.Path(tf1_bn.__file__).parent.parent)] + env.get('PYTHONPATH', '').split(
          os.pathsep))
  env.update(env_update)
  return subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                        timeout=300)


def _exit_statuses(help_text):
  return [int(s) for s in STATUS_LINE.findall(help_text.split('exit status:')[1])]


@pytest.mark.parametrize('command', sorted(cli.COMMANDS))
def test_help_on_each_subcommand_lists_its_own_exit_statuses(command, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([command, '--help'])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith(f'usage: tf1-bn {command}')
  assert _exit_statuses(out) == sorted(cli.COMMANDS[command].exits)


def test_only_pitfalls_inspect_and_export_can_report_problems():
  assert [name for name, command in cli.COMMANDS.items()
          if cli.EXIT_PROBLEMS in command.exits] == ['pitfalls', 'inspect', 'export']


@pytest.mark.parametrize('command', sorted(cli.COMMANDS))
def test_every_option_has_a_help_line(command):
  parser = cli.command_parser(command)
  for action in parser._actions:
    assert action.help and action.help.strip(), (command, action.option_strings or action.dest)


def test_help_shows_defaults(capsys):
  with pytest.raises(SystemExit):
    cli.main(['demo', '--help'])
  out = ' '.join(capsys.readouterr().out.split())
  assert 'training steps per model (default: 3000)' in out
  assert 'order (default: 0)' in out  # --seed
  with pytest.raises(SystemExit):
    cli.main(['bench', '--help'])
  out = ' '.join(capsys.readouterr().out.split())
  assert '(default: train inference)' in out and '(default: float32)' in out
  with pytest.raises(SystemExit):
    cli.main(['port', '--help'])
  out = ' '.join(capsys.readouterr().out.split())
  assert '(default: None)' not in out and '(default: False)' not in out


def test_version_and_help_import_no_tensorflow_and_print_nothing_on_stderr():
  code = ('import sys\nfrom tf1_bn.studies import cli\n'
          'for argv in (["--version"], ["--help"]):\n'
          '  try:\n    cli.main(argv)\n  except SystemExit as done:\n'
          '    print("status", done.code)\n'
          'print("tensorflow imported:", "tensorflow" in sys.modules)\n')
  done = _child(code)
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  assert lines[0] == f'tf1-bn {tf1_bn.__version__}' and lines[1] == 'status 0'
  assert lines[2].startswith('usage: tf1-bn [-h] [--version] [--debug] COMMAND')
  assert lines[-2:] == ['status 0', 'tensorflow imported: False']
  assert done.stderr == ''


def test_a_subcommand_leaves_stderr_empty_and_children_inherit_the_level():
  # inspect imports TensorFlow and runs a session; without a level chosen,
  # nothing of TensorFlow reaches stderr.
  done = _child('import os, sys\nfrom tf1_bn.studies import cli\n'
                f'status = cli.main(["inspect", {str(FIXTURE)!r}])\n'
                'print("level", os.environ["TF_CPP_MIN_LOG_LEVEL"])\nsys.exit(status)\n')
  assert done.returncode == 0, done.stderr
  assert done.stdout.splitlines()[-2:] == ['OK', f'level {cli.log.QUIET_TF_LOG_LEVEL}']
  assert done.stderr == ''


def test_a_level_the_user_chose_is_kept():
  done = _child('import os\nfrom tf1_bn.common import log\n'
                'print(log.quiet_tensorflow(), os.environ["TF_CPP_MIN_LOG_LEVEL"])',
                env_update={'TF_CPP_MIN_LOG_LEVEL': '0'})
  assert done.stdout.split() == ['False', '0']


@pytest.mark.parametrize('argv', [['--debug', 'inspect', 'MISSING'],
                                  ['inspect', 'MISSING', '--debug'],
                                  ['inspect', 'MISSING']])
def test_debug_before_or_after_the_subcommand_adds_the_traceback(argv, tmp_path, capsys):
  missing = str(tmp_path / 'nothing' / 'model.ckpt')
  argv = [missing if a == 'MISSING' else a for a in argv]
  assert cli.main(argv) == cli.EXIT_ERROR
  err = capsys.readouterr().err
  assert f'tf1-bn inspect: error: {missing}.index: missing.' in err
  assert ('Traceback (most recent call last)' in err) == ('--debug' in argv)


def test_unknown_subcommand_is_an_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['train'])
  assert exit_info.value.code == 2
  assert "invalid choice: 'train'" in capsys.readouterr().err


def test_a_bad_option_is_one_line_and_status_2(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['demo', '--steps', 'many'])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and "--steps: invalid int value: 'many'" in err


def test_example_subcommand_trains(capsys):
  assert cli.main(['example', '--steps', '200']) == 0
  accuracy = float(capsys.readouterr().out.split(':')[-1])
  assert accuracy > 0.9
