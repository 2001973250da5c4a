"""The target matrix ``Y``, as ``es._validation.check_targets`` returns it.

``y`` is either (T,) integer labels in ``[0, M)`` (one-hot rows of ``Y``, kept as
labels or as a sparse matrix, never a dense T x M array) or (T, M) soft labels:
nonnegative rows that sum to 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp



@dataclasses.dataclass(frozen=True)
class Targets:
  """Validated targets: exactly one of ``labels`` or ``probs`` is set."""

  n_classes: int
  labels: np.ndarray | None = None  # (T,) int64
  probs: np.ndarray | None = None   # (T, M) float

  def __len__(self) -> int:
    return len(self.labels) if self.labels is not None else len(self.probs)

  def take(self, rows) -> "Targets":
    if self.labels is not None:
      return Targets(self.n_classes, labels=self.labels[rows])
    return Targets(self.n_classes, probs=self.probs[rows])

  def weighted(self, w: np.ndarray):
    """``diag(w) Y``: sparse CSR for labels, dense float64 for soft labels."""
    if self.labels is not None:
      t = len(self.labels)
      return sp.csr_matrix((np.asarray(w, np.float64), self.labels, np.arange(t + 1)),
                           shape=(t, self.n_classes))
    return self.probs * np.asarray(w, np.float64)[:, None]

  def class_mass(self, w: np.ndarray) -> np.ndarray:
    """``Y^T w``: the (weighted) number of samples of each class."""
    if self.labels is not None:
      return np.bincount(self.labels, weights=w, minlength=self.n_classes)
    return np.asarray(w, np.float64) @ self.probs

  def dense(self, dtype=np.float32) -> np.ndarray:
    """``Y`` as a dense (T, M) array; use on chunks only."""
    if self.labels is not None:
      out = np.zeros((len(self.labels), self.n_classes), dtype)
      out[np.arange(len(self.labels)), self.labels] = 1
      return out
    return np.asarray(self.probs, dtype)


def encode_labels(y, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """``(classes, codes)``: the sorted distinct labels and each label's index among them.

  The one label encoder of the estimator, the Dask path and the command line:
  labels of any type become the class codes ``0..M-1`` in sorted order.

  Args:
    y: (T,) labels of any sortable type.
    classes: the sorted classes to encode against (None: those of ``y``).

  Returns:
    The classes and (T,) int64 codes.

  Raises:
    ValueError: a label that is not one of ``classes``.
  """
  y = np.asarray(y)
  if classes is None:
    classes, codes = np.unique(y, return_inverse=True)
    return classes, codes.astype(np.int64).reshape(-1)
  classes = np.asarray(classes)
  unknown = ~np.isin(y, classes)
  if np.any(unknown):
    raise ValueError(
        f"y contains labels {np.unique(y[unknown])!r} that are not in classes {classes!r}; "
        "pass every label in `classes` on the first partial_fit call.")
  return classes, np.searchsorted(classes, y).astype(np.int64)
