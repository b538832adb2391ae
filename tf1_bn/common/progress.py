"""The one-line progress bar of the long-running commands (demo, recompute)."""
import sys


class Progress:
  """One status line on stderr: a label, a bar, the step and an optional loss.

  `steps=None` (a generator of unknown length) shows the step count without a
  bar. `done()` ends the line only if something was written, so a run that
  never showed the bar leaves stderr untouched.
  """

  def __init__(self, enabled, width=24):
    self.enabled, self.width = enabled, width
    self.shown = False

  def update(self, label, step, steps=None, loss=None):
    if not self.enabled:
      return
    if steps:
      filled = int(self.width * min(step, steps) / steps)
      status = '[' + '#' * filled + '.' * (self.width - filled) + f'] {step:>5}/{steps}'
    else:
      status = f'{step:>5}'
    if loss is not None:
      status += f' loss {loss:7.4f}'
    sys.stderr.write(f'\r{label:<44} {status}')
    sys.stderr.flush()
    self.shown = True

  def done(self):
    if self.enabled and self.shown:
      sys.stderr.write('\n')
      self.shown = False
