"""Helpers shared by the benchmark scripts: machine facts, timing, JSON output."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time
from importlib import metadata

import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def machine_facts() -> dict:
  """Cores, CPU, Python and library versions, to store with every result."""
  versions = {}
  for name in ("numpy", "scipy", "jax", "jaxlib", "optax", "scikit-learn", "flax", "torch"):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as fh:
      cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
          "platform": platform.platform(), "versions": versions,
          "date": time.strftime("%Y-%m-%d %H:%M:%S"),
          "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}


def median_seconds(fn, repeats: int = 7, warmup: int = 1) -> tuple[float, list[float]]:
  """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times)), times


def write_json(name: str, payload: dict, out_dir=None) -> pathlib.Path:
  out = pathlib.Path(out_dir) if out_dir else RESULTS
  out.mkdir(parents=True, exist_ok=True)
  path = out / name
  path.write_text(json.dumps({"machine": machine_facts(), **payload}, indent=2))
  return path
