"""The README's set-up commands are the ones CI and users run."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _setup_commands():
  readme = (ROOT / 'README.md').read_text(encoding='utf-8')
  section = readme.split('## Set-up', 1)[1].split('\n## ', 1)[0]
  return re.findall(r'```(?:bash|sh)\n(.+?)\n```', section, re.S)


def test_readme_has_exactly_two_setup_commands():
  commands = _setup_commands()
  assert len(commands) == 2
  assert all('\n' not in c for c in commands)


def test_ci_runs_the_readme_test_command():
  ci = (ROOT / '.ci' / 'run').read_text(encoding='utf-8')
  test_command = _setup_commands()[1]
  assert 'pytest' in test_command
  assert test_command in ci.splitlines()
