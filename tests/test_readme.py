"""Every Python snippet in the README runs as pasted into a fresh interpreter,
and the README stays short enough to read in five minutes."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_is_short_and_links_the_documentation():
  assert len(README.splitlines()) <= 200
  assert "mkdocs serve" in README and "docs/" in README


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_each_readme_snippet_runs_in_a_fresh_interpreter(index, tmp_path):
  run = subprocess.run([sys.executable, "-c", SNIPPETS[index]], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, f"snippet {index}:\n{SNIPPETS[index]}\n{run.stderr[-3000:]}"
