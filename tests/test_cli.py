"""The `tf1-bn` command: every subcommand has --help and runs its module."""
import pytest

from tf1_bn.studies import cli


@pytest.mark.parametrize('command', sorted(cli.COMMANDS))
def test_help_on_each_subcommand(command, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([command, '--help'])
  assert exit_info.value.code == 0
  assert f'usage: tf1-bn {command}' in capsys.readouterr().out


def test_unknown_subcommand_is_an_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['train'])
  assert exit_info.value.code == 2
  assert "invalid choice: 'train'" in capsys.readouterr().err


def test_example_subcommand_trains(capsys):
  assert cli.main(['example', '--steps', '200']) == 0
  accuracy = float(capsys.readouterr().out.split(':')[-1])
  assert accuracy > 0.9
