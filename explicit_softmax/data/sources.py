"""Synthetic token sources whose entropy rate is known: the yardstick of a language model.

* [`MarkovSource`][explicit_softmax.data.sources.MarkovSource]: a Markov source of any order whose
  every context has the same Zipf next-token profile, so its entropy rate is exact in closed form; a
  fitted model's held-out cross-entropy can be compared with the best achievable one.
* [`LogLinearSource`][explicit_softmax.data.sources.LogLinearSource]: one whose log-probabilities
  add up over the context tokens, i.e. a source inside the single-layer softmax class over
  [`context_tokens`][explicit_softmax.data.text.context_tokens] features; its entropy rate is
  estimated from exact conditional entropies along a long sample.

References:
  T. M. Cover and J. A. Thomas, "Elements of Information Theory", 2nd ed.
  (2006), section 4.2 (the entropy rate of a stationary Markov chain).
  G. L. Steele, D. Lea and C. H. Flood, "Fast splittable pseudorandom number
  generators", OOPSLA 2014 (splitmix64, whose finaliser hashes the contexts).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np
import scipy.special

from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax._typing import ArrayLike
from explicit_softmax.data.text import context_tokens

# -- the fields both sources share ---------------------------------------------

def _check_source(source: MarkovSource | LogLinearSource, default_support: int) -> None:
  """Validates and normalises the fields both token sources share, in place.

  Raises:
    ValueError: for a field that is not an integer in its range.
  """
  v = _validation.check_integer("vocab_size", source.vocab_size)
  order = _validation.check_integer("order", source.order)
  support = _validation.check_integer(
      "support", default_support if source.support is None else source.support)
  if support > v:
    raise ValueError(
        f"support must be an integer in [1, vocab_size={v}] (the number of distinct "
        f"successors of a context); got {source.support}.")
  seed = _validation.check_integer("seed", source.seed, minimum=0)
  for name, value in (("vocab_size", v), ("order", order), ("support", support),
                      ("seed", seed)):
    object.__setattr__(source, name, value)


def _check_draw(n_tokens: int, seed: int | None, default_seed: int) -> tuple[int, int]:
  """``(n_tokens, seed)`` of a ``sample`` call, validated; None means ``default_seed``."""
  n_tokens = _validation.check_integer("n_tokens", n_tokens, minimum=0)
  seed = _validation.check_integer("seed", default_seed if seed is None else seed, minimum=0)
  return n_tokens, seed


# -- a Markov source with a known entropy rate ---------------------------------

_MASK64 = (1 << 64) - 1
_MERSENNE61 = (1 << 61) - 1  # context codes are folded modulo this prime


@dataclasses.dataclass(frozen=True)
class MarkovSource:
  """A Markov token source of any order whose entropy rate is known exactly.

  Every context (the previous ``order`` tokens) has the same next-token profile:
  Zipf probabilities ``p_r ∝ r^(-zipf_exponent)``, ``r = 1..support``, placed on ``support``
  distinct tokens that depend pseudo-randomly on the context. Since the profile is the same
  everywhere, ``H(X_t | X_{t-order..t-1}) = H(p)`` for every context and every starting
  distribution, so the entropy rate is exactly the entropy of ``p``
  ([`entropy_rate`][explicit_softmax.data.sources.MarkovSource.entropy_rate]): the lowest
  cross-entropy any model of the source can reach, and what an order-``order`` model tends to.

  The successors of a context are ``perm[(a + b r) mod V]`` for ranks
  ``r = 0..support-1``: ``perm`` is one seeded permutation of the vocabulary, and
  ``(a, b)`` comes from a 64-bit hash (splitmix64) of the context and the seed,
  with ``b`` coprime to ``V`` so the ``support`` tokens are distinct. Nothing of
  size ``V^order`` is stored. (For ``V^order >= 2^61`` context codes are folded
  modulo a prime first, so rare pairs of contexts may share successors; the
  entropy rate is unaffected.)

  Attributes:
    vocab_size: V, tokens are ``0..V-1``.
    order: the number of previous tokens a prediction depends on (>= 1).
    zipf_exponent: the exponent ``s >= 0`` of the profile (0 is uniform).
    support: the number of possible successors of a context, ``1..V``
      (default ``V``).
    seed: the seed of the successor structure (not of the samples).
  """

  vocab_size: int
  order: int = 1
  zipf_exponent: float = 1.1
  support: int | None = None
  seed: int = 0

  def __post_init__(self) -> None:
    zipf_exponent = _validation.check_number("zipf_exponent", self.zipf_exponent)
    _check_source(self, default_support=_validation.check_integer("vocab_size",
                                                                  self.vocab_size))
    object.__setattr__(self, "zipf_exponent", zipf_exponent)

  # -- the profile -------------------------------------------------------------
  def rank_probabilities(self) -> np.ndarray:
    """The Zipf profile ``p_r``, r = 1..support, (support,) float64 summing to 1."""
    return scipy.special.softmax(
        -self.zipf_exponent * np.log(np.arange(1, self.support + 1, dtype=np.float64)))

  def entropy_rate(self) -> float:
    """The entropy rate in nats per token: ``-sum_r p_r log p_r`` of the profile.

    Divide by ``log(2)`` for bits. It is also the conditional entropy of every
    single step, from any context.
    """
    return float(scipy.special.entr(self.rank_probabilities()).sum())

  # -- the successor structure -------------------------------------------------
  @functools.cached_property
  def _structure(self) -> tuple[int, list[int], list[int]]:
    """``(salt, perm, units)``: hash salt, vocabulary permutation, units mod V."""
    rng = np.random.default_rng([self.seed, 0])
    salt = int(rng.integers(0, 2**63, dtype=np.int64)) * 2 + 1
    perm = rng.permutation(self.vocab_size).tolist()
    units = np.arange(1, max(self.vocab_size, 2))
    units = units[np.gcd(units, self.vocab_size) == 1].tolist()
    return salt, perm, units

  def _affine(self, code: int) -> tuple[int, int]:
    """``(a, b)`` of the context with code ``sum_j ctx[j] V^(order-1-j)``."""
    salt, _, units = self._structure
    z = (code % _MERSENNE61) ^ salt
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return z % self.vocab_size, units[(z >> 32) % len(units)]

  def _code(self, context: Sequence[int]) -> int:
    context = [int(c) for c in np.asarray(context).reshape(-1)]
    if len(context) != self.order or any(not 0 <= c < self.vocab_size for c in context):
      raise ValueError(
          f"a context is {self.order} token(s) in [0, {self.vocab_size}), oldest first; "
          f"got {context}.")
    code = 0
    for c in context:
      code = code * self.vocab_size + c
    return code

  def successors(self, context: Sequence[int]) -> np.ndarray:
    """The possible next tokens after ``context``, most probable (rank 1) first.

    Args:
      context: the previous ``order`` tokens, oldest first (as in the sequence).

    Returns:
      (support,) int64 array of distinct tokens; token ``successors[r-1]`` has
      probability ``rank_probabilities()[r-1]``.

    Raises:
      ValueError: if the context has the wrong length or out-of-range tokens.
    """
    a, b = self._affine(self._code(context))
    perm = np.asarray(self._structure[1])
    return perm[(a + b * np.arange(self.support)) % self.vocab_size]

  def sample(self, n_tokens: int, seed: int | None = None) -> np.ndarray:
    """Generates a token sequence.

    The first ``order`` tokens are uniform on the vocabulary; each later token
    follows its context's profile. The successor structure depends only on the
    source's ``seed``; the draw only on ``seed`` here.

    Args:
      n_tokens: the length of the sequence.
      seed: the seed of this draw; None uses the source's ``seed`` (so two
        calls give the same sequence). Use different seeds for independent
        training and test sequences.

    Returns:
      (n_tokens,) int32 array of tokens in ``[0, vocab_size)``.
    """
    n_tokens, seed = _check_draw(n_tokens, seed, self.seed)
    rng = np.random.default_rng([seed, 1])
    v, order = self.vocab_size, self.order
    start = rng.integers(0, v, size=min(order, n_tokens)).tolist()
    if n_tokens <= order:
      return np.asarray(start, np.int32)
    # The rank of each step is context-independent: draw them all at once, so
    # the sequential loop below is only index arithmetic on Python lists.
    cdf = np.cumsum(self.rank_probabilities())
    ranks = np.searchsorted(cdf / cdf[-1], rng.random(n_tokens - order), side="right")
    ranks = np.minimum(ranks, self.support - 1).tolist()
    out = start + [0] * (n_tokens - order)
    _, perm, _ = self._structure
    if order == 1:
      a_b = [self._affine(c) for c in range(v)]
      a_of, b_of = [a for a, _ in a_b], [b for _, b in a_b]
      x = start[0]
      for t, r in enumerate(ranks, 1):
        x = perm[(a_of[x] + b_of[x] * r) % v]
        out[t] = x
    else:
      modulus = v**order
      code = self._code(start)
      affine = self._affine
      for t, r in enumerate(ranks, order):
        a, b = affine(code)
        x = perm[(a + b * r) % v]
        out[t] = x
        code = (code * v + x) % modulus
    return np.asarray(out, np.int32)


# -- a source inside the softmax class -----------------------------------------

@dataclasses.dataclass(frozen=True)
class LogLinearSource:
  """A Markov source whose log-probabilities add up over the previous tokens.

  The next token after the context ``c_1 .. c_K`` (``c_k`` the token ``k``
  positions back) has the source's probability

      p(v | c) = exp(sum_k A_k[c_k, v]) / sum_u exp(sum_k A_k[c_k, u]),

  exactly a single-layer softmax over ``K`` positional one-hot blocks (weights
  ``W[(k-1) V + c, v] = A_k[c, v]``, no bias): the model class of
  [`context_tokens`][explicit_softmax.data.text.context_tokens] features contains the source, unlike
  [`MarkovSource`][explicit_softmax.data.sources.MarkovSource] of order > 1, whose successors hash
  the whole context. Each token at lag ``k`` raises the log-potential of ``support`` seeded
  successors by ``strength decay^(k-1) zipf_exponent log((support + 1) / r)`` for ranks
  ``r = 1..support``: a Zipf-like boost that fades with the lag.

  Its entropy rate (the lowest cross-entropy any model can reach) has no closed form for ``K > 1``:
  [`estimate_entropy_rate`][explicit_softmax.data.sources.LogLinearSource.estimate_entropy_rate]
  averages the exact conditional entropies of ``p(v | c)`` along a long sample.

  Attributes:
    vocab_size: V, tokens are ``0..V-1``.
    order: K, the number of previous tokens the next one depends on (>= 1).
    support: successors each context token boosts, ``1..V`` (default min(16, V)).
    strength: the boost scale at lag 1 (> 0).
    decay: the factor by which boosts shrink per further lag, in (0, 1].
    zipf_exponent: the exponent ``s > 0`` of the boost profile.
    seed: the seed of the successor structure (not of the samples).
  """

  vocab_size: int
  order: int = 2
  support: int | None = None
  strength: float = 2.0
  decay: float = 0.7
  zipf_exponent: float = 1.1
  seed: int = 0

  def __post_init__(self) -> None:
    _check_source(self, default_support=min(16, _validation.check_integer(
        "vocab_size", self.vocab_size)))
    for name in ("strength", "decay", "zipf_exponent"):
      object.__setattr__(self, name, _validation.check_number(
          name, getattr(self, name), exclusive=True))
    if self.decay > 1:
      raise ValueError(f"decay must lie in (0, 1]; got {self.decay!r}.")

  @functools.cached_property
  def log_potentials(self) -> np.ndarray:
    """``A``: (K, V, V) float32; ``A[k-1, c, v]`` is the boost of ``v`` by ``c`` at lag ``k``."""
    k, v, s = self.order, self.vocab_size, self.support
    rng = np.random.default_rng([self.seed, 2])
    successors = np.argsort(rng.random((k, v, v)), axis=-1)[..., :s]
    boost = self.zipf_exponent * np.log((s + 1) / np.arange(1, s + 1))
    scale = self.strength * self.decay ** np.arange(k)
    a = np.zeros((k, v, v), np.float32)
    np.put_along_axis(a, successors, (scale[:, None, None] * boost).astype(np.float32), axis=-1)
    return a

  def model(self) -> model_lib.SoftmaxModel:
    """The source as a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] over
    [`context_tokens`][explicit_softmax.data.text.context_tokens] features.

    Returns:
      The model with weights ``A`` reshaped to (K V, V) and a zero bias: its
      probabilities are exactly the source's ``p(v | c)``.
    """
    k, v = self.order, self.vocab_size
    return model_lib.SoftmaxModel(self.log_potentials.reshape(k * v, v), np.zeros(v, np.float32))

  def sample(self, n_tokens: int, seed: int | None = None) -> np.ndarray:
    """Generates a token sequence: ``K`` uniform tokens, then draws from ``p(v | c)``.

    Args:
      n_tokens: the length of the sequence.
      seed: the seed of this draw (None: the source's ``seed``); use different
        seeds for independent training and test sequences.

    Returns:
      (n_tokens,) int32 array of tokens in ``[0, vocab_size)``.
    """
    n_tokens, seed = _check_draw(n_tokens, seed, self.seed)
    k = self.order
    rng = np.random.default_rng([seed, 3])
    start = rng.integers(0, self.vocab_size, size=min(k, n_tokens)).astype(np.int32)
    if n_tokens <= k:
      return start
    # Sequential by nature: one lax.scan step per token (numpy would pay
    # interpreter overhead per token), drawing by inverse CDF from numpy's
    # uniforms.
    import jax.numpy as jnp  # JAX loads with the first draw, not with the library
    lags = jnp.asarray(start[::-1].copy())  # lag 1 (the latest token) first
    uniforms = jnp.asarray(rng.random(n_tokens - k), jnp.float32)
    tail = _loglinear_scan()(jnp.asarray(self.log_potentials), lags, uniforms)
    return np.concatenate([start, np.asarray(tail, np.int32)])

  def conditional_entropies(self, tokens: ArrayLike) -> np.ndarray:
    """``H(p(. | c_t))`` in nats for each position ``t >= K`` of ``tokens`` (exact).

    Args:
      tokens: (T,) integer tokens in ``[0, vocab_size)``, e.g. from
        [`sample`][explicit_softmax.data.sources.LogLinearSource.sample].

    Returns:
      (T - K,) float64 conditional entropies of ``p(v | c)``, one per predicted position.

    Raises:
      ValueError: as [`context_tokens`][explicit_softmax.data.text.context_tokens], for tokens it
        refuses.
    """
    features, _ = context_tokens(tokens, self.order, self.vocab_size)
    model = self.model()
    out = np.empty(len(features))
    rows = max(1, 2**22 // self.vocab_size)  # chunks of rows x V floats
    for start in range(0, len(out), rows):
      logits = model.decision_function(features[start:start + rows]).astype(np.float64)
      p = scipy.special.softmax(logits, axis=1)
      out[start:start + rows] = scipy.special.entr(p).sum(axis=1)
    return out

  def estimate_entropy_rate(self, n_tokens: int = 500_000, seed: int = 12345,
                            burn_in: int = 1_000) -> tuple[float, float]:
    """The entropy rate in nats per token, estimated along one long sample.

    The rate of a stationary Markov chain is the stationary mean of the exact
    conditional entropies of ``p(v | c)``; their average over a sample, after a burn-in,
    estimates it. The standard error comes from the means of 50 consecutive
    batches (which absorbs the chain's short-range correlation).

    Args:
      n_tokens: positions averaged (after the burn-in).
      seed: the seed of the sample.
      burn_in: leading tokens discarded (the start is uniform, not stationary).

    Returns:
      ``(estimate, standard_error)``.

    References:
      T. M. Cover and J. A. Thomas, "Elements of Information Theory", 2nd ed.
      (2006), theorem 4.2.4 (the entropy rate of a stationary Markov chain).
    """
    h = self.conditional_entropies(self.sample(n_tokens + burn_in + self.order, seed=seed))
    h = h[burn_in:]
    batches = h[:len(h) // 50 * 50].reshape(50, -1).mean(axis=1)
    return float(h.mean()), float(batches.std(ddof=1) / np.sqrt(len(batches)))


@functools.cache
def _loglinear_scan():
  """The jitted sampler of [`LogLinearSource`][explicit_softmax.data.sources.LogLinearSource]
  (built, with JAX, on first use)."""
  import jax
  import jax.numpy as jnp

  @jax.jit
  def scan(log_potentials, lags, uniforms):
    """Draws ``len(uniforms)`` tokens from ``p(v | c)`` of
    [`LogLinearSource`][explicit_softmax.data.sources.LogLinearSource].

    Args:
      log_potentials: ``A``, (K, V, V).
      lags: (K,) the current context, the latest token (lag 1) first.
      uniforms: (n,) uniforms in [0, 1), one per token, inverted through the CDF.

    Returns:
      (n,) the drawn tokens.
    """
    order, v = log_potentials.shape[:2]

    def step(lags, u):
      logits = log_potentials[jnp.arange(order), lags].sum(axis=0)
      cdf = jnp.cumsum(jnp.exp(logits - logits.max()))
      token = jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"), v - 1)
      return jnp.concatenate([token[None].astype(lags.dtype), lags[:-1]]), token

    return jax.lax.scan(step, lags, uniforms)[1]

  return scan

