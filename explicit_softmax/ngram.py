"""n-gram language models as explicit softmax solutions, with Kneser-Ney smoothing.

For one-hot contexts the count solution is the exact optimum of a softmax layer
([`es.sparse_model`][explicit_softmax.sparse_model]), so an n-gram model is an explicit solution
whose quality is decided by its smoothing. [`NgramModel`][explicit_softmax.ngram.NgramModel]
offers three, all interpolated: with ``c`` the ``k - 1`` most recent tokens and ``c'`` its suffix
without the oldest token, order ``k`` of the model is the interpolation

    p_k(w | c) = max(a_k(c w) - D_k(a_k(c w)), 0) / A_k(c) + gamma_k(c) p_{k-1}(w | c'),
    gamma_k(c) = (D_k1 N_1(c .) + D_k2 N_2(c .) + D_k3 N_3+(c .)) / A_k(c),

with ``A_k(c) = sum_w a_k(c w)``, ``N_r(c .)`` the number of words ``w`` with
``a_k(c w) = r`` (``N_3+``: at least 3), ``D_k(a)`` the discount ``D_k1``,
``D_k2`` or ``D_k3`` of a count 1, 2 or at least 3, and the recursion ending at
the uniform distribution ``p_0(w) = 1 / V`` (Chen and Goodman's zeroth-order
model, so that no token has probability 0). Since ``D_k(a) <= a``, the
discounted mass is exactly ``gamma_k(c)`` and every ``p_k(. | c)`` sums to 1.

* ``"kneser-ney"`` (interpolated modified Kneser-Ney, Chen and Goodman 1998):
  at the highest order ``a_n`` is the count ``c(c w)``; at lower orders the
  continuation count ``a_k(g) = N_1+(. g)``, the number of distinct tokens seen
  right before the k-gram ``g``. Three discounts per order from the counts of
  counts ``n_r`` of that order's ``a_k``, the estimated discounts

      Y = n_1 / (n_1 + 2 n_2),  D_k1 = 1 - 2 Y n_2 / n_1,
      D_k2 = 2 - 3 Y n_3 / n_2,  D_k3 = 3 - 4 Y n_4 / n_3.

  Where the estimate is undefined or leaves ``[0, r]`` (tiny corpora), that order takes
  KenLM's fallback discounts ``(0.5, 1, 1.5)``.
* ``"kneser-ney-fixed"``: the same with one discount ``D`` for every count
  (Chen and Goodman's interpolated Kneser-Ney; ``D = 0.75`` by default).
* ``"additive"``: ``p_n(w | c) = (c(c w) + s) / (c(c .) + V s)`` on the full context (the
  co-occurrence solution of [`SparseCountModel`][explicit_softmax.sparse_model.SparseCountModel],
  ``s`` its ``smoothing``), backing off to the additive model of order ``n - 1`` where ``c`` was
  never seen.

A context never seen at order ``k`` (``A_k(c) = 0``) backs off entirely,
``p_k(w | c) = p_{k-1}(w | c')``.

Storage is sparse: per order the sorted keys of the observed k-grams and their
counts, memory O(observed n-grams). A k-gram ``g = (h, w)`` has the key
``id(h) V + w`` with ``id(h)`` the rank of its first ``k - 1`` tokens among the
observed (k-1)-grams, so no key overflows whatever ``V`` and ``n``, and every
look-up is a binary search (``np.searchsorted``), vectorised over queries.
Fitting is one sort of the n-gram windows (cut at sequence ends); every lower
order's counts and continuation counts are read off the sorted windows in
linear passes.

For ``order=2`` the log probabilities are explicit softmax weights ``W[i, j] = log p(j | i)`` on
one-hot contexts
([`NgramModel.to_softmax_model`][explicit_softmax.ngram.NgramModel.to_softmax_model]), which the
adapters' SVD embedding and head initialisers accept.

References:
  S. F. Chen and J. Goodman, "An empirical study of smoothing techniques for
  language modeling", Harvard TR-10-98 (1998): interpolated and modified
  Kneser-Ney, the estimated discounts.
  R. Kneser and H. Ney, "Improved backing-off for M-gram language modeling",
  ICASSP 1995: continuation counts.
  K. Heafield et al., "Scalable modified Kneser-Ney language model estimation",
  ACL 2013 (KenLM ``lmplz``): the discount range check and its fallback.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Sequence, Union

import numpy as np

from explicit_softmax import _design
from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax import solvers
from explicit_softmax._typing import ArrayLike, PathLike

SMOOTHINGS = ("kneser-ney", "kneser-ney-fixed", "additive")
# KenLM's --discount_fallback: (D1, D2, D3+) where the estimated discounts are undefined or out of
# range.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# ``predict_log_proba`` and ``to_softmax_model`` refuse outputs larger than this many floats.
MAX_DENSE_ELEMENTS = 2**26
_FORMAT = "explicit-softmax-ngram"
_FORMAT_VERSION = 1
# A 1-D sequence of token ids, or a list of such sequences.
Tokens = Union[ArrayLike, Sequence[ArrayLike]]
# (T, n - 1) ids oldest first, (T,) for bigrams, None for unigrams, or TokenFeatures.
Contexts = Union[ArrayLike, _design.TokenFeatures, None]


@dataclasses.dataclass(frozen=True, eq=False)
class NgramModel:
  """An interpolated n-gram language model (``p_k`` of ``es.ngram``), stored as sparse counts.

  Build it with [`fit`][explicit_softmax.ngram.NgramModel.fit]; the constructor takes counts made by
  [`fit`][explicit_softmax.ngram.NgramModel.fit] (or read by
  [`load`][explicit_softmax.ngram.NgramModel.load]) and checks their consistency.

  Attributes:
    order: n (1: unigram, 2: bigram, ...).
    vocab_size: V.
    keys: per order k = 1..n, the sorted int64 keys ``id(h) V + w`` of the
      observed k-grams (``id`` of the empty context is 0).
    counts: per order, the int64 number of occurrences of each k-gram.
    continuation: per order k = 1..n-1, the continuation count ``N_1+(. g)`` of
      each k-gram (the highest order has none).
    smoothing: ``"kneser-ney"``, ``"kneser-ney-fixed"`` or ``"additive"``.
    discounts: (n, 3) float64 ``(D1, D2, D3+)`` per order (row ``k - 1``: order
      k); None for additive smoothing.
    pseudo_count: ``s > 0`` of additive smoothing.
    info: JSON-serialisable metadata: the number of k-grams per order, the
      discounts and, where they were estimated, the orders that fell back to
      ``FALLBACK_DISCOUNTS``.
  """

  order: int
  vocab_size: int
  keys: tuple
  counts: tuple
  continuation: tuple
  smoothing: str = "kneser-ney"
  discounts: np.ndarray | None = None
  pseudo_count: float = 0.1
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    n = _validation.check_ngram_order(self.order)
    v = _validation.check_integer("vocab_size", self.vocab_size)
    _validation.check_choice("smoothing", self.smoothing, SMOOTHINGS)
    s = _validation.check_number("pseudo_count", self.pseudo_count, exclusive=True)
    keys, counts, cont = _validation.check_ngram_counts(self.keys, self.counts,
                                                        self.continuation, n, v)
    estimated = self.smoothing == "kneser-ney" and self.discounts is None
    if estimated:
      discounts, fallback = estimate_discounts([*cont, counts[-1]])
    else:
      discounts = _validation.check_discounts(self.smoothing, self.discounts, n)
    for part in keys + counts + cont:
      part.flags.writeable = False
    if discounts is not None:
      discounts = np.array(discounts, np.float64)
      discounts.flags.writeable = False
    for name, value in (("order", n), ("vocab_size", v), ("keys", keys), ("counts", counts),
                        ("continuation", cont), ("discounts", discounts),
                        ("pseudo_count", s)):
      object.__setattr__(self, name, value)
    info = {"method": "ngram", "order": n, "smoothing": self.smoothing,
            "n_types": [len(k) for k in keys], "n_tokens": int(counts[0].sum())}
    if discounts is not None:
      info["discounts"] = discounts.tolist()
      if estimated:
        info["discount_fallback_orders"] = fallback
    else:
      info["pseudo_count"] = s
    object.__setattr__(self, "info", model_lib.freeze_info({**self.info, **info}, "info"))

  # -- construction ------------------------------------------------------------
  @classmethod
  def fit(cls, tokens: Tokens, *, order: int, vocab_size: int | None = None,
          smoothing: str = "kneser-ney", discount: ArrayLike | None = None,
          pseudo_count: float = 0.1) -> NgramModel:
    """Counts every k-gram (k = 1..n) of the token sequences in one sort.

    Args:
      tokens: a 1-D sequence of token ids in ``[0, V)``, or a list of sequences
        (documents, sentences): n-grams never cross from one to the next.
      order: n >= 1.
      vocab_size: V; ``max(tokens) + 1`` if None.
      smoothing: ``"kneser-ney"`` (modified, the default), ``"kneser-ney-fixed"``
        or ``"additive"`` (see the module docstring).
      discount: ``"kneser-ney"``: None (estimated from the counts of counts, see
        [`estimate_discounts`][explicit_softmax.ngram.estimate_discounts]) or an (n, 3) array of
        ``(D1, D2, D3+)`` per order, unigram first; ``"kneser-ney-fixed"``: one
        number in ``[0, 1]`` (default 0.75) or n of them. A unigram discount of
        0 leaves the unigram level undiscounted (NLTK's convention: tokens never
        seen after another token then have probability 0).
      pseudo_count: ``s > 0`` of ``"additive"`` smoothing.

    Returns:
      The fitted [`NgramModel`][explicit_softmax.ngram.NgramModel].

    Raises:
      ValueError: for tokens that are not integer ids in ``[0, V)``, an order
        below 1, an unknown smoothing, or discounts outside their range.
    """
    sequences, v = _validation.check_token_sequences(tokens, vocab_size)
    n = _validation.check_ngram_order(order)
    _validation.check_choice("smoothing", smoothing, SMOOTHINGS)
    discounts = _validation.check_discounts(smoothing, discount, n)
    keys, counts, cont = _count_ngrams(sequences, n, v)
    return cls(n, v, keys, counts, cont, smoothing, discounts, pseudo_count)

  def with_smoothing(self, smoothing: str, *, discount: ArrayLike | None = None,
                     pseudo_count: float = 0.1) -> NgramModel:
    """The same counts with another smoothing (no pass over the data)."""
    _validation.check_choice("smoothing", smoothing, SMOOTHINGS)
    discounts = _validation.check_discounts(smoothing, discount, self.order)
    return NgramModel(self.order, self.vocab_size, self.keys, self.counts, self.continuation,
                      smoothing, discounts, pseudo_count)

  # -- derived quantities ------------------------------------------------------
  @property
  def nbytes(self) -> int:
    """Bytes held by the counts and the derived per-n-gram and per-context arrays."""
    parts = [*self.keys, *self.counts, *self.continuation]
    for level in self._levels:
      parts += [level.alpha, level.gamma, level.seen]
    return int(sum(p.nbytes for p in parts))

  @functools.cached_property
  def _levels(self) -> list:
    """Per order k: the first term of the interpolation ``p_k`` for every observed k-gram, and
    ``gamma_k`` and whether ``A_k > 0`` for every (k-1)-gram context."""
    v, n = self.vocab_size, self.order
    levels = []
    for k in range(1, n + 1):
      keys = self.keys[k - 1]
      additive = self.smoothing == "additive"
      a_int = self.counts[k - 1] if additive or k == n else self.continuation[k - 1]
      a = a_int.astype(np.float64)
      parent = keys // v
      n_ctx = 1 if k == 1 else len(self.keys[k - 2])
      total = np.bincount(parent, weights=a, minlength=n_ctx)
      seen = total > 0
      if additive:
        norm = total + v * self.pseudo_count
        alpha = a / norm[parent]
        gamma = v * self.pseudo_count / norm
      else:
        # D_k(a) of the interpolation: 0 for a = 0 (a k-gram seen only at a sequence start).
        d = np.concatenate([[0.0], self.discounts[k - 1]])[np.minimum(a_int, 3)]
        safe = np.where(seen, total, 1.0)
        alpha = np.maximum(a - d, 0.0) / safe[parent]
        gamma = np.bincount(parent, weights=d, minlength=n_ctx) / safe
      levels.append(_Level(alpha, gamma, seen))
    return levels

  # -- evaluation ----------------------------------------------------------------
  def _context_ids(self, contexts: np.ndarray) -> list[np.ndarray]:
    """For k = 1..n, the id among the observed (k-1)-grams of each context's last
    k - 1 tokens, -1 where that (k-1)-gram was never seen."""
    t, v = len(contexts), self.vocab_size
    ids = [np.zeros(t, np.int64)]
    for length in range(1, self.order):
      suffix = contexts[:, contexts.shape[1] - length:]
      current = np.zeros(t, np.int64)
      for j in range(length):
        current = _find(self.keys[j], current * v + suffix[:, j], current >= 0)
      ids.append(current)
    return ids

  def log_prob(self, contexts: Contexts, targets: ArrayLike) -> np.ndarray:
    """``log p(target | context)`` by the interpolation ``p_k``, vectorised over the queries.

    Args:
      contexts: (T, n - 1) integer ids, the previous n - 1 tokens oldest first
        (the previous token last, as in the text); (T,) for a bigram model;
        None or (T, 0) for a unigram model. [`TokenFeatures`][explicit_softmax.TokenFeatures] with
        ``n - 1`` context tokens are accepted too (their column 0 is the
        previous token, so their columns are reversed).
      targets: (T,) integer ids.

    Returns:
      (T,) float64 log-probabilities in nats (``-inf`` only where a discount of
      0 left a token without probability).

    Raises:
      ValueError: for contexts or targets of the wrong shape or out of range.
    """
    ctx, tgt = self._queries(contexts, targets)
    v = self.vocab_size
    ids = self._context_ids(ctx)
    p = np.full(len(tgt), 1.0 / v)
    for k, level in enumerate(self._levels, start=1):
      c = ids[k - 1]
      use = c >= 0
      use[use] = level.seen[c[use]]
      cu = c[use]
      keys = self.keys[k - 1]
      pos = _find(keys, cu * v + tgt[use], np.ones(len(cu), bool))
      alpha = np.where(pos >= 0, level.alpha[np.maximum(pos, 0)], 0.0)
      base = 1.0 / v if self.smoothing == "additive" else p[use]
      p[use] = alpha + level.gamma[cu] * base
    with np.errstate(divide="ignore"):
      return np.log(p)

  def predict_log_proba(self, contexts: Contexts) -> np.ndarray:
    """``log p(w | context)`` for every token ``w``, (T, V) float64 (small batches).

    Args:
      contexts: as in [`log_prob`][explicit_softmax.ngram.NgramModel.log_prob].

    Raises:
      ValueError: if ``T V`` exceeds ``MAX_DENSE_ELEMENTS``; use
        [`log_prob`][explicit_softmax.ngram.NgramModel.log_prob].
    """
    with np.errstate(divide="ignore"):
      return np.log(self._proba(contexts))

  def predict_proba(self, contexts: Contexts) -> np.ndarray:
    """``p(w | context)`` for every token ``w``, (T, V); see
    [`predict_log_proba`][explicit_softmax.ngram.NgramModel.predict_log_proba]."""
    return self._proba(contexts)

  def _proba(self, contexts) -> np.ndarray:
    ctx, _ = self._queries(contexts, None)
    t, v = len(ctx), self.vocab_size
    _validation.check_ngram_dense_output(t, v, MAX_DENSE_ELEMENTS)
    ids = self._context_ids(ctx)
    p = np.full((t, v), 1.0 / v)
    for k, level in enumerate(self._levels, start=1):
      c = ids[k - 1]
      rows = np.flatnonzero(c >= 0)
      rows = rows[level.seen[c[rows]]]
      cu = c[rows]
      keys = self.keys[k - 1]
      lo = np.searchsorted(keys, cu * v)
      hi = np.searchsorted(keys, cu * v + v)
      block = p[rows] if self.smoothing != "additive" else np.full((len(rows), v), 1.0 / v)
      block *= level.gamma[cu][:, None]
      lengths = hi - lo
      at = np.repeat(np.arange(len(rows)), lengths)
      pos = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
      block[at, keys[pos] % v] += level.alpha[pos]
      p[rows] = block
    return p

  def perplexity(self, tokens: Tokens) -> float:
    """``exp`` of the mean negative log-probability of every token with a full context.

    Args:
      tokens: a 1-D sequence of ids, or a list of sequences; in each, tokens
        ``n - 1 ..`` are scored given the ``n - 1`` tokens before them.

    Returns:
      The perplexity (``inf`` if a token has probability 0).

    Raises:
      ValueError: for invalid tokens, or no sequence longer than ``n - 1`` tokens.
    """
    sequences, _ = _validation.check_token_sequences(tokens, self.vocab_size)
    n = self.order
    _validation.check_ngram_history("tokens", max(len(s) for s in sequences), n)
    w = np.concatenate([np.lib.stride_tricks.sliding_window_view(s, n)
                        for s in sequences if len(s) >= n])
    return float(np.exp(-self.log_prob(w[:, :n - 1], w[:, n - 1]).mean()))

  # -- generation ----------------------------------------------------------------
  def sample(self, context: ArrayLike, n: int, seed: int = 0) -> np.ndarray:
    """Generates ``n`` tokens, each drawn from ``p(. | previous n - 1 tokens)``.

    Args:
      context: the tokens before the first generated one, oldest first (at least
        ``order - 1`` of them; the last ``order - 1`` are used). Generated
        tokens become the context of later steps.
      n: the number of tokens to generate.
      seed: the seed of the draws.

    Returns:
      (n,) int64 tokens.

    Raises:
      ValueError: for a context that is too short or out of range, or ``n < 0``.
    """
    n = _validation.check_integer("n", n, minimum=0)
    seed = _validation.check_integer("seed", seed, minimum=0)
    history = np.asarray(context).reshape(-1)
    _validation.check_ngram_history("context", len(history) + 1, self.order)
    recent = history[len(history) - (self.order - 1):]
    recent, _ = _validation.check_ngram_queries(recent[None, :], None, self.order,
                                                self.vocab_size, need_targets=False)
    recent = recent[0]
    rng = np.random.default_rng(seed)
    out = np.empty(n, np.int64)
    for step in range(n):  # each token is the next one's context: one query per step
      cdf = np.cumsum(self._proba(recent[None, :])[0])
      token = int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"),
                      self.vocab_size - 1))
      out[step] = token
      if self.order > 1:
        recent = np.append(recent[1:], token)
    return out

  # -- the link to the softmax layer --------------------------------------------------
  def to_softmax_model(self) -> model_lib.SoftmaxModel:
    """The bigram model as explicit softmax weights ``W[i, j] = log p(j | i)``.

    On one-hot contexts (``TokenFeatures`` with one context token) the
    [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] predicts ``log_softmax(W[i]) = W[i]``:
    each row is already normalised, the bias is zero. The adapters' SVD embedding and head
    initialisers take this model (or the n-gram model itself) as their source.

    Raises:
      ValueError: unless ``order == 2``, ``V^2 <= MAX_DENSE_ELEMENTS`` and every
        probability is positive (a discount of 0 can leave zeros, whose log is
        not a weight).
    """
    if self.order != 2:
      raise ValueError(
          f"explicit softmax weights on one-hot contexts exist for order=2 (one previous "
          f"token); this model has order={self.order}. Fit NgramModel with order=2.")
    v = self.vocab_size
    if v * v > MAX_DENSE_ELEMENTS:
      raise ValueError(
          f"a dense weight matrix would have {v} x {v} = {v * v} entries (limit "
          f"{MAX_DENSE_ELEMENTS}); keep the n-gram model, which evaluates without it.")
    p = np.concatenate([self._proba(rows[:, None]) for rows in np.array_split(
        np.arange(v), max(1, v * v // 2**22))])
    if not (p > 0).all():
      raise ValueError(
          "some probabilities are 0 (a discount of 0 leaves tokens never seen in a context "
          "without mass), and log 0 is no weight; refit with positive discounts.")
    info = {**self.info, "token_layout": [1, v]}
    return model_lib.SoftmaxModel(np.log(p), np.zeros(v), info=info)

  # -- persistence -------------------------------------------------------------
  def save(self, path: PathLike) -> None:
    """Writes the counts and settings to an ``.npz`` file (no pickle), atomically."""
    arrays = {}
    for k in range(self.order):
      arrays[f"keys_{k + 1}"] = self.keys[k]
      arrays[f"counts_{k + 1}"] = self.counts[k]
      if k < self.order - 1:
        arrays[f"continuation_{k + 1}"] = self.continuation[k]
    if self.discounts is not None:
      arrays["discounts"] = self.discounts
    meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "order": self.order,
            "vocab_size": self.vocab_size, "smoothing": self.smoothing,
            "pseudo_count": self.pseudo_count, "info": self.info}
    model_lib.write_archive(path, json.dumps(meta), arrays)

  @classmethod
  def load(cls, path: PathLike) -> NgramModel:
    """Reads a model written by [`save`][explicit_softmax.ngram.NgramModel.save].

    Raises:
      ValueError: if the file is missing, damaged or not an n-gram model.
    """
    meta, arrays = model_lib.read_archive(path, _FORMAT, _FORMAT_VERSION, "NgramModel")
    try:
      n = _validation.check_ngram_order(meta["order"])
      keys = tuple(arrays[f"keys_{k}"] for k in range(1, n + 1))
      counts = tuple(arrays[f"counts_{k}"] for k in range(1, n + 1))
      cont = tuple(arrays[f"continuation_{k}"] for k in range(1, n))
      # Estimated discounts are stored as found, with the info that says so.
      return cls(n, meta["vocab_size"], keys, counts, cont, meta["smoothing"],
                 arrays.get("discounts"), meta["pseudo_count"], dict(meta["info"]))
    except (KeyError, TypeError, AttributeError, ValueError) as err:
      raise ValueError(f"{str(path)!r} is not a readable n-gram model file ({err}).") from None

  # -- helpers ---------------------------------------------------------------------
  def _queries(self, contexts, targets):
    if isinstance(contexts, _design.TokenFeatures):
      _validation.check_token_layout([contexts.ids.shape[1], contexts.vocab_size],
                                     [self.order - 1, self.vocab_size])
      contexts = contexts.ids[:, ::-1]
    if contexts is None and self.order == 1:
      rows = 1 if targets is None else len(np.atleast_1d(targets))
      contexts = np.zeros((rows, 0), np.int64)
    return _validation.check_ngram_queries(contexts, targets, self.order, self.vocab_size,
                                           need_targets=targets is not None)


@dataclasses.dataclass(frozen=True)
class _Level:
  alpha: np.ndarray  # the first term of p_k, per observed k-gram
  gamma: np.ndarray  # the back-off weight gamma_k, per (k-1)-gram context
  seen: np.ndarray   # A_k > 0, per (k-1)-gram context


def estimate_discounts(counts_per_order: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
  """The modified Kneser-Ney discounts of each order from its counts (Chen and Goodman 1998).

  With ``n_r`` the number of k-grams of count ``r``, ``Y = n_1 / (n_1 + 2 n_2)`` and
  ``D_r = r - (r + 1) Y n_{r+1} / n_r`` for ``r = 1, 2, 3`` (``D_3`` serves every count of at
  least 3).

  Args:
    counts_per_order: per order k = 1..n, the counts ``a_k`` the order is
      discounted on (continuation counts below n, counts at n).

  Returns:
    ``(D, fallback)``: (n, 3) ``(D1, D2, D3+)`` per order, and the orders (1-based)
    where the estimate was undefined or outside ``0 <= D_r <= r`` and ``FALLBACK_DISCOUNTS``
    was used.
  """
  out, fallback = [], []
  for k, a in enumerate(counts_per_order, start=1):
    n_r = np.bincount(np.minimum(a, 5), minlength=6)[1:5].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
      y = n_r[0] / (n_r[0] + 2 * n_r[1])
      d = np.array([r - (r + 1) * y * n_r[r] / n_r[r - 1] for r in (1, 2, 3)])
    if not (np.isfinite(d).all() and (d >= 0).all() and (d <= [1, 2, 3]).all()):
      d = np.array(FALLBACK_DISCOUNTS)
      fallback.append(k)
    out.append(d)
  return np.array(out), fallback


def _find(keys: np.ndarray, want: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """The position of each ``want`` in the sorted ``keys``; -1 where absent or not ``valid``."""
  if keys.size == 0:
    return np.full(len(want), -1, np.int64)
  pos = np.minimum(np.searchsorted(keys, want), keys.size - 1)
  return np.where(valid & (keys[pos] == want), pos, -1)


def _count_ngrams(sequences: list[np.ndarray], n: int, v: int):
  """``(keys, counts, continuation)`` of every order from one sort of the n-gram windows.

  Each sequence is followed by ``n - 1`` copies of a padding symbol ``V`` (larger
  than every token) and every token starts a window of n symbols, so the
  k-grams at a sequence's end are windows padded on the right. In the windows'
  lexicographic order every k-gram is a run of rows with equal k-prefixes (not
  ending in padding): its count is the run's length, and its suffix without
  the first token is the (k-1)-prefix of the window one position later, whose
  row the inverse permutation gives; the continuation counts count the
  distinct k-grams by suffix.
  """
  stream, starts = _padded_stream(sequences, n, v)
  pos, sorted_keys = _sort_windows(stream, starts, n, v)
  rows = len(pos)
  row_of = np.zeros(len(stream), np.int64)  # the row of the window starting at each position
  row_of[pos] = np.arange(rows)
  keys, counts, cont = [], [], []
  new = np.zeros(rows, bool)
  new[0] = True
  # Per row: the rank of its (k-1)-prefix among the observed (k-1)-grams.
  prefix_rank = np.zeros(rows, np.int64)
  for k in range(1, n + 1):
    if sorted_keys is None:
      col = np.take(stream, pos + (k - 1))
      new[1:] |= col[1:] != col[:-1]
      first = np.flatnonzero(new)
      last = col[first]
    else:  # the k-prefixes of base-(V+1) keys, without a gather
      prefix = sorted_keys // np.uint64((v + 1) ** (n - k))
      new[1:] |= prefix[1:] != prefix[:-1]
      first = np.flatnonzero(new)
      last = (prefix[first] % np.uint64(v + 1)).astype(np.int64)
    valid = last != v
    keys.append(prefix_rank[first[valid]] * v + last[valid])
    counts.append(np.diff(np.append(first, rows))[valid])
    if k > 1:
      # The suffix of the k-gram starting at t is the (k-1)-gram starting at t + 1.
      suffix = prefix_rank[row_of[pos[first[valid]] + 1]]
      cont.append(np.bincount(suffix, minlength=len(keys[k - 2])))
    # Invalid runs (ending in padding) get a rank too, but never have children.
    # (astype before cumsum: numpy's cumsum of booleans is much slower.)
    prefix_rank = (valid.astype(np.int64).cumsum() - 1)[new.astype(np.int64).cumsum() - 1]
  return keys, counts, cont


def _padded_stream(sequences: list[np.ndarray], n: int, v: int):
  """The sequences, each followed by ``n - 1`` padding symbols ``V``, as one int64
  array, and the positions of its tokens (where windows start)."""
  lengths = np.array([len(s) for s in sequences])
  stream = np.full(int(lengths.sum()) + (n - 1) * len(sequences), v, np.int64)
  if len(sequences) == 1:
    stream[:lengths[0]] = sequences[0]
    return stream, np.arange(lengths[0])
  offsets = np.concatenate([[0], np.cumsum(lengths + n - 1)[:-1]])
  starts = np.repeat(offsets - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
  stream[starts] = np.concatenate(sequences)
  return stream, starts


def _sort_windows(stream: np.ndarray, starts: np.ndarray, n: int, v: int):
  """``(pos, keys)``: the window starts in the lexicographic order of their windows
  of n symbols, and the windows' sorted base-(V+1) keys (None if not used).

  The windows are encoded as base-(V+1) integers when ``(V+1)^n`` fits in 64 bits.
  If the window's index fits in the bits left, ``key * T + index`` is sorted with
  ``np.sort`` (faster than an argsort); otherwise the keys are argsorted. Beyond
  64 bits the n window columns are sorted lexicographically.
  """
  base = v + 1
  length = len(stream) - (n - 1)  # every start has n - 1 symbols after it
  if base**n > 2**64:  # Python integers: exact
    return starts[np.lexsort([stream[starts + i] for i in range(n - 1, -1, -1)])], None
  symbols = stream.astype(np.uint64)
  key = symbols[:length].copy()
  for i in range(1, n):
    key *= np.uint64(base)
    key += symbols[i:i + length]
  if len(starts) < length:  # several sequences: the windows that start at a token
    key = key[starts]
  if base**n * len(key) <= 2**64:
    packed = np.sort(key * np.uint64(len(key)) + np.arange(len(key), dtype=np.uint64))
    index, sorted_keys = packed % np.uint64(len(key)), packed // np.uint64(len(key))
    return starts[index.astype(np.int64)], sorted_keys
  perm = np.argsort(key, kind="stable")
  return starts[perm], key[perm]
