"""What the report's sections share: the results folder, loading, formatting.

``es.bench.report`` assembles the sections; each section module reads
the JSON through ``_load`` here (so ``--results`` reaches every one of them).
"""

from __future__ import annotations

import json
import pathlib

from explicit_softmax.bench import _harness

RESULTS = _harness.COMMITTED


def _use_results(folder: pathlib.Path) -> None:
  """Reads results from ``folder`` from now on (``--results``)."""
  global RESULTS
  if not folder.is_dir():
    raise FileNotFoundError(f"results folder {str(folder)!r} does not exist.")
  RESULTS = folder


def _load(name):
  path = RESULTS / name
  return json.loads(path.read_text()) if path.exists() else None


def _machine(d):
  m = d.get("machine", {})
  cores = m.get("cores", m.get("logical_cores"))
  return f"{cores} cores, {m.get('date', '?')}"


def _sentence(text: str) -> str:
  """``text`` as a sentence: capitalised, ending with a full stop."""
  text = text.strip()
  return "" if not text else text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _fmt(x, spec=".3f"):
  return "n/a" if x is None else format(x, spec)
