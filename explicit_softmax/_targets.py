"""The target matrix ``Y`` and sample weights, validated up front.

``y`` is either (T,) integer labels in ``[0, M)`` (one-hot rows of ``Y``, kept as
labels or as a sparse matrix, never a dense T x M array) or (T, M) soft labels:
nonnegative rows that sum to 1.
"""

from __future__ import annotations

import dataclasses
import operator

import numpy as np
import scipy.sparse as sp

# Soft-label rows must sum to one within this tolerance (float32 inputs).
_ROW_SUM_ATOL = 1e-4
# Above this many inferred classes, labels must look like codes (see check_targets).
_MAX_SPARSE_CODES = 2**16


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


def check_integer(name: str, value, minimum: int = 1) -> int:
  """``value`` as an int; a ValueError naming ``name`` unless an integer >= ``minimum``.

  Integer scalars of numpy or JAX pass (``operator.index``); floats, strings and
  bools do not, so that ``3.5`` is never silently read as 3.
  """
  try:
    if isinstance(value, bool):
      raise TypeError
    out = operator.index(value)
  except TypeError:
    out = None
  if out is None or out < minimum:
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    raise ValueError(f"{name} must be {kind}; got {value!r}.")
  return out


def check_number(name: str, value, *, minimum: float = 0.0) -> float:
  """``value`` as a float; a ValueError naming ``name`` unless a finite real >= ``minimum``.

  Strings, booleans and NaN/inf are refused (``"0.1" >= 0`` would otherwise
  surface as a TypeError deep inside a solver, and ``inf`` as NaN weights).
  """
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)):
    raise ValueError(f"{name} must be a finite number >= {minimum:g}; got {value!r}.")
  value = float(value)
  if not (np.isfinite(value) and value >= minimum):
    raise ValueError(f"{name} must be a finite number >= {minimum:g}; got {value!r}.")
  return value


def check_layout(y, n_samples: int, n_classes) -> int | None:
  """The checks of ``y`` that need only its shape and dtype (host or device array).

  Returns:
    ``n_classes`` as an int (None stays None), checked by :func:`check_integer`.
  """
  if y.dtype == object:
    raise ValueError(
        "y must hold integer labels 0..M-1 or soft-label rows; got objects. Encode "
        "string labels first (or use explicit_softmax.sklearn.ExplicitSoftmaxClassifier, "
        "which accepts any label type).")
  if y.ndim == 0 or y.ndim > 2:
    raise ValueError(f"y must have shape (n_samples,) or (n_samples, n_classes); got {y.shape}.")
  if y.shape[0] != n_samples:
    raise ValueError(
        f"X has {n_samples} samples but y has {y.shape[0]}; they must have the same length.")
  if y.ndim == 2 and y.shape[1] == 1:
    # A column of labels (a common slip), not soft labels: those need a column per class.
    raise ValueError(
        f"y has shape {y.shape}: pass class labels as a 1-D array (y.ravel()); soft "
        "labels need one column per class.")
  return None if n_classes is None else check_integer("n_classes", n_classes)


def check_targets(y, n_samples: int, n_classes: int | None = None) -> Targets:
  """Validates labels or soft labels against ``n_samples`` rows of ``X``.

  Args:
    y: (T,) integer labels in ``[0, n_classes)`` or (T, M) soft labels.
    n_samples: the number of rows of ``X``.
    n_classes: M; inferred as ``max(y) + 1`` (labels) or ``y.shape[1]`` if None.

  Returns:
    A :class:`Targets`.

  Raises:
    ValueError: on any inconsistency, naming the problem and the fix.
  """
  y = np.asarray(y)
  n_classes = check_layout(y, n_samples, n_classes)

  if y.ndim == 1:
    if y.dtype.kind == "f":
      if not np.isfinite(y).all() or not np.all(y == np.round(y)):
        raise ValueError(
            "y is 1-D but not integral: pass integer class labels 0..M-1, or soft "
            "labels as a (n_samples, n_classes) array.")
      y = y.astype(np.int64)
    elif y.dtype.kind not in "iub":
      raise ValueError(f"y must hold integer class labels; got dtype {y.dtype}.")
    y = y.astype(np.int64, copy=False)
    lo, hi = int(y.min()), int(y.max())
    m = hi + 1 if n_classes is None else int(n_classes)
    if n_classes is None and m > _MAX_SPARSE_CODES and m > 16 * len(np.unique(y)):
      # Class codes 0..M-1 mostly occur; ids up to 2e8 among a few labels are
      # not codes, and M = max + 1 columns would exhaust memory.
      raise ValueError(
          f"the labels go up to {hi:,} but only {len(np.unique(y)):,} distinct values "
          "occur: they look like ids, not the class codes 0..M-1; encode them first "
          "(np.unique(y, return_inverse=True)), pass n_classes explicitly if they are "
          "codes, or use explicit_softmax.sklearn.ExplicitSoftmaxClassifier, which "
          "encodes any labels.")
    if lo < 0 or hi >= m:
      raise ValueError(
          f"labels must lie in [0, n_classes={m}); found values in [{lo}, {hi}]. "
          "Re-encode the labels (e.g. np.unique(y, return_inverse=True)) or raise n_classes.")
    return Targets(m, labels=y)

  if y.dtype.kind not in "iubf":
    raise ValueError(f"soft labels must be real numbers; got dtype {y.dtype}.")
  if n_classes is not None and y.shape[1] != n_classes:
    raise ValueError(f"soft labels have {y.shape[1]} columns but n_classes={n_classes}.")
  if not np.isfinite(y).all():
    raise ValueError("soft labels contain NaN or inf.")
  if y.min() < 0:
    raise ValueError("soft labels must be nonnegative probabilities.")
  sums = y.sum(axis=1)
  bad = np.flatnonzero(np.abs(sums - 1) > _ROW_SUM_ATOL)
  if bad.size:
    raise ValueError(
        f"soft-label rows must sum to 1; row {bad[0]} sums to {sums[bad[0]]:.6g} "
        f"({bad.size} rows off). Normalise with y / y.sum(axis=1, keepdims=True).")
  return Targets(y.shape[1], probs=y)


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
  """Returns (T,) float64 weights: ones if None, else validated nonnegative weights."""
  if sample_weight is None:
    return np.ones(n_samples, np.float64)
  try:
    w = np.asarray(sample_weight, np.float64)
  except (TypeError, ValueError):
    raise ValueError(
        f"sample_weight must be numbers (a scalar or a ({n_samples},) array); got "
        f"{type(sample_weight).__name__} that is not.") from None
  if w.ndim == 0:
    w = np.full(n_samples, float(w))
  if w.shape != (n_samples,):
    raise ValueError(
        f"sample_weight must have shape ({n_samples},) to match X; got {w.shape}.")
  if not np.isfinite(w).all() or w.min() < 0:
    raise ValueError("sample_weight must be finite and nonnegative.")
  if w.sum() <= 0:
    raise ValueError("sample_weight sums to zero; at least one sample needs positive weight.")
  return w
