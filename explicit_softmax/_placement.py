"""Where the rows live, decided once: in this process, or in partitions held elsewhere.

Data that no single process holds (a dask collection, the rows of a
multi-process ``jax.Array``) is a sequence of partitions along the sample axis.
Every quantity the library needs is a sum over samples, so it is computed per
partition where the rows live and the small results are added: statistics,
column moments, the loss (1) and its gradient (2). :func:`partitioned` makes
the decision; :class:`PartitionedDesign` offers the sums the pipeline needs
(one pass each); :class:`Partition` and :func:`checked` run one partition
through the in-memory checks, and :func:`run` makes their ``ValueError`` name
the partition and the row. The engines are :class:`explicit_softmax._dask.DaskParts`
and :class:`explicit_softmax.sharding.ProcessLocalParts`.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable

import numpy as np

from explicit_softmax import _design
from explicit_softmax import _objective
from explicit_softmax import _validation


def is_dask(x) -> bool:
  """Whether ``x`` is a dask collection (without importing dask if nobody has)."""
  dask = sys.modules.get("dask")
  if dask is None:  # no dask collection can exist without dask imported
    return False
  return bool(dask.is_dask_collection(x))


@dataclasses.dataclass(frozen=True)
class Partition:
  """The rows of one partition.

  Attributes:
    index: the partition's number (dask block or partition index, or shard number).
    offset: the row of ``X`` at which the partition starts (None if unknown, as
      for dask dataframes whose partition lengths are not computed).
    x: (t, N) features: numpy array or ``scipy.sparse`` matrix.
    y: (t,) labels or (t, M) soft labels.
    w: (t,) sample weights, or None.
  """

  index: int
  offset: int | None
  x: Any
  y: Any
  w: Any = None

  def __len__(self) -> int:
    return self.x.shape[0]

  def head(self, rows: int) -> "Partition":
    """The first ``rows`` rows (used to locate the first invalid row)."""
    return Partition(self.index, self.offset, self.x[:rows], np.asarray(self.y)[:rows],
                     None if self.w is None else np.asarray(self.w)[:rows])


def checked(part: Partition, n_classes: int | None):
  """``(design, targets, w)`` of a partition, through the in-memory checks.

  Args:
    part: the partition.
    n_classes: M (None: inferred from this partition's labels).

  Returns:
    The validated design, :class:`~explicit_softmax._targets.Targets` and (t,) float64 weights.
    A partition whose weights are all zero is valid here (it adds nothing); the
    total weight is checked once the partitions are summed.
  """
  design = _design.as_design(part.x)
  t = design.shape[0]
  targets = _validation.check_targets(part.y, t, n_classes)
  w = part.w
  if w is not None and np.ndim(w) == 1 and len(w) == t and not np.any(np.asarray(w) != 0):
    return design, targets, np.zeros(t)
  return design, targets, _validation.check_sample_weight(w, t)


def classes_of(part: Partition) -> int:
  """M of one partition's labels, through the in-memory check (which infers max + 1)."""
  return checked(part, None)[1].n_classes


def first_invalid_row(part: Partition, n_classes: int | None) -> int | None:
  """The first row of ``part`` whose prefix fails :func:`checked`, by bisection.

  The checks of features, labels (with ``n_classes`` given) and weights are
  row by row, so "the first ``r + 1`` rows fail" is monotone in ``r``; the
  checks themselves are the in-memory ones (nothing re-implemented).
  """
  def fails(rows: int) -> bool:
    try:
      design = checked(part.head(rows), n_classes)[0]
      if isinstance(design, _design.DenseDesign):
        design.check_finite()  # dense X is checked where it is read, in the pass
    except ValueError:
      return True
    return False

  t = len(part)
  if t == 0 or not fails(t):
    return None
  lo, hi = 1, t  # the shortest failing prefix has hi rows
  while lo < hi:
    mid = (lo + hi) // 2
    if fails(mid):
      hi = mid
    else:
      lo = mid + 1
  return hi - 1


def run(fn: Callable, part: Partition, args: tuple, n_classes: int | None):
  """``fn(part, *args)``; a ``ValueError`` is re-raised naming the partition and row.

  Args:
    fn: the per-partition function.
    part: the partition.
    args: further arguments of ``fn``.
    n_classes: M, to locate an invalid label (None: inferred per partition).

  Raises:
    ValueError: ``fn``'s, prefixed with ``partition i, row r of the partition
      (row R of X)``; row numbers inside the original message count from the
      partition's first row.
  """
  try:
    return fn(part, *args)
  except ValueError as err:
    try:
      row = first_invalid_row(part, n_classes)
    except Exception:  # locating is a courtesy; never hide the original error
      row = None
    where = f"partition {part.index}"
    if row is not None:
      where += f", row {row} of the partition"
      if part.offset is not None:
        where += f" (row {part.offset + row} of X)"
    elif part.offset is not None:
      where += f" (rows {part.offset}..{part.offset + len(part) - 1} of X)"
    raise ValueError(f"{where}: {err}") from err


def add(a: tuple, b: tuple) -> tuple:
  """Element-wise sum of two tuples of per-partition sums."""
  return tuple(u + v for u, v in zip(a, b))


def _partition_objective(part: Partition, n_classes: int, weights: np.ndarray,
                         bias: np.ndarray, need_grad: bool):
  """Sums of one partition: ``(sum_t w_t l_t, X^T diag(w)(P - Y), 1^T diag(w)(P - Y), sum w)``.

  The in-memory objective (1)-(2) in float64 gives weighted means; times the
  partition's weight they are sums, which add over partitions.
  """
  design, targets, w = checked(part, n_classes)
  total = float(w.sum())
  if total == 0:  # all weights zero: nothing to add (its rows were checked above)
    if isinstance(design, _design.DenseDesign):
      design.check_finite()
    return 0.0, 0.0, 0.0, 0.0
  loss, g_w, g_b = _objective.objective(design, targets, w, weights, bias, need_grad=need_grad)
  if not need_grad:
    return loss * total, 0.0, 0.0, total
  return loss * total, g_w * total, g_b * total, total


def _partition_moments(part: Partition, n_classes: int, second: bool):
  """``(sum_t x_t, sum_t x_t^2, rows)``, or with ``second`` ``(X1^T X1, rows)``, X1 = [X, 1]."""
  design = checked(part, n_classes)[0]
  t = design.shape[0]
  if second:
    x = design.x.toarray() if hasattr(design.x, "toarray") else np.asarray(design.x)
    if isinstance(design, _design.DenseDesign):
      design.check_finite()
    x1 = np.hstack([x.astype(np.float64), np.ones((t, 1))])
    return x1.T @ x1, float(t)
  mean, mean_sq = design.column_moments()  # checks every row of dense X
  return mean * t, mean_sq * t, float(t)


def _partition_summary(part: Partition, n_classes: int):
  """``(sum w x, sum w x^2, min x, max x, sum w, nonzero entries, entries)`` of one
  partition (rows of positive weight)."""
  design, _, w = checked(part, n_classes)
  n = design.shape[1]
  total = float(w.sum())
  if total == 0:
    if isinstance(design, _design.DenseDesign):
      design.check_finite()
    return np.zeros(n), np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf), 0.0, 0.0, 0.0
  mean, variance, low, high, density = design.column_summary(w)
  entries = float((w > 0).sum() * n)
  return (mean * total, (variance + mean**2) * total, low, high, total, density * entries,
          entries)


def _add_summaries(a: tuple, b: tuple) -> tuple:
  return (a[0] + b[0], a[1] + b[1], np.minimum(a[2], b[2]), np.maximum(a[3], b[3]),
          a[4] + b[4], a[5] + b[5], a[6] + b[6])


def _partition_covariance(part: Partition, n_classes: int, mean: np.ndarray):
  """``sum_t w_t (x_t - mean)(x_t - mean)^T`` of one partition (dense (N, N))."""
  design, _, w = checked(part, n_classes)
  x = design.x.toarray() if hasattr(design.x, "toarray") else np.asarray(design.x)
  d = x.astype(np.float64) - mean
  return (d * w[:, None]).T @ d


class PartitionedDesign:
  """``X`` (with its labels and weights) in partitions that this process does not hold.

  Each method is one pass over the partitions; ``passes`` counts them.

  Args:
    parts: an object with ``n_samples``, ``n_features``, ``n_classes`` and
      ``map_reduce(fn, args, combine)``.
  """

  def __init__(self, parts):
    self.parts = parts
    self.passes = 0

  @property
  def shape(self):
    return (self.parts.n_samples, self.parts.n_features)

  def _reduce(self, fn, *args, combine=add):
    self.passes += 1
    out = self.parts.map_reduce(fn, (self.parts.n_classes,) + args, combine)
    if out is None:
      raise ValueError("X has no samples (every partition is empty); pass at least one sample.")
    return out

  def objective(self, weights, bias, need_grad: bool = True):
    """``(L, dL/dW, dL/db)`` as :func:`_objective.objective`, summed over the partitions."""
    loss, g_w, g_b, total = self._reduce(
        _partition_objective, np.asarray(weights, np.float64), np.asarray(bias, np.float64),
        need_grad)
    # Weights are checked per partition; their total only here (the in-memory
    # check raises its message for a total that is not positive).
    _validation.check_sample_weight(np.array([total]), 1)
    if not need_grad:
      return loss / total, None, None
    return loss / total, g_w / total, g_b / total

  def column_moments(self) -> tuple[np.ndarray, np.ndarray]:
    """Column means of ``X`` and of ``X**2`` over all rows (one pass)."""
    total, total_sq, t = self._reduce(_partition_moments, False)
    return total / t, total_sq / t

  def column_summary(self) -> tuple:
    """``(mean, variance, min, max, density, total weight)`` of the columns over all
    rows of positive weight (one pass; as ``DenseDesign.column_summary``)."""
    total, total_sq, low, high, weight, nonzero, entries = self._reduce(
        _partition_summary, combine=_add_summaries)
    _validation.check_sample_weight(np.array([weight]), 1)  # a positive total weight
    mean = total / weight
    return (mean, np.maximum(total_sq / weight - mean**2, 0.0), low, high,
            nonzero / max(entries, 1.0), weight)

  def covariance(self, mean: np.ndarray, weight: float) -> np.ndarray:
    """The weighted covariance of the columns about ``mean`` (one pass; (N, N) float64),
    ``weight`` the total sample weight."""
    return self._reduce(_partition_covariance, mean, combine=np.add) / weight

  def input_second_moment(self) -> np.ndarray:
    """``X1^T X1 / T`` with ``X1 = [X, 1]``, over all rows (one pass)."""
    gram, t = self._reduce(_partition_moments, True)
    return gram / t


def partitioned(X, y, sample_weight=None, n_classes: int | None = None):
  """``X`` as a :class:`PartitionedDesign` if no single process holds it, else None.

  That is a dask collection, or a ``jax.Array`` whose rows span several
  processes (multi-controller JAX).
  """
  if is_dask(X):
    from explicit_softmax import _dask  # the dask engine, for dask collections only
    return PartitionedDesign(_dask.DaskParts(X, y, sample_weight, n_classes))
  if not _design.is_jax_array(X):
    return None
  from explicit_softmax import sharding  # lazy: jax's multi-process helpers
  if sharding.spans_processes(X):
    return PartitionedDesign(sharding.ProcessLocalParts(X, y, sample_weight, n_classes))
  return None
