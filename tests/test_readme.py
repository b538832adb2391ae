"""The README's set-up commands are the ones CI and users run."""
import pathlib
import re

import pytest

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


def _snippets(section_title):
  readme = (ROOT / 'README.md').read_text(encoding='utf-8')
  section = readme.split(f'\n## {section_title}', 1)[1].split('\n## ', 1)[0]
  return re.findall(r'```python\n(.+?)\n```', section, re.S)


def _guide_snippets():
  return _snippets('Guide')


def test_guide_has_a_snippet_per_question():
  readme = (ROOT / 'README.md').read_text(encoding='utf-8')
  section = readme.split('\n## Guide', 1)[1].split('\n## ', 1)[0]
  assert len(_guide_snippets()) == section.count('\n### ') == 8


@pytest.mark.parametrize('index', range(8))
def test_guide_snippet_runs_and_its_assertions_hold(index):
  # Each snippet asserts its numbers against numpy itself.
  exec(compile(_guide_snippets()[index], f'README guide snippet {index}', 'exec'), {})


def test_precise_bn_snippet_runs_and_its_assertions_hold():
  snippets = _snippets('Precise BN')
  assert len(snippets) == 1
  exec(compile(snippets[0], 'README Precise BN snippet', 'exec'), {})
