"""The co-occurrence solution for large vocabularies, kept sparse.

For ``K`` one-hot context tokens over a vocabulary of ``V`` (``N = K V`` features) the co-occurrence
solution of [`es.cooccurrence_weights`][explicit_softmax.solvers.cooccurrence_weights] is

    W_ij = log((F_ij + s) / (f_i + M s)) / K,   b = 0,

with ``K`` the mean feature mass per sample (exactly the number of context
positions for token features). A dense ``W`` has ``K V x M`` entries: 10 GB in
float32 for ``V = M = 50,000``. But only the observed pairs differ from a row
constant, the split

    W_ij = c_i + D_ij,   c_i = log(s / (f_i + M s)) / K,
    D_ij = log(1 + F_ij / s) / K   (zero where F_ij = 0),

and ``c_i`` adds the same amount to every logit of a sample, so it cancels in
the softmax. With ``S_t = sum_k D[i_tk]`` (nonzero only on the union of the
context rows' observed pairs), the sparse log-probability

    log p(j | x_t) = S_tj - log(M - |supp S_t| + sum_{l in supp S_t} exp(S_tl)).

[`SparseCountModel`][explicit_softmax.sparse_model.SparseCountModel] stores ``F`` as a
``scipy.sparse`` CSR matrix (memory O(observed pairs)), evaluates the sparse log-probability without
ever forming a dense row, and equals the dense ``es.fit(X, y, method="cooccurrence")`` model on
small vocabularies
([`SparseCountModel.to_dense`][explicit_softmax.sparse_model.SparseCountModel.to_dense]). For
``K = 1`` (bigram models) it is ``log((F_ij + s) / (f_i + M s))``, the smoothed conditional, and
each row's normaliser is computed once.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from explicit_softmax import _design
from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax import solvers
from explicit_softmax._typing import ArrayLike, Features, Labels, SampleWeight

# ``predict_log_proba`` and ``to_dense`` refuse outputs larger than this many floats.
MAX_DENSE_ELEMENTS = 2**26
# Stored entries of the per-chunk union matrix ``S`` (K > 1) before a new chunk starts.
_CHUNK_NNZ = 2**22


@dataclasses.dataclass(frozen=True, eq=False)
class SparseCountModel:
  """The co-occurrence solution of token features, stored as sparse counts.

  Build it with [`fit`][explicit_softmax.sparse_model.SparseCountModel.fit] (or
  [`from_batches`][explicit_softmax.sparse_model.SparseCountModel.from_batches]); the constructor
  takes counts that were accumulated elsewhere.

  Attributes:
    counts: ``F``, the (K V, M) CSR matrix of (weighted) context-target counts:
      row ``k V + v`` counts token ``v`` at context position ``k``.
    vocab_size: V.
    total_weight: ``T_w``, the sum of sample weights.
    n_samples: the number of samples counted.
    smoothing: ``s > 0``, the pseudo-count of every feature-class pair.
    info: JSON-serialisable metadata.
  """

  counts: sp.csr_matrix
  vocab_size: int
  total_weight: float
  n_samples: int
  smoothing: float = 0.1
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    counts = self.counts
    if not sp.issparse(counts) or counts.ndim != 2:
      raise ValueError("counts must be a 2-D scipy.sparse matrix (K V, M).")
    # A copy: summing duplicates in place would rewrite the caller's matrix.
    counts = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    counts.sum_duplicates()  # also sorts the column indices of every row
    counts.eliminate_zeros()
    v = _validation.check_integer("vocab_size", self.vocab_size)
    if counts.shape[0] % v or counts.shape[0] == 0:
      raise ValueError(
          f"counts have {counts.shape[0]} rows, not a positive multiple of vocab_size={v} "
          "(one block of V rows per context position).")
    if counts.nnz and (_validation.check_finite("counts", counts.data).min() < 0):
      raise ValueError("counts must be nonnegative (they are weighted co-occurrence counts).")
    # s > 0: with s = 0 every unobserved pair would have weight -inf (the dense
    # es.fit(..., method="cooccurrence", smoothing=0) handles that case).
    smoothing = _validation.check_number("smoothing", self.smoothing, exclusive=True)
    total_weight = _validation.check_number("total_weight", self.total_weight, exclusive=True)
    n_samples = _validation.check_integer("n_samples", self.n_samples, minimum=0)
    object.__setattr__(self, "counts", counts)
    object.__setattr__(self, "vocab_size", v)
    object.__setattr__(self, "total_weight", total_weight)
    object.__setattr__(self, "n_samples", n_samples)
    object.__setattr__(self, "smoothing", smoothing)
    info = {"method": "cooccurrence", "representation": "sparse",
            "smoothing": float(self.smoothing), "mean_feature_mass": self.mean_feature_mass,
            "n_samples": int(self.n_samples)}
    object.__setattr__(self, "info", model_lib.freeze_info({**info, **self.info}, "info"))
    for part in (counts.data, counts.indices, counts.indptr):
      part.flags.writeable = False  # the model is immutable, its counts too

  # -- construction ------------------------------------------------------------
  @classmethod
  def fit(cls, X: Features, y: Labels, *, n_classes: int | None = None,
          smoothing: float = 0.1,
          sample_weight: SampleWeight = None) -> SparseCountModel:
    """Counts the co-occurrences of token contexts and targets in one pass.

    Args:
      X: [`TokenFeatures`][explicit_softmax.TokenFeatures] (T samples, K context tokens, vocabulary
        V).
      y: (T,) integer targets in ``[0, M)`` (e.g. the next token).
      n_classes: M; inferred as ``max(y) + 1`` if None (as ``es.fit`` does). Pass ``n_classes=V``
        for a language model, so that
        [`sample`][explicit_softmax.sparse_model.SparseCountModel.sample] can feed its output back
        as context.
      smoothing: ``s > 0`` of the co-occurrence solution.
      sample_weight: optional (T,) nonnegative weights.

    Returns:
      A [`SparseCountModel`][explicit_softmax.sparse_model.SparseCountModel]; memory O(distinct
      (context token, target) pairs).

    Raises:
      ValueError: if ``X`` is not token features, ``y`` holds soft labels or
        labels out of range, or the weights are invalid.
    """
    tokens = _as_tokens(X)
    counts, total, n = _count(tokens, y, n_classes, sample_weight)
    return cls(counts, tokens.vocab_size, total, n, smoothing)

  @classmethod
  def from_batches(cls, batches: Iterable, *, n_classes: int,
                   smoothing: float = 0.1) -> SparseCountModel:
    """Adds up the counts of ``(X, y)`` or ``(X, y, sample_weight)`` batches.

    Memory stays that of one batch plus the counts, so token streams larger
    than memory can be fitted.

    Args:
      batches: iterable of tuples whose ``X`` are [`TokenFeatures`][explicit_softmax.TokenFeatures]
        with the same vocabulary and context size.
      n_classes: M (required: a batch may lack some targets).
      smoothing: ``s > 0`` of the co-occurrence solution.

    Returns:
      The [`SparseCountModel`][explicit_softmax.sparse_model.SparseCountModel] of all batches
      together.
    """
    total_counts, total, n, vocab = None, 0.0, 0, None
    for index, batch in enumerate(batches):
      x, y, *rest = _validation.check_batch(batch, index)
      tokens = _as_tokens(x)
      layout = (tokens.ids.shape[1], tokens.vocab_size)
      if vocab is not None and layout != vocab:
        # K = 2 over V = 7 and K = 1 over V = 14 have count matrices of one shape.
        raise ValueError(
            f"batches disagree on (context tokens, vocabulary): {layout} vs {vocab}; build "
            "every batch's TokenFeatures the same way.")
      counts, weight, rows = _count(tokens, y, n_classes, rest[0] if rest else None)
      total_counts = counts if total_counts is None else total_counts + counts
      total, n, vocab = total + weight, n + rows, layout
    if total_counts is None:
      raise ValueError("from_batches got no batches; the iterable was empty.")
    return cls(total_counts, vocab[1], total, n, smoothing)

  def with_smoothing(self, smoothing: float) -> SparseCountModel:
    """The same counts with another smoothing ``s`` (no pass over the data)."""
    return SparseCountModel(self.counts, self.vocab_size, self.total_weight, self.n_samples,
                            smoothing)

  # -- shape and derived quantities -----------------------------------------------
  @property
  def n_context(self) -> int:
    """K, the number of context positions."""
    return self.counts.shape[0] // self.vocab_size

  @property
  def n_features(self) -> int:
    return self.counts.shape[0]

  @property
  def n_classes(self) -> int:
    return self.counts.shape[1]

  @property
  def nbytes(self) -> int:
    """Bytes held by the counts and the derived sparse weights."""
    arrays = [self.counts.data, self.counts.indices, self.counts.indptr,
              self._excess.data, self._feature_mass, self._row_log_normaliser]
    return int(sum(a.nbytes for a in arrays))

  @functools.cached_property
  def mean_feature_mass(self) -> float:
    """``K = (1^T F 1) / T_w`` as in the dense solution (the context size for tokens)."""
    return float(self.counts.sum() / self.total_weight)

  @functools.cached_property
  def _feature_mass(self) -> np.ndarray:
    return np.asarray(self.counts.sum(axis=1)).ravel()

  @functools.cached_property
  def _excess(self) -> sp.csr_matrix:
    """``D`` of the split ``W = c + D``: ``log(1 + F / s) / K`` on the observed pairs, same
    structure as F."""
    d = self.counts.copy()
    d.data = np.log1p(d.data / self.smoothing) / self.mean_feature_mass
    return d

  @functools.cached_property
  def _row_log_normaliser(self) -> np.ndarray:
    """``log(M - nnz_i + sum_j exp(D_ij))`` of every row: the normaliser of the sparse
    log-probability for K = 1."""
    d = self._excess
    return _log_normalisers(d.data, d.indptr, self.n_classes)

  @functools.cached_property
  def _keys(self) -> np.ndarray:
    """Sorted int64 keys ``i M + j`` of the stored entries, for vectorised look-ups."""
    rows = np.repeat(np.arange(self.n_features, dtype=np.int64), np.diff(self.counts.indptr))
    return rows * self.n_classes + self.counts.indices

  def row_constants(self) -> np.ndarray:
    """``c_i`` of the split ``W = c + D`` for every feature (0 for features never seen), (K V,)
    float64."""
    f = self._feature_mass
    c = np.zeros_like(f)
    seen = f > 0
    m, s = self.n_classes, self.smoothing
    c[seen] = (np.log(s) - np.log(f[seen] + m * s)) / self.mean_feature_mass
    return c

  # -- evaluation ----------------------------------------------------------------
  def log_prob(self, X: Features, y: Labels) -> np.ndarray:
    """The sparse log-probability ``log p(y_t | x_t)`` of each sample (T,), no dense row formed.

    Args:
      X: [`TokenFeatures`][explicit_softmax.TokenFeatures] with this model's vocabulary and context
        size (or a (T, K) integer array of token ids).
      y: (T,) integer targets in ``[0, M)``.

    Returns:
      (T,) log-probabilities in nats.
    """
    tokens = self._check_tokens(X)
    labels = _labels(y, len(tokens), self.n_classes)
    if self.n_context == 1:
      rows = tokens.ids[:, 0].astype(np.int64)
      return self._lookup(rows, labels) - self._row_log_normaliser[rows]
    out = np.empty(len(tokens))
    for sl, s_mat in self._union_chunks(tokens):
      lse = _log_normalisers(s_mat.data, s_mat.indptr, self.n_classes)
      out[sl] = _csr_lookup(s_mat, labels[sl]) - lse
    return out

  def log_loss(self, X: Features, y: Labels, sample_weight: SampleWeight = None) -> float:
    """Mean cross-entropy in nats, as
    [`SoftmaxModel.log_loss`][explicit_softmax.model.SoftmaxModel.log_loss], computed sparsely."""
    tokens = self._check_tokens(X)
    w = _validation.check_sample_weight(sample_weight, len(tokens))
    return float(-(w @ self.log_prob(tokens, y)) / w.sum())

  def predict_log_proba(self, X) -> np.ndarray:
    """``log p(y | x)`` for a small batch, (T, M) float64 (dense output).

    Raises:
      ValueError: if ``T M`` exceeds ``MAX_DENSE_ELEMENTS``; use
        [`log_prob`][explicit_softmax.sparse_model.SparseCountModel.log_prob] or
        [`log_loss`][explicit_softmax.sparse_model.SparseCountModel.log_loss] for many samples.
    """
    tokens = self._check_tokens(X)
    t, m = len(tokens), self.n_classes
    if t * m > MAX_DENSE_ELEMENTS:
      raise ValueError(
          f"predict_log_proba would return a dense {t} x {m} array; pass at most "
          f"{MAX_DENSE_ELEMENTS // m} samples at a time, or use log_prob / log_loss / predict, "
          "which never densify.")
    out = np.empty((t, m))
    for sl, s_mat in self._union_chunks(tokens):
      lse = _log_normalisers(s_mat.data, s_mat.indptr, m)
      block = out[sl]
      block[:] = -lse[:, None]
      rows = np.repeat(np.arange(s_mat.shape[0]), np.diff(s_mat.indptr))
      block[rows, s_mat.indices] += s_mat.data
    return out

  def predict_proba(self, X) -> np.ndarray:
    """``p(y | x)`` for a small batch, (T, M) float64; see
    [`predict_log_proba`][explicit_softmax.sparse_model.SparseCountModel.predict_log_proba]."""
    return np.exp(self.predict_log_proba(X))

  def predict(self, X) -> np.ndarray:
    """The most probable class of each sample, (T,) int64, without dense rows.

    Ties go to the smallest class index, as ``np.argmax`` does for the dense model.
    """
    tokens = self._check_tokens(X)
    if self.n_context == 1:
      return self._row_argmax[tokens.ids[:, 0]]
    out = np.empty(len(tokens), np.int64)
    for sl, s_mat in self._union_chunks(tokens):
      out[sl] = _csr_row_argmax(s_mat)
    return out

  @functools.cached_property
  def _row_argmax(self) -> np.ndarray:
    return _csr_row_argmax(self._excess)

  # -- generation ----------------------------------------------------------------
  def sample(self, context: ArrayLike, n: int, seed: int = 0) -> np.ndarray:
    """Generates ``n`` tokens, each drawn from ``p(. | previous K tokens)``.

    Each step draws from the sparse log-probability exactly without a dense row: with probability
    proportional to ``M - |supp S|`` a token uniform among the unobserved ones,
    otherwise a token of the support with probability ``∝ exp(S_j)``.

    Args:
      context: the tokens before the first generated one, oldest first (as in the
        sequence; at least K of them, the last K are used). The generated tokens
        are appended to it as the context of later steps. Context column 0 is
        the most recent token, as in ``explicit_softmax.data.context_tokens``.
      n: the number of tokens to generate.
      seed: the seed of the draws.

    Returns:
      (n,) int64 generated tokens.

    Raises:
      ValueError: if targets are not the vocabulary (``n_classes != vocab_size``),
        the context is too short or out of range, or ``n < 0``.
    """
    if self.n_classes != self.vocab_size:
      raise ValueError(
          f"sample feeds generated tokens back as context, so targets must be the "
          f"vocabulary; this model has n_classes={self.n_classes} and vocab_size="
          f"{self.vocab_size}. Fit with n_classes=vocab_size.")
    n = _validation.check_integer("n", n, minimum=0)
    seed = _validation.check_integer("seed", seed, minimum=0)
    k, v, m = self.n_context, self.vocab_size, self.n_classes
    history = _validation.check_token_sequence("context", context, v, k).tolist()
    rng = np.random.default_rng(seed)
    d = self._excess
    recent = history[-k:][::-1]  # column 0: the previous token
    out = np.empty(int(n), np.int64)
    for step in range(int(n)):
      rows = [pos * v + tok for pos, tok in enumerate(recent)]
      support, values = _union_row(d, rows)
      top = max(0.0, float(values.max())) if values.size else 0.0
      inside = np.exp(values - top)
      outside = (m - support.size) * np.exp(-top)
      u = rng.random() * (inside.sum() + outside)
      if u < outside:
        token = _uniform_outside(support, m, rng)
      else:
        cdf = np.cumsum(inside)
        token = int(support[min(np.searchsorted(cdf, u - outside, side="right"),
                                support.size - 1)])
      out[step] = token
      recent = [token] + recent[:-1]
    return out

  # -- conversion ----------------------------------------------------------------
  def to_dense(self) -> model_lib.SoftmaxModel:
    """The same model as a dense [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] (small
    vocabularies only).

    Equal to ``es.fit(X, y, method="cooccurrence", smoothing=s)`` on the same data
    up to float rounding.

    Raises:
      ValueError: if ``K V x M`` exceeds ``MAX_DENSE_ELEMENTS``.
    """
    size = self.n_features * self.n_classes
    if size > MAX_DENSE_ELEMENTS:
      raise ValueError(
          f"a dense weight matrix would have {self.n_features} x {self.n_classes} = {size} "
          f"entries (limit {MAX_DENSE_ELEMENTS}); keep the sparse model, which evaluates "
          "log_loss, predict and sample without it.")
    weights = np.repeat(self.row_constants()[:, None], self.n_classes, axis=1)
    d = self._excess.tocoo()
    weights[d.row, d.col] += d.data
    return model_lib.SoftmaxModel(weights, np.zeros(self.n_classes), info=dict(self.info))

  # -- helpers ---------------------------------------------------------------------
  def _check_tokens(self, X) -> _design.TokenFeatures:
    tokens = _as_tokens(X, self.vocab_size)
    _validation.check_token_layout([tokens.ids.shape[1], tokens.vocab_size],
                                   [self.n_context, self.vocab_size])
    _validation.check_n_samples(len(tokens))
    return tokens

  def _lookup(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``D[rows, cols]`` for many pairs (0 where unobserved), by binary search."""
    keys = self._keys
    want = rows.astype(np.int64) * self.n_classes + cols
    if keys.size == 0:
      return np.zeros(len(want))
    pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    return np.where(keys[pos] == want, self._excess.data[pos], 0.0)

  def _union_chunks(self, tokens: _design.TokenFeatures):
    """Yields ``(rows, S)``: ``S = sum_k D[i_tk]`` (CSR, sorted) for chunks of samples."""
    idx = tokens.feature_indices().astype(np.int64)
    d = self._excess
    row_nnz = np.diff(d.indptr)[idx].sum(axis=1)
    bounds = _chunk_bounds(row_nnz, _CHUNK_NNZ)
    for start, stop in zip(bounds[:-1], bounds[1:]):
      part = idx[start:stop]
      t, k = part.shape
      x = sp.csr_matrix((np.ones(t * k), part.ravel(), np.arange(0, t * k + 1, k)),
                        shape=(t, self.n_features))
      s_mat = (x @ d).tocsr()
      s_mat.sum_duplicates()
      yield slice(start, stop), s_mat


# -- module helpers ------------------------------------------------------------------

def _as_tokens(X, vocab_size: int | None = None) -> _design.TokenFeatures:
  if isinstance(X, _design.TokenFeatures):
    return X
  if vocab_size is not None and isinstance(X, np.ndarray) and X.dtype.kind in "iu":
    return _design.TokenFeatures(X, vocab_size)
  raise ValueError(
      f"SparseCountModel needs token contexts as es.TokenFeatures(ids, vocab_size); got "
      f"{type(X).__name__}. Build them with explicit_softmax.data.context_tokens, or use "
      "es.fit for dense and scipy.sparse features.")


def _labels(y, n_samples: int, n_classes: int | None) -> np.ndarray:
  targets = _validation.check_targets(y, n_samples, n_classes)
  if targets.labels is None:
    raise ValueError(
        "SparseCountModel counts integer targets (the next token); got soft labels. "
        "Use es.fit for soft labels.")
  return targets.labels


def _count(tokens: _design.TokenFeatures, y, n_classes, sample_weight):
  """``(F, T_w, T)``: the (K V, M) CSR counts of one batch, by coo -> csr."""
  t = len(tokens)
  _validation.check_n_samples(t)
  labels = _labels(y, t, n_classes)
  m = int(n_classes) if n_classes is not None else int(labels.max()) + 1
  w = _validation.check_sample_weight(sample_weight, t)
  k = tokens.ids.shape[1]
  rows = tokens.feature_indices().ravel()
  cols = np.repeat(labels, k)
  data = np.repeat(w, k) if sample_weight is not None else np.ones(t * k)
  counts = sp.coo_matrix((data, (rows, cols)), shape=(k * tokens.vocab_size, m)).tocsr()
  return counts, float(w.sum()), t


def _log_normalisers(data: np.ndarray, indptr: np.ndarray, m: int) -> np.ndarray:
  """Per CSR row: ``log(m - nnz + sum exp(data))`` (the off-support entries are 0)."""
  n_rows = len(indptr) - 1
  nnz = np.diff(indptr)
  top = np.zeros(n_rows)
  has = nnz > 0
  if data.size:
    top[has] = np.maximum(np.maximum.reduceat(data, indptr[:-1][has]), 0.0)
  row_of = np.repeat(np.arange(n_rows), nnz)
  inside = np.bincount(row_of, weights=np.exp(data - top[row_of]), minlength=n_rows)
  return top + np.log(inside + (m - nnz) * np.exp(-top))


def _csr_lookup(mat: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
  """``mat[t, cols[t]]`` for every row ``t`` of a CSR matrix with sorted indices."""
  out = np.zeros(mat.shape[0])
  if not mat.nnz:
    return out
  m = mat.shape[1]
  rows = np.repeat(np.arange(mat.shape[0], dtype=np.int64), np.diff(mat.indptr))
  keys = rows * m + mat.indices
  want = np.arange(mat.shape[0], dtype=np.int64) * m + cols
  pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
  return np.where(keys[pos] == want, mat.data[pos], 0.0)


def _csr_row_argmax(mat: sp.csr_matrix) -> np.ndarray:
  """Per row, the smallest column of the largest stored entry (0 for empty rows).

  Stored entries are positive and unstored ones zero, so the stored maximum is
  the row's maximum.
  """
  n_rows = mat.shape[0]
  out = np.zeros(n_rows, np.int64)
  nnz = np.diff(mat.indptr)
  has = nnz > 0
  if not mat.nnz:
    return out
  top = np.full(n_rows, -np.inf)
  top[has] = np.maximum.reduceat(mat.data, mat.indptr[:-1][has])
  row_of = np.repeat(np.arange(n_rows), nnz)
  hits = np.flatnonzero(mat.data == top[row_of])
  first_rows, first = np.unique(row_of[hits], return_index=True)
  out[first_rows] = mat.indices[hits[first]]
  return out


def _union_row(d: sp.csr_matrix, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
  """``(support, values)`` of ``sum_k D[rows[k]]``, support sorted."""
  if len(rows) == 1:
    lo, hi = d.indptr[rows[0]], d.indptr[rows[0] + 1]
    return d.indices[lo:hi], d.data[lo:hi]
  cols = np.concatenate([d.indices[d.indptr[r]:d.indptr[r + 1]] for r in rows])
  vals = np.concatenate([d.data[d.indptr[r]:d.indptr[r + 1]] for r in rows])
  support, inverse = np.unique(cols, return_inverse=True)
  return support, np.bincount(inverse, weights=vals, minlength=support.size)


def _uniform_outside(support: np.ndarray, m: int, rng: np.random.Generator) -> int:
  """A token uniform on ``[0, m)`` minus the sorted ``support``."""
  if support.size < m // 2:
    while True:  # rejection: accepted with probability > 1/2
      token = int(rng.integers(m))
      pos = np.searchsorted(support, token)
      if pos == support.size or support[pos] != token:
        return token
  free = np.setdiff1d(np.arange(m), support, assume_unique=True)
  return int(free[rng.integers(free.size)])


def _chunk_bounds(cost: np.ndarray, budget: int) -> np.ndarray:
  """Boundaries of consecutive chunks whose summed ``cost`` stays near ``budget``."""
  cum = np.cumsum(cost, dtype=np.int64)
  bounds = [0]
  while bounds[-1] < len(cost):
    start = bounds[-1]
    base = cum[start - 1] if start else 0
    stop = int(np.searchsorted(cum, base + budget, side="right"))
    bounds.append(max(stop, start + 1))
  return np.asarray(bounds)
