"""MkDocs hook: the benchmark pages, generated from the committed JSON at build time.

``explicit_softmax.bench.report`` turns ``benchmarks/results/*.json`` into Markdown (the
README's results section). This hook puts the same text into the pages that ask
for it (a ``<!-- generated:NAME -->`` marker) and the plots next to them, so no
figure in the documentation is typed by hand.
"""

from __future__ import annotations

import ast
import pathlib

from mkdocs.structure.files import File

from explicit_softmax.bench import report

RESULTS = report.RESULTS


PACKAGE = pathlib.Path(report.__file__).resolve().parents[1]


def _module_map() -> str:
  """One line per module of the package: its path and the first line of its docstring."""
  lines = []
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent)
    # The benchmarks appear as their package, its harness and its report only.
    if path.name == "__main__.py" or (rel.parts[1] == "bench" and path.name not in (
        "__init__.py", "_harness.py", "report.py")):
      continue
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    lines.append(f"- `{rel.as_posix()}`: {doc.splitlines()[0] if doc else ''}")
  return "\n".join(lines)


def _generated(name: str) -> str:
  if name == "modules":
    return _module_map()
  if name == "results":
    text = report.build()
  elif name == "dask":
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
  for name in ("results", "real", "deep", "dask", "ngram", "modules"):
    marker = f"<!-- generated:{name} -->"
    if marker in markdown:
      markdown = markdown.replace(marker, _generated(name))
  return markdown
