"""Token models: SVD factors, context bags and attention value/output maps.

* [`svd_factors`][explicit_softmax.adapters.svd_factors] factorises the centred explicit
  weights of a token model into an embedding table and an output head, the best rank-``d``
  approximation of the count solution (Eckart-Young);
* ``context_bag_weights`` is the count solution for the next token given
  the bag of the last ``w`` tokens, and ``value_output_weights`` fits an
  attention layer's value and output projections to carry such votes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax import solvers
from explicit_softmax import statistics
from explicit_softmax._typing import ArrayLike
from explicit_softmax.adapters._fit import Source, as_explicit_model

# Largest side of a matrix factorised with a dense SVD; beyond, a truncated
# (ARPACK) SVD computes only the d leading factors.
_DENSE_SVD_MAX = 4096


@dataclasses.dataclass(frozen=True)
class EmbeddingFactors:
  """Rank-``d`` factors of a token model's explicit weights.

  Logits of a sample with context feature rows ``r_1..r_K`` (``r_k = k V +
  token_k``) are ``(sum_k embedding[r_k]) @ head + bias``.

  Attributes:
    embedding: (K V, d) float32 embedding table (K = 1: (V, d)).
    head: (d, V) float32 output kernel in the ``x @ W`` layout (Flax); a
      ``torch.nn.Linear`` stores its transpose.
    bias: (V,) float32 output bias.
    singular_values: all singular values of the centred weights, float64.
    n_context: K.
  """

  embedding: np.ndarray
  head: np.ndarray
  bias: np.ndarray
  singular_values: np.ndarray
  n_context: int

  @property
  def rank(self) -> int:
    return self.head.shape[0]

  def logits(self, ids) -> np.ndarray:
    """(T, V) logits for (T,) or (T, K) token ids."""
    ids = np.asarray(ids)
    ids = ids[:, None] if ids.ndim == 1 else ids
    vocab = self.head.shape[1]
    rows = ids + vocab * np.arange(ids.shape[1])
    return self.embedding[rows].sum(axis=1) @ self.head + self.bias


def centred_weights(explicit: model_lib.SoftmaxModel, *, n_context: int = 1,
                    center_columns: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The centred weights that [`svd_factors`][explicit_softmax.adapters.svd_factors]
  factorises, and the matching bias.

  Row centring (subtracting each row's mean over the V outputs) never changes
  the softmax. Column centring moves each context block's mean row into the
  bias; it leaves the logits unchanged for token contexts, where every sample
  has exactly one active feature per block of ``V`` rows (``TokenFeatures``).

  Args:
    explicit: a token model, ``weights`` (K V, V).
    n_context: K, the number of one-hot blocks in the weight rows.
    center_columns: also move the block means into the bias.

  Returns:
    ``(C, b)``: (K V, V) float64 centred weights and (V,) float64 bias with
    ``softmax(sum_k C[r_k] + b) == softmax(sum_k W[r_k] + b_explicit)``.
  """
  w = explicit.weights.astype(np.float64)
  rows, vocab = w.shape
  if int(n_context) < 1 or rows != int(n_context) * vocab:
    raise ValueError(
        f"the explicit weights are {w.shape}, which is not (n_context * V, V) with "
        f"n_context={n_context}; fit them on TokenFeatures(ids, vocab_size=V) with "
        "n_classes=V and pass the context size used.")
  c = w - w.mean(axis=1, keepdims=True)
  b = explicit.bias.astype(np.float64)
  b = b - b.mean()
  if center_columns:
    blocks = c.reshape(int(n_context), vocab, vocab)
    mean_rows = blocks.mean(axis=1, keepdims=True)
    c = (blocks - mean_rows).reshape(rows, vocab)
    b = b + mean_rows.sum(axis=(0, 1))
  return c, b


def svd_factors(source: Source, d: int, *, n_context: int = 1, center_columns: bool = True,
                method: str = "cooccurrence", smoothing: float = 0.1,
                ridge: float = 1e-3) -> EmbeddingFactors:
  """Embedding and output head from a truncated SVD of the explicit weights.

  With ``C = U S V^T`` the centred weights
  ([`centred_weights`][explicit_softmax.adapters.centred_weights]), the factors
  are ``embedding = U_d S_d^(1/2)`` and ``head = S_d^(1/2) V_d^T`` (singular
  values split evenly, so both factors start on the same scale for gradient
  descent). ``embedding @ head`` is the best rank-``d`` approximation of ``C``
  in Frobenius norm (Eckart-Young): its error is ``sum_{i > d} s_i^2``. At full
  rank the factors reproduce the explicit logits up to the softmax shift.

  Args:
    source: a token [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] (weights (K V, V)) or the
      [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] of ``TokenFeatures`` contexts
      (solved with ``method``).
    d: embedding width, at most ``min(K V, V)``.
    n_context: K, the context size the model was fitted with.
    center_columns: move the block means into the bias (exact for token
      contexts, see [`centred_weights`][explicit_softmax.adapters.centred_weights]).
    method: solver used when ``source`` is statistics.
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.

  Returns:
    [`EmbeddingFactors`][explicit_softmax.adapters.EmbeddingFactors].

  Raises:
    ValueError: a ``source`` of another type, weights that are not (K V, V) for
      ``n_context``, or ``d`` not in ``[1, min(K V, V)]``.
  """
  explicit = as_explicit_model(source, method=method, smoothing=smoothing, ridge=ridge)
  c, b = centred_weights(explicit, n_context=n_context, center_columns=center_columns)
  max_rank = min(c.shape)
  d = _validation.check_integer("d", d)
  if d > max_rank:
    raise ValueError(
        f"d={d} is not in [1, {max_rank}]: a ({c.shape[0]} x {c.shape[1]}) matrix has at "
        f"most rank {max_rank}. Use an embedding width d <= {max_rank}.")
  if max(c.shape) <= _DENSE_SVD_MAX or d >= max_rank - 1:
    u, s, vt = np.linalg.svd(c, full_matrices=False)
    all_s = s
  else:
    import scipy.sparse.linalg
    u, s, vt = scipy.sparse.linalg.svds(c, k=d)
    order = np.argsort(s)[::-1]
    u, s, vt = u[:, order], s[order], vt[order]
    all_s = s
  root = np.sqrt(s[:d])
  return EmbeddingFactors(
      embedding=(u[:, :d] * root).astype(np.float32),
      head=(root[:, None] * vt[:d]).astype(np.float32),
      bias=b.astype(np.float32),
      singular_values=np.asarray(all_s, np.float64),
      n_context=int(n_context))


# -- inside a transformer: value/output projections from context co-occurrences --
# Evenly spaced positions of the token stream used for the context statistics:
# enough for a (V, V) count table of a character vocabulary, bounded in memory
# (positions x window token indices).
DEFAULT_CONTEXT_POSITIONS = 100_000


def context_bag_weights(tokens: ArrayLike, vocab_size: int, window: int, *,
                        smoothing: float = 0.1, max_positions: int = 100_000
                        ) -> tuple[np.ndarray, np.ndarray]:
  """The count solution for the next token given the bag of the last ``window`` tokens.

  Each sampled position ``t`` has the feature vector ``f_t = (1/w) sum_{s=t-w+1}^{t}
  onehot(token_s)`` (the mean of the one-hots an attention head that attends
  evenly over the last ``w`` positions sees) and the label ``token_{t+1}``. The
  co-occurrence solution of these statistics (``explicit_softmax.solve(stats,
  "cooccurrence")``) gives weights ``W`` (V, V) whose logits are ``f_t W + b``:
  a sum over the context tokens of each token's vote for the next one.

  The weights are returned centred: each row's mean over the outputs is removed
  (never changes a softmax), and the mean row is moved into the bias, which is
  exact because every ``f_t`` sums to one.

  Args:
    tokens: (T,) integer token ids in ``[0, vocab_size)``.
    vocab_size: V.
    window: w, the number of previous tokens (including the current one) pooled.
    smoothing: additive smoothing of the co-occurrence solution.
    max_positions: at most this many evenly spaced positions are counted.

  Returns:
    ``(C, b)``: (V, V) centred weights and (V,) bias, in the solver's dtype
    (float32: row and column means are zero to float32 round-off).

  Raises:
    ValueError: tokens that are not integers in ``[0, V)``, a non-positive or
      too long window.
  """
  vocab_size = _validation.check_integer("vocab_size", vocab_size)
  window = _validation.check_integer("window", window)
  max_positions = _validation.check_integer("max_positions", max_positions)
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
    raise ValueError(
        f"tokens must be a 1-D array of integer token ids; got shape {tokens.shape}, dtype "
        f"{tokens.dtype}. Pass the token stream, e.g. data.load_text(path)[0].")
  if len(tokens) <= window:
    raise ValueError(
        f"window={window} needs more than {window} tokens; got {len(tokens)}. Pass a longer "
        "token stream or a smaller window.")
  if tokens.min() < 0 or tokens.max() >= vocab_size:
    raise ValueError(
        f"token ids must lie in [0, vocab_size={vocab_size}); found [{tokens.min()}, "
        f"{tokens.max()}]. Pass vocab_size = the vocabulary's size.")
  # Positions t in [w - 1, T - 2] have a full window and a next token.
  positions = np.unique(np.linspace(window - 1, len(tokens) - 2,
                                    min(max_positions, len(tokens) - window)).astype(np.int64))
  rows = np.repeat(np.arange(len(positions)), window)
  context = tokens[(positions[:, None] - np.arange(window)[None, :]).ravel()]
  counts = np.bincount(rows * vocab_size + context,
                       minlength=len(positions) * vocab_size).reshape(len(positions), vocab_size)
  features = counts.astype(np.float64) / window
  stats = statistics.SoftmaxStats.from_data(features, tokens[positions + 1],
                                            n_classes=vocab_size)
  explicit = solvers.solve(stats, "cooccurrence", smoothing=smoothing)
  w = explicit.weights - explicit.weights.mean(axis=1, keepdims=True)
  mean_row = w.mean(axis=0)
  b = explicit.bias - explicit.bias.mean() + mean_row
  return w - mean_row, b


def ridge_map(inputs: np.ndarray, targets: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
  """The ridge least-squares map ``A`` minimising ``||X A - Y||^2 + lam ||A||^2``.

  ``A = (X^T X + lam I)^-1 X^T Y`` with ``lam = ridge * trace(X^T X) / N``: the
  ridge is relative to the mean feature energy, as in the Newton solution, so it
  does not depend on the features' scale.

  Args:
    inputs: X, (n, N) real features.
    targets: Y, (n, D) real targets.
    ridge: relative ridge, >= 0.

  Returns:
    (N, D) float64 map.

  Raises:
    ValueError: shapes that are not (n, N) and (n, D) with the same ``n >= 1``, a
      negative ridge, or NaN or inf values.
  """
  ridge = _validation.check_number("ridge", ridge)
  x = np.asarray(inputs, np.float64)
  y = np.asarray(targets, np.float64)
  if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
    raise ValueError(
        f"ridge_map needs inputs (n, N) and targets (n, D) with the same n >= 1; got "
        f"{x.shape} and {y.shape}.")
  if not (np.isfinite(x).all() and np.isfinite(y).all()):
    raise ValueError("the inputs or targets of ridge_map contain NaN or inf; check the layers "
                     "that produce them.")
  gram = x.T @ x
  lam = ridge * np.trace(gram) / x.shape[1]
  # A tiny floor keeps the solve defined for ridge=0 with rank-deficient inputs.
  gram[np.diag_indices_from(gram)] += max(lam, 1e-12 * max(np.trace(gram), 1.0))
  return np.linalg.solve(gram, x.T @ y)


def balanced_factors(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
  """Two factors ``A`` (N, r), ``B`` (r, D) with ``A B`` the best rank-r approximation of ``w``.

  With ``w = U S V^T``: ``A = U_r S_r^(1/2)`` and ``B = S_r^(1/2) V_r^T``, the singular values split
  evenly so both layers start on the same scale (Eckart-Young for the approximation, as in
  [`svd_factors`][explicit_softmax.adapters.svd_factors]).

  Args:
    w: (N, D) real matrix.
    rank: r, at most ``min(N, D)``.

  Returns:
    ``(A, B)`` as float32.
  """
  w = np.asarray(w, np.float64)
  max_rank = min(w.shape)
  rank = _validation.check_integer("rank", rank)
  if rank > max_rank:
    raise ValueError(f"rank={rank} exceeds min{w.shape} = {max_rank}; pass rank <= {max_rank}.")
  u, s, vt = np.linalg.svd(w, full_matrices=False)
  root = np.sqrt(s[:rank])
  return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)


def value_output_weights(inputs: np.ndarray, targets: np.ndarray, inner: int, *,
                         ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
  """Value and output projections whose product maps each input to its target.

  An attention layer adds ``sum_j a_tj (x_j W_V) W_O`` to position ``t``: with
  the product ``W_V W_O`` mapping each attended input ``x_j`` to a target
  vector ``y_j``, the layer adds the attention-weighted mean of the targets.
  ``W_V W_O`` is the ridge map from inputs to targets
  ([`ridge_map`][explicit_softmax.adapters.ridge_map]), split into balanced factors of the value
  width ([`balanced_factors`][explicit_softmax.adapters.balanced_factors]).

  Args:
    inputs: (n, N) what the value projection sees (e.g. the LayerNorm outputs).
    targets: (n, D) the residual update each input should carry.
    inner: the value projection's output width (all heads together).
    ridge: relative ridge of the map.

  Returns:
    ``(W_V, W_O)``: (N, inner) and (inner, D) float32 in the ``x @ W`` layout
    (padded with zero columns/rows if ``inner`` exceeds the map's rank).
  """
  w = ridge_map(inputs, targets, ridge)
  rank = min(int(inner), *w.shape)
  a, b = balanced_factors(w, rank)
  w_v = np.zeros((w.shape[0], int(inner)), np.float32)
  w_o = np.zeros((int(inner), w.shape[1]), np.float32)
  w_v[:, :rank], w_o[:rank] = a, b
  return w_v, w_o

