"""Property 8: every bad input raises a ValueError that names the problem."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

import explicit_softmax as es

X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
Y = np.array([0, 1, 1])


@pytest.mark.parametrize("x, y, kwargs, message", [
    (-X, Y, {"method": "cooccurrence"}, "negative entries.*method='newton'"),
    (np.where(X == 1, np.nan, X), Y, {}, "NaN or inf"),
    (np.where(X == 2, np.inf, X), Y, {}, "NaN or inf"),
    (sp.csr_matrix(-X), Y, {"method": "cooccurrence"}, "negative entries"),
    (sp.csr_matrix(np.where(X == 1, np.nan, X)), Y, {}, "NaN or inf"),
    (jnp.asarray(-X), Y, {"method": "cooccurrence"}, "negative entries"),
    (X, np.array([0, 1, 2]), {"n_classes": 2}, r"labels must lie in \[0, n_classes=2\)"),
    (X, np.array([0, -1, 1]), {}, "labels must lie"),
    (X, np.array([0.0, 0.5, 1.0]), {}, "not integral"),
    (X, np.array(["a", "b", "a"], dtype=object), {}, "Encode"),
    (X, np.array([[0.5, 0.4], [0, 1], [1, 0]]), {}, "sum to 1"),
    (X, np.array([[1.5, -0.5], [0, 1], [1, 0]]), {}, "nonnegative"),
    (X, np.array([[np.nan, 1], [0, 1], [1, 0]]), {}, "NaN"),
    (X, Y[:2], {}, "same length"),
    (X, Y[:, None], {}, r"pass class labels as a 1-D array \(y.ravel\(\)\)"),
    (X[:0], Y[:0], {}, "no samples"),
    (np.ones(3), Y, {}, "2-D"),
    (np.ones((3, 2, 2)), Y, {}, "2-D"),
    (np.array([["a", "b"]] * 3), Y, {}, "numeric"),
    (X, Y, {"sample_weight": np.array([1.0, -1.0, 1.0])}, "sample_weight"),
    (X, Y, {"sample_weight": np.zeros(3)}, "sums to zero"),
    (X, Y, {"sample_weight": np.ones(2)}, "sample_weight must have shape"),
    (X, Y, {"n_classes": 1}, "labels must lie"),
    (X, Y, {"n_classes": 2.5}, "n_classes must be a positive integer; got 2.5"),
    (X, Y, {"n_classes": "3"}, "n_classes must be a positive integer"),
])
def test_bad_inputs_raise_helpful_value_errors(x, y, kwargs, message):
  with pytest.raises(ValueError, match=message):
    es.fit(x, y, **kwargs)


def test_a_class_that_never_occurs_with_zero_smoothing_is_an_error():
  with pytest.raises(ValueError, match="never co-occur.*smoothing > 0"):
    es.fit(X, Y, n_classes=3, smoothing=0.0, method="cooccurrence")
  model = es.fit(X, Y, n_classes=3, smoothing=0.1, method="cooccurrence")  # smoothed: finite, tiny probability
  p = model.predict_proba(X)
  assert np.isfinite(model.weights).all() and (p[:, 2] > 0).all()
  assert np.isfinite(model.predict_log_proba(X)).all()


def test_token_features_validate_ids():
  with pytest.raises(ValueError, match=r"\[0, vocab_size=3\)"):
    es.TokenFeatures(np.array([[0, 3]]), 3)
  with pytest.raises(ValueError, match="integers"):
    es.TokenFeatures(np.array([[0.5]]), 3)
  with pytest.raises(ValueError, match="vocab_size"):
    es.TokenFeatures(np.array([[0]]), 0)


def test_predict_time_errors_are_value_errors():
  model = es.fit(X, Y, method="cooccurrence")
  for bad in (np.ones((2, 3)), np.full((1, 2), np.nan), np.ones(2)):
    with pytest.raises(ValueError):
      model.predict_proba(bad)
  assert np.isfinite(model.predict_proba(-np.ones((2, 2)))).all()  # real features predict
  # An all-zero row is fine at predict time: it gets the bias-only prediction.
  np.testing.assert_allclose(model.predict_proba(np.zeros((1, 2))), [[0.5, 0.5]], rtol=1e-6)


def test_empty_statistics_need_positive_integer_sizes():
  for sizes, name in (((0, 3), "n_features"), ((4, -1), "n_classes"), ((4, 3.0), "n_classes")):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
      es.SoftmaxStats.empty(*sizes)
  assert es.SoftmaxStats.empty(np.int64(4), 3).n_classes == 3


@pytest.mark.parametrize("call, name, bad", [
    ("refine", "steps", 2.5), ("refine", "steps", -1), ("refine", "batch_size", 0),
    ("refine", "batch_size", 16.0), ("refine", "callback_every", 0.5), ("refine", "seed", 1.5),
    ("refine", "seed", -1),
    ("calibrate", "steps", float("nan")), ("calibrate", "steps", -1)])
def test_iteration_counts_must_be_integers(call, name, bad):
  """3.5 steps are never read as 3, nor NaN steps as a crash deep in int()."""
  model = es.fit(X, Y, method="cooccurrence")
  kwargs = {"method": "adam"} if call == "refine" else {}
  with pytest.raises(ValueError, match=f"{name} must be"):
    getattr(es, call)(model, X, Y, **kwargs, **{name: bad})
  assert getattr(es, call)(model, X, Y, **kwargs, steps=np.int64(2)).n_classes == 2


def test_solve_needs_statistics():
  with pytest.raises(ValueError, match="the solvers need SoftmaxStats.*es.fit"):
    es.solve(X)
