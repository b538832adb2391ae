"""The user documentation holds: README.md and docs/*.md.

- Every ```python block runs as it stands and its own assertions hold, in a
  fresh Python process (one per page, each block in a fresh namespace), unless
  the line just before it is `<!-- not-run: REASON -->`.
- Every relative link resolves: to an existing file, and a `#anchor` to a
  heading of the target page (GitHub's slugs).
- Every repository path the prose names (`tf1_bn/...py`, `tests/...py`,
  `scripts/...py`) exists, so module moves cannot leave the docs stale.
- The pages the tools write into keep their marker comments.
"""
import concurrent.futures
import functools
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
PAGES = [ROOT / 'README.md'] + sorted(DOCS.glob('*.md'))
NOT_RUN = re.compile(r'<!-- not-run: \S.*-->')
FENCE = re.compile(r'^```(\w*)\s*$')
# The pages whose depth the README links to (issue 17's layout).
REQUIRED_PAGES = ('guide', 'api', 'porting', 'deployment', 'synchronized', 'precise',
                  'performance', 'errors', 'cli', 'demo', 'pitfalls', 'architecture', 'layers',
                  'sequences')
# Blocks of one page share a process; a page must finish within this.
PAGE_TIMEOUT_S = 600


def _name(page):
  return page.relative_to(ROOT).as_posix()


def code_blocks(page):
  """[(language, first code line number, code, marked not-run)] of a page."""
  blocks, lines = [], page.read_text(encoding='utf-8').split('\n')
  i = 0
  while i < len(lines):
    match = FENCE.match(lines[i])
    if not match:
      i += 1
      continue
    end = i + 1
    while end < len(lines) and lines[end].rstrip() != '```':
      end += 1
    if end == len(lines):
      raise AssertionError(f'{_name(page)}:{i + 1}: code block never closed')
    not_run = i > 0 and bool(NOT_RUN.fullmatch(lines[i - 1].strip()))
    blocks.append((match.group(1), i + 2, '\n'.join(lines[i + 1:end]), not_run))
    i = end + 1
  return blocks


def python_blocks(page, runnable=True):
  return [(line, code) for language, line, code, not_run in code_blocks(page)
          if language == 'python' and not_run != runnable]


SNIPPETS = [(_name(page), line) for page in PAGES for line, _ in python_blocks(page)]

# Runs a page's blocks one after another, each in a fresh namespace, and
# writes {line: traceback or None} to argv[1]. Blocks print what they like.
RUNNER = r'''
import json, sys, traceback
blocks, results = json.load(sys.stdin), {}
for page, line, code in blocks:
    try:
        exec(compile(code, f'{page}:{line}', 'exec'), {'__name__': '__main__'})
        results[line] = None
    except BaseException:
        results[line] = traceback.format_exc()
with open(sys.argv[1], 'w') as f:
    json.dump(results, f)
'''


def _run_page(name):
  page = ROOT / name
  blocks = [(name, line, code) for line, code in python_blocks(page)]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join([str(ROOT)] + os.environ.get('PYTHONPATH', '').split(
                 os.pathsep)).rstrip(os.pathsep))
  with tempfile.TemporaryDirectory() as folder:  # blocks run in an empty folder
    out = os.path.join(folder, 'results.json')
    process = subprocess.run([sys.executable, '-c', RUNNER, out], input=json.dumps(blocks),
                             capture_output=True, text=True, cwd=folder, env=env,
                             timeout=PAGE_TIMEOUT_S)
    if not os.path.exists(out):
      raise AssertionError(f'{name}: the snippet process died (status {process.returncode}):\n'
                           f'{process.stderr[-4000:]}')
    with open(out) as f:
      return {int(line): error for line, error in json.load(f).items()}


@functools.lru_cache(maxsize=None)
def _page_runs():
  """Every page's process, started together on the first call (one per core
  at a time: most of each process is importing TensorFlow)."""
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
  names = sorted({name for name, _ in SNIPPETS})
  runs = {name: pool.submit(_run_page, name) for name in names}
  pool.shutdown(wait=False)
  return runs


def run_page(name):
  """{line: traceback or None} for the runnable blocks of page `name`."""
  return _page_runs()[name].result()


@pytest.mark.parametrize('name, line', SNIPPETS, ids=[f'{n}:{l}' for n, l in SNIPPETS])
def test_python_block_runs_and_its_assertions_hold(name, line):
  error = run_page(name)[line]
  assert error is None, f'the python block at {name}:{line} failed:\n{error}'


def test_not_run_blocks_say_why():
  # A not-run marker needs a reason, and sits right above a python block.
  for page in PAGES:
    lines = page.read_text(encoding='utf-8').split('\n')
    for i, text in enumerate(lines):
      if '<!-- not-run' in text:
        assert NOT_RUN.fullmatch(text.strip()), f'{_name(page)}:{i + 1}: {text!r}'
        assert i + 1 < len(lines) and lines[i + 1].strip() == '```python', (
            f'{_name(page)}:{i + 1}: a not-run marker must be the line just before a ```python')


# --- links -------------------------------------------------------------------
def _prose(page):
  """The page without its fenced blocks and inline code (links there are code)."""
  text, out, fence = page.read_text(encoding='utf-8'), [], False
  for line in text.split('\n'):
    if FENCE.match(line) or (fence and line.rstrip() == '```'):
      fence = not fence
      out.append('')
      continue
    out.append('' if fence else re.sub(r'`[^`]*`', '', line))
  return '\n'.join(out)


def github_slug(heading):
  """GitHub's anchor for a heading's text: markup removed, lower case, every
  character but letters, digits, '_', '-' and spaces dropped, spaces to '-'."""
  text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)
  text = text.replace('`', '').replace('*', '')
  text = re.sub(r'<[^>]+>', '', text).strip().lower()
  return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(page):
  slugs, seen, fence = set(), {}, False
  for line in page.read_text(encoding='utf-8').split('\n'):
    if FENCE.match(line) or (fence and line.rstrip() == '```'):
      fence = not fence
      continue
    match = re.match(r'#{1,6} (.+?)\s*#*\s*$', line)
    if fence or not match:
      continue
    slug = github_slug(match.group(1))
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    slugs.add(slug if count == 0 else f'{slug}-{count}')
  return slugs


def links(page):
  return re.findall(r'\[[^\]]*\]\(([^)\s]+)\)', _prose(page))


def test_github_slug_matches_githubs_anchors():
  # Slugs as GitHub renders them for headings of these pages.
  assert github_slug('trainable or training?') == 'trainable-or-training'
  assert github_slug('`tf1-bn inspect CKPT` / `tf1_bn.inspect_checkpoint(path)`') == (
      'tf1-bn-inspect-ckpt--tf1_bninspect_checkpointpath')
  assert github_slug('What does momentum (moving_decay) do, and when?') == (
      'what-does-momentum-moving_decay-do-and-when')


@pytest.mark.parametrize('page', PAGES, ids=_name)
def test_relative_links_resolve(page):
  broken = []
  for target in links(page):
    if re.match(r'[a-z]+:', target):  # http:, https:, mailto:
      continue
    path, _, anchor = target.partition('#')
    file = (page.parent / path).resolve() if path else page
    if not file.exists():
      broken.append(f'{target}: no file {file.relative_to(ROOT) if ROOT in file.parents else file}')
    elif anchor and file.suffix == '.md' and anchor not in anchors(file):
      broken.append(f'{target}: no heading with that anchor in {_name(file)}')
  assert not broken, f'{_name(page)} has broken links:\n' + '\n'.join(broken)


@pytest.mark.parametrize('page', PAGES, ids=_name)
def test_repository_paths_named_exist(page):
  named = set(re.findall(r'\b((?:tf1_bn|tests|scripts)/[\w/.-]*\w\.py)\b',
                         page.read_text(encoding='utf-8')))
  missing = sorted(p for p in named if not (ROOT / p).exists())
  assert not missing, f'{_name(page)} names files that do not exist: {missing}'


def test_readme_links_every_docs_page():
  linked = {(ROOT / t.partition('#')[0]).resolve() for t in links(ROOT / 'README.md')}
  for name in REQUIRED_PAGES:
    page = DOCS / f'{name}.md'
    assert page.exists(), f'docs/{name}.md is missing'
    assert page.resolve() in linked, f'README.md does not link docs/{name}.md'


# --- what the tools write, and what they must not ------------------------------
@pytest.mark.parametrize('name, tool', [('performance', 'bench'), ('demo', 'demo')])
def test_tool_written_block_has_one_pair_of_markers(name, tool):
  # `tf1-bn bench --write-docs` and the demo replace the text between them.
  text = (DOCS / f'{name}.md').read_text(encoding='utf-8')
  begin, end = f'<!-- {tool}:begin -->', f'<!-- {tool}:end -->'
  assert text.count(begin) == text.count(end) == 1
  assert text.index(begin) < text.index(end)


@pytest.mark.parametrize('page', PAGES, ids=_name)
def test_no_session_history_in_user_docs(page):
  text = page.read_text(encoding='utf-8').lower()
  for phrase in ('previous machine', 'not lent', 'was lent', 'no gpu was lent',
                 'machines changed', 'against the targets', 'is not met'):
    assert phrase not in text, f'{_name(page)}: {phrase!r}'
  assert not re.search(r'\bcommit [0-9a-f]{7,40}\b', text), _name(page)


# --- page-specific contracts ---------------------------------------------------
def test_guide_has_a_snippet_per_question():
  page = DOCS / 'guide.md'
  questions = [l for l in page.read_text(encoding='utf-8').split('\n') if l.startswith('## ')]
  assert len(questions) == len(python_blocks(page)) == 8
  assert not python_blocks(page, runnable=False)


def test_precise_bn_page_has_its_snippet():
  assert len(python_blocks(DOCS / 'precise.md')) >= 1
  assert not python_blocks(DOCS / 'precise.md', runnable=False)


def _exit_table(section):
  """{status: meaning} of the `| status | meaning |` table in a section of
  cli.md, backticks dropped and whitespace collapsed."""
  rows = re.findall(r'^\| (\d) \| (.+?) \|$', section, re.M)
  return {int(status): ' '.join(meaning.replace('`', '').split()) for status, meaning in rows}


def _cli_section(text, heading):
  return text.split(f'\n## {heading}\n', 1)[1].split('\n## ', 1)[0]


def test_cli_page_lists_each_commands_exit_statuses_as_its_help_does():
  from tf1_bn.studies import cli
  text = (DOCS / 'cli.md').read_text(encoding='utf-8')
  for name, command in cli.COMMANDS.items():
    documented = _exit_table(_cli_section(text, f'`tf1-bn {name}`'))
    expected = {s: ' '.join(m.replace('`', '').split()) for s, m in command.exits.items()}
    assert documented == expected, f'docs/cli.md, tf1-bn {name}: exit statuses differ'
  overall = _exit_table(_cli_section(text, 'Exit status'))
  epilog = cli.build_parser().epilog.replace('`', '')
  assert cli.exit_status_help(overall) in epilog, 'docs/cli.md: overall exit statuses differ'
