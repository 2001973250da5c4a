"""The data files of the command line: reading ``(X, y)`` and encoding labels.

Recognised by extension:

* ``.npz``  arrays ``X`` (features) and ``y`` (labels), e.g. ``np.savez(f, X=X, y=y)``;
  a ``scipy.sparse.save_npz`` file is read as ``X`` (labels from ``--labels``);
* ``.npy``  ``X`` only: labels from a second ``.npy`` path or ``--labels y.npy``;
* ``.svm``, ``.svmlight``, ``.libsvm``  svmlight/libsvm text (sparse features);
* ``.csv``, ``.tsv`` (and other text)  a table with one label column, named by
  ``--label-column`` (a header name or an index) or by a header cell ``label``
  (``labels``, ``target``, ``class``, ``y``); never guessed. A UTF-8 byte-order
  mark is skipped.

A table with a header row gives its feature columns' names; ``fit`` stores them
(and the label column's name) in the model, and ``predict``/``evaluate`` then
select a table's columns by name (``read_data`` with ``feature_names``), so
that reordered columns give the same predictions and a missing or unexpected
column is refused by name.

Labels that are integers ``0..M-1`` are used as class indices; any other labels
(strings, ``-1/+1``, ...) are encoded in sorted order (``encode_labels``) and
mapped back through the stored classes (``map_labels``).
"""

from __future__ import annotations

import csv
import pathlib
import zipfile
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from explicit_softmax import _targets
from explicit_softmax import _validation

SVMLIGHT_SUFFIXES = (".svm", ".svmlight", ".libsvm")
CSV_SUFFIXES = (".csv", ".tsv")


# -- reading data --------------------------------------------------------------

def _is_number(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


# Header names taken as the label column when --label-column is not given.
LABEL_NAMES = ("label", "labels", "target", "class", "y")


class Data(NamedTuple):
  """What ``read_data`` read.

  Attributes:
    x: (T, N) features, dense or ``scipy.sparse`` (with ``feature_names`` of a
      model given: its columns in the model's order).
    y: (T,) labels (or (T, M) soft labels), or None.
    feature_names: the names of ``x``'s columns (a table's header), or None.
    labels_from: where the labels came from, for the command line's report
      (e.g. ``"column 'species' of 'iris.csv'"``), or None.
    reordered: whether the table's columns were reordered to the model's.
    label_name: the label column's header name, or None.
  """

  x: Any
  y: Any
  feature_names: list[str] | None = None
  labels_from: str | None = None
  reordered: bool = False
  label_name: str | None = None


def _default_label_column(header: list[str] | None, n_cols: int, n_features: int | None,
                          feature_names, label_name, path) -> int | None:
  """The label column when ``--label-column`` is not given (None: the table has none).

  With a model's feature names: the column of the model's label name, else the
  one header cell named as in ``LABEL_NAMES`` that is not a feature, else none.
  Without them: the one header cell named as in ``LABEL_NAMES``; a table with
  exactly the model's ``n_features`` columns and no such cell has none.
  Anything else would be a guess (a table without labels would have its last
  feature read as labels), so it is an error.
  """
  cells = [] if header is None else [h.strip() for h in header]
  features = set(feature_names or ())
  if feature_names is not None and header is not None:
    if label_name is not None and label_name in cells and label_name not in features:
      return cells.index(label_name)
  named = [j for j, h in enumerate(cells) if h.lower() in LABEL_NAMES and h not in features]
  if len(named) == 1:
    return named[0]
  if (feature_names is not None and header is not None) or n_cols == n_features:
    return None
  raise ValueError(
      f"which column of {str(path)!r} holds the labels? Pass --label-column NAME or "
      "INDEX (0-based, -1 is the last), or name the column 'label' in a header row.")


def _parse_column(spec: str, header: list[str] | None, n_cols: int, path) -> int:
  """The index of the label column from a name or a (possibly negative) index."""
  try:
    index = int(spec)
  except ValueError:
    if header is None:
      raise ValueError(
          f"--label-column {spec!r} is a name but {str(path)!r} has no header row; "
          "give the column's index instead (0-based, -1 is the last).") from None
    names = [h.strip() for h in header]
    if spec not in names:
      raise ValueError(
          f"--label-column {spec!r} is not a column of {str(path)!r}; its columns are "
          f"{names[:20]}.") from None
    return names.index(spec)
  if not -n_cols <= index < n_cols:
    raise ValueError(
        f"--label-column {index} is out of range: {str(path)!r} has {n_cols} columns.")
  return index % n_cols


def read_csv(path, label_column: str | None = None, n_features: int | None = None, *,
             feature_names=None, label_name: str | None = None) -> Data:
  """Reads a CSV/TSV table: features and (if present) a label column.

  The delimiter is sniffed (``,``, ``;``, tab, ``|``); the first row is a header
  if it has non-numeric cells where the next row has numbers (or only
  non-numeric cells).

  Args:
    path: the file.
    label_column: the label column's header name or index (default: see
      ``_default_label_column``).
    n_features: the number of features a model expects; a table without a
      header and with exactly that many columns has no label column.
    feature_names: the names a model was fitted on: a table with a header is
      matched to them by name (its columns reordered to the model's order).
    label_name: the model's label column name (a column of that name is the
      labels, not an unexpected feature).

  Returns:
    ``Data``: (T, N) float64 features and (T,) labels (numbers if every
    label is numeric, else strings), or None when there is no label column.

  Raises:
    ValueError: for ragged rows, non-numeric features, a bad label column, or
      (with ``feature_names``) a missing or unexpected column, named.
  """
  path = pathlib.Path(path)
  header, body = _split_header(_read_rows(path), path)
  n_cols = len(header) if header else len(body[0])
  for i, row in enumerate(body):
    if len(row) != n_cols:
      raise ValueError(
          f"row {i + 1 + (header is not None)} of {str(path)!r} has {len(row)} columns, "
          f"expected {n_cols}; every row needs the same columns.")
  table = np.array(body, dtype=str)
  if label_column is None:
    label_idx = _default_label_column(header, n_cols, n_features, feature_names, label_name,
                                      path)
  else:
    label_idx = _parse_column(label_column, header, n_cols, path)
  columns = [j for j in range(n_cols) if j != label_idx]
  names = None if header is None else [header[j].strip() for j in columns]
  reordered = False
  if names is not None and feature_names is not None:
    order = _validation.check_feature_names(
        names, feature_names, where=f"{str(path)!r}",
        advice="(If a column holds the labels, name it with --label-column.)")
    reordered = bool(np.any(order != np.arange(len(order))))
    columns, names = [columns[i] for i in order], list(feature_names)
  x = _parse_features(table, columns, path, header is not None)
  if label_idx is None:
    return Data(x, None, names, None, reordered)
  labels = np.char.strip(table[:, label_idx])
  if all(_is_number(v) for v in labels):
    labels = labels.astype(np.float64)
  name = header[label_idx].strip() if header is not None else None
  which = f"column {name!r} (index {label_idx})" if name is not None else f"column {label_idx}"
  return Data(x, labels, names, f"{which} of {str(path)!r}", reordered, name)


def _read_rows(path: pathlib.Path) -> list[list[str]]:
  """The nonblank rows of a delimited text file (delimiter sniffed)."""
  # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not a header cell.
  with open(path, newline="", encoding="utf-8-sig") as fh:
    sample = fh.read(1 << 16)
    fh.seek(0)
    try:
      dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
      dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    return [row for row in csv.reader(fh, dialect) if any(cell.strip() for cell in row)]


def _split_header(rows, path) -> tuple[list[str] | None, list[list[str]]]:
  """``(header, body)``: the first row is a header if it has non-numeric cells
  where the next row has numbers (or only non-numeric cells)."""
  if not rows:
    raise ValueError(f"{str(path)!r} is empty; expected a table of features and labels.")
  first = [_is_number(c) for c in rows[0]]
  second = [_is_number(c) for c in rows[1]] if len(rows) > 1 else first
  has_header = not all(first) and (not any(first) or any(
      not a and b for a, b in zip(first, second)))
  header = rows[0] if has_header else None
  body = rows[1:] if has_header else rows
  if not body:
    raise ValueError(f"{str(path)!r} has a header but no data rows.")
  return header, body


def _parse_features(table: np.ndarray, feature_cols: list[int], path,
                    has_header: bool) -> np.ndarray:
  """The feature columns of a table of strings as float64, or an error naming
  the first cell that is not a number."""
  if not feature_cols:
    raise ValueError(f"{str(path)!r} has a label column but no feature columns.")
  features = table[:, feature_cols]
  try:
    return np.char.strip(features).astype(np.float64)
  except ValueError:
    bad = next((i, j) for i, row in enumerate(features) for j, cell in enumerate(row)
               if not _is_number(cell))
    raise ValueError(
        f"{str(path)!r} row {bad[0] + 1 + has_header}, column {feature_cols[bad[1]]} holds "
        f"{str(features[bad])!r}, not a number; features must be numeric (is the label in "
        "another column? use --label-column).") from None


def _sniff_svmlight(path) -> bool:
  """True if the first data line looks like ``label index:value ...``."""
  with open(path, encoding="utf-8", errors="replace") as fh:
    for line in fh:
      line = line.split("#", 1)[0].strip()
      if line:
        tokens = line.split()
        return len(tokens) == 1 or all(":" in t for t in tokens[1:])
  return False


def _load_npy(path):
  with open(path, "rb") as fh:
    if fh.read(6) != b"\x93NUMPY":
      raise ValueError(f"{str(path)!r} is not a .npy array file (save with np.save).")
    fh.seek(0)
    return np.load(fh, allow_pickle=False)


def read_data(paths, *, labels_path=None, label_column=None, n_features=None,
              feature_names=None, label_name=None) -> Data:
  """Reads ``(X, y)`` from the supported files (see the module docstring).

  Args:
    paths: one data file, or two ``.npy`` files (features, labels).
    labels_path: a ``.npy`` file of labels for ``.npy``/sparse ``.npz`` data.
    label_column: CSV label column (name or index).
    n_features: features a fitted model expects (svmlight width; CSV tables
      without a header and with exactly this many columns have no labels).
    feature_names: the feature names a model was fitted on (CSV tables with a
      header are matched to them by name).
    label_name: the model's label column name.

  Returns:
    ``Data``: features (dense array or ``scipy.sparse``), labels or
    None, the feature names (if the file has them) and where the labels came from.

  Raises:
    ValueError: for unreadable, missing or inconsistent files.
  """
  paths = [pathlib.Path(p) for p in paths]
  if len(paths) > 2:
    raise ValueError(f"expected one data file or two .npy files (X, y); got {len(paths)} paths.")
  for p in paths + ([pathlib.Path(labels_path)] if labels_path else []):
    _validation.check_file(p, "data file")
  path = paths[0]
  suffix = path.suffix.lower()
  if len(paths) == 2 and labels_path:
    raise ValueError("give the labels either as a second path or with --labels, not both.")
  if len(paths) == 2 and (suffix != ".npy" or paths[1].suffix.lower() != ".npy"):
    raise ValueError(
        "two data paths must be .npy files of features and labels (X.npy y.npy); "
        f"got {str(paths[0])!r} and {str(paths[1])!r}.")
  try:
    data = _read(path, suffix, label_column, n_features, feature_names, label_name)
    if len(paths) == 2:
      labels_path = paths[1]
    if labels_path is not None:
      if data.y is not None:
        raise ValueError(f"{str(path)!r} already holds labels; drop --labels.")
      if pathlib.Path(labels_path).suffix.lower() != ".npy":
        raise ValueError(f"labels file {str(labels_path)!r} must be a .npy array.")
      data = data._replace(y=_load_npy(labels_path), labels_from=repr(str(labels_path)))
  except (EOFError, zipfile.BadZipFile, csv.Error, KeyError) as err:
    raise ValueError(
        f"cannot read {str(path)!r} ({type(err).__name__}: {err}); is it really a "
        f"{suffix or 'CSV'} file?") from None
  x, y = data.x, data.y
  if not sp.issparse(x):
    if np.ndim(x) != 2:
      raise ValueError(
          f"the features of {str(path)!r} have shape {np.shape(x)}; expected a 2-D "
          "(samples, features) array.")
  if y is not None:
    if np.ndim(y) == 0:
      raise ValueError(
          f"the labels from {data.labels_from or repr(str(path))} are a scalar (shape ()); "
          f"expected one label per row of the features, shape ({x.shape[0]},).")
    if len(y) != x.shape[0]:
      raise ValueError(
          f"the features have {x.shape[0]} rows but there are {len(y)} labels; they must "
          "match.")
  return data


def _read(path, suffix, label_column, n_features, feature_names, label_name) -> Data:
  if suffix == ".npz":
    if not zipfile.is_zipfile(path):
      raise ValueError(
          f"{str(path)!r} is not an .npz archive (save with np.savez(path, X=X, y=y)).")
    with np.load(path, allow_pickle=False) as data:
      keys = set(data.files)
      if "X" in keys:
        if "y" in keys:
          return Data(data["X"], data["y"], labels_from=f"array 'y' of {str(path)!r}")
        return Data(data["X"], None)
    if {"data", "indices", "indptr", "shape", "format"} <= keys:
      return Data(sp.load_npz(path), None)
    raise ValueError(
        f"{str(path)!r} has arrays {sorted(keys)}; expected 'X' and 'y' (save with "
        "np.savez(path, X=X, y=y)).")
  if suffix == ".npy":
    return Data(_load_npy(path), None)
  if suffix in SVMLIGHT_SUFFIXES or (suffix not in CSV_SUFFIXES and _sniff_svmlight(path)):
    x, y = read_svmlight(path, n_features)
    return Data(x, y, labels_from=f"the first field of each line of {str(path)!r}")
  return read_csv(path, label_column, n_features, feature_names=feature_names,
                  label_name=label_name)


def read_svmlight(path, n_features: int | None = None):
  """Reads an svmlight/libsvm file with scikit-learn's reader.

  Returns:
    ``(X, y)``: (T, N) float32 CSR features and (T,) float64 labels.

  Raises:
    ValueError: for a malformed line, naming the file, the line number and what
      is wrong with it.
  """
  try:
    from sklearn.datasets import load_svmlight_file
  except ImportError:
    raise ValueError(
        f"reading the svmlight file {str(path)!r} needs scikit-learn, an optional "
        "dependency: pip install 'explicit-softmax[sklearn]'.") from None
  try:
    return load_svmlight_file(str(path), n_features=n_features, dtype=np.float32)
  except (ValueError, TypeError, IndexError) as err:
    problem = _first_svmlight_problem(path)
    if problem is None:
      raise ValueError(f"cannot read {str(path)!r} as svmlight/libsvm ({err}).") from None
    raise ValueError(problem) from None


def _svmlight_line_problem(line: str) -> str | None:
  """What is wrong with one line of an svmlight file (None: nothing)."""
  line = line.split("#", 1)[0].strip()
  if not line:
    return None
  tokens = line.split()
  if not all(_is_number(part) for part in tokens[0].split(",")):
    return f"the label {tokens[0]!r} is not a number"
  pairs = tokens[1:]
  if pairs and pairs[0].startswith("qid:"):
    if not pairs[0][4:].isdigit():
      return f"the query id {pairs[0]!r} is not qid:<integer>"
    pairs = pairs[1:]
  for token in pairs:
    index, sep, value = token.partition(":")
    if not sep:
      return f"{token!r} is not an index:value pair"
    if not index.isdigit():
      return f"the feature index {index!r} (in {token!r}) is not a nonnegative integer"
    if not _is_number(value):
      return f"the value {value!r} of feature {index} is not a number"
  return None


def _first_svmlight_problem(path) -> str | None:
  """``"file:line: problem"`` for the first malformed line of an svmlight file."""
  with open(path, encoding="utf-8", errors="replace") as fh:
    for number, line in enumerate(fh, 1):
      problem = _svmlight_line_problem(line)
      if problem is not None:
        return (f"{str(path)}:{number}: {problem}; svmlight lines are 'label index:value "
                f"...' (the line: {line.strip()!r:.80}).")
  return None


# -- labels --------------------------------------------------------------------

def _label_key(value):
  """A JSON-stable key for a label: integral numbers as int, others as given."""
  if isinstance(value, (np.floating, float)) and float(value).is_integer():
    return int(value)
  if isinstance(value, (np.integer, np.floating)):
    return value.item()
  return str(value) if isinstance(value, np.str_) else value


def encode_labels(y, n_classes: int | None = None):
  """Class indices for ``y`` and the class names to store, if any.

  Integer labels ``0..M-1`` (also as integral floats) are used as they are;
  soft labels (T, M) too. Other labels are encoded in sorted order.

  Returns:
    ``(targets, classes)``: targets for [`es.fit`][explicit_softmax.fitting.fit] and None or
    the list of class labels (index ``i`` is class ``classes[i]``).
  """
  y = np.asarray(y)
  _validation.check_n_samples(len(y))
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if y.ndim == 2:
    return y, None  # soft labels
  if y.ndim != 1:
    raise ValueError(f"labels must be a 1-D array (or (T, M) soft labels); got shape {y.shape}.")
  if _validation.is_integral(y) and y.size and y.min() >= 0:
    return y.astype(np.int64), None
  if n_classes is not None:
    raise ValueError(
        "--n-classes applies to integer labels 0..M-1; these labels are encoded from "
        "their distinct values instead. Drop --n-classes.")
  classes, codes = _targets.encode_labels(y)
  return codes, [_label_key(c) for c in classes]


def map_labels(y, classes, n_classes: int):
  """Class indices of ``y`` given the stored ``classes`` (None: the model was
  fitted on the codes ``0..n_classes-1``, which ``y`` must then hold)."""
  y = np.asarray(y)
  if y.ndim == 2 and y.shape[1] == 1:
    y = y[:, 0]
  if classes is None:
    if y.ndim == 2:
      return y
    if not _validation.is_integral(y) or y.min() < 0 or y.max() >= n_classes:
      shown = sorted({str(v) for v in np.unique(y)[:5]})
      raise ValueError(
          f"the model was fitted on the class codes 0..{n_classes - 1}, but these labels "
          f"include {shown}; evaluate with the labels the model was fitted on.")
    return y.astype(np.int64)
  index = {c: i for i, c in enumerate(classes)}
  keys = [_label_key(v) for v in y.tolist()] if y.dtype.kind != "U" else y.tolist()
  unknown = sorted({str(k) for k in keys if k not in index})
  if unknown:
    raise ValueError(
        f"labels {unknown[:5]} were not seen when the model was fitted; its classes are "
        f"{classes[:20]}.")
  return np.array([index[k] for k in keys], np.int64)

