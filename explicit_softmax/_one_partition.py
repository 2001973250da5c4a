"""One partition of data held in many places: its rows, its checks, and errors that name it.

Data that no single process holds (a dask collection, the rows of a multi-process
``jax.Array``) is a sequence of partitions along the sample axis
(``es._placement``). This module holds what every engine
(``es._dask``, [`es.sharding`][explicit_softmax.sharding]) shares: the
``Partition`` record, the checks of one partition (the in-memory checks,
called unchanged) and the wrapping of their ``ValueError`` so that it names the
partition and the row.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from explicit_softmax import _design
from explicit_softmax import _validation


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
    The validated design, ``Targets`` and (t,) float64 weights.
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
  """The first row of ``part`` whose prefix fails ``checked``, by bisection.

  The checks of features, labels (with ``n_classes`` given) and weights are
  row by row, so "the first ``r + 1`` rows fail" is monotone in ``r``; the
  checks themselves are the in-memory ones (nothing re-implemented).
  """
  def fails(rows: int) -> bool:
    try:
      design = checked(part.head(rows), n_classes)[0]
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
    ValueError: ``fn``'s, prefixed with ``partition i, row r of the partition (row R of X)``; row
      numbers inside the original message count from the partition's first row.
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
