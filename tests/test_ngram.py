"""n-gram language models with Kneser-Ney smoothing (``explicit_softmax.ngram``).

Three independent checks of the probabilities: a direct transcription of the
formulas of Chen and Goodman (1998) written here with dictionaries (every
smoothing, every order), NLTK's ``KneserNeyInterpolated`` (fixed discount, in
NLTK's configuration), and the normalisation of every distribution.
"""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from explicit_softmax import ngram
from explicit_softmax.adapters import svd_factors

SMOOTHINGS = ("kneser-ney", "kneser-ney-fixed", "additive")
props = settings(max_examples=40, deadline=None)
few = settings(max_examples=12, deadline=None)


# -- a reference written from the paper: dictionaries, one query at a time -----------

class Reference:
  """Interpolated (modified) Kneser-Ney and additive smoothing, straight from the formulas.

  ``a_k(g)``: the count of ``g`` at the highest order (and at every order for
  additive smoothing), else the number of distinct tokens seen right before
  ``g`` within a sequence. ``p_k(w|c) = max(a - D(a), 0) / A + gamma p_{k-1}(w|c')``
  with ``gamma = sum_w D(a_k(c w)) / A``, ``p_0 = 1/V``; unseen contexts back off.
  """

  def __init__(self, sequences, order, vocab, smoothing, discount=None, pseudo_count=0.1):
    self.n, self.v, self.smoothing, self.s = order, vocab, smoothing, pseudo_count
    self.raw = collections.Counter()
    self.left = collections.defaultdict(set)
    for seq in sequences:
      seq = [int(t) for t in seq]
      for k in range(1, order + 1):
        for i in range(len(seq) - k + 1):
          gram = tuple(seq[i:i + k])
          self.raw[gram] += 1
          if i > 0:
            self.left[gram].add(seq[i - 1])
    if smoothing == "kneser-ney-fixed":
      d = 0.75 if discount is None else discount
      d = [d] * order if np.ndim(d) == 0 else list(d)
      self.discounts = [(x, x, x) for x in d]
    elif smoothing == "kneser-ney":
      self.discounts = (discount if discount is not None
                        else [self._estimate(k) for k in range(1, order + 1)])

  def a(self, gram):
    if self.smoothing == "additive" or len(gram) == self.n:
      return self.raw[gram]
    return len(self.left[gram])

  def _estimate(self, k):
    grams = [g for g in self.raw if len(g) == k]
    n_r = [sum(1 for g in grams if self.a(g) == r) for r in (1, 2, 3, 4)]
    try:
      y = n_r[0] / (n_r[0] + 2 * n_r[1])
      d = [1 - 2 * y * n_r[1] / n_r[0], 2 - 3 * y * n_r[2] / n_r[1],
           3 - 4 * y * n_r[3] / n_r[2]]
    except ZeroDivisionError:
      return (0.5, 1.0, 1.5)
    return tuple(d) if all(0 <= x <= r for x, r in zip(d, (1, 2, 3))) else (0.5, 1.0, 1.5)

  def prob(self, w, context):
    context = tuple(int(c) for c in context)
    if len(context) == 0:
      lower = 1.0 / self.v
    else:
      lower = self.prob(w, context[1:])
    follow = {x: self.a(context + (x,)) for x in range(self.v)}
    total = sum(follow.values())
    if total == 0:
      return lower
    if self.smoothing == "additive":
      return (follow[w] + self.s) / (total + self.v * self.s)
    d = self.discounts[len(context)]
    disc = {x: (0.0 if c == 0 else d[min(c, 3) - 1]) for x, c in follow.items()}
    gamma = sum(disc.values()) / total
    return max(follow[w] - disc[w], 0.0) / total + gamma * lower


@st.composite
def corpora(draw, max_order=5):
  """``(sequences, vocab_size, order)``: a few short sequences over a small vocabulary,
  with tokens of the vocabulary that never occur."""
  seen = draw(st.integers(1, 5))
  vocab = seen + draw(st.integers(0, 2))
  n_seq = draw(st.integers(1, 3))
  sequences = [draw(st.lists(st.integers(0, seen - 1), min_size=0, max_size=40))
               for _ in range(n_seq)]
  if not any(sequences):
    sequences[0] = [0]
  return sequences, vocab, draw(st.integers(1, max_order))


def _queries(rng, vocab, order, n_queries, sequences):
  """Random contexts (mostly unseen) and contexts taken from the corpus (seen)."""
  contexts = [rng.integers(0, vocab, (n_queries, order - 1))]
  seen = [s[i:i + order - 1] for s in sequences for i in range(len(s) - order + 2)]
  if seen and order > 1:
    contexts.append(np.array([seen[i] for i in rng.integers(0, len(seen), n_queries)]))
  return np.concatenate(contexts).astype(np.int64)


# -- every distribution sums to one --------------------------------------------------

@props
@given(corpus=corpora(), smoothing=st.sampled_from(SMOOTHINGS), seed=st.integers(0, 10**6))
def test_every_distribution_sums_to_one_over_the_vocabulary(corpus, smoothing, seed):
  sequences, vocab, order = corpus
  model = es.NgramModel.fit(sequences, order=order, vocab_size=vocab, smoothing=smoothing)
  rng = np.random.default_rng(seed)
  contexts = _queries(rng, vocab, order, 20, sequences)
  p = model.predict_proba(contexts)
  assert p.shape == (len(contexts), vocab)
  np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
  assert (p > 0).all()  # positive discounts and the uniform base: no zero
  targets = rng.integers(0, vocab, len(contexts))
  np.testing.assert_allclose(model.log_prob(contexts, targets),
                             np.log(p[np.arange(len(targets)), targets]), rtol=0, atol=1e-12)


@few
@given(corpus=corpora(), seed=st.integers(0, 10**6))
def test_distributions_sum_to_one_with_a_zero_unigram_discount(corpus, seed):
  """NLTK's configuration leaves zeros, still normalised."""
  sequences, vocab, order = corpus
  model = es.NgramModel.fit(sequences, order=order, vocab_size=vocab,
                            smoothing="kneser-ney-fixed", discount=[0.0] + [0.6] * (order - 1))
  p = model.predict_proba(_queries(np.random.default_rng(seed), vocab, order, 20, sequences))
  np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_an_order_seven_model_is_normalised_too():
  tokens = np.random.default_rng(0).integers(0, 4, 3000)
  model = es.NgramModel.fit(tokens, order=7, vocab_size=5)
  contexts = np.concatenate([np.lib.stride_tricks.sliding_window_view(tokens, 6)[:50],
                             np.random.default_rng(1).integers(0, 5, (50, 6))])
  np.testing.assert_allclose(model.predict_proba(contexts).sum(axis=1), 1.0, atol=1e-12)


# -- against the reference written from the paper ------------------------------------

@props
@given(corpus=corpora(), smoothing=st.sampled_from(SMOOTHINGS), seed=st.integers(0, 10**6))
def test_probabilities_equal_the_reference_from_the_paper(corpus, smoothing, seed):
  sequences, vocab, order = corpus
  model = es.NgramModel.fit(sequences, order=order, vocab_size=vocab, smoothing=smoothing)
  ref = Reference(sequences, order, vocab, smoothing)
  if smoothing == "kneser-ney":
    np.testing.assert_allclose(model.discounts, np.array(ref.discounts), rtol=0, atol=1e-12)
  contexts = _queries(np.random.default_rng(seed), vocab, order, 6, sequences)
  expected = np.array([[ref.prob(w, c) for w in range(vocab)] for c in contexts])
  np.testing.assert_allclose(model.predict_proba(contexts), expected, rtol=1e-12, atol=1e-15)


def test_modified_discounts_follow_the_counts_of_counts():
  rng = np.random.default_rng(0)
  tokens = rng.zipf(1.5, 20000) % 300
  model = es.NgramModel.fit(tokens, order=3, vocab_size=300)
  trigram = collections.Counter(zip(tokens, tokens[1:], tokens[2:])).values()
  n1, n2, n3, n4 = (sum(1 for c in trigram if c == r) for r in (1, 2, 3, 4))
  y = n1 / (n1 + 2 * n2)
  expected = [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
  np.testing.assert_allclose(model.discounts[2], expected, rtol=1e-12)
  assert 3 not in model.info["discount_fallback_orders"]


def test_undefined_discounts_fall_back_to_kenlm_defaults():
  model = es.NgramModel.fit([0, 1, 2, 3], order=2, vocab_size=4)  # every count is 1
  np.testing.assert_array_equal(model.discounts, [ngram.FALLBACK_DISCOUNTS] * 2)
  assert model.info["discount_fallback_orders"] == [1, 2]


def test_given_discounts_are_used_as_given():
  tokens = np.random.default_rng(2).integers(0, 6, 500)
  d = np.array([[0.3, 0.9, 1.1], [0.5, 1.2, 2.0], [0.7, 1.5, 2.5]])
  model = es.NgramModel.fit(tokens, order=3, vocab_size=6, discount=d)
  ref = Reference([tokens], 3, 6, "kneser-ney", discount=[tuple(r) for r in d])
  contexts = np.array([[1, 2], [5, 5], [0, 3]])
  expected = [[ref.prob(w, c) for w in range(6)] for c in contexts]
  np.testing.assert_allclose(model.predict_proba(contexts), expected, rtol=1e-12)


@few
@given(corpus=corpora(max_order=4))
def test_counts_and_continuation_counts_equal_a_brute_force_count(corpus):
  sequences, vocab, order = corpus
  model = es.NgramModel.fit(sequences, order=order, vocab_size=vocab)
  ref = Reference(sequences, order, vocab, "kneser-ney-fixed")
  for k in range(1, order + 1):
    grams = sorted(g for g in ref.raw if len(g) == k)
    assert len(model.keys[k - 1]) == len(grams)
    assert model.counts[k - 1].tolist() == [ref.raw[g] for g in grams]
    if k < order:
      assert model.continuation[k - 1].tolist() == [len(ref.left[g]) for g in grams]


@pytest.mark.parametrize("vocab", [
    2**15,  # (V+1)^4 fits in 64 bits, (V+1)^4 T does not: argsort of the keys
    10**6,  # (V+1)^4 beyond 64 bits: a lexicographic sort of the window columns
])
def test_every_sort_of_the_windows_counts_the_same(vocab):
  """The same text spelled with small ids (keys and window indices packed into one
  sorted integer) and with large ids."""
  rng = np.random.default_rng(5)
  small = rng.integers(0, 8, 400)
  tokens = small * (vocab // 8) + 3
  big = es.NgramModel.fit(tokens, order=4, vocab_size=vocab)
  little = es.NgramModel.fit(small, order=4, vocab_size=8)
  for k in range(4):
    np.testing.assert_array_equal(big.counts[k], little.counts[k])
    if k < 3:
      np.testing.assert_array_equal(big.continuation[k], little.continuation[k])
  np.testing.assert_allclose(big.discounts, little.discounts)


# -- against NLTK -----------------------------------------------------------------------

@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("discount", [0.75, 0.4])
def test_fixed_discount_equals_nltk_kneser_ney_interpolated(order, discount):
  """NLTK's ``KneserNeyInterpolated(order, discount=D)`` fitted on unpadded everygrams.

  The configuration compared: one discount D at orders 2..n and an undiscounted
  unigram level ``N_1+(. w) / N_1+(. .)`` (``discount=[0, D, ..., D]``), which is
  NLTK's convention (it does not interpolate with the uniform distribution).
  Token 7 never occurs (NLTK maps it to its unknown word). The corpus is a text
  repeated twice, so that its first k-grams also occur
  after another token: NLTK's gamma counts the words after a context by their
  plain counts, ours by their continuation counts, and the two differ (NLTK's
  then does not sum to 1) only for k-grams seen at a sequence start alone. Every
  context over the vocabulary is compared, seen and unseen.
  """
  from nltk import lm as lm_module  # the test extra
  from nltk.util import everygrams
  rng = np.random.default_rng(order)
  vocab = 7
  half = rng.integers(0, vocab, 90)
  tokens = np.concatenate([half, half])
  words = [str(t) for t in tokens]
  reference = lm_module.KneserNeyInterpolated(order, discount=discount)
  reference.fit([list(everygrams(words, max_len=order))], words)
  model = es.NgramModel.fit(tokens, order=order, vocab_size=vocab + 1,
                            smoothing="kneser-ney-fixed", discount=[0.0] + [discount] * (order - 1))
  contexts = np.array(list(itertools.product(range(vocab + 1), repeat=order - 1)))
  expected = np.array([[reference.score(str(w), [str(c) for c in ctx])
                        for w in range(vocab + 1)] for ctx in contexts])
  np.testing.assert_allclose(model.predict_proba(contexts), expected, rtol=0, atol=1e-9)
  assert len(set(map(tuple, np.lib.stride_tricks.sliding_window_view(
      tokens, order - 1)))) < len(contexts)  # some contexts are unseen


def test_sequences_equal_nltk_sentences():
  from nltk import lm as lm_module  # the test extra
  from nltk.util import everygrams
  rng = np.random.default_rng(11)
  parts = [rng.integers(0, 5, 30) for _ in range(3)]
  sequences = [np.concatenate([p, p]) for p in parts]
  reference = lm_module.KneserNeyInterpolated(3, discount=0.75)
  reference.fit([list(everygrams([str(t) for t in s], max_len=3)) for s in sequences],
                [str(t) for s in sequences for t in s])
  model = es.NgramModel.fit(sequences, order=3, vocab_size=5, smoothing="kneser-ney-fixed",
                            discount=[0.0, 0.75, 0.75])
  contexts = np.array(list(itertools.product(range(5), repeat=2)))
  expected = [[reference.score(str(w), [str(c) for c in ctx]) for w in range(5)]
              for ctx in contexts]
  np.testing.assert_allclose(model.predict_proba(contexts), expected, rtol=0, atol=1e-9)


# -- the link to the softmax layer -------------------------------------------------------

def _bigram_data(seed=0, vocab=30, n_tokens=3000):
  source = es.data.MarkovSource(vocab, order=1, support=6, seed=seed)
  return source.sample(n_tokens, seed=seed + 1)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_a_bigram_model_is_explicit_softmax_weights(smoothing):
  """W[i, j] = log p(j | i): the SoftmaxModel predicts the same on one-hot contexts.

  The weights are stored in float32: each log-probability is rounded by at most
  |W| 2^-24, log_softmax of a row moves by at most twice the largest rounding,
  and evaluated in float32 it adds a rounding of its result and of a sum of V
  exponentials (relative error at most V 2^-24).
  """
  vocab = 30
  tokens = _bigram_data(vocab=vocab)
  lm = es.NgramModel.fit(tokens, order=2, vocab_size=vocab, smoothing=smoothing)
  softmax = lm.to_softmax_model()
  assert softmax.weights.shape == (vocab, vocab) and not softmax.bias.any()
  x, y = es.data.context_tokens(_bigram_data(seed=3, vocab=vocab, n_tokens=500), 1, vocab)
  bound = float(3 * np.abs(softmax.weights).max() + vocab + 4) * 2.0**-24
  np.testing.assert_allclose(softmax.predict_log_proba(x), lm.predict_log_proba(x.ids),
                             rtol=0, atol=bound)
  np.testing.assert_allclose(lm.log_prob(x, y), lm.log_prob(x.ids[:, 0], y), rtol=0, atol=0)
  assert softmax.log_loss(x, y) == pytest.approx(-lm.log_prob(x, y).mean(), abs=bound)


def test_additive_bigrams_equal_the_sparse_count_model_on_seen_contexts():
  """Tokens 30 and 31 never occur: SparseCountModel is uniform after them, the
  n-gram model backs off to the additive unigram."""
  vocab = 32
  tokens = _bigram_data(vocab=30, n_tokens=400)
  lm = es.NgramModel.fit(tokens, order=2, vocab_size=vocab, smoothing="additive",
                         pseudo_count=0.3)
  x, y = es.data.context_tokens(tokens, 1, vocab)
  counts = es.SparseCountModel.fit(x, y, n_classes=vocab, smoothing=0.3)
  seen = es.TokenFeatures(np.unique(x.ids[:, 0])[:, None], vocab)
  np.testing.assert_allclose(lm.predict_log_proba(seen), counts.predict_log_proba(seen),
                             rtol=1e-12)
  unseen = es.TokenFeatures(np.array([[30], [31]]), vocab)
  np.testing.assert_allclose(counts.predict_proba(unseen), 1 / vocab, rtol=1e-12)
  unigram = (np.bincount(tokens, minlength=vocab) + 0.3) / (len(tokens) + vocab * 0.3)
  np.testing.assert_allclose(lm.predict_proba(unseen), [unigram, unigram], rtol=1e-12)


def test_the_svd_initialiser_takes_a_bigram_model_as_its_source():
  vocab = 30
  lm = es.NgramModel.fit(_bigram_data(vocab=vocab), order=2, vocab_size=vocab)
  factors = svd_factors(lm, vocab)  # full rank: the logits up to the softmax shift
  ids = np.arange(vocab)
  logits = factors.logits(ids).astype(np.float64)
  log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                          keepdims=True)) - logits.max(1, keepdims=True)
  # float32 factors of a matrix of norm |C|: errors of a few float32 units of |C|.
  tol = 64 * 2.0**-24 * np.abs(lm.to_softmax_model().weights).max() * vocab
  np.testing.assert_allclose(log_p, lm.predict_log_proba(ids), rtol=0, atol=tol)
  low = svd_factors(lm, 4)
  assert low.embedding.shape == (vocab, 4) and low.head.shape == (4, vocab)


def test_only_bigram_models_are_softmax_weights():
  lm = es.NgramModel.fit(_bigram_data(), order=3, vocab_size=30)
  with pytest.raises(ValueError, match="order=2"):
    lm.to_softmax_model()
  with pytest.raises(ValueError, match="order=2"):
    svd_factors(lm, 4)
  zero = es.NgramModel.fit(_bigram_data(), order=2, vocab_size=31,
                           smoothing="kneser-ney-fixed", discount=[0.0, 0.5])
  with pytest.raises(ValueError, match="probabilities are 0"):
    zero.to_softmax_model()


def test_token_features_are_read_with_the_previous_token_first():
  tokens = np.random.default_rng(4).integers(0, 9, 2000)
  lm = es.NgramModel.fit(tokens, order=4, vocab_size=9)
  x, y = es.data.context_tokens(tokens, 3, 9)
  windows = np.lib.stride_tricks.sliding_window_view(tokens, 4)
  np.testing.assert_array_equal(lm.log_prob(x, y), lm.log_prob(windows[:, :3], windows[:, 3]))
  with pytest.raises(ValueError, match="context tokens"):
    lm.log_prob(es.data.context_tokens(tokens, 2, 9)[0], y[:-1])


# -- evaluation, generation, files -------------------------------------------------------

def test_perplexity_is_the_exponential_of_the_mean_negative_log_probability():
  tokens = np.random.default_rng(6).integers(0, 12, 3000)
  lm = es.NgramModel.fit(tokens[:2500], order=3, vocab_size=12)
  test = tokens[2500:]
  w = np.lib.stride_tricks.sliding_window_view(test, 3)
  assert lm.perplexity(test) == pytest.approx(np.exp(-lm.log_prob(w[:, :2], w[:, 2]).mean()),
                                              rel=1e-12)
  both = lm.perplexity([test[:200], test[200:]])
  w2 = np.concatenate([np.lib.stride_tricks.sliding_window_view(p, 3)
                       for p in (test[:200], test[200:])])
  assert both == pytest.approx(np.exp(-lm.log_prob(w2[:, :2], w2[:, 2]).mean()), rel=1e-12)
  unigram = es.NgramModel.fit(tokens, order=1, vocab_size=12)
  assert unigram.perplexity(test) == pytest.approx(
      np.exp(-unigram.log_prob(None, test).mean()))


def test_sequences_do_not_join_into_ngrams():
  lm = es.NgramModel.fit([[0, 1], [2, 3]], order=2, vocab_size=4)
  assert lm.counts[1].tolist() == [1, 1]  # (0, 1) and (2, 3), never (1, 2)
  joined = es.NgramModel.fit([0, 1, 2, 3], order=2, vocab_size=4)
  assert joined.counts[1].tolist() == [1, 1, 1]


def test_sampling_draws_from_the_model():
  """The first token after a fixed context, over many seeds, follows p(. | context)
  within five binomial standard deviations."""
  tokens = _bigram_data(vocab=8, n_tokens=2000)
  lm = es.NgramModel.fit(tokens, order=3, vocab_size=8)
  context = tokens[:2]
  draws = np.array([lm.sample(context, 1, seed=s)[0] for s in range(3000)])
  p = lm.predict_proba(context[None, :])[0]
  freq = np.bincount(draws, minlength=8) / len(draws)
  np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / len(draws)) + 1e-3)
  run = lm.sample(context, 50, seed=1)
  assert run.shape == (50,) and run.min() >= 0 and run.max() < 8
  np.testing.assert_array_equal(run, lm.sample(context, 50, seed=1))
  assert es.NgramModel.fit(tokens, order=1, vocab_size=8).sample([], 5, seed=0).shape == (5,)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_save_and_load_give_the_same_model(tmp_path, smoothing):
  tokens = np.random.default_rng(7).integers(0, 20, 4000)
  lm = es.NgramModel.fit(tokens, order=3, vocab_size=21, smoothing=smoothing)
  path = tmp_path / "lm.npz"
  lm.save(path)
  back = es.NgramModel.load(path)
  assert back.smoothing == smoothing and back.order == 3 and back.vocab_size == 21
  assert dict(back.info) == dict(lm.info)
  contexts = np.random.default_rng(8).integers(0, 21, (100, 2))
  np.testing.assert_array_equal(back.predict_log_proba(contexts), lm.predict_log_proba(contexts))
  with np.load(path, allow_pickle=False) as data:  # plain arrays, no pickled objects
    assert all(data[name].dtype != object for name in data.files)


def test_load_refuses_other_files(tmp_path):
  model = es.SoftmaxModel(np.zeros((2, 2)), np.zeros(2))
  model.save(tmp_path / "softmax.npz")
  with pytest.raises(ValueError, match="not a NgramModel file"):
    es.NgramModel.load(tmp_path / "softmax.npz")
  (tmp_path / "text.npz").write_text("not a zip")
  with pytest.raises(ValueError, match="NgramModel"):
    es.NgramModel.load(tmp_path / "text.npz")
  with pytest.raises(ValueError, match="does not exist"):
    es.NgramModel.load(tmp_path / "missing.npz")


def test_with_smoothing_reuses_the_counts():
  tokens = np.random.default_rng(9).integers(0, 10, 3000)
  kn = es.NgramModel.fit(tokens, order=3, vocab_size=10)
  for smoothing, kwargs in (("additive", {"pseudo_count": 0.5}),
                            ("kneser-ney-fixed", {"discount": 0.6})):
    direct = es.NgramModel.fit(tokens, order=3, vocab_size=10, smoothing=smoothing, **kwargs)
    other = kn.with_smoothing(smoothing, **kwargs)
    contexts = np.array([[1, 2], [3, 3]])
    np.testing.assert_array_equal(other.predict_proba(contexts), direct.predict_proba(contexts))


def test_memory_is_proportional_to_the_observed_ngrams():
  """V = 10^6 never allocates a V^2 (or V^n) table."""
  tokens = np.random.default_rng(10).integers(0, 10**6, 20000)
  lm = es.NgramModel.fit(tokens, order=3, vocab_size=10**6)
  assert lm.nbytes < 60 * sum(lm.info["n_types"])
  assert np.isfinite(lm.perplexity(tokens[:500]))


def test_the_demo_shows_kneser_ney_beside_the_softmax_models(capsys):
  from explicit_softmax import cli
  status = cli.main(["demo", "--vocab-size", "40", "--tokens", "4000", "--support", "8",
                     "--seconds", "0.3"])
  out = capsys.readouterr().out
  assert status == 0
  lines = out.split("held-out perplexity")[1].splitlines()
  values = {line[:36].strip(): float(line.split()[-1]) for line in lines[2:] if line.strip()}
  assert set(values) == {"Kneser-Ney bigram (es.NgramModel)", "explicit co-occurrence (1 call)",
                         next(k for k in values if k.startswith("adam from zero")),
                         "entropy rate of the source (floor)"}
  floor = values.pop("entropy rate of the source (floor)")
  assert all(floor < value <= 40.01 for value in values.values())  # 40: a uniform guess
  assert values["Kneser-Ney bigram (es.NgramModel)"] < 40


# -- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens, kwargs, match", [
    ([0.5, 1.0], {}, "integer token ids"),
    ([[0, 1], ["a"]], {}, "integer token ids"),
    ([-1, 2], {}, r"\[0, vocab_size"),
    ([0, 5], {"vocab_size": 5}, r"\[0, vocab_size=5\)"),
    ([], {}, "no token"),
    ([[], []], {}, "no token"),
    ([0, 1], {"order": 0}, "order must be a positive integer"),
    ([0, 1], {"order": 2.0}, "order must be a positive integer"),
    ([0, 1], {"smoothing": "good-turing"}, "smoothing='good-turing' is unknown"),
    ([0, 1], {"smoothing": "kneser-ney-fixed", "discount": 1.5}, r"in \[0, 1\]"),
    ([0, 1], {"smoothing": "kneser-ney", "discount": 0.5}, r"\(2, 3\) array"),
    ([0, 1], {"smoothing": "kneser-ney", "discount": [[1.2, 1, 1], [0.5, 1, 1]]}, "D1 <= 1"),
    ([0, 1], {"smoothing": "additive", "discount": 0.5}, "pseudo_count"),
    ([0, 1], {"smoothing": "additive", "pseudo_count": 0}, "pseudo_count must be"),
])
def test_fit_refuses_bad_input_with_a_clear_message(tokens, kwargs, match):
  kwargs = {"order": 2, **kwargs}
  with pytest.raises(ValueError, match=match):
    es.NgramModel.fit(tokens, **kwargs)


def test_the_constructor_checks_the_counts():
  lm = es.NgramModel.fit(np.arange(20) % 5, order=2, vocab_size=5)
  with pytest.raises(ValueError, match="sorted key arrays"):
    es.NgramModel(2, 5, lm.keys, (lm.counts[0], lm.counts[1][:-1]), lm.continuation)
  with pytest.raises(ValueError, match="sorted key arrays"):
    es.NgramModel(2, 5, (lm.keys[0][::-1], lm.keys[1]), lm.counts, lm.continuation)
  rebuilt = es.NgramModel(2, 5, lm.keys, lm.counts, lm.continuation)
  np.testing.assert_array_equal(rebuilt.predict_proba([[1], [4]]), lm.predict_proba([[1], [4]]))


def test_queries_are_checked():
  lm = es.NgramModel.fit(np.arange(20) % 5, order=3, vocab_size=5)
  with pytest.raises(ValueError, match=r"shape \(n_samples, 2\)"):
    lm.log_prob(np.zeros((4, 3), int), np.zeros(4, int))
  with pytest.raises(ValueError, match="targets must be token ids"):
    lm.log_prob(np.zeros((2, 2), int), [0, 5])
  with pytest.raises(ValueError, match="contexts must be token ids"):
    lm.log_prob([[0, -1]], [0])
  with pytest.raises(ValueError, match="integer token ids"):
    lm.log_prob(np.zeros((1, 2)), [0])
  with pytest.raises(ValueError, match="contexts and targets"):
    lm.log_prob(np.zeros((3, 2), int), [0, 1])
  with pytest.raises(ValueError, match="at least 2 tokens"):
    lm.sample([1], 3)
  with pytest.raises(ValueError, match="at least 3 tokens"):
    lm.perplexity([1, 2])
  big = es.NgramModel.fit(np.arange(100), order=2, vocab_size=2**20)
  with pytest.raises(ValueError, match="dense"):
    big.predict_log_proba(np.zeros(100, int))
  with pytest.raises(ValueError, match="dense weight matrix"):
    big.to_softmax_model()


# -- tiny Shakespeare, the protocol ----------------------------------------------

@pytest.mark.slow
def test_tiny_shakespeare_words_meet_the_perplexity_targets():
  """Bigram and trigram modified KN at most the fixed-discount reference's 164 and 162,
  and below this library's fixed-discount and additive models."""
  from explicit_softmax.bench import ngram as bench_ngram
  from explicit_softmax.bench import _harness
  _harness.use_checkout_data()
  train, test, vocab = bench_ngram.word_corpus(_harness.tiny_shakespeare())
  assert vocab == 6482
  for order, target in ((2, 164), (3, 162)):
    kn = es.NgramModel.fit(train, order=order, vocab_size=vocab)
    fixed = kn.with_smoothing("kneser-ney-fixed")
    additive = kn.with_smoothing("additive", pseudo_count=0.01)
    assert kn.perplexity(test) <= target
    assert kn.perplexity(test) < fixed.perplexity(test) < additive.perplexity(test)
