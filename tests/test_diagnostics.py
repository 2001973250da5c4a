"""Properties of the diagnostics (``explicit_softmax.diagnostics``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from explicit_softmax import diagnostics
from conftest import dense_data, one_hot_data

small = settings(max_examples=12, deadline=None)


def _random_model(rng, n, m, scale=1.0):
  return es.SoftmaxModel(scale * rng.normal(size=(n, m)), scale * rng.normal(size=m))


# -- optimality certificate ------------------------------------------------------------

def test_certificate_is_one_at_zero_and_zero_at_the_one_hot_optimum():
  x, y = one_hot_data(np.random.default_rng(0), 6, 4, 300)
  zero = es.SoftmaxModel(np.zeros((6, 4)), np.zeros(4))
  cert = diagnostics.optimality_certificate(zero, x, y)
  assert cert.relative_grad_norm == pytest.approx(1.0, rel=1e-12)
  assert cert.objective == pytest.approx(math.log(4), rel=1e-6)
  exact = es.fit(x, y, n_classes=4, smoothing=0.0, method="cooccurrence")
  cert = diagnostics.optimality_certificate(exact, x, y)
  assert cert.relative_grad_norm < 1e-5
  assert cert.distance_bound is None and cert.suboptimality_bound is None
  assert cert.objective_lower_bound is None


@small
@given(seed=st.integers(0, 10_000), l2=st.sampled_from([0.05, 0.3, 1.0]),
       scale=st.sampled_from([0.0, 0.3, 1.0]))
def test_strongly_convex_bounds_hold(seed, l2, scale):
  """With l2 > 0 on (W, b): ||theta - theta*|| <= ||g||/l2, J - J* <= ||g||^2/(2 l2)."""
  rng = np.random.default_rng(seed)
  n, m = 3, 3
  x, y = dense_data(rng, 60, n, m)
  model = _random_model(rng, n, m, scale)
  cert = diagnostics.optimality_certificate(model, x, y, l2=l2, penalize_bias=True)

  x64, onehot = x.astype(np.float64), np.eye(m)[y]

  def objective(theta):
    w, b = theta[:n * m].reshape(n, m), theta[n * m:]
    z = x64 @ w + b
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    value = -(onehot * log_p).sum() / len(y) + 0.5 * l2 * (theta**2).sum()
    grad_w = x64.T @ (p - onehot) / len(y) + l2 * w
    grad_b = (p - onehot).sum(axis=0) / len(y) + l2 * b
    return value, np.concatenate([grad_w.ravel(), grad_b])

  theta = np.concatenate([model.weights.astype(np.float64).ravel(), model.bias])
  value, grad = objective(theta)
  assert cert.objective == pytest.approx(value, rel=1e-5)
  assert cert.grad_norm == pytest.approx(np.linalg.norm(grad), rel=1e-4, abs=1e-7)
  best = scipy.optimize.minimize(objective, np.zeros_like(theta), jac=True, method="L-BFGS-B",
                                 options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 1000})
  slack = 1e-6
  assert np.linalg.norm(theta - best.x) <= cert.distance_bound * (1 + 1e-3) + slack
  assert value - best.fun <= cert.suboptimality_bound * (1 + 1e-3) + slack
  assert cert.objective_lower_bound <= best.fun + slack


def test_certificate_tracks_descent_and_validates():
  x, y = dense_data(np.random.default_rng(3), 400, 5, 3)
  start = es.fit(x, y, method="cooccurrence")
  model = start
  for _ in range(30):  # plain gradient descent on the mean cross-entropy
    g_w, g_b = model.gradient(x, y)
    model = model.replace(weights=model.weights - 0.5 * g_w, bias=model.bias - 0.5 * g_b)
  a = diagnostics.optimality_certificate(start, x, y)
  b = diagnostics.optimality_certificate(model, x, y)
  assert b.relative_grad_norm < a.relative_grad_norm
  assert b.objective <= a.objective
  with pytest.raises(ValueError, match="l2 must be"):
    diagnostics.optimality_certificate(start, x, y, l2=-1.0)
  # l2 on W only (as refine uses it) gives no bound.
  assert diagnostics.optimality_certificate(start, x, y, l2=0.1).distance_bound is None


# -- Gaussian width of the loss-gradient set -------------------------------------------

def _brute_force_width(x, r, n_draws, seed, include_bias):
  g_w, g_b = diagnostics.gaussian_draws(seed, n_draws, x.shape[1], r.shape[1])
  grads = np.einsum("tn,tm->tnm", np.asarray(x, np.float64), r)  # per-sample gradients
  values = np.einsum("dnm,tnm->dt", g_w, grads)
  if include_bias:
    values += g_b @ r.T
  return values.max(axis=1)


@small
@given(seed=st.integers(0, 10_000), t=st.integers(1, 40), n=st.integers(1, 6),
       m=st.integers(2, 5), include_bias=st.booleans(), n_draws=st.integers(2, 30))
def test_width_equals_brute_force_with_the_same_draws(seed, t, n, m, include_bias, n_draws):
  rng = np.random.default_rng(seed)
  x, y = dense_data(rng, t, n, m)
  model = _random_model(rng, n, m)
  est = diagnostics.loss_gradient_width(model, x, y, n_draws=n_draws, seed=seed,
                                        include_bias=include_bias)
  z = x.astype(np.float64) @ model.weights + model.bias
  p = np.exp(z - z.max(axis=1, keepdims=True))
  r = p / p.sum(axis=1, keepdims=True) - np.eye(m)[y]
  sups = _brute_force_width(x, r, n_draws, seed, include_bias)
  np.testing.assert_allclose(est.sups, sups, rtol=1e-4, atol=1e-5)
  assert est.width == pytest.approx(sups.mean(), rel=1e-4, abs=1e-5)
  assert est.n_draws == n_draws and est.n_samples == t


def test_width_is_blocked_consistently(monkeypatch):
  """Small blocks of draws and rows give the very same estimate as one block."""
  rng = np.random.default_rng(4)
  x, y = dense_data(rng, 300, 7, 4)
  r = rng.normal(size=(300, 4))
  whole = diagnostics.gradient_set_width(x, r, n_draws=20, seed=9, include_bias=True)
  monkeypatch.setattr(diagnostics, "_BLOCK_ELEMENTS", 7 * 4 * 3)
  blocked = diagnostics.gradient_set_width(x, r, n_draws=20, seed=9, include_bias=True)
  np.testing.assert_allclose(blocked.sups, whole.sups, rtol=1e-6)
  # Sparse and token inputs go through the same products.
  x_sp = sp.csr_matrix(x)
  np.testing.assert_allclose(
      diagnostics.gradient_set_width(x_sp, r, n_draws=20, seed=9, include_bias=True).sups,
      whole.sups, rtol=1e-5)


@small
@given(seed=st.integers(0, 10_000), c=st.floats(0.01, 100.0))
def test_width_scales_linearly_and_grows_with_the_set(seed, c):
  rng = np.random.default_rng(seed)
  x, _ = dense_data(rng, 50, 4, 3)
  r = rng.normal(size=(50, 3))
  base = diagnostics.gradient_set_width(x, r, n_draws=16, seed=seed, include_bias=True)
  scaled = diagnostics.gradient_set_width(x, c * r, n_draws=16, seed=seed, include_bias=True)
  np.testing.assert_allclose(scaled.sups, c * base.sups, rtol=1e-5, atol=1e-6)
  scaled_x = diagnostics.gradient_set_width(c * x, r, n_draws=16, seed=seed)
  plain = diagnostics.gradient_set_width(x, r, n_draws=16, seed=seed)
  np.testing.assert_allclose(scaled_x.sups, c * plain.sups, rtol=1e-5, atol=1e-6)
  # A subset has a smaller supremum in every draw; a permutation changes nothing.
  sub = diagnostics.gradient_set_width(x[:20], r[:20], n_draws=16, seed=seed, include_bias=True)
  assert np.all(sub.sups <= base.sups + 1e-9)
  perm = rng.permutation(50)
  shuffled = diagnostics.gradient_set_width(x[perm], r[perm], n_draws=16, seed=seed,
                                            include_bias=True)
  np.testing.assert_allclose(shuffled.sups, base.sups, rtol=1e-6)
  # E sup >= sup E = 0; with 50 points the estimate is clearly positive.
  assert base.width > 0 and base.width + 4 * base.std_error > 0


def test_width_is_zero_at_a_perfect_fit_and_validates():
  x = np.eye(4, dtype=np.float32)
  y = np.arange(4)
  perfect = es.SoftmaxModel(60 * np.eye(4), np.zeros(4))  # p_t = y_t to float precision
  assert abs(diagnostics.loss_gradient_width(perfect, x, y).width) < 1e-12
  with pytest.raises(ValueError, match="residuals must have shape"):
    diagnostics.gradient_set_width(x, np.zeros((3, 4)))
  with pytest.raises(ValueError, match="n_draws"):
    diagnostics.gradient_set_width(x, np.zeros((4, 4)), n_draws=0)


# -- agreement between two models ------------------------------------------------------

@small
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 3.0))
def test_kl_is_zero_for_the_same_model_and_nonnegative(seed, scale):
  rng = np.random.default_rng(seed)
  x, _ = dense_data(rng, 80, 5, 4)
  a, b = _random_model(rng, 5, 4, scale), _random_model(rng, 5, 4, scale)
  assert diagnostics.mean_kl(a, a, x) == 0.0
  assert diagnostics.mean_kl(a, b, x) >= 0.0
  shifted = a.replace(weights=a.weights + rng.normal(size=(5, 1)), bias=a.bias + 3.0)
  assert diagnostics.mean_kl(a, shifted, x) < 1e-6
  result = diagnostics.agreement(a, shifted, x)
  assert result.top1_agreement == pytest.approx(1.0)
  assert result.weight_cosine == pytest.approx(1.0, abs=1e-6)


def test_kl_matches_a_direct_computation_with_weights():
  rng = np.random.default_rng(6)
  x, _ = dense_data(rng, 100, 4, 3)
  a, b = _random_model(rng, 4, 3), _random_model(rng, 4, 3)
  w = rng.random(100)
  pa, pb = a.predict_proba(x).astype(np.float64), b.predict_proba(x).astype(np.float64)
  kl = (pa * (np.log(pa) - np.log(pb))).sum(axis=1)
  assert diagnostics.mean_kl(a, b, x, sample_weight=w) == pytest.approx(w @ kl / w.sum(),
                                                                        rel=1e-4)
  top1 = (pa.argmax(1) == pb.argmax(1)).mean()
  assert diagnostics.agreement(a, b, x).top1_agreement == pytest.approx(top1)


@small
@given(seed=st.integers(0, 10_000), c=st.floats(0.1, 10.0))
def test_weight_cosine_is_shift_and_scale_invariant(seed, c):
  rng = np.random.default_rng(seed)
  a, b = _random_model(rng, 6, 4), _random_model(rng, 6, 4)
  base = diagnostics.weight_cosine(a, b)
  assert -1.0 <= base <= 1.0
  assert diagnostics.weight_cosine(a, a) == pytest.approx(1.0)
  assert diagnostics.weight_cosine(b, a) == pytest.approx(base)
  negated = a.replace(weights=-a.weights, bias=-a.bias)
  assert diagnostics.weight_cosine(a, negated) == pytest.approx(-1.0)
  moved = b.replace(weights=c * b.weights + rng.normal(size=(6, 1)),
                    bias=c * b.bias + rng.normal())
  assert diagnostics.weight_cosine(a, moved) == pytest.approx(base, abs=1e-5)


def test_agreement_validates_shapes_and_uniform_models():
  rng = np.random.default_rng(7)
  a = _random_model(rng, 4, 3)
  with pytest.raises(ValueError, match="same features and classes"):
    diagnostics.weight_cosine(a, _random_model(rng, 5, 3))
  uniform = es.SoftmaxModel(np.ones((4, 3)), np.full(3, 2.0))  # constant rows: no direction
  assert math.isnan(diagnostics.weight_cosine(a, uniform))
