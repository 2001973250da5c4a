"""Progress bars work in a base install (no tqdm): a plain bar on a terminal, nothing
in a pipe or log."""

from __future__ import annotations

import builtins
import io

import numpy as np
import pytest

import explicit_softmax as es
from explicit_softmax import _progress


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_the_text_bar_draws_on_a_terminal_and_stays_silent_elsewhere():
  tty = _Terminal()
  bar = _progress.TextBar(range(3), desc="statistics", unit="batch", stream=tty)
  assert list(bar) == [0, 1, 2]
  assert "statistics: " in tty.getvalue() and "/3 batch" in tty.getvalue()
  log = io.StringIO()
  with _progress.TextBar(total=5, desc="refine", unit="step", stream=log) as bar:
    bar.update(5)
    bar.set_postfix_str("loss 0.1")
  assert log.getvalue() == ""


def test_without_tqdm_the_library_falls_back_to_the_text_bar(monkeypatch):
  real_import = builtins.__import__

  def no_tqdm(name, *args, **kwargs):
    if name.startswith("tqdm"):
      raise ImportError("No module named 'tqdm'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_tqdm)
  assert isinstance(_progress.progress(range(2), desc="x"), _progress.TextBar)
  rng = np.random.default_rng(0)
  batches = [(rng.random((20, 3)), rng.integers(0, 2, 20)) for _ in range(3)]
  stats = es.SoftmaxStats.from_batches(iter(batches), n_classes=2, progress=True)
  assert stats.n_samples == 60
  with pytest.raises(ImportError):
    __import__("tqdm")


def test_a_bar_with_a_delay_is_made_only_once_the_work_has_run_that_long(monkeypatch):
  """Short work makes no bar at all (tqdm is not even imported for it)."""
  import time
  made = []

  def make(iterable, kwargs):
    bar = _progress.TextBar(iterable, stream=_Terminal(),
                            **{k: v for k, v in kwargs.items() if k not in ("initial", "delay")})
    made.append((bar, kwargs.get("initial")))
    return bar

  monkeypatch.setattr(_progress, "_make", make)
  with _progress.progress(desc="es.fit", unit="step", delay=60.0) as bar:
    bar.update(3)
  assert made == []
  with _progress.progress(desc="es.fit", unit="step", delay=0.01) as bar:
    bar.update(2)
    time.sleep(0.02)
    bar.set_description("es.fit: choosing l2")
    bar.update(1)
  assert len(made) == 1 and made[0][1] == 2  # made at the first update after the delay
  assert "es.fit: choosing l2" in made[0][0].stream.getvalue()
