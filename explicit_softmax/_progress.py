"""Progress bars for long work: tqdm when installed, else a plain one on stderr.

A base install (numpy, scipy, jax, optax) has no tqdm, and long work (statistics
over many batches, refinement, the command line's fit) still shows how far it
is. Either bar is hidden when stderr is not a terminal, so logs and pipes stay
clean.
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Sized


class TextBar:
  """``desc: n/total unit`` on one line of stderr, redrawn at most ten times a second."""

  def __init__(self, iterable: Iterable | None = None, *, total: float | None = None,
               desc: str = "", unit: str = "it", stream=None, delay: float = 0.0,
               disable: bool | None = False):
    self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
    self.stream = sys.stderr if stream is None else stream
    self.enabled = not disable and bool(getattr(self.stream, "isatty", lambda: False)())
    self._shown_after = time.monotonic() + delay
    self.n: float = 0
    self._postfix, self._drawn = "", 0.0
    if self.total is None and isinstance(iterable, Sized):
      self.total = len(iterable)

  def __iter__(self):
    for item in self.iterable:
      yield item
      self.update()
    self.close()

  def __enter__(self) -> "TextBar":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def update(self, n: float = 1) -> None:
    self.n += n
    self._draw()

  def set_postfix_str(self, text: str) -> None:
    self._postfix = text
    self._draw()

  def set_description(self, desc: str) -> None:
    self.desc = desc
    self._draw()

  def _draw(self, final: bool = False) -> None:
    now = time.monotonic()
    if not self.enabled or now < self._shown_after or (not final and now - self._drawn < 0.1):
      return
    self._drawn = time.monotonic()
    done = f"{self.n:g}" + (f"/{self.total:g}" if self.total else "")
    postfix = f", {self._postfix}" if self._postfix else ""
    self.stream.write(f"\r{self.desc}: {done} {self.unit}{postfix}\033[K")
    self.stream.flush()

  def close(self) -> None:
    if self.enabled and self.n and self._drawn:
      self._draw(final=True)
      self.stream.write("\r\033[K")  # the bar leaves no trace, as tqdm's leave=False
      self.stream.flush()


class _Deferred:
  """A bar updated by hand that is made only once its work has run ``delay`` seconds.

  Most fits end well within the delay, and importing tqdm costs more than a
  small fit (milliseconds, on every first call in a process).
  """

  def __init__(self, delay: float, kwargs: dict):
    self._kwargs, self._start, self._delay = kwargs, time.monotonic(), delay
    self._bar = None
    self.n: float = 0

  def _shown(self):
    if self._bar is None and time.monotonic() - self._start >= self._delay:
      self._bar = _make(None, {**self._kwargs, "initial": self.n})
    return self._bar

  def update(self, n: float = 1) -> None:
    bar = self._shown()  # made with the count so far, then advanced by n
    self.n += n
    if bar is not None:
      bar.update(n)

  def set_description(self, desc: str) -> None:
    self._kwargs["desc"] = desc
    if self._bar is not None:
      self._bar.set_description(desc)

  def set_postfix_str(self, text: str) -> None:
    bar = self._shown()
    if bar is not None:
      bar.set_postfix_str(text)

  def __enter__(self) -> "_Deferred":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def progress(iterable: Iterable | None = None, **kwargs):
  """A progress bar over ``iterable`` (or, as a context manager, updated by hand).

  Args:
    iterable: what to iterate over, or None for a bar updated with ``update(n)``.
    **kwargs: ``total``, ``desc``, ``unit``; ``delay`` (seconds before the bar
      first shows: work that ends sooner leaves no trace, and a bar updated by
      hand is not even made) and ``disable`` (True: never shown; the default
      None hides it outside a terminal).

  Returns:
    A tqdm bar (hidden when stderr is not a terminal) if tqdm is installed, else
    a ``TextBar``.
  """
  delay = kwargs.pop("delay", 0.0)
  if iterable is None and delay > 0:
    if kwargs.get("disable") is True:
      return TextBar(disable=True, **{k: v for k, v in kwargs.items() if k != "disable"})
    return _Deferred(delay, kwargs)
  return _make(iterable, {**kwargs, "delay": delay})


def _make(iterable, kwargs: dict):
  """tqdm's bar if tqdm is installed, else a ``TextBar``."""
  try:
    from tqdm.auto import tqdm
  except ImportError:
    kwargs = {k: v for k, v in kwargs.items() if k != "initial"}
    return TextBar(iterable, **kwargs)
  kwargs.setdefault("disable", None)
  if kwargs["disable"] is False:
    kwargs["disable"] = None  # shown only in a terminal, as the plain bar
  return tqdm(iterable, leave=False, **kwargs)
