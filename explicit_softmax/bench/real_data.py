"""The real-data benchmark's data sets: scikit-learn's bundled sets, MNIST and tiny
Shakespeare's speakers (:mod:`explicit_softmax.bench.real` runs them)."""

from __future__ import annotations

import collections
import pathlib

import numpy as np

from explicit_softmax.bench import _harness


DATASETS = ("iris", "wine", "breast_cancer", "digits", "mnist", "shakespeare")
QUICK = ("iris", "wine", "digits")
SKLEARN_SETS = ("iris", "wine", "breast_cancer", "digits")
N_SPEAKERS = 10


class Skip(Exception):
  """A data set that cannot run here (missing files); the message says why."""


def _default_text() -> pathlib.Path:
  try:
    return _harness.tiny_shakespeare()
  except FileNotFoundError:
    return pathlib.Path(_harness.TEXT_NAME)  # reported as not found, and skipped


def speeches(text: str, n_speakers: int = N_SPEAKERS) -> tuple[list[str], list[str]]:
  """The speeches of the ``n_speakers`` most frequent speakers of a play corpus.

  Blocks are separated by blank lines; a block whose first line ends with ``:``
  is a speech by that name, its other lines (joined by spaces) the document.
  Frequency is the number of speeches (ties keep the order of first appearance).

  Returns:
    ``(documents, speakers)``, in corpus order.
  """
  blocks = text.replace("\r\n", "\n").split("\n\n")
  pairs = []
  for block in blocks:
    lines = [line.strip() for line in block.strip("\n").split("\n")]
    if len(lines) >= 2 and lines[0].endswith(":") and len(lines[0]) > 1:
      pairs.append((lines[0][:-1], " ".join(line for line in lines[1:] if line)))
  top = {name for name, _ in collections.Counter(n for n, _ in pairs).most_common(n_speakers)}
  kept = [(name, doc) for name, doc in pairs if name in top]
  return [doc for _, doc in kept], [name for name, _ in kept]


def load(name: str, args) -> tuple:
  """``(x_train, y_train, x_test, y_test, info)`` of one data set; raises Skip."""
  from sklearn.model_selection import train_test_split
  if name in SKLEARN_SETS:
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    info = {"source": f"sklearn.datasets.load_{name}", "split": "stratified 75/25, seed 0",
            "features": "StandardScaler fitted on the training part"}
    return scaler.transform(x_tr), y_tr, scaler.transform(x_te), y_te, info
  if name == "mnist":
    from explicit_softmax import data
    try:
      x, y = data.load_mnist("train")
      x_te, y_te = data.load_mnist("test")
    except FileNotFoundError as err:
      raise Skip(f"MNIST files not found ({str(err).splitlines()[0]})") from None
    total = len(x)
    if args.mnist_rows:
      x, y = x[:args.mnist_rows], y[:args.mnist_rows]
    prep = lambda a: (a.reshape(len(a), -1).astype(np.float32) / 255)  # noqa: E731
    info = {"source": "explicit_softmax.data.load_mnist", "split": "official train / test",
            "features": "pixels / 255, float32", "train_rows_available": int(total),
            "train_rows_used": int(len(x))}
    return prep(x), y, prep(x_te), y_te, info
  if name == "shakespeare":
    from sklearn.feature_extraction.text import CountVectorizer
    path = pathlib.Path(args.text) if args.text else _default_text()
    if not path.is_file():
      raise Skip(f"text corpus {str(path)!r} not found (pass --text PATH)")
    docs, speakers = speeches(path.read_text(encoding="utf-8"), N_SPEAKERS)
    d_tr, d_te, y_tr, y_te = train_test_split(docs, np.asarray(speakers), test_size=0.25,
                                              stratify=speakers, random_state=0)
    vectorizer = CountVectorizer().fit(d_tr)
    info = {"source": str(path), "split": "stratified 75/25, seed 0",
            "features": "CountVectorizer() counts fitted on the training part (sparse)",
            "speakers": sorted(set(speakers)), "documents": len(docs)}
    return vectorizer.transform(d_tr), y_tr, vectorizer.transform(d_te), y_te, info
  raise ValueError(f"unknown data set {name!r}; choose from {DATASETS}.")


def _plain(value):
  """A JSON value for a hyperparameter (numbers, strings, None; anything else as repr)."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  return repr(value)


def _nonnegative(x) -> bool:
  values = x.data if hasattr(x, "tocsr") else x
  return bool(values.size == 0 or values.min() >= 0)
