"""MkDocs hook: the generated parts of the site, built from the code and the committed JSON.

``explicit_softmax.bench.report`` and ``report_pages`` turn ``benchmarks/results/*.json``
into Markdown: the verdicts (``docs/benchmarks.md``), a page per benchmark
(``docs/benchmarks/*.md``) and the sections other pages quote. This hook puts that text
into the pages that ask for it (a ``<!-- generated:NAME -->`` marker) and the plots
next to them, so no figure in the documentation is typed by hand; it also writes the
module map of ``docs/architecture.md`` from the modules' docstrings.
"""

from __future__ import annotations

import ast
import pathlib
import re

from mkdocs.structure.files import File

from explicit_softmax.bench import report
from explicit_softmax.bench import report_pages

RESULTS = report.RESULTS


PACKAGE = pathlib.Path(report.__file__).resolve().parents[1]

# The module map, in the order one array travels through ``es.fit`` (DESIGN.md's road):
# the public boundary, the checks, placement, the Design protocol, statistics and the
# closed forms, curvature, the optimum, the model. Every module of the package is in
# exactly one layer: a new module that is not placed here fails the build.
LAYERS = (
    ("The public boundary",
     "What users call. Each front end parses its own input (files, DataFrames, tensors) "
     "and calls the one pipeline of `fitting.py`.",
     ["__init__.py", "fitting.py", "refinement.py", "calibration.py", "sklearn.py", "cli.py",
      "_files.py", "_typing.py", "adapters/"]),
    ("Checks",
     "Every check of user input and its message, once; what passes is never checked again.",
     ["_validation.py", "_targets.py"]),
    ("Placement",
     "Where the rows live, decided once: in memory, Dask, several JAX processes, devices.",
     ["_placement.py", "_one_partition.py", "_dask.py", "sharding.py", "_device_pass.py"]),
    ("The Design protocol",
     "One declared interface for inputs (dense, sparse, tokens, partitioned): one pass of "
     "sums, the products `X @ W` and `X^T G`, `take(rows)`, the size of the work.",
     ["_design.py"]),
    ("Statistics and the closed forms",
     "Additive statistics from one pass, and the explicit solutions they give.",
     ["statistics.py", "solvers.py", "sparse_model.py", "ngram.py"]),
    ("Curvature",
     "The units of the penalty and the whitening, from the same statistics.",
     ["_curvature.py", "_preconditioning.py", "preconditioning.py"]),
    ("The optimum",
     "Choose `l2`, optimise with the statistics' curvature, stop, record.",
     ["_regularisation.py", "_optimum.py", "_objective.py", "_lbfgs.py", "_optax_loop.py",
      "_convergence.py", "_progress.py"]),
    ("The model",
     "Immutable; remembers its classes and feature names; safe files; diagnostics.",
     ["model.py", "diagnostics.py"]),
    ("Beside the road",
     "Data sets and the benchmarks, which use the public API only.",
     ["data/", "bench/"]),
)


def _first_line(path: pathlib.Path) -> str:
  doc = ast.get_docstring(ast.parse(path.read_text())) or ""
  return doc.splitlines()[0] if doc else ""


def _module_map() -> str:
  """The package's modules by layer, each with the first line of its docstring."""
  modules = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE)
    # The benchmarks appear as their package, its harness and its report only.
    if path.name == "__main__.py" or (rel.parts[0] == "bench" and path.name not in (
        "__init__.py", "_harness.py", "report.py")):
      continue
    modules[rel.as_posix()] = path
  placed = [name for _, _, names in LAYERS for name in names]
  unplaced = [m for m in modules
              if m not in placed and m.split("/")[0] + "/" not in placed]
  if unplaced or len(placed) != len(set(placed)):
    raise ValueError(f"docs/_hooks/results.py LAYERS: place {unplaced} in one layer each")
  lines = []
  for number, (title, what, names) in enumerate(LAYERS, start=1):
    lines += [f"### {number}. {title}", "", what, ""]
    for name in names:
      for module in [m for m in modules if m == name or m.startswith(name)]:
        lines.append(f"- `{module}`: {_first_line(modules[module])}")
    lines.append("")
  return "\n".join(lines)


def _generated(name: str) -> str:
  if name == "modules":
    return _module_map()
  if name == "verdicts":
    return report_pages.verdicts()
  if name.startswith("bench:"):
    return report_pages.page(name.split(":", 1)[1])
  if name == "dask":
    dask = report._load("dask.json")
    text = report.dask_section(dask) if dask else "(no committed Dask results)"
  elif name == "deep":
    deep = report._load("deep.json")
    text = report.deep_section(deep) if deep else "(no committed deep-model results)"
  elif name == "ngram":
    ngram = report._load("ngram.json")
    text = report.ngram_section(ngram) if ngram else "(no committed n-gram results)"
  elif name == "real":
    real = report._load("real.json")
    text = report.real_section(real) if real else "(no committed real-data results)"
  else:
    raise ValueError(f"unknown generated section {name!r}")
  # The README links plots as benchmarks/results/NAME.png; the site serves them at results/.
  return text.replace("benchmarks/results/", "results/")


def on_files(files, config):
  for png in sorted(RESULTS.glob("*.png")):
    files.append(File.generated(config, f"results/{png.name}", abs_src_path=str(png)))
  return files


def on_page_markdown(markdown, page, config, files):
  return re.sub(r"<!-- generated:([\w:]+) -->", lambda m: _generated(m.group(1)), markdown)
