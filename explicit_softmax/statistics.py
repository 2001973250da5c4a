"""Additive sufficient statistics of a single-layer softmax model.

The cross-entropy gradient of ``p(y|x) = softmax(x W + b)`` is ``X^T (P - Y) / T``;
it vanishes where the model's expected co-occurrences ``X^T P`` equal the observed
ones, ``F = X^T Y``. Everything the explicit solvers need is a sum over samples:

* ``F = X^T diag(w) Y``           (N, M) feature-class co-occurrences;
* ``f = F 1``                      (N,)  feature mass (derived, not stored);
* ``c = Y^T w``                    (M,)  class mass;
* ``T_w = 1^T w``                  total sample weight;
* ``sum_t w_t m_t^2``              second moment of the per-sample feature mass
  ``m_t = x_t 1`` (the first moment is ``1^T f``);
* ``G = X^T diag(w) X``            (N, N) Gram matrix, only for ``method="newton"``;
* ``min_t,i x_ti``                 the smallest feature value (a minimum merges as
  sums do), since the co-occurrence solution needs nonnegative features.

Because they are sums, statistics of batches add up (``a + b``, ``update``) to
the statistics of the whole data set, in any order and any split.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

from explicit_softmax import _dask
from explicit_softmax import _design
from explicit_softmax import _one_partition
from explicit_softmax import _progress
from explicit_softmax import _validation
from explicit_softmax._typing import Features, Labels, SampleWeight



def _sharding():
  """[`es.sharding`][explicit_softmax.sharding], imported (with JAX) only for jax.Array inputs."""
  from explicit_softmax import sharding
  return sharding


@dataclasses.dataclass(frozen=True)
class SoftmaxStats:
  """Sufficient statistics for explicit softmax solutions (immutable).

  Attributes:
    cooccurrence: ``F = X^T diag(w) Y``, (N, M) float64.
    class_mass: ``c = Y^T w``, (M,) float64.
    total_weight: ``T_w``, the sum of sample weights.
    mass_sq: ``sum_t w_t m_t^2`` with ``m_t`` the feature mass of sample t.
    n_samples: the number of samples seen (unweighted).
    gram: ``X^T diag(w) X`` (N, N) float64, or None if not collected.
    min_feature: the smallest entry of ``X`` seen (``inf`` for no data).
      Statistics made by hand from features that can be negative must say
      so here: with ``min_feature >= 0`` negative co-occurrences are refused.

  The fields are checked against their definitions when the statistics are
  made (shapes, and the signs of sums of nonnegative weights and targets), so
  that hand-made statistics cannot give a finite but meaningless model.
  """

  cooccurrence: np.ndarray
  class_mass: np.ndarray
  total_weight: float
  mass_sq: float
  n_samples: int
  gram: np.ndarray | None = None
  min_feature: float = np.inf

  def __post_init__(self):
    for name in ("cooccurrence", "class_mass", "gram"):
      value = getattr(self, name)
      if value is not None:
        # Read-only float64 views: the statistics are immutable (``+`` and
        # ``update`` make new ones) without copying an (N, N) Gram matrix.
        _validation.check_not_masked(name, value)
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
          raise ValueError(f"{name} must hold real numbers; got dtype {array.dtype}.")
        view = np.asarray(array, np.float64).view()
        view.flags.writeable = False
        object.__setattr__(self, name, view)
    _validation.check_statistics(self.cooccurrence, self.class_mass, self.total_weight,
                                 self.mass_sq, self.n_samples, self.gram, self.min_feature)
    # Sums past float64's range (weights near 1e307, features near 1e154 in the
    # Gram matrix) would reach the solvers as inf and come back as NaN weights.
    _validation.check_sums_finite(self.total_weight, self.cooccurrence)
    if self.gram is not None:
      _validation.check_gram_finite(self.gram)

  # -- derived quantities ----------------------------------------------------
  @property
  def n_features(self) -> int:
    return self.cooccurrence.shape[0]

  @property
  def n_classes(self) -> int:
    return self.cooccurrence.shape[1]

  @property
  def feature_mass(self) -> np.ndarray:
    """``f = F 1``: how much weight each feature carries over the data."""
    return self.cooccurrence.sum(axis=1)

  @property
  def mean_feature_mass(self) -> float:
    """``K = (1^T f) / T_w``, the mean feature mass per sample (1 for one-hot).

    Raises:
      ValueError: for statistics of no data (total weight 0), where it is 0/0.
    """
    if not self.total_weight > 0:
      raise ValueError(
          "mean_feature_mass is undefined for statistics without samples (total weight 0, "
          "so 0/0); update them with data first.")
    return float(self.cooccurrence.sum() / self.total_weight)

  # -- construction ----------------------------------------------------------
  @classmethod
  def empty(cls, n_features: int, n_classes: int, *, gram: bool = False) -> SoftmaxStats:
    """Statistics of no data, the start of a stream of
    [`update`][explicit_softmax.statistics.SoftmaxStats.update] calls."""
    n_features = _validation.check_integer("n_features", n_features)
    n_classes = _validation.check_integer("n_classes", n_classes)
    _validation.check_dense_size(n_features, n_classes)
    _validation.check_gram_size(n_features, gram)
    return cls(np.zeros((n_features, n_classes)), np.zeros(n_classes), 0.0, 0.0, 0,
               np.zeros((n_features, n_features)) if gram else None)

  @classmethod
  def from_data(cls, X: Features, y: Labels, *, n_classes: int | None = None,
                sample_weight: SampleWeight = None,
                gram: bool = False) -> SoftmaxStats:
    """Computes the statistics in one pass over ``X``.

    Args:
      X: (T, N) real features: dense numpy/JAX array (uint8 accepted), ``scipy.sparse`` matrix, or
        [`TokenFeatures`][explicit_softmax.TokenFeatures]. Rows of zeros are valid samples (they
        inform only the class mass, hence the bias). A dask array (dense or sparse chunks) or dask
        DataFrame is reduced on its workers, partition by partition, and only the sums travel (see
        ``docs/scaling.md``).
      y: (T,) integer labels in ``[0, M)`` or (T, M) soft labels; for a dask
        DataFrame the name of its label column.
      n_classes: M; inferred from ``y`` if None.
      sample_weight: optional (T,) nonnegative weights (for a dask DataFrame
        also a column name).
      gram: also collect the Gram matrix ``X^T diag(w) X`` (needed by
        ``method="newton"``; costs O(T N^2) time and O(N^2) memory).

    Returns:
      A [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats].

    Raises:
      ValueError: for invalid ``X``, ``y`` or weights, or a Gram matrix too
        large for memory.
    """
    if _dask.is_dask(X):  # partitions reduced on the workers, summed in a tree
      parts = _dask.DaskParts(X, y, sample_weight, n_classes)
      _validation.check_dense_size(parts.n_features, parts.n_classes)
      _validation.check_gram_size(parts.n_features, gram)
      total = parts.map_reduce(_partition_statistics, (parts.n_classes, gram))
      if total is None:
        raise ValueError("X has no samples (every partition is empty); pass at least one sample.")
      # The weights are checked per partition; their total only here (the
      # in-memory check raises its message for a total that is not positive).
      _validation.check_sample_weight(np.array([total.total_weight]), 1)
      return total
    if _design.is_jax_array(X) and _sharding().computes_on_device(X):
      # A jax.Array on accelerators or several devices: reduce it there.
      return cls.from_sharded(X, y, n_classes=n_classes, sample_weight=sample_weight,
                              gram=gram)
    return cls._of_local(_design.as_design(X), y, n_classes, sample_weight, gram)

  @classmethod
  def from_design(cls, design, X: Features, y: Labels, *, n_classes: int | None = None,
                  sample_weight: SampleWeight = None, gram: bool = False) -> SoftmaxStats:
    """[`from_data`][explicit_softmax.statistics.SoftmaxStats.from_data] of ``X`` already placed as
    ``design`` (``_placement.place``): in memory it is not validated again."""
    if design.local and not _design.is_jax_array(X):
      return cls._of_local(design, y, n_classes, sample_weight, gram)
    return cls.from_data(X, y, n_classes=n_classes, sample_weight=sample_weight, gram=gram)

  @classmethod
  def _of_local(cls, design, y: Labels, n_classes: int | None, sample_weight: SampleWeight,
                gram: bool) -> SoftmaxStats:
    """The statistics of an in-memory design, in one pass (see
    [`from_data`][explicit_softmax.statistics.SoftmaxStats.from_data])."""
    t, n = design.shape
    targets = _validation.check_targets(y, t, n_classes)
    _validation.check_dense_size(
        n, targets.n_classes, copies=_design.statistics_copies(design),
        asked=lambda: _validation.describe_classes(n_classes, targets.n_classes, targets.labels))
    w = _validation.check_sample_weight(sample_weight, t)
    _validation.check_gram_size(n, gram)
    cooccurrence, mass, gram_matrix, min_feature = design.one_pass(
        targets.weighted(w), w if gram else None)
    # __post_init__ refuses overflowed sums the solvers use (no solver reads mass_sq).
    with np.errstate(over="ignore"):
      return cls(
          cooccurrence=cooccurrence,
          class_mass=targets.class_mass(w),
          total_weight=float(w.sum()),
          # Not w @ mass**2: a BLAS dot leaves OpenBLAS threads spinning, and they
          # would compete with the threads of the next statistics pass.
          mass_sq=float((w * mass * mass).sum()),
          n_samples=t,
          gram=gram_matrix,
          min_feature=min_feature)

  @classmethod
  def from_sharded(cls, X: Features, y: Labels, *, n_classes: int | None = None,
                   sample_weight: SampleWeight = None, gram: bool = False,
                   chunk_rows: int | None = None) -> SoftmaxStats:
    """The statistics of a ``jax.Array``, computed where its rows live.

    A jitted pass on every device (or process) holding rows, reduced with ``psum``
    ([`es.sharding.sharded_sums`][explicit_softmax.sharding.sharded_sums]); ``from_data`` takes this
    path by itself for arrays on accelerators or sharded over devices. Arguments as for
    [`from_data`][explicit_softmax.statistics.SoftmaxStats.from_data], plus ``chunk_rows``, the rows
    per chunk of each device's pass.

    Returns:
      A [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] in float64 on the host, equal on
      every process.
    """
    return cls(**_sharding().sharded_sums(X, y, n_classes=n_classes, sample_weight=sample_weight,
                                       gram=gram, chunk_rows=chunk_rows))

  @classmethod
  def from_batches(cls, batches: Iterable, *, n_classes: int, gram: bool = False,
                   progress: bool = False) -> SoftmaxStats:
    """Accumulates statistics over an iterable of ``(X, y)`` or ``(X, y, w)`` batches.

    Memory stays that of one batch plus the statistics, so data larger than
    memory (memory-mapped arrays, generators reading files) can be fitted.

    Args:
      batches: iterable of ``(X, y)`` or ``(X, y, sample_weight)`` tuples.
      n_classes: M (required: a batch may lack some classes).
      gram: also collect the Gram matrix.
      progress: show a progress bar on stderr (tqdm's if installed).

    Returns:
      The [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] of all batches together.
    """
    it = _progress.progress(batches, desc="statistics", unit="batch") if progress else batches
    total = None
    for index, batch in enumerate(it):
      x, y, *rest = _validation.check_batch(batch, index)
      part = cls.from_data(x, y, n_classes=n_classes, sample_weight=rest[0] if rest else None,
                           gram=gram)
      total = part if total is None else total + part
    if total is None:
      raise ValueError("from_batches got no batches; the iterable was empty.")
    return total

  def update(self, X: Features, y: Labels, sample_weight: SampleWeight = None) -> SoftmaxStats:
    """Returns the statistics of the data seen so far plus ``(X, y)``."""
    return self + SoftmaxStats.from_data(
        X, y, n_classes=self.n_classes, sample_weight=sample_weight,
        gram=self.gram is not None)

  def __add__(self, other: SoftmaxStats) -> SoftmaxStats:
    """Merges the statistics of two disjoint data sets (shards or batches)."""
    if not isinstance(other, SoftmaxStats):
      return NotImplemented
    if self.cooccurrence.shape != other.cooccurrence.shape:
      raise ValueError(
          f"cannot merge statistics of shape {self.cooccurrence.shape} (features, classes) "
          f"with {other.cooccurrence.shape}; both must come from the same features and "
          "n_classes (pass n_classes explicitly when a shard lacks some classes).")
    if (self.gram is None) != (other.gram is None):
      raise ValueError(
          "cannot merge statistics with and without a Gram matrix; compute both with "
          "the same gram= setting.")
    return SoftmaxStats(
        self.cooccurrence + other.cooccurrence,
        self.class_mass + other.class_mass,
        self.total_weight + other.total_weight,
        self.mass_sq + other.mass_sq,
        self.n_samples + other.n_samples,
        None if self.gram is None else self.gram + other.gram,
        min(self.min_feature, other.min_feature))


def _partition_statistics(part: _one_partition.Partition, n_classes: int,
                          gram: bool) -> SoftmaxStats:
  """The statistics of one partition (of a dask collection), with the in-memory checks."""
  design, targets, w = _one_partition.checked(part, n_classes)
  y = targets.labels if targets.labels is not None else targets.probs
  if w.any():
    return SoftmaxStats.from_data(design, y, n_classes=n_classes, sample_weight=w, gram=gram)
  # All weights zero: the partition adds its rows and smallest feature, no mass.
  seen = SoftmaxStats.from_data(design, y, n_classes=n_classes)
  empty = SoftmaxStats.empty(design.shape[1], n_classes, gram=gram)
  return dataclasses.replace(empty, n_samples=seen.n_samples, min_feature=seen.min_feature)

