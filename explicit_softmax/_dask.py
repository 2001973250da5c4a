"""Dask collections as data: per-partition work on the workers, tree reductions.

The statistics of the explicit solutions and the loss and gradient of the softmax
model are sums over samples. For a dask array (dense or ``scipy.sparse`` chunks) or
a dask dataframe split along the sample axis, ``DaskParts`` pairs the blocks of
``X`` with those of the labels (and weights) and runs one function per partition,
where the partition lives; dask.bag's ``reduction`` adds the results in a tree
(``split_every`` at a time), so only small sums travel: the (N, M) co-occurrences,
the Gram matrix for ``method="newton"``, or one (N+1, M) gradient per evaluation.

dask itself is imported only when a dask collection is given (``dask`` in
``sys.modules``); ``require`` names the extra to install.

References:
  Dask Development Team, "Dask: Library for dynamic task scheduling" (2016),
  https://dask.org: ``dask.bag.Bag.reduction`` (tree reductions), ``to_delayed``.
"""

from __future__ import annotations

import functools
import math
import operator
import sys
from typing import Callable

import numpy as np

from explicit_softmax import _design
from explicit_softmax import _one_partition
from explicit_softmax import _targets
from explicit_softmax import _validation

INSTALL = "pip install 'explicit-softmax[dask]'"
# Partial results combined per task of the reduction tree (dask's default for bags).
SPLIT_EVERY = 8


def is_dask(x) -> bool:
  """Whether ``x`` is a dask collection (without importing dask if nobody has)."""
  dask = sys.modules.get("dask")
  if dask is None:  # no dask collection can exist without dask imported
    return False
  return bool(dask.is_dask_collection(x))


def require():
  """Imports dask (array, bag, delayed); an ImportError naming the extra if missing."""
  try:
    import dask
    import dask.array  # noqa: F401
    import dask.bag  # noqa: F401
  except ImportError as err:
    raise ImportError(
        f"dask data needs dask, an optional dependency: {INSTALL}") from err
  return dask


def _is_frame(x) -> bool:
  """Whether ``x`` is a dask DataFrame (dask.dataframe imported only if it can be one)."""
  import dask.array as da
  if isinstance(x, da.Array):
    return False
  try:
    import dask.dataframe as dd
  except ImportError as err:
    raise ImportError(
        f"dask dataframes need dask[dataframe], an optional dependency: {INSTALL}") from err
  return isinstance(x, dd.DataFrame)


def _pack(index, offset, x, y, w):
  """One bag partition: a list holding the ``_one_partition.Partition``."""
  return [_one_partition.Partition(index, offset, x, np.asarray(y), None if w is None else
                               np.asarray(w))]


def _pack_frame(index, frame, features, label, weight, y, w):
  """A pandas partition as a ``_one_partition.Partition`` (features in ``features`` order)."""
  x = frame[list(features)].to_numpy()
  y = frame[label].to_numpy() if label is not None else np.asarray(y)
  if weight is not None:
    w = frame[weight].to_numpy()
  return [_one_partition.Partition(index, None, x, y, None if w is None else np.asarray(w))]


def _apply(partitions, fn, args, n_classes):
  """``[fn(part, *args)]`` for the (single) partition of a bag partition."""
  return [_one_partition.run(fn, part, args, n_classes) for part in partitions if len(part)]


def _combine(combine, results):
  """Combines a list of results (None: an empty partition) with the binary ``combine``."""
  results = [r for r in results if r is not None]
  return functools.reduce(combine, results) if results else None


class DaskParts:
  """``X``, labels and weights as partitions of a dask collection.

  Args:
    X: (T, N) dask array (dense or ``scipy.sparse`` chunks; a feature axis in
      several chunks is rechunked to whole rows) or dask DataFrame.
    y: for an array: a (T,) or (T, M) dask array (rechunked like ``X``'s rows)
      or a numpy array; for a DataFrame: the name of its label column, or a
      dask Series with the DataFrame's partitions.
    sample_weight: None, a dask/numpy array like ``y``, or (DataFrame) a
      column name or dask Series.
    n_classes: M; inferred from the labels if None (one extra pass).

  Attributes:
    n_samples: T, or None when the partition lengths are unknown.
    n_features: N.
    n_classes: M.
    features: the feature columns of a DataFrame (None for arrays).
  """

  def __init__(self, X, y, sample_weight=None, n_classes=None):
    dask = require()
    import dask.bag as db
    self.features = None
    # The scheduler is the one X would use (a distributed Client if one is
    # current, else X's default: threads for arrays); a bag's own default
    # would start a process pool.
    self._scheduler = dask.base.get_scheduler(collections=[X])
    if _is_frame(X):
      packed = self._frame_partitions(X, y, sample_weight)
    else:
      packed = self._array_partitions(X, y, sample_weight)
    self._bag = db.from_delayed([dask.delayed(fn)(*args) for fn, args in packed])
    self.n_partitions = len(packed)
    if n_classes is not None:
      n_classes = _validation.check_integer("n_classes", n_classes)
    elif self._soft_columns is not None:
      n_classes = self._soft_columns
    else:
      # One pass: each partition's labels through the in-memory check (which
      # infers max + 1), the largest over partitions.
      n_classes = self.map_reduce(_one_partition.classes_of, (), combine=max, n_classes=None)
    self.n_classes = int(n_classes)

  # -- pairing the blocks ---------------------------------------------------------
  def _array_partitions(self, X, y, sample_weight):
    import dask.array as da
    if not isinstance(X, da.Array):
      raise ValueError(
          f"dask input X must be a dask array or dask DataFrame; got {type(X).__name__}.")
    if X.ndim != 2:
      raise ValueError(
          f"X must be 2-D (n_samples, n_features); got shape {X.shape}. For images "
          "flatten with X.reshape(len(X), -1).")
    if X.numblocks[1] > 1:
      X = X.rechunk({1: -1})  # whole rows in every partition
    rows = X.chunks[0]
    known = all(math.isfinite(r) for r in rows)
    t = int(sum(rows)) if known else None
    self.n_samples, self.n_features = t, int(X.shape[1])

    def align(a, name):
      if a is None:
        return [None] * len(rows)
      if is_dask(a):
        if not isinstance(a, da.Array):
          raise ValueError(f"{name} for a dask array X must be a dask or numpy array; got "
                           f"{type(a).__name__}.")
        if a.ndim == 2 and a.numblocks[1] > 1:
          a = a.rechunk({1: -1})
        if a.chunks[0] != rows:
          if not known or not all(math.isfinite(r) for r in a.chunks[0]):
            raise ValueError(
                f"{name} has {a.numblocks[0]} blocks of unknown length against X's "
                f"{len(rows)}: compute the chunk sizes first (X.compute_chunk_sizes(), "
                f"{name}.compute_chunk_sizes()).")
          a = a.rechunk({0: rows})
      else:
        a = np.asarray(a)
        if not known:
          raise ValueError(
              f"X has blocks of unknown length, so a numpy {name} cannot be split like its "
              "rows: pass a dask array with X's blocks, or call X.compute_chunk_sizes().")
        if a.ndim == 0:
          a = np.full(t, a)
        a = da.from_array(a, chunks=(rows,) + tuple(-1 for _ in a.shape[1:]))
      if name == "y":
        _validation.check_layout(a, a.shape[0] if t is None else t, None)
        if t is not None and a.shape[0] != t:
          raise ValueError(f"X has {t} samples but y has {a.shape[0]}; they must have the "
                           "same length.")
      elif t is not None and tuple(a.shape) != (t,):
        raise ValueError(
            f"sample_weight must have shape ({t},) to match X; got {tuple(a.shape)}.")
      return list(a.to_delayed().ravel())

    ys = align(y, "y")
    self._soft_columns = int(y.shape[1]) if np.ndim(y) == 2 else None
    ws = align(sample_weight, "sample_weight")
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64) if known else None
    xs = X.to_delayed().ravel()
    return [(_pack, (i, None if offsets is None else int(offsets[i]), xs[i], ys[i], ws[i]))
            for i in range(len(xs))]

  def _frame_partitions(self, X, y, sample_weight):
    label = y if isinstance(y, str) else None
    weight = sample_weight if isinstance(sample_weight, str) else None
    for name, column in (("y", label), ("sample_weight", weight)):
      if column is not None and column not in X.columns:
        raise ValueError(f"{name}={column!r} is not a column of the DataFrame; its columns "
                         f"are {list(X.columns)}.")
    if label is None and not is_dask(y):
      raise ValueError(
          "for a dask DataFrame X pass y as the name of its label column (e.g. "
          f"y='label'), or a dask Series with X's partitions; got {type(y).__name__}.")
    features = [c for c in X.columns if c not in (label, weight)]
    self.features = features
    self.n_samples, self.n_features = None, len(features)
    self._soft_columns = None

    def blocks(series, name):
      if series is None or isinstance(series, str):
        return [None] * X.npartitions
      if not is_dask(series) or getattr(series, "npartitions", None) != X.npartitions:
        raise ValueError(
            f"{name} must be a column name of X or a dask Series with X's {X.npartitions} "
            "partitions.")
      return list(series.to_delayed())

    ys, ws = blocks(y, "y"), blocks(sample_weight, "sample_weight")
    frames = X.to_delayed()
    return [(_pack_frame, (i, frames[i], tuple(features), label, weight, ys[i], ws[i]))
            for i in range(len(frames))]

  # -- the one operation ------------------------------------------------------------
  def map_reduce(self, fn: Callable, args: tuple = (), combine: Callable = operator.add,
                 *, n_classes="default"):
    """``combine`` over partitions of ``fn(partition, *args)``, in a tree on the workers.

    Args:
      fn: a module-level (picklable) function of a ``_one_partition.Partition``.
      args: further arguments, shipped once per evaluation (one graph key, not
        one copy per task).
      combine: an associative binary function of two results.

    Returns:
      The combined result (None if every partition is empty).

    Raises:
      ValueError: for invalid data, naming the partition and row.
    """
    import dask
    m = self.n_classes if n_classes == "default" else n_classes
    # One key for the arguments (a model's parameters): every task reads it.
    shared = dask.delayed(args, traverse=False)
    mapped = self._bag.map_partitions(_apply, fn, shared, m)
    reducer = functools.partial(_combine, combine)
    return mapped.reduction(reducer, reducer, split_every=SPLIT_EVERY).compute(
        scheduler=dask.base.get_scheduler() or self._scheduler)

  def sample(self, fraction: float, seed: int):
    """``(x, y, w)`` in memory: each row kept with probability ``fraction`` (seeded
    per partition), in partition order; ``w`` is None without weights."""
    pieces = self.map_reduce(_partition_sample, (fraction, seed), combine=operator.add)
    if not pieces:
      raise ValueError("every partition of X is empty; pass at least one sample.")
    return gather_sample(pieces)


def _partition_sample(part: _one_partition.Partition, fraction: float, seed: int):
  """Rows of ``part`` kept with probability ``fraction``, seeded by (seed, index)."""
  keep = np.random.default_rng([seed, part.index]).random(len(part)) < fraction
  rows = np.flatnonzero(keep)
  x = part.x[rows]
  return [(x, np.asarray(part.y)[rows], None if part.w is None else np.asarray(part.w)[rows])]


def gather_sample(pieces):
  """Concatenates the pieces of ``DaskParts.sample`` (dense or sparse rows)."""
  import scipy.sparse as sp
  xs = [p[0] for p in pieces]
  x = sp.vstack(xs).tocsr() if sp.issparse(xs[0]) else np.concatenate(xs)
  y = np.concatenate([p[1] for p in pieces])
  w = None if pieces[0][2] is None else np.concatenate([p[2] for p in pieces])
  return x, y, w


# -- predictions (the estimator) --------------------------------------------------------

def _block_logits(x, weights, bias):
  return _design.as_design(x).logits(weights, np.float64) + bias


def _frame_block_logits(frame, features, weights, bias):
  return _block_logits(frame[list(features)].to_numpy(), weights, bias)


def logits(X, weights: np.ndarray, bias: np.ndarray, features=None):
  """Lazy (T, M) float64 logits ``X W + b`` of a dask array or DataFrame.

  Args:
    X: (T, N) dask array or DataFrame (``features``: its columns, in order; all
      columns if None).
    weights: (N, M) ``W``.
    bias: (M,) ``b``.

  Returns:
    A (T, M) dask array, one block per partition of ``X``.
  """
  require()
  import dask.array as da
  weights = np.asarray(weights, np.float64)
  bias = np.asarray(bias, np.float64)
  m = weights.shape[1]
  if _is_frame(X):
    cols = list(X.columns) if features is None else list(features)
    missing = [c for c in cols if c not in X.columns]
    if missing:
      raise ValueError(f"X lacks the feature columns {missing} seen in fit.")
    import dask
    blocks = [da.from_delayed(dask.delayed(_frame_block_logits)(frame, tuple(cols), weights, bias),
                              shape=(math.nan, m), dtype=np.float64) for frame in X.to_delayed()]
    return da.concatenate(blocks, axis=0)
  if X.ndim != 2 or X.shape[1] != weights.shape[0]:
    raise ValueError(
        f"X has shape {X.shape} but the model was fitted on {weights.shape[0]} features.")
  if X.numblocks[1] > 1:
    X = X.rechunk({1: -1})
  return X.map_blocks(_block_logits, weights, bias, chunks=(X.chunks[0], (m,)),
                      dtype=np.float64, meta=np.empty((0, m)))


# -- labels of any type (the estimator) ------------------------------------------------

def _codes(values, classes):
  """Indices of ``values`` in the sorted ``classes`` (every value is one of them)."""
  return _targets.encode_labels(values, classes)[1]


def _frame_codes(series, classes):
  return series.map_partitions(_codes_series, classes, meta=(series.name, "i8"))


def _codes_series(series, classes):
  import pandas as pd
  return pd.Series(_codes(series.to_numpy(), classes), index=series.index, name=series.name)


def encode_labels(X, y):
  """``(classes, X, y)`` with labels of any type encoded lazily as codes ``0..M-1``.

  Args:
    X: a dask array or DataFrame.
    y: labels: a dask or numpy array, a dask Series, or (DataFrame) the name of
      its label column.

  Returns:
    The sorted distinct labels (computed: one pass over the labels only), and
    ``X``, ``y`` with the labels replaced by their codes (per partition).
  """
  require()
  import dask.array as da
  if isinstance(y, str):  # a DataFrame's label column
    classes = np.unique(X[y].unique().compute().to_numpy())
    return classes, X.assign(**{y: _frame_codes(X[y], classes)}), y
  if not is_dask(y):
    classes, codes = _targets.encode_labels(y)
    return classes, X, codes
  if isinstance(y, da.Array):
    classes = np.unique(da.unique(y).compute())
    return classes, X, y.map_blocks(_codes, classes, dtype=np.int64)
  classes = np.unique(y.unique().compute().to_numpy())  # a dask Series
  return classes, X, _frame_codes(y, classes)


def softmax_blocks(z, log: bool = False):
  """Row-wise (log-)softmax of a dask array of logits, block by block (lazy)."""
  import scipy.special
  fn = scipy.special.log_softmax if log else scipy.special.softmax
  return z.map_blocks(fn, axis=1, dtype=np.float64)


def take_classes(z, classes: np.ndarray):
  """``classes[argmax_j z_tj]`` per row, lazily."""
  return z.argmax(axis=1).map_blocks(_take, classes, dtype=classes.dtype)


def _take(index, classes):
  return classes[index]
