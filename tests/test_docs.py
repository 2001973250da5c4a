"""The documentation site builds in strict mode, and the package's types check.

``mkdocs build --strict`` fails on any warning: a broken link, a missing page, a
docstring whose parameters lack types or do not match the signature, a
generated benchmark page that cannot be built from the committed JSON.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_documentation_builds_in_strict_mode(tmp_path):
  env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
  run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                        str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert run.returncode == 0, run.stdout + run.stderr
  site = tmp_path / "site"
  # The generated pages hold the committed results and their plots.
  assert "<table" in (site / "benchmarks" / "index.html").read_text()
  assert (site / "results" / "real.png").exists()
  assert "LogisticRegression" in (site / "choosing" / "index.html").read_text()
  assert "fit_optimum" in (site / "api" / "fitting" / "index.html").read_text()


def test_the_package_type_checks():
  run = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", os.devnull],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert run.returncode == 0, run.stdout + run.stderr
