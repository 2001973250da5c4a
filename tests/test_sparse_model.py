"""The sparse co-occurrence model for large vocabularies (``explicit_softmax.sparse_model``)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from explicit_softmax.data import MarkovSource, context_tokens
from explicit_softmax.sparse_model import SparseCountModel

small = settings(max_examples=8, deadline=None)


def _tokens(vocab, order, n_tokens, seed, support=6):
  source = MarkovSource(vocab, order=order, support=min(support, vocab), seed=seed)
  return context_tokens(source.sample(n_tokens, seed=seed + 1), order, vocab)


@small
@given(seed=st.integers(0, 1000), k=st.integers(1, 3), vocab=st.integers(2, 25),
       smoothing=st.sampled_from([0.01, 0.1, 1.0]), weighted=st.booleans())
def test_equals_the_dense_cooccurrence_model(seed, k, vocab, smoothing, weighted):
  x, y = _tokens(vocab, k, 400, seed)
  w = np.random.default_rng(seed).random(len(y)) if weighted else None
  sparse = SparseCountModel.fit(x, y, n_classes=vocab, smoothing=smoothing, sample_weight=w)
  dense = es.fit(x, y, n_classes=vocab, method="cooccurrence", smoothing=smoothing,
                 sample_weight=w)
  np.testing.assert_allclose(sparse.to_dense().weights, dense.weights, rtol=1e-6, atol=1e-6)
  assert sparse.to_dense().info["mean_feature_mass"] == pytest.approx(
      dense.info["mean_feature_mass"])
  # Held-out data, with contexts never seen in training (uniform rows).
  xt, yt = _tokens(vocab, k, 200, seed + 7)
  assert sparse.log_loss(xt, yt) == pytest.approx(dense.log_loss(xt, yt), rel=1e-5, abs=1e-6)
  np.testing.assert_allclose(sparse.predict_log_proba(xt), dense.predict_log_proba(xt),
                             atol=1e-5)
  np.testing.assert_allclose(sparse.predict_proba(xt).sum(axis=1), 1, rtol=1e-12)
  np.testing.assert_allclose(sparse.log_prob(xt, yt),
                             sparse.predict_log_proba(xt)[np.arange(len(yt)), yt], atol=1e-12)
  log_p = sparse.predict_log_proba(xt)  # the predicted class is a maximiser (ties aside)
  picked = log_p[np.arange(len(yt)), sparse.predict(xt)]
  np.testing.assert_allclose(picked, log_p.max(axis=1), rtol=0, atol=1e-12)


def test_bigram_predictions_match_the_dense_model():
  x, y = _tokens(40, 1, 3000, 0, support=5)
  sparse = SparseCountModel.fit(x, y, n_classes=40)
  dense = es.fit(x, y, n_classes=40, method="cooccurrence")
  np.testing.assert_array_equal(sparse.predict(x), dense.predict(x))
  # K = 1: the smoothed conditional (F_ij + s) / (f_i + M s).
  f_mat = sparse.counts.toarray()
  ids = x.ids[:, 0]
  expected = np.log((f_mat[ids, y] + 0.1) / (f_mat[ids].sum(1) + 40 * 0.1))
  np.testing.assert_allclose(sparse.log_prob(x, y), expected, rtol=1e-12)


def test_counts_add_up_over_batches():
  x, y = _tokens(30, 2, 1000, 3)
  whole = SparseCountModel.fit(x, y, n_classes=30)
  cuts = [0, 123, 600, len(y)]
  parts = SparseCountModel.from_batches(
      ((x[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:])), n_classes=30)
  assert (whole.counts != parts.counts).nnz == 0
  assert parts.n_samples == whole.n_samples and parts.total_weight == whole.total_weight
  assert whole.with_smoothing(0.5).log_loss(x, y) == pytest.approx(
      SparseCountModel.fit(x, y, n_classes=30, smoothing=0.5).log_loss(x, y))


def test_fifty_thousand_tokens_never_densify():
  """V = 50,000: a dense W is 10 GB; fitting, log-loss, predict and sample stay small."""
  vocab = 50_000
  x, y = _tokens(vocab, 1, 20_000, 5, support=50)
  xt, yt = _tokens(vocab, 1, 5_000, 6, support=50)
  tracemalloc.start()
  model = SparseCountModel.fit(x, y, n_classes=vocab)
  loss = model.log_loss(xt, yt)
  pred = model.predict(xt)
  tokens = model.sample([int(x.ids[0, 0])], 50, seed=0)
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  assert peak < 32 * 2**20  # a dense W would be 10 GB
  # The smoothed conditional, looked up entry by entry in the sparse counts.
  ids = xt.ids[:, 0]
  pairs = np.asarray(model.counts[ids, yt]).ravel()
  f = np.asarray(model.counts.sum(axis=1)).ravel()[ids]
  assert loss == pytest.approx(-np.log((pairs + 0.1) / (f + vocab * 0.1)).mean(), rel=1e-12)
  assert pred.shape == (len(yt),) and tokens.shape == (50,)
  assert tokens.min() >= 0 and tokens.max() < vocab
  with pytest.raises(ValueError, match="dense"):
    model.to_dense()
  with pytest.raises(ValueError, match="at most"):
    model.predict_log_proba(xt)


@pytest.mark.parametrize("k", [1, 2])
def test_sample_draws_from_the_model(k):
  """Single-step draws follow predict_proba (total variation < 0.06 over 3,000 draws)."""
  vocab = 8
  x, y = _tokens(vocab, k, 500, 11, support=3)
  model = SparseCountModel.fit(x, y, n_classes=vocab, smoothing=0.5)
  context = [3, 5][:k]
  draws = np.array([model.sample(context, 1, seed=s)[0] for s in range(3000)])
  freq = np.bincount(draws, minlength=vocab) / len(draws)
  # Context column 0 is the most recent token: the last one of `context`.
  ids = np.array(context[::-1])[None, :]
  p = model.predict_proba(es.TokenFeatures(ids, vocab))[0]
  assert 0.5 * np.abs(freq - p).sum() < 0.06


def test_sample_feeds_tokens_back_and_is_reproducible():
  x, y = _tokens(20, 1, 3000, 2, support=1)  # one deterministic successor per token
  model = SparseCountModel.fit(x, y, n_classes=20, smoothing=1e-9)
  start = int(x.ids[-1, 0])  # on the chain's cycle, so every context ahead was seen
  out = model.sample([start], 30, seed=1)
  np.testing.assert_array_equal(out, model.sample([0, start], 30, seed=1))  # last K tokens
  source = MarkovSource(20, order=1, support=1, seed=2)
  history = [start]
  for token in out:
    assert token == source.successors(history[-1:])[0]
    history.append(int(token))
  x2, y2 = _tokens(20, 2, 500, 2)
  model2 = SparseCountModel.fit(x2, y2, n_classes=20)
  np.testing.assert_array_equal(model2.sample([3, 4, 9], 40, seed=5),
                                model2.sample([4, 9], 40, seed=5))


def test_invalid_inputs_raise_value_errors():
  x, y = _tokens(10, 1, 200, 0)
  with pytest.raises(ValueError, match="TokenFeatures"):
    SparseCountModel.fit(x.to_csr(), y)
  with pytest.raises(ValueError, match="soft labels"):
    SparseCountModel.fit(x, np.full((len(y), 10), 0.1))
  with pytest.raises(ValueError, match="smoothing must be a finite number > 0"):
    SparseCountModel.fit(x, y, smoothing=0.0)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, n_classes=3\)"):
    SparseCountModel.fit(x, y, n_classes=3)
  model = SparseCountModel.fit(x, y, n_classes=10)
  with pytest.raises(ValueError, match="fitted on 1 over 10"):
    model.log_loss(es.TokenFeatures(np.zeros((3, 2), np.int64), 10), np.zeros(3, np.int64))
  with pytest.raises(ValueError, match="at least 1 tokens"):
    model.sample([], 3)
  with pytest.raises(ValueError, match="n_classes=vocab_size"):
    SparseCountModel.fit(x, y % 4, n_classes=4).sample([1], 3)
  with pytest.raises(ValueError, match="multiple of vocab_size"):
    SparseCountModel(sp.csr_matrix((7, 3)), 2, 1.0, 1)
