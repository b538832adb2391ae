"""The README is the front door: short, its set-up commands are the ones CI
and users run, its Example runs as written (tests/test_docs.py runs every
python block, this one included), and the licence and package metadata it
states are the ones shipped."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
MAX_README_LINES = 300
# What the README and setup.py promise about versions.
PYTHON_REQUIRES = '>=3.10'
TENSORFLOW_REQUIREMENT = 'tensorflow>=2.16,<2.22'
PYTHON_CLASSIFIERS = ('3.10', '3.11', '3.12')


def _readme():
  return README.read_text(encoding='utf-8')


def _section(title):
  return _readme().split(f'\n## {title}\n', 1)[1].split('\n## ', 1)[0]


def _setup_commands():
  return re.findall(r'```(?:bash|sh)\n(.+?)\n```', _section('Set-up'), re.S)


def test_readme_has_exactly_two_setup_commands():
  commands = _setup_commands()
  assert len(commands) == 2
  assert all('\n' not in c for c in commands)
  assert '".[demo]"' in commands[0] and 'tf1-bn demo' in commands[0]


def test_ci_runs_the_readme_test_command():
  ci = (ROOT / '.ci' / 'run').read_text(encoding='utf-8')
  test_command = _setup_commands()[1]
  assert 'pytest' in test_command
  assert test_command in ci.splitlines()


def test_readme_is_a_front_door():
  lines = _readme().count('\n')
  assert lines < MAX_README_LINES, f'README.md has {lines} lines; move depth to docs/'


def test_readme_keeps_the_exact_error_strings():
  # What users search for: the errors the legacy APIs raise on TensorFlow 2.16+.
  why = _section('Why')
  for error in ('AttributeError: batch_normalization is not available with Keras 3',
                'OperatorNotAllowedInGraphError',
                'Using a symbolic tf.Tensor as a Python\n  bool is not allowed',
                "No module named 'tf_keras.legacy_tf_layers'",
                "module 'tensorflow.python.framework.ops' has no\n  attribute 'Tensor'"):
    assert error in why, error


def test_readme_example_is_one_runnable_block_that_checks_itself():
  example = _section('Example')
  blocks = re.findall(r'```python\n(.+?)\n```', example, re.S)
  assert len(blocks) == 1
  assert '<!-- not-run' not in example
  code = blocks[0]
  ast.parse(code)
  # It makes its own data and asserts its result (test_docs runs it).
  assert 'np.random.RandomState' in code and 'assert ' in code


def test_readme_states_the_supported_versions():
  requirements = _section('Requirements')
  assert 'Python 3.10' in requirements
  assert TENSORFLOW_REQUIREMENT.partition('tensorflow')[2] in requirements
  assert 'TF_CPP_MIN_LOG_LEVEL=0' in _readme()  # how to get TensorFlow's logs back


def test_license_is_apache_2():
  text = (ROOT / 'LICENSE').read_text(encoding='utf-8')
  assert 'Apache License' in text and 'Version 2.0, January 2004' in text
  assert 'http://www.apache.org/licenses/' in text
  # The full text: all nine sections, not a pointer to it.
  for section in ('1. Definitions.', '4. Redistribution.', '9. Accepting Warranty or Additional '
                  'Liability.', 'END OF TERMS AND CONDITIONS'):
    assert section in text, section
  assert '[LICENSE](LICENSE)' in _section('Licence')


def _setup_keywords():
  """The keyword arguments of setup.py's setup(...) call, literal values only."""
  tree = ast.parse((ROOT / 'setup.py').read_text(encoding='utf-8'))
  call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
              and getattr(node.func, 'id', None) == 'setup')
  keywords = {}
  for keyword in call.keywords:
    try:
      keywords[keyword.arg] = ast.literal_eval(keyword.value)
    except ValueError:
      pass
  return keywords


def test_setup_metadata():
  keywords = _setup_keywords()
  assert keywords['license'] == 'Apache-2.0'
  assert keywords['python_requires'] == PYTHON_REQUIRES
  assert TENSORFLOW_REQUIREMENT in keywords['install_requires']
  classifiers = keywords['classifiers']
  assert 'License :: OSI Approved :: Apache Software License' in classifiers
  for version in PYTHON_CLASSIFIERS:
    assert f'Programming Language :: Python :: {version}' in classifiers
  assert 'Topic :: Scientific/Engineering :: Artificial Intelligence' in classifiers
  assert any(c.startswith('Development Status :: ') for c in classifiers)
  assert any(c.startswith('Operating System :: ') for c in classifiers)
  assert TENSORFLOW_REQUIREMENT in _readme()


def test_readme_quotes_the_demo_tables():
  # The sequence study's numbers in the README are those `tf1-bn demo
  # --write-docs` last wrote into docs/demo.md (rerunning it rewrites the
  # tables; this fails until the README is updated to match).
  paragraph = _section('BN in loops and sequences').split('<!-- demo-numbers:', 1)[1]
  demo = (ROOT / 'docs' / 'demo.md').read_text(encoding='utf-8')
  block = demo.split('<!-- demo:begin -->', 1)[1].split('<!-- demo:end -->', 1)[0]
  sequences = block.split('## Sequences', 1)[1]
  quoted = re.findall(r'\b\d+\.\d+\b', paragraph.split('-->', 1)[1])
  assert len(quoted) >= 6, quoted
  for number in quoted:
    assert re.search(rf'(?<![\d.]){re.escape(number)}(?![\d])', sequences), number
  for step in re.findall(r'at step (\d+)', paragraph):
    assert f'| {step} |' in sequences, step
