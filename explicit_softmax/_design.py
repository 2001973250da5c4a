"""The design matrix ``X``: dense, sparse, token and host-held inputs behind one interface.

Every computation in the library touches ``X`` through the ``Design``
protocol, so that a new input type is one class and no code elsewhere asks
which class it has. Inputs are validated where they are read (chunk by chunk
for dense arrays), so a bad value raises a ``ValueError`` that names it instead
of a NaN downstream. The classes: ``DenseDesign`` (numpy or JAX arrays,
read in chunks), ``SparseDesign`` (``scipy.sparse``, never densified),
``TokenDesign`` ([`TokenFeatures`][explicit_softmax.TokenFeatures]: gathers instead of products) and
``HostDesign`` (``X`` held once, centred and in the compute precision,
for the hundreds of products of an iterative fit). Data held in partitions
elsewhere is ``_placement.PartitionedDesign``, whose ``local`` is False.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import sys
from typing import Iterator, Protocol

import numpy as np
import scipy.sparse as sp

from explicit_softmax import _validation

# Rows per chunk for dense products. Statistics are accumulated in float64, so
# they do not depend on how the data is split (float32 BLAS summation drifts by
# more than the 1e-6 we promise; docs/fitting.md, "Why these constants"). Each
# chunk is converted to float64 while it is small enough to stay in cache.
CHUNK_ROWS = 1024
# Threads for the statistics pass; it is memory-bound, so more rarely help.
MAX_WORKERS = 8


class Design(Protocol):
  """What the library needs of ``X`` (``W`` is (N, M), ``G`` is (T, M)).

  Attributes:
    shape: ``(T, N)``.
    local: whether this process holds the rows (else ``objective`` and the
      column sums come from the partitions, one pass each).
    dense: whether ``X`` is stored dense.
    layout: ``[K, V]`` of token contexts, else None.
  """

  shape: tuple[int, int]
  local: bool
  dense: bool
  layout: list[int] | None

  def logits(self, w: np.ndarray, dtype=np.float32) -> np.ndarray:
    """``X W``, (T, M)."""

  def rmatmul(self, g) -> np.ndarray:
    """``X^T G``, (N, M) float64."""

  def one_pass(self, g, w=None):
    """``(X^T G, X 1, X^T diag(w) X or None, min X)`` in one read of ``X``: the
    statistics of [`es.SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats]."""

  def column_summary(self, w: np.ndarray) -> tuple:
    """``(mean, variance, min, max, density)`` of the columns (weighted, one pass)."""

  def take(self, rows) -> "Design":
    """The rows ``rows``."""

  def work(self, n_classes: int) -> int:
    """Multiply-adds of one product ``X W``: stored entries of ``X`` times classes."""

  def is_one_hot(self) -> bool:
    """Whether every row has exactly one nonzero entry, equal to 1."""

  def check_finite(self) -> None:
    """A ``ValueError`` naming the first row with NaN or inf (a no-op where the
    whole of ``X`` was checked when it was wrapped)."""


@dataclasses.dataclass(frozen=True)
class TokenFeatures:
  """Positional one-hot context features, stored as token indices.

  Sample ``t`` has ``K`` context tokens ``ids[t, k]`` in ``[0, vocab_size)``;
  its feature vector is the concatenation of ``K`` one-hot blocks of width
  ``vocab_size``, i.e. feature ``k * vocab_size + ids[t, k]`` is 1. The dense
  ``T x (K V)`` matrix is never built.

  Attributes:
    ids: (T, K) integer array of token indices (a (T,) array means K = 1).
    vocab_size: V, the width of each one-hot block.
  """

  ids: np.ndarray
  vocab_size: int

  def __post_init__(self):
    ids, vocab_size = _validation.check_token_ids(self.ids, self.vocab_size)
    object.__setattr__(self, "ids", ids)
    object.__setattr__(self, "vocab_size", vocab_size)

  @property
  def shape(self) -> tuple[int, int]:
    return (self.ids.shape[0], self.ids.shape[1] * self.vocab_size)

  def __len__(self) -> int:
    return self.ids.shape[0]

  def __getitem__(self, rows) -> "TokenFeatures":
    return TokenFeatures(self.ids[rows], self.vocab_size)

  def feature_indices(self) -> np.ndarray:
    """(T, K) column indices ``k V + ids[t, k]`` of the nonzero features."""
    return self.ids + self.vocab_size * np.arange(self.ids.shape[1])

  def to_csr(self) -> sp.csr_matrix:
    """The equivalent ``scipy.sparse`` CSR matrix (T, K V), ones as values."""
    t, k = self.ids.shape
    return sp.csr_matrix(
        (np.ones(t * k, np.float32), self.feature_indices().ravel(),
         np.arange(0, t * k + 1, k)), shape=self.shape)


def is_jax_array(x) -> bool:
  """Whether ``x`` is a ``jax.Array``, without importing JAX (an array of a library that
  was never imported cannot be one): a fit on host data never loads JAX."""
  jax = sys.modules.get("jax")
  return jax is not None and isinstance(x, jax.Array)


def _chunk_min(chunk: np.ndarray) -> float:
  """The smallest entry of a chunk (0 for unsigned or boolean data, +inf if empty)."""
  if chunk.dtype.kind in "ub" or not chunk.size:
    return 0.0 if chunk.size else np.inf
  return float(chunk.min())


def _transposed_rows(g: sp.csr_matrix, rows: slice) -> sp.csc_array:
  """``G[rows]^T`` (M, rows) as a CSC matrix that shares ``G``'s CSR arrays.

  A CSR row block, read column-major, is its transpose: no copy, no sort. The
  product ``G_c^T X_c`` then runs in scipy's sparse kernel, one multiply-add per
  nonzero of ``G_c`` and column of ``X_c`` (for labels: per-class sums of the
  rows of ``X_c``), where a dense GEMM would also multiply by every zero of the
  one-hot ``G``. scipy's own row slicing costs more than the product.
  """
  lo, hi = g.indptr[rows.start], g.indptr[rows.stop]
  return sp.csc_array((g.data[lo:hi], g.indices[lo:hi], g.indptr[rows.start:rows.stop + 1] - lo),
                      shape=(g.shape[1], rows.stop - rows.start))


def _n_workers(n_chunks: int) -> int:
  """Threads for a chunked pass: one per core, at most one per chunk."""
  return max(1, min(cores(), n_chunks, MAX_WORKERS))


def _summary(total, total_sq, weight, low, high, origin, density):
  """``(mean, variance, min, max, density)`` from weighted sums of ``X - origin``;
  ``density`` is the fraction of nonzero entries."""
  mean = total / weight
  variance = np.maximum(total_sq / weight - mean**2, 0.0)
  return mean + origin, variance, low, high, density


class DenseDesign:
  """A dense (T, N) array; read in chunks of ``CHUNK_ROWS`` rows."""

  local, dense, layout = True, True, None

  def __init__(self, x: np.ndarray):
    self.x = x

  def work(self, n_classes: int) -> int:
    return self.x.shape[0] * self.x.shape[1] * n_classes

  def is_one_hot(self) -> bool:
    for _, chunk in self.chunks():
      if not (((chunk != 0).sum(axis=1) == 1).all() and (chunk.sum(axis=1) == 1).all()):
        return False
    return True

  @property
  def result_dtype(self):
    """float64 for float64 ``X`` (products beyond float32's range stay finite), else float32."""
    return np.float64 if self.x.dtype == np.float64 else np.float32

  @property
  def shape(self):
    return self.x.shape

  def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
    for start in range(0, self.x.shape[0], CHUNK_ROWS):
      rows = slice(start, min(start + CHUNK_ROWS, self.x.shape[0]))
      chunk = self.x[rows]
      _validation.check_finite_rows(chunk.sum(axis=1, dtype=np.float64), start)
      # uint8 images are cast per chunk, so the caller never pays for a full
      # float copy of X.
      yield rows, chunk

  def check_finite(self) -> None:
    """One pass that raises the ``chunks`` error for NaN or inf (before jitted code
    that would turn them into a silent NaN loss)."""
    for _ in self.chunks():
      pass

  def logits(self, w: np.ndarray, dtype=np.float32) -> np.ndarray:
    w = np.asarray(w, dtype)
    out = np.empty((self.x.shape[0], w.shape[1]), dtype)
    for rows, chunk in self.chunks():
      out[rows] = chunk.astype(dtype, copy=False) @ w
    return out

  def rmatmul(self, g) -> np.ndarray:
    return self.one_pass(g)[0]

  def one_pass(self, g, w=None):
    """``(X^T G, X 1, X^T diag(w) X or None, min X)`` in a single pass over ``X``.

    ``G`` is a CSR (T, M) matrix (labels) or a dense (T, M) array (soft labels,
    gradient residuals). Each chunk of ``X`` is read once, validated, and copied
    into a reused float64 buffer while it is hot in cache; all sums are float64,
    so the result does not depend on how the data was split into calls.

    With CSR ``G`` and no Gram matrix, the chunks are shared among threads: every
    step (numpy's copy and reductions, scipy's CSR product) releases the GIL and
    none calls BLAS, so the threads do not oversubscribe BLAS's own. A dense
    ``G`` or the Gram matrix go through BLAS (GEMM) in one thread instead.
    """
    t, n = self.x.shape
    starts = range(0, t, CHUNK_ROWS)
    mass = np.empty(t, np.float64)
    if sp.issparse(g):
      g = g.tocsr()
      product = lambda rows, chunk: _transposed_rows(g, rows) @ chunk  # noqa: E731
    else:
      g = np.asarray(g, np.float64)
      product = lambda rows, chunk: g[rows].T @ chunk  # noqa: E731
    threaded = sp.issparse(g) and w is None

    def work(part: range, index: int = 0, halt: list | None = None):
      gtx = np.zeros((g.shape[1], n), np.float64)
      gram = None if w is None else np.zeros((n, n), np.float64)
      x_min = np.inf
      # One reused buffer: a fresh float64 array per chunk page-faults its memory
      # in again every time, which costs more than the copy itself.
      buf = np.empty((min(CHUNK_ROWS, t), n), np.float64)
      for start in part:
        if halt is not None and halt[0] < index:
          break  # an earlier run failed, or the caller was interrupted
        rows = slice(start, min(start + CHUNK_ROWS, t))
        x_min = min(x_min, _chunk_min(self.x[rows]))
        chunk = buf[:rows.stop - start]
        np.copyto(chunk, self.x[rows], casting="unsafe")
        # einsum: a plain SIMD loop, faster here than sum()'s pairwise one, and
        # unlike chunk @ 1 free of BLAS (whose own threads would compete).
        np.einsum("ij->i", chunk, out=mass[rows])
        _validation.check_finite_rows(mass[rows], start)
        gtx += product(rows, chunk)
        if gram is not None:
          with np.errstate(over="ignore"):  # refused, with the fix, by SoftmaxStats
            gram += chunk.T @ (chunk * w[rows, None])
      return gtx, gram, x_min

    workers = _n_workers(len(starts)) if threaded else 1
    if workers == 1:
      gtx, gram, x_min = work(starts)
    else:
      # Contiguous runs of chunks, one per thread; results are summed in run
      # order, and ``map`` re-raises the error of the earliest run first, so a
      # bad value is reported at its first row as in the serial pass. A failed
      # run stops the later runs (their errors could not be the first); an
      # interrupt (Ctrl-C) stops all of them at their next chunk.
      step = -(-len(starts) // workers)
      runs = [starts[i:i + step] for i in range(0, len(starts), step)]
      halt = [len(runs)]  # runs with a larger index stop at their next chunk

      def run(index):
        try:
          return work(runs[index], index, halt)
        except BaseException:
          # Unsynchronised min: a lost update only lets a later run finish.
          halt[0] = min(halt[0], index)
          raise

      with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        try:
          parts = list(pool.map(run, range(len(runs))))
        except BaseException:  # raised in run order: every earlier run is done
          halt[0] = -1
          raise
      gtx, gram, x_min = sum(p[0] for p in parts), None, min(p[2] for p in parts)
    return gtx.T, mass, gram, x_min

  def column_moments(self) -> tuple[np.ndarray, np.ndarray]:
    """Column means of ``X`` and of ``X**2`` (float64), one pass in chunks."""
    total, total_sq = np.zeros(self.x.shape[1]), np.zeros(self.x.shape[1])
    for _, chunk in self.chunks():
      chunk = chunk.astype(np.float64)
      total += chunk.sum(axis=0)
      total_sq += np.einsum("ij,ij->j", chunk, chunk)
    return total / self.x.shape[0], total_sq / self.x.shape[0]

  def column_summary(self, w: np.ndarray) -> tuple:
    """Weighted column means and variances, minima and maxima (float64), and the
    fraction of nonzero entries, in one pass.

    ``w`` (T,) are nonnegative weights; rows of zero weight count in none of
    the five. Sums are taken about the first such row, so that a column of
    large mean and small spread keeps its variance in float64.
    """
    n = self.x.shape[1]
    keep = w > 0
    origin = np.asarray(self.x[int(np.argmax(keep))], np.float64)
    total, total_sq = np.zeros(n), np.zeros(n)
    low, high = np.full(n, np.inf), np.full(n, -np.inf)
    nonzero = 0
    for rows, chunk in self.chunks():
      chunk_w, chunk_keep = w[rows], keep[rows]
      if not chunk_keep.any():
        continue
      kept = chunk[chunk_keep]
      nonzero += int(np.count_nonzero(kept))
      d = kept.astype(np.float64) - origin
      total += chunk_w[chunk_keep] @ d
      total_sq += chunk_w[chunk_keep] @ (d * d)
      low, high = np.minimum(low, d.min(axis=0)), np.maximum(high, d.max(axis=0))
    return _summary(total, total_sq, float(w.sum()), low + origin, high + origin, origin,
                    nonzero / max(int(keep.sum()) * n, 1))

  def take(self, rows) -> "DenseDesign":
    return DenseDesign(self.x[rows])

  def jax_data(self):
    """``X`` as a device array, for jitted refinement.

    ``device_put`` aliases a C-contiguous, 64-byte aligned host array on the CPU
    instead of copying it (``jnp.asarray`` always copies), which saves a pass
    over ``X`` (and its page faults) per ``refine`` call. ``data.load_mnist``
    returns such arrays; others are copied once.
    """
    import jax
    return jax.device_put(self.x)

  @staticmethod
  def jax_logits(data, w):
    """``X W`` inside jitted code, for the object returned by ``jax_data``.

    In full float32: a GPU's default TF32 product (~1e-3 relative) would make
    the objective too noisy for L-BFGS's line search near the optimum.
    """
    import jax
    return jax.numpy.matmul(data.astype(w.dtype), w, precision=jax.lax.Precision.HIGHEST)


class SparseDesign:
  """A ``scipy.sparse`` matrix, kept in CSR form and never densified."""

  local, dense = True, False
  layout: list[int] | None = None

  def __init__(self, x: sp.spmatrix):
    self.x = x

  def work(self, n_classes: int) -> int:
    return self.x.nnz * n_classes

  def is_one_hot(self) -> bool:
    x = self.x
    return bool(x.nnz == x.shape[0] and (x.getnnz(axis=1) == 1).all() and (x.data == 1).all())

  def check_finite(self) -> None:
    """Checked when wrapped (``_validation.check_sparse_array``)."""

  @property
  def result_dtype(self):
    return np.float64 if self.x.dtype == np.float64 else np.float32

  @property
  def shape(self):
    return self.x.shape

  def logits(self, w, dtype=np.float32):
    return np.asarray(self.x @ np.asarray(w, dtype), dtype)

  def rmatmul(self, g):
    g = g.astype(np.float64) if sp.issparse(g) else np.asarray(g, np.float64)
    out = self.x.T.astype(np.float64) @ g
    return out.toarray() if sp.issparse(out) else np.asarray(out)

  def row_mass(self):
    return np.asarray(self.x.sum(axis=1, dtype=np.float64)).ravel()

  def gram(self, w):
    x64 = self.x.astype(np.float64)
    return (x64.T @ sp.diags(np.asarray(w, np.float64)) @ x64).toarray()

  def column_moments(self) -> tuple[np.ndarray, np.ndarray]:
    """Column means of ``X`` and of ``X**2`` (float64)."""
    x64 = self.x.astype(np.float64)
    return (np.asarray(x64.mean(axis=0)).ravel(),
            np.asarray(x64.multiply(x64).mean(axis=0)).ravel())

  def column_summary(self, w: np.ndarray) -> tuple:
    """As ``DenseDesign.column_summary`` (implicit zeros are values)."""
    keep = np.flatnonzero(w > 0)
    x64 = self.x[keep].astype(np.float64)
    wk = np.asarray(w, np.float64)[keep]
    total = np.asarray(x64.T @ wk).ravel()
    total_sq = np.asarray(x64.multiply(x64).T @ wk).ravel()
    low = x64.min(axis=0).toarray().ravel()
    high = x64.max(axis=0).toarray().ravel()
    density = np.count_nonzero(x64.data) / max(x64.shape[0] * x64.shape[1], 1)
    return _summary(total, total_sq, float(wk.sum()), low, high, np.zeros(x64.shape[1]),
                    density)

  def min_value(self) -> float:
    # Implicit zeros count when some entry of X is not stored.
    stored = float(self.x.data.min()) if self.x.nnz else np.inf
    return min(stored, 0.0) if self.x.nnz < self.x.shape[0] * self.x.shape[1] else stored

  def one_pass(self, g, w=None):
    return (self.rmatmul(g), self.row_mass(), None if w is None else self.gram(w),
            self.min_value())

  def take(self, rows):
    return SparseDesign(self.x[rows])

  def jax_data(self):
    from jax.experimental import sparse as jsparse
    return jsparse.BCOO.from_scipy_sparse(self.x.astype(np.float32))

  @staticmethod
  def jax_logits(data, w):
    return data @ w


class TokenDesign(SparseDesign):
  """Token contexts: products are gathers and scatter-adds over token ids."""

  def __init__(self, tokens: TokenFeatures):
    self.tokens = tokens
    self.layout = [tokens.ids.shape[1], tokens.vocab_size]

  def work(self, n_classes: int) -> int:
    return self.tokens.ids.size * n_classes

  def is_one_hot(self) -> bool:
    return self.tokens.ids.shape[1] == 1

  result_dtype = np.float32

  @functools.cached_property
  def x(self) -> sp.csr_matrix:
    """The CSR form, built only for the products that need it (``X^T G``, Gram)."""
    return self.tokens.to_csr()

  @property
  def shape(self):
    return self.tokens.shape

  def logits(self, w, dtype=np.float32):
    w = np.asarray(w, dtype)
    idx = self.tokens.feature_indices()
    out = w[idx[:, 0]]  # fancy indexing copies: safe to accumulate into
    for k in range(1, idx.shape[1]):
      out += w[idx[:, k]]
    return out

  def row_mass(self):
    return np.full(self.tokens.ids.shape[0], float(self.tokens.ids.shape[1]))

  def min_value(self) -> float:
    return 0.0  # one-hot blocks

  def take(self, rows):
    return TokenDesign(self.tokens[rows])

  def jax_data(self):
    import jax.numpy as jnp
    return jnp.asarray(self.tokens.feature_indices(), jnp.int32)

  @staticmethod
  def jax_logits(data, w):
    # A sum of K gathered rows: the one-hot product without the one-hot matrix.
    return w[data].sum(axis=1)


class HostDesign:
  """``X`` held once for the hundreds of products of an iterative fit, already validated.

  Dense ``X`` is stored C-contiguous in the compute precision, with the column
  means ``offset`` subtracted (``x = X - offset``): centred columns keep
  ``X W`` free of the cancellation between large feature means and the bias,
  which float32 products would otherwise pay for. The model's bias is then
  ``c = b + offset^T W`` (see ``es.fitting``). Sparse ``X`` is
  CSR in float64 and never centred (``offset`` is zero).

  Dense products run over fixed blocks of ``BLOCK_ROWS`` rows, summed in
  float64 in block order: a sum over many rows never rests on one long float32
  accumulation, and the result does not depend on how many ``workers`` (threads,
  each with single-threaded BLAS) computed the blocks.

  Attributes:
    x: (T, N) float32 or float64 array, or a float64 CSR matrix.
    offset: (N,) float64 column offsets subtracted from ``X``.
    workers: threads for the blocks of large products (1: the caller's thread).
  """

  BLOCK_ROWS = 16384
  # Products with fewer multiply-adds per class than this stay in one thread.
  PARALLEL_MIN_ENTRIES = 2**20

  local, layout = True, None

  def __init__(self, x, offset: np.ndarray, workers: int = 1):
    self.x = x
    self.offset = offset
    self.workers = workers

  @property
  def dense(self) -> bool:
    return not sp.issparse(self.x)

  def work(self, n_classes: int) -> int:
    return (self.x.nnz if sp.issparse(self.x) else self.x.size) * n_classes

  def is_one_hot(self) -> bool:
    return False  # only ever built for the optimum, which one-hot inputs skip

  def check_finite(self) -> None:
    """Checked when built (``as_host`` reads every row once)."""

  result_dtype = np.float64

  @property
  def shape(self):
    return self.x.shape

  @property
  def dtype(self):
    return self.x.dtype

  def _blocks(self) -> list[slice]:
    t = self.x.shape[0]
    return [slice(i, min(i + self.BLOCK_ROWS, t)) for i in range(0, t, self.BLOCK_ROWS)]

  def _map(self, fn, blocks: list[slice]) -> list:
    """``fn`` over ``blocks``, in order; on ``workers`` threads when it pays."""
    if self.workers > 1 and len(blocks) > 1 and self.x.size >= self.PARALLEL_MIN_ENTRIES:
      return list(_pool(self.workers).map(fn, blocks))
    return [fn(rows) for rows in blocks]

  def logits(self, w, dtype=np.float64):
    out = self.x @ np.asarray(w, self.x.dtype)
    return np.asarray(out, dtype)

  def logits_by_class(self, weights: np.ndarray) -> np.ndarray:
    """``(X W)^T`` (M, T) C-contiguous float64 (see ``logits_by_class``)."""
    if sp.issparse(self.x):
      return np.ascontiguousarray(self.logits(weights).T)
    w_t = np.asarray(weights, self.x.dtype).T
    out = np.empty((w_t.shape[0], self.x.shape[0]), np.float64)

    def block(rows):
      out[:, rows] = w_t @ self.x[rows].T  # (W^T X^T): straight into the class-major layout

    self._map(block, self._blocks())
    return out

  def rmatmul(self, g):
    g = g.toarray() if sp.issparse(g) else np.asarray(g)
    if sp.issparse(self.x):
      out = self.x.T @ np.asarray(g, np.float64)
      return out.toarray() if sp.issparse(out) else np.asarray(out)
    g = np.asarray(g, self.x.dtype)
    parts = self._map(lambda rows: self.x[rows].T @ g[rows], self._blocks())
    out = np.zeros((self.x.shape[1], g.shape[1]), np.float64)
    for part in parts:  # block order: the same sum for any number of workers
      out += part
    return out

  def weighted_gram(self, w: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``sum_t w_t (x_t - shift)(x_t - shift)^T`` (N, N) float64, in blocks."""
    if sp.issparse(self.x):  # X^T diag(w) X - ..., without densifying X
      second = np.asarray((self.x.T @ self.x.multiply(w[:, None]).tocsr()).toarray())
      first = np.asarray(self.x.T @ w).ravel()
      return (second - np.outer(first, shift) - np.outer(shift, first)
              + w.sum() * np.outer(shift, shift))
    shift = shift.astype(self.x.dtype)

    def block(rows):
      d = self.x[rows] - shift
      return (d * w[rows, None].astype(self.x.dtype)).T @ d

    out = np.zeros((self.x.shape[1], self.x.shape[1]), np.float64)
    for part in self._map(block, self._blocks()):
      out += part
    return out

  def take(self, rows) -> "HostDesign":
    return HostDesign(self.x[rows], self.offset, self.workers)

  def column_moments(self) -> tuple[np.ndarray, np.ndarray]:
    """Column means of ``X`` and of ``X**2`` (float64; ``X = x + offset``)."""
    if sp.issparse(self.x):
      return SparseDesign(self.x).column_moments()
    mean = self.x.mean(axis=0, dtype=np.float64)
    sq = np.einsum("ij,ij->j", self.x, self.x, dtype=np.float64) / self.x.shape[0]
    return mean + self.offset, sq + 2 * self.offset * mean + self.offset**2


@functools.cache
def _pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
  """A process-wide pool of ``workers`` threads for ``HostDesign``'s blocks."""
  return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="explicit-softmax")


# Host L-BFGS on problems up to this much work per evaluation (stored entries
# of X times classes) runs with one BLAS thread: OpenBLAS's threads spin while
# they wait and cost more than they save on such products (docs/fitting.md,
# "Why these constants").
SINGLE_THREAD_MAX_WORK = 2**26


@functools.cache
def _blas_controller():
  """threadpoolctl's view of the loaded BLAS libraries, found once per process
  (finding them reads the process's memory map, which every fit of a
  regularisation path would pay again); None without threadpoolctl."""
  try:
    from threadpoolctl import ThreadpoolController
  except ImportError:
    return None
  return ThreadpoolController()


def blas_threads_for(work: int):
  """A context that limits BLAS to one thread for small ``work`` (see above).

  Uses threadpoolctl (installed with scikit-learn); without it, a no-op.
  """
  controller = _blas_controller() if work <= SINGLE_THREAD_MAX_WORK else None
  if controller is None:
    return contextlib.nullcontext()
  return controller.limit(limits=1, user_api="blas")


# Newton fits whose largest product has at most this many multiply-adds
# (T (N+1) max(N+1, M)) leave BLAS as it is: its threads cost little there, and finding
# BLAS costs about 10 ms once per process (docs/fitting.md, "Why these constants").
BLAS_LIMIT_MIN_WORK = 2**22


@contextlib.contextmanager
def single_threaded_blas(work: int | None = None):
  """A context in which BLAS runs one thread; yields the threads its caller may run
  itself (the cores; 1 where BLAS cannot be limited, without threadpoolctl, or
  is left alone).

  An iterative fit's products are many and small: BLAS's own threads, which
  spin while they wait, cost more than they save there, and more still when
  other processes share the cores. The fit splits its large products over
  row blocks in threads of its own instead (``_design.HostDesign``). A fit
  by Newton steps (few, large products) whose ``work`` (its largest product's
  multiply-adds) is at most ``BLAS_LIMIT_MIN_WORK`` leaves BLAS alone: finding
  it would cost more than limiting it saves.

  Args:
    work: the largest product of a Newton fit, or None (any other fit).
  """
  controller = (_blas_controller() if work is None or work > BLAS_LIMIT_MIN_WORK
                else None)
  if controller is None:
    yield 1
    return
  with controller.limit(limits=1, user_api="blas"):
    yield cores()


def cores() -> int:
  """The cores this process may run on."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def logits_by_class(design, weights: np.ndarray) -> np.ndarray:
  """``(X W)^T``, (M, T) C-contiguous float64: the logits laid out by class."""
  if isinstance(design, HostDesign):
    return design.logits_by_class(weights)
  return np.ascontiguousarray(design.logits(weights, np.float64).T)


def statistics_copies(design) -> int:
  """(N, M) float64 arrays a statistics pass holds at its peak (an estimate): one per
  thread of a dense pass plus their sum and the result; for sparse and token
  inputs the product and its conversions."""
  if isinstance(design, DenseDesign):
    return _n_workers(-(-design.shape[0] // CHUNK_ROWS)) + 2
  return 3


def as_host(design, dtype=np.float64, offset: np.ndarray | None = None, *,
            columns: np.ndarray | None = None, workers: int = 1) -> HostDesign:
  """``design``'s ``columns`` held once as a ``HostDesign`` (dense: centred by ``offset``).

  Args:
    design: a validated in-memory design.
    dtype: float64 or float32, the precision of dense products.
    offset: (N,) column offsets to subtract from dense ``X`` (None: zero).
      Ignored for sparse and token inputs, which stay uncentred.
    columns: the columns to keep (None: all).
    workers: threads for the blocks of large dense products.
  """
  if isinstance(design, HostDesign):
    return design
  keep = slice(None) if columns is None else columns
  n = design.shape[1] if columns is None else len(columns)
  if isinstance(design, DenseDesign):
    offset = np.zeros(n) if offset is None else np.asarray(offset, np.float64)[keep]
    x = np.empty((design.shape[0], n), dtype)
    shift = offset.astype(dtype)
    for rows, chunk in design.chunks():  # checks finiteness once, chunk by chunk
      np.subtract(chunk[:, keep], shift, out=x[rows], casting="unsafe")
    return HostDesign(x, offset, workers)
  return HostDesign(design.x.tocsr()[:, keep].astype(np.float64).tocsr(), np.zeros(n), workers)


def as_design(x, *, n_features: int | None = None, layout=None):
  """Validates ``X`` and wraps it in the matching design class.

  Args:
    x: (T, N) real dense array (numpy or JAX, any real dtype, uint8 images
      included), a ``scipy.sparse`` matrix, or a [`TokenFeatures`][explicit_softmax.TokenFeatures].
    n_features: if given, the number of columns ``X`` must have (at predict time).
    layout: if given, the ``[n_context, vocab_size]`` that token inputs must
      have (a model fitted on K = 2 blocks of V = 7 has 14 features, as one of
      V = 14 does, but predicts nonsense on it).

  Returns:
    A ``DenseDesign``, ``SparseDesign`` or ``TokenDesign``.

  Raises:
    ValueError: wrong shape or dtype, no samples, non-finite values.
  """
  if isinstance(x, (DenseDesign, SparseDesign, HostDesign)):
    design = x  # validated already (the library passes designs between its steps)
  elif isinstance(x, TokenFeatures):
    design = TokenDesign(x)
    if layout is not None:
      _validation.check_token_layout([x.ids.shape[1], x.vocab_size], layout)
  elif sp.issparse(x):
    design = SparseDesign(_validation.check_sparse_array(x))
  else:
    design = DenseDesign(_validation.check_dense_array(x))
  _validation.check_n_samples(design.shape[0])
  _validation.check_n_features(design.shape[1], n_features)
  return design


def for_model(x, model):
  """Validates ``X`` against a fitted model and wraps it as ``as_design`` does.

  Besides the width and the token layout, a DataFrame whose column names are
  strings is matched to the model's ``info["feature_names"]`` (when it has them)
  by name: reordered columns give the same predictions, and a missing or an
  unexpected column is refused by name.
  """
  names = model.info.get("feature_names")
  given = _validation.feature_names_of(x)
  if names is not None and given is not None:
    order = _validation.check_feature_names(given, names)
    x = x[[x.columns[i] for i in order]]
  return as_design(x, n_features=model.n_features, layout=model.info.get("token_layout"))
