"""A missing optional dependency is an ImportError that names the extra to install."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module, missing, extra", [
    ("explicit_softmax.sklearn", "sklearn", "sklearn"),
    ("explicit_softmax.adapters.torch", "torch", "torch"),
    ("explicit_softmax.adapters.flax", "flax", "flax"),
])
def test_missing_extra_names_the_pip_command(module, missing, extra):
  # sys.modules[name] = None makes "import name" fail, as without the package.
  code = (f"import sys; sys.modules[{missing!r}] = None\n"
          f"try:\n  import {module}\nexcept ImportError as err:\n  print(err)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert f"pip install 'explicit-softmax[{extra}]'" in out.stdout, out.stdout + out.stderr
