"""Properties of the sufficient statistics (``explicit_softmax.statistics``)."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from conftest import dense_data

small = settings(max_examples=20, deadline=None)


def _assert_same_stats(a: es.SoftmaxStats, b: es.SoftmaxStats):
  np.testing.assert_allclose(a.cooccurrence, b.cooccurrence, rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(a.class_mass, b.class_mass, rtol=1e-12)
  assert a.total_weight == pytest.approx(b.total_weight, rel=1e-12)
  assert a.mass_sq == pytest.approx(b.mass_sq, rel=1e-6)
  assert a.n_samples == b.n_samples
  if a.gram is not None:
    np.testing.assert_allclose(a.gram, b.gram, rtol=1e-6, atol=1e-9)


@small
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 149), max_size=6),
       gram=st.booleans())
def test_any_split_and_merge_order_gives_the_same_statistics_and_weights(seed, cuts, gram):
  """Property 2: statistics are additive, so batches and merge order do not matter."""
  rng = np.random.default_rng(seed)
  x, y = dense_data(rng, 150, 5, 3)
  whole = es.SoftmaxStats.from_data(x, y, n_classes=3, gram=gram)
  bounds = [0, *sorted(set(cuts)), 150]
  parts = [es.SoftmaxStats.from_data(x[a:b], y[a:b], n_classes=3, gram=gram)
           for a, b in zip(bounds[:-1], bounds[1:])]
  rng.shuffle(parts)
  merged = functools.reduce(lambda u, v: u + v, parts)
  _assert_same_stats(whole, merged)
  streamed = es.SoftmaxStats.empty(5, 3, gram=gram)
  for a, b in zip(bounds[:-1], bounds[1:]):
    streamed = streamed.update(x[a:b], y[a:b])
  _assert_same_stats(whole, streamed)
  method = "newton" if gram else "cooccurrence"
  np.testing.assert_allclose(es.solve(merged, method).weights, es.solve(whole, method).weights,
                             rtol=1e-5, atol=1e-6)


def test_split_independence_at_scale():
  """A 50,000-row float array split at odd places agrees to 1e-6 relative."""
  rng = np.random.default_rng(0)
  x = rng.random((50_000, 20), dtype=np.float32)
  y = rng.integers(0, 4, 50_000)
  whole = es.SoftmaxStats.from_data(x, y)
  parts = es.SoftmaxStats.from_data(x[:777], y[:777]) + es.SoftmaxStats.from_data(
      x[777:33_333], y[777:33_333]) + es.SoftmaxStats.from_data(x[33_333:], y[33_333:])
  np.testing.assert_allclose(parts.cooccurrence, whole.cooccurrence, rtol=1e-6)


@small
@given(seed=st.integers(0, 10_000))
def test_dense_sparse_jax_and_uint8_inputs_give_the_same_model(seed):
  """Property 7: every input kind gives the same statistics and model."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 4, size=(80, 6)).astype(np.uint8)
  x[:, 0] = 1
  y = rng.integers(0, 3, 80)
  ref = es.SoftmaxStats.from_data(x.astype(np.float32), y, n_classes=3, gram=True)
  for variant in (x, sp.csr_matrix(x), sp.csc_matrix(x.astype(np.float64)), jnp.asarray(x)):
    _assert_same_stats(ref, es.SoftmaxStats.from_data(variant, y, n_classes=3, gram=True))
  a, b = es.solve(ref), es.fit(sp.coo_matrix(x), y, n_classes=3, method="cooccurrence")
  np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6)


def test_token_features_equal_their_one_hot_matrix():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 7, size=(300, 3))
  y = rng.integers(0, 5, 300)
  tokens = es.TokenFeatures(ids, 7)
  dense = tokens.to_csr().toarray()
  assert dense.shape == (300, 21) and (dense.sum(1) == 3).all()
  _assert_same_stats(es.SoftmaxStats.from_data(dense, y, n_classes=5, gram=True),
                     es.SoftmaxStats.from_data(tokens, y, n_classes=5, gram=True))
  model = es.fit(tokens, y, n_classes=5, method="cooccurrence")
  assert model.info["mean_feature_mass"] == pytest.approx(3.0)
  np.testing.assert_allclose(model.predict_proba(tokens), model.predict_proba(dense), rtol=1e-5)


def test_sample_weights_equal_repeated_samples():
  rng = np.random.default_rng(2)
  x, y = dense_data(rng, 50, 4, 3)
  reps = rng.integers(0, 4, 50)
  reps[0] = 1
  weighted = es.SoftmaxStats.from_data(x, y, sample_weight=reps, gram=True)
  keep = reps > 0
  repeated = es.SoftmaxStats.from_data(np.repeat(x, reps, 0), np.repeat(y, reps), gram=True)
  np.testing.assert_allclose(weighted.cooccurrence, repeated.cooccurrence, rtol=1e-6)
  np.testing.assert_allclose(weighted.gram, repeated.gram, rtol=1e-6)
  assert weighted.total_weight == repeated.total_weight
  assert keep.any()


def test_soft_labels_equal_hard_labels_when_one_hot():
  x, y = dense_data(np.random.default_rng(4), 40, 4, 3)
  soft = np.eye(3)[y]
  _assert_same_stats(es.SoftmaxStats.from_data(x, y), es.SoftmaxStats.from_data(x, soft))


def test_one_hot_csr_with_many_columns_is_never_densified():
  """200,000 columns x 100,000 rows would be 80 GB dense; the sparse path is O(nnz)."""
  rng = np.random.default_rng(0)
  t, n = 100_000, 200_000
  x = sp.csr_matrix((np.ones(t, np.float32), rng.integers(0, n, t), np.arange(t + 1)),
                    shape=(t, n))
  y = rng.integers(0, 3, t)
  model = es.fit(x, y, n_classes=3, method="cooccurrence")
  assert model.weights.shape == (n, 3)
  assert np.isfinite(model.log_loss(x[:1000], y[:1000]))


def test_merging_incompatible_statistics_is_refused():
  x, y = dense_data(np.random.default_rng(0), 30, 4, 3)
  a = es.SoftmaxStats.from_data(x, y, n_classes=3)
  with pytest.raises(ValueError, match="n_classes"):
    a + es.SoftmaxStats.from_data(x, np.zeros(30, int))  # inferred M = 1
  with pytest.raises(ValueError, match="Gram"):
    a + es.SoftmaxStats.from_data(x, y, n_classes=3, gram=True)


def test_from_batches_streams_a_generator():
  x, y = dense_data(np.random.default_rng(5), 1000, 6, 3)
  batches = ((x[i:i + 128], y[i:i + 128]) for i in range(0, 1000, 128))
  _assert_same_stats(es.SoftmaxStats.from_data(x, y, n_classes=3),
                     es.SoftmaxStats.from_batches(batches, n_classes=3))
  with pytest.raises(ValueError, match="no batches"):
    es.SoftmaxStats.from_batches(iter([]), n_classes=3)


def test_threaded_pass_equals_the_serial_pass(monkeypatch):
  """The statistics pass shares chunks among threads; one thread gives the same sums."""
  from explicit_softmax import _design
  rng = np.random.default_rng(1)
  x = rng.random((5 * _design.CHUNK_ROWS + 17, 30), dtype=np.float32)
  y = rng.integers(0, 4, len(x))
  threaded = es.SoftmaxStats.from_data(x, y)
  monkeypatch.setattr(_design, "MAX_WORKERS", 1)
  serial = es.SoftmaxStats.from_data(x, y)
  np.testing.assert_allclose(threaded.cooccurrence, serial.cooccurrence, rtol=1e-12)
  assert threaded.mass_sq == pytest.approx(serial.mass_sq, rel=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_threaded_pass_reports_the_first_bad_row(bad):
  """With bad values in several threads' chunks, the error names the earliest row."""
  from explicit_softmax import _design
  x = np.ones((6 * _design.CHUNK_ROWS, 3))
  first, later = _design.CHUNK_ROWS + 7, 5 * _design.CHUNK_ROWS + 1
  x[later, 1] = x[first, 2] = bad
  with pytest.raises(ValueError, match=f"row {first}\\)"):
    es.SoftmaxStats.from_data(x, np.zeros(len(x), int), n_classes=2)


def test_a_failed_run_stops_the_later_runs(monkeypatch):
  """An error in the first thread's chunks stops the other thread early, and a
  BaseException (Ctrl-C) raised in a worker reaches the caller."""
  import time as time_lib
  from explicit_softmax import _design
  monkeypatch.setattr(_design, "MAX_WORKERS", 2)
  x = np.ones((8 * _design.CHUNK_ROWS, 3))
  second_run = []

  def check(row_sums, offset):
    if offset == 0:
      raise ValueError("bad first chunk")
    if offset >= 4 * _design.CHUNK_ROWS:
      second_run.append(offset)
    time_lib.sleep(0.05)

  monkeypatch.setattr(_design._validation, "check_finite_rows", check)
  with pytest.raises(ValueError, match="bad first chunk"):
    es.SoftmaxStats.from_data(x, np.zeros(len(x), int), n_classes=2)
  assert len(second_run) < 4  # it had 4 chunks; it stopped after at most 2

  def interrupt(row_sums, offset):
    if offset == 4 * _design.CHUNK_ROWS:
      raise KeyboardInterrupt

  monkeypatch.setattr(_design._validation, "check_finite_rows", interrupt)
  with pytest.raises(KeyboardInterrupt):
    es.SoftmaxStats.from_data(x, np.zeros(len(x), int), n_classes=2)
