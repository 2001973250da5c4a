"""One fit of (6) (``explicit_softmax._optimum``): exact Newton steps where the parameters
are few, L-BFGS elsewhere, and the BLAS setting around them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from explicit_softmax import _convergence, _design, _objective, _optimum


def _real_data(seed: int, t: int = 300, n: int = 5, m: int = 3):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(t, n)) * rng.uniform(0.5, 3.0, n) + rng.normal(size=n)
  z = x @ rng.normal(size=(n, m))
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return x, (p.cumsum(1) > rng.random((t, 1))).argmax(1)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(2, 5))
def test_hessian_is_the_autodiff_hessian(seed, m):
  """``_objective.hessian`` (its M (M - 1) / 2 products) is jax.hessian of (4) with a
  per-feature penalty, in float64, with and without the probabilities passed."""
  rng = np.random.default_rng(seed)
  t, n = 40, 3
  x1 = np.hstack([rng.normal(size=(t, n)), np.ones((t, 1))])
  y = rng.integers(0, m, t)
  w = rng.uniform(0.1, 1.0, t)
  w /= w.sum()
  l2 = rng.uniform(0.01, 1.0, n)
  theta = rng.normal(size=(n + 1, m))

  def objective(flat):
    th = flat.reshape(n + 1, m)
    log_p = jax.nn.log_softmax(jnp.asarray(x1) @ th, axis=1)
    return (-(jnp.asarray(w) * log_p[jnp.arange(t), jnp.asarray(y)]).sum()
            + 0.5 * (jnp.asarray(l2)[:, None] * th[:-1] ** 2).sum())

  with jax.enable_x64(True):
    expected = np.asarray(jax.hessian(objective)(jnp.asarray(theta.ravel(), jnp.float64)))
  z = x1 @ theta
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  # Float64 sums of t terms of order one: rounding far below 1e-10.
  np.testing.assert_allclose(_objective.hessian(theta, x1, w, l2), expected, atol=1e-10)
  np.testing.assert_allclose(_objective.hessian(theta, x1, w, l2, p=p), expected, atol=1e-10)


def test_few_parameters_are_fitted_by_newton_alone():
  """At most POLISH_MAX_PARAMETERS: no L-BFGS step, the gradient at float64's rounding
  floor, and the optimum L-BFGS reaches at a tight tol."""
  x, y = _real_data(0)
  model = es.fit(x, y, l2=0.01, verbose=False)
  record = model.info["refine"]
  assert record["steps"] == 0 and record["newton_polish_steps"] > 0
  assert record["method"] == "newton"
  assert record["converged"] and record["relative_grad_norm"] <= 1e-10
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(_optimum, "POLISH_MAX_PARAMETERS", 0)
    lbfgs = es.fit(x, y, l2=0.01, tol=1e-10, verbose=False)
  assert lbfgs.info["refine"]["steps"] > 0 and lbfgs.info["refine"]["newton_polish_steps"] == 0
  # Both within 1e-10 of a zero gradient of a strongly convex problem (the penalty's
  # curvature 0.01 s_i^2 in the units): their logits agree far below 1e-5.
  np.testing.assert_allclose(model.predict_log_proba(x), lbfgs.predict_log_proba(x), atol=1e-5)


def test_many_parameters_are_fitted_by_lbfgs():
  x, y = _real_data(1, t=200, n=40, m=8)  # 41 x 8 = 328 parameters
  record = es.fit(x, y, l2=0.01, verbose=False).info["refine"]
  assert record["steps"] > 0 and record["newton_polish_steps"] == 0
  assert record["relative_grad_norm"] <= record["tol"]


@pytest.mark.parametrize("newton_steps", [_optimum.NEWTON_STEPS, 2])
def test_nearly_separable_data_still_converge(monkeypatch, newton_steps):
  """Separable classes with a tiny penalty: the weights grow at every Newton step; the
  solve still ends certified (with too few Newton steps, L-BFGS takes over and Newton
  finishes)."""
  monkeypatch.setattr(_optimum, "NEWTON_STEPS", newton_steps)
  rng = np.random.default_rng(2)
  x = rng.normal(size=(200, 2))
  y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
  model = es.fit(x, y, l2=1e-9, verbose=False)
  record = model.info["refine"]
  assert record["converged"] and record["relative_grad_norm"] <= record["tol"]
  assert (model.predict(x) == y).all()
  assert (record["steps"] > 0) == (newton_steps == 2)
  certificate = es.diagnostics.optimality_certificate(
      model, x, y, l2=record["l2"], units=model.info["units"])
  assert certificate.relative_grad_norm <= record["tol"]


def test_small_fits_leave_blas_alone(monkeypatch):
  """Below BLAS_LIMIT_MIN_WORK no BLAS controller is looked for (it costs more than the fit);
  above it, BLAS is limited to one thread."""
  def refuse():
    raise AssertionError("looked for BLAS")

  monkeypatch.setattr(_design, "_blas_controller", refuse)
  with _design.single_threaded_blas(_design.BLAS_LIMIT_MIN_WORK) as workers:
    assert workers == 1
  x, y = _real_data(3)
  es.fit(x, y, verbose=False)  # 300 x 6 x 6: small
  with pytest.raises(AssertionError, match="looked for BLAS"):
    with _design.single_threaded_blas(_design.BLAS_LIMIT_MIN_WORK + 1):
      pass


def test_a_tol_below_float64s_floor_is_reported_as_stalled():
  """Newton ends at the rounding floor; a tol below it cannot be met and the record says so."""
  x, y = _real_data(4)
  record = es.fit(x, y, l2=0.01, tol=1e-30, verbose=False).info["refine"]
  assert record["method"] == "newton"
  assert not record["converged"] and record["relative_grad_norm"] > 1e-30
  assert record["reason"] == _convergence.REASONS["stalled"]
