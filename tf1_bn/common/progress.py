"""Progress bars of the long-running commands (demo, recompute_statistics): tqdm's,
shown on a terminal only.

One policy for every bar, from the `progress` argument of the caller:
True always shows it (on stderr), False never does, None shows it only when
stderr is a terminal (tqdm's `disable=None`), so a redirected stderr, a log
file or CI output never receives a redrawn line.
"""
import tqdm


def bar(total=None, desc=None, progress=None, delay=0.0, unit='step'):
  """A tqdm bar on stderr under the policy above.

  total: the number of updates, or None when unknown (a count without a bar).
  delay: seconds before it first appears (a short run then never shows it).
  Use it as a context manager, or call `close()`; `set_postfix(loss=...)` adds
  a running value.
  """
  if progress is not None and not isinstance(progress, bool):
    raise TypeError(f'`progress` must be True, False or None, received {progress!r}.')
  return tqdm.tqdm(total=total, desc=desc, disable=None if progress is None else not progress,
                   delay=delay, unit=unit, leave=True, dynamic_ncols=True)
