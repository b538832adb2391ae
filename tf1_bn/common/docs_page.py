"""A generated block in a docs page: the text between a begin and an end
marker line, which `tf1-bn bench --write-docs` and `tf1-bn demo --write-docs`
rewrite. One pair of markers per page; the page is replaced whole (a
temporary file beside it, renamed over it) or not at all.
"""
import os
import tempfile


def span(text, begin_marker, end_marker):
  """(start, end) of the text between the markers when each occurs once and
  the begin marker comes first; None otherwise (the caller says why)."""
  if text.count(begin_marker) != 1 or text.count(end_marker) != 1:
    return None
  begin, end = text.index(begin_marker), text.index(end_marker)
  if end < begin:
    return None
  return begin + len(begin_marker), end


def write_between(path, text, start, end, content, prefix):
  """Writes `text` with `content` in place of text[start:end] to `path`,
  through a temporary file named `prefix`... in the same directory."""
  new = text[:start] + '\n' + content.strip('\n') + '\n' + text[end:]
  directory = os.path.dirname(os.path.abspath(path))
  handle, staged = tempfile.mkstemp(dir=directory, prefix=prefix, suffix='.md')
  try:
    with os.fdopen(handle, 'w', encoding='utf-8') as f:
      f.write(new)
    os.replace(staged, path)
  except BaseException:
    os.unlink(staged)
    raise
