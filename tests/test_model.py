"""The model container, its objective and persistence (``explicit_softmax.model``)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from conftest import dense_data


def _model(rng, n=5, m=3):
  return es.SoftmaxModel(rng.normal(size=(n, m)), rng.normal(size=m), info={"method": "test"})


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_predictions_are_softmax_of_logits(seed):
  rng = np.random.default_rng(seed)
  model = _model(rng)
  x, _ = dense_data(rng, 20, 5, 3)
  logits = x @ model.weights + model.bias
  np.testing.assert_allclose(model.decision_function(x), logits, rtol=1e-5, atol=1e-5)
  p = model.predict_proba(x)
  np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
  np.testing.assert_allclose(p, np.asarray(jax.nn.softmax(logits)), rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(model.predict(x), logits.argmax(1))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_gradient_matches_autodiff(seed):
  """The host-side gradient (2) equals jax.grad of the loss (1), sample-weighted."""
  rng = np.random.default_rng(seed)
  model = _model(rng)
  x, y = dense_data(rng, 30, 5, 3)
  w = rng.random(30)

  def loss(params):
    wt, b = params
    # Full float32 products: a GPU's default TF32 matmul would differ by ~1e-3.
    lp = jax.nn.log_softmax(jax.numpy.matmul(x, wt, precision="highest") + b)
    return -(w * lp[np.arange(30), y]).sum() / w.sum()

  g_w, g_b = jax.grad(loss)((model.weights, model.bias))
  mine_w, mine_b = model.gradient(x, y, sample_weight=w)
  np.testing.assert_allclose(mine_w, g_w, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(mine_b, g_b, rtol=1e-4, atol=1e-6)
  expected = float(loss((model.weights, model.bias)))
  assert model.log_loss(x, y, sample_weight=w) == pytest.approx(expected, rel=1e-5)


def test_loss_is_chunked_consistently(monkeypatch):
  """Chunked evaluation (many rows) equals evaluation in one piece."""
  from explicit_softmax import _objective
  rng = np.random.default_rng(0)
  model = _model(rng)
  x, y = dense_data(rng, 3000, 5, 3)
  whole = model.log_loss(x, y)
  monkeypatch.setattr(_objective, "_EVAL_ELEMENTS", 300 * 3)
  assert model.log_loss(x, y) == pytest.approx(whole, rel=1e-6)
  np.testing.assert_allclose(model.gradient(x, y)[0], model.gradient(x, y)[0])


def test_save_load_round_trips_exactly(tmp_path):
  x, y = dense_data(np.random.default_rng(1), 100, 5, 3)
  model = es.fit(x, y, method="cooccurrence")
  path = tmp_path / "model.npz"
  model.save(path)
  back = es.load(path)
  np.testing.assert_array_equal(back.weights, model.weights)
  np.testing.assert_array_equal(back.bias, model.bias)
  assert back.info == json.loads(json.dumps(model.info))
  np.testing.assert_array_equal(back.predict_proba(x), model.predict_proba(x))
  with np.load(path, allow_pickle=False) as data:  # readable without pickle
    assert set(data.files) == {"weights", "bias", "meta"}


def test_loading_corrupted_or_foreign_files_raises(tmp_path):
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"not a zip file at all")
  with pytest.raises(ValueError, match="is not a model file: model.save writes an .npz"):
    es.load(bad)
  foreign = tmp_path / "foreign.npz"
  np.savez(foreign, a=np.ones(3))
  with pytest.raises(ValueError, match="explicit-softmax"):
    es.load(foreign)
  other_meta = tmp_path / "other.npz"
  np.savez(other_meta, weights=np.ones((2, 2)), bias=np.ones(2),
           meta=np.array(json.dumps({"format": "something-else"})))
  with pytest.raises(ValueError, match="not an explicit-softmax model"):
    es.load(other_meta)
  truncated = tmp_path / "truncated.npz"
  es.SoftmaxModel(np.ones((3, 2)), np.ones(2)).save(truncated)
  truncated.write_bytes(truncated.read_bytes()[:100])
  with pytest.raises(ValueError):
    es.load(truncated)
  with pytest.raises(ValueError, match="does not exist"):
    es.load(tmp_path / "missing.npz")


def test_wrong_shapes_at_predict_time_raise():
  model = _model(np.random.default_rng(0))
  with pytest.raises(ValueError, match="fitted on 5"):
    model.predict(np.ones((2, 4)))
  with pytest.raises(ValueError, match="2-D"):
    model.predict(np.ones(5))
  with pytest.raises(ValueError, match="fitted on 5"):
    model.predict(sp.csr_matrix(np.ones((2, 6))))
  with pytest.raises(ValueError, match="labels must lie"):
    model.log_loss(np.ones((2, 5)), np.array([0, 3]))


def test_model_validates_its_parameters():
  with pytest.raises(ValueError, match="weights must be"):
    es.SoftmaxModel(np.zeros((3, 2)), np.zeros(3))
  with pytest.raises(ValueError, match="NaN"):
    es.SoftmaxModel(np.full((3, 2), np.nan), np.zeros(2))
