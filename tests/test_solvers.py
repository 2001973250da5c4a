"""Properties of the explicit solutions (``explicit_softmax.solvers``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from conftest import dense_data, one_hot_data

small = settings(max_examples=15, deadline=None)


def _conditional_entropy(x, y, n_classes):
  """Empirical H(Y | feature) in nats for one-hot x."""
  feats = x.argmax(1)
  counts = np.zeros((x.shape[1], n_classes))
  np.add.at(counts, (feats, y), 1)
  p = counts / counts.sum(1, keepdims=True)
  return -np.log(p[feats, y]).mean()


@small
@given(seed=st.integers(0, 10_000), n=st.integers(2, 12), m=st.integers(2, 8),
       t=st.integers(1, 300))
def test_one_hot_cooccurrence_is_the_exact_optimum(seed, n, m, t):
  """Property 1: with one-hot inputs and s=0 the gradient vanishes (relative to
  the gradient at zero) and the loss is the empirical conditional entropy.

  When every feature's labels are balanced the uniform model is already optimal
  and its gradient is 0 too: the absolute term (float32 round-off) covers it.
  """
  x, y = one_hot_data(np.random.default_rng(seed), n, m, t)
  model = es.fit(x, y, n_classes=m, smoothing=0.0, method="cooccurrence")
  zero = es.SoftmaxModel(np.zeros((n, m)), np.zeros(m))
  assert model.grad_norm(x, y) < 1e-5 * zero.grad_norm(x, y) + 1e-6
  np.testing.assert_allclose(model.log_loss(x, y), _conditional_entropy(x, y, m), rtol=1e-5)


def test_unoccurring_feature_gets_an_uninformative_row():
  x, y = one_hot_data(np.random.default_rng(0), 5, 3, 50)
  x = np.hstack([x, np.zeros((len(x), 1), np.float32)])  # feature 5 never occurs
  for s in (0.0, 0.5):
    model = es.fit(x, y, smoothing=s, method="cooccurrence")
    assert np.isfinite(model.weights).all()
    row = model.weights[5]
    np.testing.assert_allclose(row - row.mean(), 0, atol=1e-6)


def test_mean_feature_mass_scales_the_weights():
  """Doubling every feature doubles K, so the weights halve and logits stay."""
  x, y = dense_data(np.random.default_rng(1), 200, 6, 3)
  a, b = es.fit(x, y, method="cooccurrence"), es.fit(2 * x, y, smoothing=0.2, method="cooccurrence")
  assert a.info["mean_feature_mass"] * 2 == pytest.approx(b.info["mean_feature_mass"])
  np.testing.assert_allclose(a.weights, 2 * b.weights, rtol=1e-5)


@small
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["cooccurrence", "newton"]))
def test_permuting_features_and_classes_permutes_the_weights(seed, method):
  """Property 3: the solution is canonical (no initialisation, no ambiguity)."""
  rng = np.random.default_rng(seed)
  x, y = dense_data(rng, 120, 5, 4)
  pf, pc = rng.permutation(5), rng.permutation(4)
  inverse_c = np.argsort(pc)
  base = es.fit(x, y, n_classes=4, method=method)
  perm = es.fit(x[:, pf], inverse_c[y], n_classes=4, method=method)
  np.testing.assert_allclose(perm.weights, base.weights[pf][:, pc], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(perm.bias, base.bias[pc], rtol=1e-4, atol=1e-5)


@small
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["cooccurrence", "newton"]))
def test_duplicating_every_sample_leaves_the_weights_unchanged(seed, method):
  """Property 4 (s = 0 for the co-occurrence solution: pseudo-counts are absolute)."""
  rng = np.random.default_rng(seed)
  x, y = one_hot_data(rng, 4, 3, 60) if method == "cooccurrence" else dense_data(rng, 80, 5, 3)
  kw = {"smoothing": 0.0} if method == "cooccurrence" else {}
  a = es.fit(x, y, n_classes=3, method=method, **kw)
  b = es.fit(np.vstack([x, x]), np.concatenate([y, y]), n_classes=3, method=method, **kw)
  np.testing.assert_allclose(a.weights, b.weights, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(a.bias, b.bias, rtol=1e-5, atol=1e-6)


def _newton_step_by_autodiff(x, y, m):
  """One Newton iteration from zero, with jax.hessian and the pseudo-inverse."""
  x1 = jnp.asarray(np.hstack([x, np.ones((len(x), 1))]), jnp.float64)
  yy = jax.nn.one_hot(y, m, dtype=jnp.float64)

  def loss(theta):
    return -jnp.mean(jnp.sum(yy * jax.nn.log_softmax(x1 @ theta.reshape(-1, m)), -1))

  theta0 = jnp.zeros(x1.shape[1] * m, jnp.float64)
  hess = jax.hessian(loss)(theta0)
  grad = jax.grad(loss)(theta0)
  return np.asarray(-jnp.linalg.pinv(hess, hermitian=True) @ grad).reshape(-1, m)


@small
@given(seed=st.integers(0, 10_000), m=st.integers(2, 5))
def test_newton_solution_is_one_newton_step_from_zero(seed, m):
  """Property 5: ridge 0 reproduces jax.hessian's pinv Newton step."""
  x, y = dense_data(np.random.default_rng(seed), 60, 4, m)
  with jax.enable_x64(True):
    expected = _newton_step_by_autodiff(x.astype(np.float64), y, m)
  model = es.fit(x, y, n_classes=m, method="newton", ridge=0.0)
  np.testing.assert_allclose(model.weights, expected[:-1], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(model.bias, expected[-1], rtol=1e-4, atol=1e-4)


def test_newton_decreases_the_loss_from_uniform():
  x, y = dense_data(np.random.default_rng(3), 400, 8, 4)
  uniform = np.log(4)
  assert es.fit(x, y, method="newton").log_loss(x, y) < uniform


def test_newton_needs_the_gram_matrix():
  x, y = dense_data(np.random.default_rng(0), 30, 3, 2)
  stats = es.SoftmaxStats.from_data(x, y)
  with pytest.raises(ValueError, match="gram=True"):
    es.solve(stats, method="newton")
  assert es.solve(es.SoftmaxStats.from_data(x, y, gram=True), "newton").n_features == 3


def test_newton_refuses_a_gram_matrix_too_large_for_memory():
  import scipy.sparse as sp
  x = sp.random(10, 200_000, density=1e-5, format="csr")
  with pytest.raises(ValueError, match="Gram matrix.*cooccurrence"):
    es.fit(x, np.zeros(10, int), method="newton")


def test_unknown_method_and_bad_hyperparameters():
  x, y = dense_data(np.random.default_rng(0), 30, 3, 2)
  with pytest.raises(ValueError, match="is unknown; choose one of"):
    es.fit(x, y, method="magic")
  with pytest.raises(ValueError, match="smoothing"):
    es.fit(x, y, smoothing=-1, method="cooccurrence")
  with pytest.raises(ValueError, match="ridge"):
    es.fit(x, y, method="newton", ridge=-1)


def test_solving_empty_statistics_is_refused():
  for method in ("cooccurrence", "newton"):
    with pytest.raises(ValueError, match="no samples"):
      es.solve(es.SoftmaxStats.empty(3, 2, gram=True), method)


@pytest.mark.parametrize("scale", [1e-30, 1e-10, 1 / 255, 1.0, 255.0, 1e10, 1e30])
def test_newton_is_invariant_to_the_scale_of_x(scale):
  """Rescaling X rescales W inversely and leaves predictions unchanged (the
  ridge is relative to X's own magnitude; the bias column is not rescaled)."""
  x, y = dense_data(np.random.default_rng(11), 400, 6, 3)
  x = np.round(x / x.max() * 255)  # pixel-like: the same images as uint8 and as /255
  base = es.fit(x, y, method="newton")
  scaled = es.fit(x * scale, y, method="newton")
  np.testing.assert_allclose(scaled.weights * scale, base.weights, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(scaled.predict_proba(x * scale), base.predict_proba(x), atol=1e-5)
  uint8 = es.fit(x.astype(np.uint8), y, method="newton")
  np.testing.assert_allclose(uint8.predict_proba(x), base.predict_proba(x), atol=1e-6)


def test_newton_takes_real_valued_features():
  x, y = dense_data(np.random.default_rng(12), 300, 5, 3)
  centred = x - x.mean(axis=0)
  model = es.fit(centred, y, method="newton")
  uniform = es.SoftmaxModel(np.zeros((5, 3)), np.zeros(3))
  assert model.log_loss(centred, y) < uniform.log_loss(centred, y)
