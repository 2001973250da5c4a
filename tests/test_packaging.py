"""``python -m build`` makes an sdist and a wheel; the wheel installs and runs.

The wheel goes into a brand-new virtual environment, and the commands run from
a folder outside the source tree, so nothing can come from the checkout. The
dependencies (numpy, scipy, jax, optax, ...) are those of the test environment,
made visible through a ``.pth`` file, so that the test needs no network; the
package itself comes only from the wheel (asserted).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("wheel")
  dist = tmp / "dist"
  run = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
                        "--outdir", str(dist), str(ROOT)], capture_output=True, text=True,
                       timeout=600)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  venv = tmp / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
  python = venv / "bin" / "python"
  site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        capture_output=True, text=True, check=True).stdout.strip()
  # The test environment's packages, after the venv's own (a .pth line does not
  # run that folder's .pth files, so an editable install there stays inactive).
  shared = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
  (pathlib.Path(site) / "_test_environment.pth").write_text("\n".join(sorted(shared)) + "\n")
  wheel = next(dist.glob("*.whl"))
  subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                 check=True, timeout=300)
  work = tmp / "elsewhere"
  work.mkdir()
  return {"dist": dist, "venv": venv, "python": python, "work": work, "wheel": wheel}


def test_build_makes_an_sdist_and_a_wheel_with_the_type_marker(installed):
  names = [p.name for p in installed["dist"].iterdir()]
  assert any(n.endswith(".tar.gz") for n in names) and any(n.endswith(".whl") for n in names)
  with zipfile.ZipFile(installed["wheel"]) as wheel:
    files = wheel.namelist()
  assert "explicit_softmax/py.typed" in files
  # Subpackages travel too (packages.find includes "explicit_softmax*").
  assert {"explicit_softmax/data/__init__.py", "explicit_softmax/data/idx.py",
          "explicit_softmax/data/sources.py", "explicit_softmax/data/text.py"} <= set(files)
  assert not any(f.startswith(("tests/", "benchmarks/", "docs/")) for f in files)


def test_the_installed_wheel_runs_the_demo(installed):
  where = subprocess.run([str(installed["python"]), "-c",
                          "import explicit_softmax; print(explicit_softmax.__file__)"],
                         cwd=installed["work"], capture_output=True, text=True, check=True)
  assert str(installed["venv"]) in where.stdout, where.stdout  # from the wheel, not the checkout
  demo = subprocess.run([str(installed["venv"] / "bin" / "explicit-softmax"), "demo",
                         "--tokens", "20000", "--seconds", "0.5"], cwd=installed["work"],
                        capture_output=True, text=True, timeout=600)
  assert demo.returncode == 0, demo.stdout + demo.stderr
  assert "explicit co-occurrence (1 call)" in demo.stdout and "held-out CE" in demo.stdout


def test_the_installed_wheel_runs_a_benchmark_into_its_out_folder(installed):
  out = installed["work"] / "results"
  run = subprocess.run([str(installed["venv"] / "bin" / "explicit-softmax"), "bench", "fit",
                        "--quick", "--out", str(out)], cwd=installed["work"],
                       capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
  assert (out / "fit.json").exists()
  assert sorted(p.name for p in installed["work"].iterdir()) == ["results"]  # nothing else


def test_the_metadata_names_the_license_and_the_project(installed):
  """``pip show`` and PyPI read the license, classifiers and project URLs from here."""
  import email
  with zipfile.ZipFile(installed["wheel"]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = email.message_from_bytes(wheel.read(name))
    assert any(n.endswith("licenses/LICENSE") for n in wheel.namelist())
  assert meta["License-Expression"] == "Apache-2.0"
  assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
  assert any(c.startswith("Topic :: Scientific/Engineering") for c in meta.get_all("Classifier"))
  urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
  assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
