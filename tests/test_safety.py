"""Nothing silently wrong: safe model files, immutable models, untouched inputs,
bounded memory and refusals that name their problem (issue "Nothing silently
wrong"; each test is one of its reproductions)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import scipy.sparse as sp

import explicit_softmax as es
from conftest import dense_data


@pytest.fixture()
def model():
  x, y = dense_data(np.random.default_rng(0), 200, 5, 3)
  return es.fit(x, y, method="newton")


# -- files -------------------------------------------------------------------------

def test_a_failed_save_leaves_the_existing_file_as_it_was(tmp_path, model, monkeypatch):
  path = tmp_path / "model.npz"
  model.save(path)
  before = path.read_bytes()

  def broken(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(np, "savez", broken)
  # The error names the user's path, not the temporary file's.
  with pytest.raises(ValueError, match=r"^cannot save to '.*model.npz': disk full") as err:
    model.replace(bias=model.bias + 1).save(path)
  assert ".explicit-softmax-" not in str(err.value)
  assert path.read_bytes() == before
  assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind


def test_whatever_refine_and_calibrate_record_is_saveable(tmp_path, model):
  x, y = dense_data(np.random.default_rng(1), 200, 5, 3)
  refined = es.refine(model, x, y, method="adam", steps=3, learning_rate=np.float32(0.01))
  calibrated = es.calibrate(refined, x, y)
  calibrated.save(tmp_path / "m.npz")
  loaded = es.load(tmp_path / "m.npz")
  assert loaded.info["refine"]["learning_rate"] == pytest.approx(0.01)
  np.testing.assert_array_equal(loaded.weights, calibrated.weights)


def test_info_that_no_file_can_hold_is_refused_at_construction():
  with pytest.raises(ValueError, match=r"info\['f'\] holds a builtin_function_or_method"):
    es.SoftmaxModel(np.zeros((2, 2)), np.zeros(2), info={"f": print})
  with pytest.raises(ValueError, match="info must be a dict"):
    es.SoftmaxModel(np.zeros((2, 2)), np.zeros(2), info=[1, 2])


def _write(path, weights, bias, meta):
  np.savez(path, weights=weights, bias=bias, meta=np.array(json.dumps(meta)))


@pytest.mark.parametrize("case, match", [
    ("short_classes", r"info\['classes'\] must list one label per class \(3\)"),
    ("info_list", "'info' must be a JSON object"),
    ("string_version", "format version must be an integer"),
    ("complex", "must hold real numbers; got dtype complex"),
    ("npy", "is not a model file: model.save writes an .npz"),
    ("none", "load needs a file path"),
])
def test_load_checks_every_field(tmp_path, case, match):
  w, b = np.ones((2, 3), np.float32), np.zeros(3, np.float32)
  meta = {"format": "explicit-softmax", "version": 1, "info": {}}
  path = tmp_path / "bad.npz"
  if case == "short_classes":
    _write(path, w, b, {**meta, "info": {"classes": ["a", "b"]}})
  elif case == "info_list":
    _write(path, w, b, {**meta, "info": [1]})
  elif case == "string_version":
    _write(path, w, b, {**meta, "version": "2"})
  elif case == "complex":
    _write(path, w + 1j, b, meta)
  elif case == "npy":
    path = tmp_path / "w.npy"
    np.save(path, w)
  with pytest.raises(ValueError, match=match):
    es.load(None if case == "none" else path)


# -- immutability and untouched inputs ------------------------------------------------

def test_models_copy_and_freeze_their_parameters():
  w, b = np.ones((2, 3), np.float32), np.zeros(3, np.float32)
  model = es.SoftmaxModel(w, b)
  w[0, 0] = 99.0  # the caller's array is not the model's
  assert model.weights[0, 0] == 1.0
  with pytest.raises(ValueError, match="read-only"):
    model.weights[0, 0] = 5.0
  with pytest.raises(ValueError, match="read-only"):
    model.bias[0] = 5.0


def test_sparse_count_model_leaves_the_callers_matrix_alone():
  counts = sp.csr_matrix((np.array([1.0, 2.0, 0.0]), np.array([0, 0, 1]),
                          np.array([0, 3, 3])), shape=(2, 2))
  # (scipy's own counts.sum() would sum the duplicates in place: compare arrays.)
  before = (counts.data.copy(), counts.indices.copy())
  es.SparseCountModel(counts, 2, 3.0, 3)
  np.testing.assert_array_equal(counts.data, before[0])
  np.testing.assert_array_equal(counts.indices, before[1])


@pytest.mark.parametrize("kind", ["dense", "sparse", "jax"])
def test_no_entry_point_modifies_the_callers_arrays(kind):
  import jax.numpy as jnp
  x, y = dense_data(np.random.default_rng(2), 150, 4, 3)
  x = x - 0.5  # real-valued: also exercises the signed paths
  w = np.random.default_rng(3).random(150)
  data = {"dense": x, "sparse": sp.csr_matrix(x), "jax": jnp.asarray(x)}[kind]
  copies = (np.array(x), np.array(y), np.array(w))
  model = es.fit(data, y, sample_weight=w)
  es.refine(model, data, y, steps=3, sample_weight=w)
  es.calibrate(model, data, y, sample_weight=w)
  model.predict_proba(data)
  es.diagnostics.optimality_certificate(model, data, y, sample_weight=w)
  es.diagnostics.loss_gradient_width(model, data, y, n_draws=2)
  for method in ("newton", "cooccurrence"):
    features = abs(data) if method == "cooccurrence" else data
    es.fit(features, y, method=method, sample_weight=w)
  es.SoftmaxStats.from_data(data, y, sample_weight=w, gram=True)
  if kind == "jax":
    es.SoftmaxStats.from_sharded(data, y, sample_weight=w)
  if kind != "jax":  # scikit-learn converts JAX arrays itself
    from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
    ExplicitSoftmaxClassifier(method="newton").fit(data, y, sample_weight=w).predict(data)
  if kind == "dense":
    torch = pytest.importorskip("torch")
    from explicit_softmax.adapters import torch as adapters
    adapters.init_head(torch.nn.Sequential(torch.nn.Linear(4, 3)), data, y)
  dense = np.asarray(data.toarray() if kind == "sparse" else data)
  np.testing.assert_array_equal(dense, copies[0])
  np.testing.assert_array_equal(y, copies[1])
  np.testing.assert_array_equal(w, copies[2])


# -- sizes, memory and messages -----------------------------------------------------------

def test_a_label_that_is_no_class_code_is_refused_before_allocating():
  x = np.ones((4, 3))
  y = np.array([0, 1, 2, 2 * 10**8])
  for method in ("cooccurrence", "newton", "auto"):
    with pytest.raises(ValueError, match="encode them first"):
      es.fit(x, y, method=method)
  with pytest.raises(ValueError, match="encode them first"):
    es.SoftmaxStats.empty(10**5, 10**5)


@pytest.mark.parametrize("bad", [2.5, "3", 0, -1, True])
def test_sizes_must_be_positive_integers(bad):
  with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
    es.TokenFeatures(np.array([[0, 1]]), bad)
  with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
    es.SparseCountModel(sp.csr_matrix(np.ones((2, 2))), bad, 1.0, 1)


def test_token_features_need_a_context_and_accept_unsigned_ids():
  with pytest.raises(ValueError, match="at least one context token"):
    es.TokenFeatures(np.zeros((3, 0), np.int64), 4)
  ids = np.array([[0, 1], [2, 3], [1, 1]], np.uint64)
  tokens = es.TokenFeatures(ids, 4)
  model = es.fit(tokens, np.array([0, 1, 2]), n_classes=3)
  assert model.predict(tokens).shape == (3,)


@pytest.mark.parametrize("name, value", [
    ("smoothing", "0.1"), ("smoothing", float("inf")), ("smoothing", -1.0),
    ("ridge", float("inf")), ("ridge", "x")])
def test_numeric_parameters_are_checked_by_name(name, value):
  x, y = dense_data(np.random.default_rng(4), 50, 3, 2)
  method = "cooccurrence" if name == "smoothing" else "newton"
  with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0; got"):
    es.fit(x, y, method=method, **{name: value})


def test_float64_features_beyond_float32_range_predict_finitely():
  """Float64 X gets float64 logits: 1e300 features give a finite (saturated)
  prediction; logits that overflow even so are an error, never NaN."""
  x, y = dense_data(np.random.default_rng(5), 200, 4, 3)
  model = es.fit(x, y, method="newton")
  big = x.astype(np.float64) * 1e300
  p = model.predict_proba(big)
  assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1)
  assert np.array_equal(p.argmax(axis=1), model.predict(x * 1e30))
  assert np.isfinite(model.log_loss(big, y))
  overflow = es.SoftmaxModel(np.ones((4, 3)), np.zeros(3))
  with pytest.raises(ValueError, match="overflow"):
    overflow.predict_proba(np.full((1, 4), 1e38, np.float32))


def test_refine_refuses_nan_rows_before_any_step():
  """NaN rows are an error naming the row, on every path: the float64 host
  L-BFGS, and minibatch Adam before it draws them (not "diverged")."""
  x, y = dense_data(np.random.default_rng(6), 300, 4, 3)
  x[250, 1] = np.nan
  start = es.SoftmaxModel(np.zeros((4, 3)), np.zeros(3))
  for kwargs in ({}, {"method": "adam", "batch_size": 16, "steps": 2}):
    with pytest.raises(ValueError, match=r"NaN or inf \(first in row 250\)"):
      es.refine(start, x, y, **kwargs)


def test_malformed_inputs_get_messages_not_numpy_internals():
  x, y = dense_data(np.random.default_rng(7), 30, 3, 2)
  with pytest.raises(ValueError, match="rectangular"):
    es.fit([[1.0, 2.0], [3.0]], [0, 1], method="newton")
  with pytest.raises(ValueError, match="sample_weight must be numbers"):
    es.fit(x, y, sample_weight=["a"] * 30, method="newton")
  with pytest.raises(ValueError, match="the solvers need SoftmaxStats"):
    es.cooccurrence_weights((x, y))
  with pytest.raises(ValueError, match="hold no samples"):
    es.newton_weights(es.SoftmaxStats.empty(3, 2, gram=True))


def test_bfloat16_features_are_read_as_float32():
  import jax.numpy as jnp
  x, y = dense_data(np.random.default_rng(8), 100, 3, 2)
  low = np.asarray(jnp.asarray(x, jnp.bfloat16))
  model = es.fit(low, y, method="newton")
  np.testing.assert_allclose(model.predict_proba(low),
                             es.fit(low.astype(np.float32), y, method="newton").predict_proba(
                                 low.astype(np.float32)), atol=1e-6)


def test_a_token_model_refuses_tokens_of_another_layout():
  ids = np.random.default_rng(9).integers(0, 7, (100, 2))
  y = np.arange(100) % 3
  model = es.fit(es.TokenFeatures(ids, 7), y)
  assert model.info["token_layout"] == [2, 7]
  other = es.TokenFeatures(np.random.default_rng(10).integers(0, 14, (5, 1)), 14)
  with pytest.raises(ValueError, match="1 context tokens over a vocabulary of 14.*2 over 7"):
    model.predict_proba(other)
  with pytest.raises(ValueError, match="context tokens"):
    es.refine(model, other, y[:5], steps=1)


def test_the_estimator_and_adapters_use_the_core_checks():
  """One check, one message: the estimator's weights and hyperparameters and the
  adapters' batch sizes go through explicit_softmax._targets."""
  pytest.importorskip("sklearn")
  from explicit_softmax.adapters import _fit
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
  x, y = dense_data(np.random.default_rng(11), 40, 3, 2)
  with pytest.raises(ValueError, match="sample_weight must be finite and nonnegative"):
    ExplicitSoftmaxClassifier().fit(x, y, sample_weight=-np.ones(40))
  with pytest.raises(ValueError, match="smoothing must be a finite number >= 0; got '1'"):
    ExplicitSoftmaxClassifier(smoothing="1").fit(x, y)
  with pytest.raises(ValueError, match="batch_size must be a positive integer; got 2.5"):
    list(_fit.iterate_rows(10, 2.5))


def test_sparse_count_batches_of_another_token_layout_are_refused():
  rng = np.random.default_rng(12)
  a = es.TokenFeatures(rng.integers(0, 7, (20, 2)), 7)
  b = es.TokenFeatures(rng.integers(0, 14, (20, 1)), 14)  # the same width, 14
  y = rng.integers(0, 3, 20)
  with pytest.raises(ValueError, match=r"disagree on \(context tokens, vocabulary\)"):
    es.SparseCountModel.from_batches([(a, y), (b, y)], n_classes=3)
  assert es.SparseCountModel.from_batches([(a, y), (a, y)], n_classes=3).n_samples == 40
