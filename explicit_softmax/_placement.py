"""Where the rows live, decided once: in this process, or in partitions held elsewhere.

Data that no single process holds (a dask collection, the rows of a
multi-process ``jax.Array``) is a sequence of partitions along the sample axis.
Every quantity the library needs is a sum over samples, so it is computed per
partition where the rows live and the small results are added: statistics,
column moments, the loss (1) and its gradient (2). ``partitioned`` makes
the decision; ``PartitionedDesign`` offers the sums the pipeline needs
(one pass each); ``_one_partition.Partition`` and ``checked`` run one partition
through the in-memory checks, and ``run`` makes their ``ValueError`` name
the partition and the row. The engines are ``es._dask.DaskParts``
and [`es.sharding.ProcessLocalParts`][explicit_softmax.sharding.ProcessLocalParts].
"""

from __future__ import annotations


import numpy as np

from explicit_softmax import _dask
from explicit_softmax import _design
from explicit_softmax import _one_partition
from explicit_softmax import _objective
from explicit_softmax import _validation


def add(a: tuple, b: tuple) -> tuple:
  """Element-wise sum of two tuples of per-partition sums."""
  return tuple(u + v for u, v in zip(a, b))


def _partition_objective(part: _one_partition.Partition, n_classes: int, weights: np.ndarray,
                         bias: np.ndarray, need_grad: bool):
  """Sums of one partition: ``(sum_t w_t l_t, X^T diag(w)(P - Y), 1^T diag(w)(P - Y), sum w)``.

  The in-memory objective (1)-(2) in float64 gives weighted means; times the
  partition's weight they are sums, which add over partitions.
  """
  design, targets, w = _one_partition.checked(part, n_classes)
  total = float(w.sum())
  if total == 0:  # all weights zero: nothing to add (its rows were checked above)
    design.check_finite()
    return 0.0, 0.0, 0.0, 0.0
  loss, g_w, g_b = _objective.objective(design, targets, w, weights, bias, need_grad=need_grad)
  if not need_grad:
    return loss * total, 0.0, 0.0, total
  return loss * total, g_w * total, g_b * total, total


def _partition_moments(part: _one_partition.Partition, n_classes: int, second: bool):
  """``(sum_t x_t, sum_t x_t^2, rows)``, or with ``second`` ``(X1^T X1, rows)``, X1 = [X, 1]."""
  design = _one_partition.checked(part, n_classes)[0]
  t = design.shape[0]
  if second:
    x = design.x.toarray() if hasattr(design.x, "toarray") else np.asarray(design.x)
    design.check_finite()
    x1 = np.hstack([x.astype(np.float64), np.ones((t, 1))])
    return x1.T @ x1, float(t)
  mean, mean_sq = design.column_moments()  # checks every row of dense X
  return mean * t, mean_sq * t, float(t)


def _partition_summary(part: _one_partition.Partition, n_classes: int):
  """``(sum w x, sum w x^2, min x, max x, sum w, nonzero entries, entries)`` of one
  partition (rows of positive weight)."""
  design, _, w = _one_partition.checked(part, n_classes)
  n = design.shape[1]
  total = float(w.sum())
  if total == 0:
    design.check_finite()
    return np.zeros(n), np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf), 0.0, 0.0, 0.0
  mean, variance, low, high, density = design.column_summary(w)
  entries = float((w > 0).sum() * n)
  return (mean * total, (variance + mean**2) * total, low, high, total, density * entries,
          entries)


def _add_summaries(a: tuple, b: tuple) -> tuple:
  return (a[0] + b[0], a[1] + b[1], np.minimum(a[2], b[2]), np.maximum(a[3], b[3]),
          a[4] + b[4], a[5] + b[5], a[6] + b[6])


def _partition_covariance(part: _one_partition.Partition, n_classes: int, mean: np.ndarray):
  """``sum_t w_t (x_t - mean)(x_t - mean)^T`` of one partition (dense (N, N))."""
  design, _, w = _one_partition.checked(part, n_classes)
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

  local, dense, layout = False, True, None

  def __init__(self, parts):
    self.parts = parts
    self.passes = 0

  def work(self, n_classes: int) -> int:
    """A dense bound on the multiply-adds of ``X W``: the rows are elsewhere anyway."""
    t, n = self.shape
    return (t or 0) * n * n_classes

  def is_one_hot(self) -> bool:
    """Every partition one-hot (one pass; ``min`` of 0/1 also crosses processes)."""
    return bool(self.parts.map_reduce(_partition_one_hot, (self.parts.n_classes,), min))

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
    """``(L, dL/dW, dL/db)`` as ``_objective.objective``, summed over the partitions."""
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


def _partition_one_hot(part: _one_partition.Partition, n_classes: int) -> bool:
  """Whether one partition's rows are one-hot."""
  return _one_partition.checked(part, n_classes)[0].is_one_hot()


def place(X, y, sample_weight=None, n_classes: int | None = None):
  """Where ``X``'s rows live, decided once: a ``PartitionedDesign`` if no single
  process holds them, else ``X`` validated and wrapped in memory
  (``_design.as_design``). Either is a ``_design.Design``."""
  remote = partitioned(X, y, sample_weight, n_classes)
  return remote if remote is not None else _design.as_design(X)


def partitioned(X, y, sample_weight=None, n_classes: int | None = None):
  """``X`` as a ``PartitionedDesign`` if no single process holds it, else None.

  That is a dask collection, or a ``jax.Array`` whose rows span several
  processes (multi-controller JAX).
  """
  if _dask.is_dask(X):
    return PartitionedDesign(_dask.DaskParts(X, y, sample_weight, n_classes))
  if not _design.is_jax_array(X):
    return None
  from explicit_softmax import sharding  # lazy: jax's multi-process helpers
  if sharding.spans_processes(X):
    return PartitionedDesign(sharding.ProcessLocalParts(X, y, sample_weight, n_classes))
  return None
