"""The one-call path ``es.fit`` (``explicit_softmax.fitting``): the model a user wants."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from conftest import dense_data, one_hot_data
from explicit_softmax import _design, fitting


def _real_data(seed: int, t: int = 400, n: int = 6, m: int = 3):
  """Real-valued (centred, mixed-sign) features with a linear class signal."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(t, n)) * rng.uniform(0.5, 3.0, n)
  logits = x @ rng.normal(size=(n, m))
  y = np.array([rng.choice(m, p=np.exp(z - z.max()) / np.exp(z - z.max()).sum())
                for z in logits])
  return x, y


def test_one_hot_and_token_inputs_get_the_exact_count_solution():
  x, y = one_hot_data(np.random.default_rng(0), 6, 4, 400)
  auto = es.fit(x, y, smoothing=0.0)
  count = es.fit(x, y, smoothing=0.0, method="cooccurrence")
  np.testing.assert_array_equal(auto.weights, count.weights)
  assert auto.info["method"] == "cooccurrence"
  tokens = es.TokenFeatures(np.random.default_rng(1).integers(0, 5, (300, 2)), 5)
  assert es.fit(tokens, np.arange(300) % 3).info["method"] == "cooccurrence"
  assert fitting.is_one_hot(_design.as_design(sp.csr_matrix(x)))
  assert not fitting.is_one_hot(_design.as_design(2 * x))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_default_fit_is_the_certified_l2_optimum(seed):
  """Property: on real features the default model is stationary for the
  penalised objective it reports (certificate <= tol), whatever the start."""
  x, y = _real_data(seed)
  model = es.fit(x, y, n_classes=3)
  record = model.info["refine"]
  assert model.info["method"] == "auto" and record["converged"]
  cert = es.diagnostics.optimality_certificate(model, x, y, l2=record["l2"])
  # The certificate recomputes the gradient of the float32-stored weights.
  assert cert.relative_grad_norm <= 10 * record["tol"]
  path = model.info["l2_path"]
  assert path["folds"] == 5 and len(path["C_grid"]) == len(path["heldout_loss"]) >= 3
  assert path["C"] == path["C_grid"][int(np.argmin(path["heldout_loss"]))]
  assert record["l2"] == pytest.approx(1 / (path["C"] * len(y)))


@pytest.mark.parametrize("start", ["zero", "newton", "cooccurrence"])
def test_every_start_reaches_the_same_optimum(start):
  """A fixed l2 makes the problem strictly convex in W: the start changes the
  path, not the answer (agreement to 1e-4 in probability, from convergence)."""
  x, y = dense_data(np.random.default_rng(3), 500, 8, 4)
  reference = es.fit_optimum(x, y, l2=1e-2, start="zero")
  model = es.fit_optimum(x, y, l2=1e-2, start=start)
  assert model.info["refine"]["converged"]
  np.testing.assert_allclose(model.predict_proba(x), reference.predict_proba(x), atol=1e-4)


def test_real_valued_features_are_accepted_everywhere_but_cooccurrence():
  x, y = _real_data(4)
  for method in ("auto", "newton"):
    assert np.isfinite(es.fit(x, y, method=method).predict_proba(x)).all()
  model = es.fit(x, y, method="newton")
  assert np.isfinite(es.calibrate(model, x, y).log_loss(x, y))
  assert es.refine(model, x, y, steps=5).log_loss(x, y) <= model.log_loss(x, y)
  assert es.diagnostics.optimality_certificate(model, x, y).relative_grad_norm < 1
  with pytest.raises(ValueError, match="method='cooccurrence' needs nonnegative.*method='newton'"):
    es.fit(x, y, method="cooccurrence")
  with pytest.raises(ValueError, match="nonnegative"):
    es.fit(sp.csr_matrix(x), y, method="cooccurrence")


@pytest.mark.parametrize("method", ["auto", "newton", "cooccurrence"])
def test_zero_rows_are_valid_and_predicted_by_the_bias(method):
  x, y = dense_data(np.random.default_rng(5), 300, 5, 3)
  x = np.vstack([x, np.zeros((60, 5))])
  y = np.concatenate([y, np.full(60, 2)])
  model = es.fit(x, y, method=method)
  stats = es.SoftmaxStats.from_data(x, y)
  assert stats.n_samples == 360 and stats.class_mass.sum() == 360
  p = model.predict_proba(np.zeros((1, 5)))[0]
  np.testing.assert_allclose(p, np.exp(model.bias) / np.exp(model.bias).sum(), rtol=1e-5)
  if method != "cooccurrence":  # the count solution has b = 0
    assert p.argmax() == 2
  # All rows empty: nothing but the bias to fit. The optimum is the class
  # frequencies (3:1); one Newton step from uniform gets b = M (c/T - 1/M);
  # the count solution has no bias.
  blank = es.fit(np.zeros((40, 3)), np.array([0, 0, 0, 1] * 10), method=method)
  expected = {"auto": [0.75, 0.25], "newton": [np.exp(.5) / (np.exp(.5) + np.exp(-.5))] * 2,
              "cooccurrence": [0.5, 0.5]}[method]
  expected[1] = 1 - expected[0]
  np.testing.assert_allclose(blank.predict_proba(np.zeros((1, 3)))[0], expected, atol=1e-4)


def test_sample_weights_equal_repeated_rows_with_the_same_folds():
  """With the held-out folds fixed (``cv``), weights equal repetitions."""
  x, y = _real_data(6, t=120)
  w = np.random.default_rng(0).integers(0, 4, len(y))
  rep = np.repeat(np.arange(len(y)), w)
  folds_w = [(np.flatnonzero(np.arange(len(y)) % 3 != k), np.flatnonzero(np.arange(len(y)) % 3 == k))
             for k in range(3)]
  folds_r = [(np.flatnonzero(rep % 3 != k), np.flatnonzero(rep % 3 == k)) for k in range(3)]
  a = es.fit(x, y, sample_weight=w, cv=folds_w)
  b = es.fit(x[rep], y[rep], cv=folds_r)
  # The path's fits stop at a relative gradient norm of fitting.PATH_TOL.
  assert a.info["l2_path"]["heldout_loss"] == pytest.approx(b.info["l2_path"]["heldout_loss"],
                                                            rel=1e-3)
  np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), atol=1e-5)


def test_small_problems_compile_nothing():
  """The first fit, prediction and certificate of a small problem run on the
  host in float64: no JAX compilation (which cost seconds per first call)."""
  from jax import monitoring
  x, y = _real_data(7, t=150, n=4)
  compiled = []
  monitoring.register_event_duration_secs_listener(
      lambda name, secs, **kw: compiled.append(name) if "backend_compile" in name else None)
  model = es.fit(x, y)
  model.predict_proba(x)
  model.log_loss(x, y)
  es.diagnostics.optimality_certificate(model, x, y)
  es.calibrate(es.fit(x, y, method="newton"), x, y)
  assert model.info["refine"]["precision"] == "float64"
  assert compiled == []


def test_bad_arguments_name_the_fix():
  x, y = _real_data(8, t=60)
  with pytest.raises(ValueError, match="method='magic' is unknown"):
    es.fit(x, y, method="magic")
  with pytest.raises(ValueError, match="l2 must be 'auto' or a finite number"):
    es.fit(x, y, l2="big")
  with pytest.raises(ValueError, match="l2 must be a finite number"):
    es.fit(x, y, l2=-1.0)
  with pytest.raises(ValueError, match="tol must be"):
    es.fit(x, y, tol=float("nan"))
  with pytest.raises(ValueError, match="cv must be an integer >= 2"):
    es.fit(x, y, cv=1)
  with pytest.raises(ValueError, match="cv must be an integer >= 2 or"):
    es.fit(x, y, cv=[(np.arange(10), np.array([], int))])
  with pytest.raises(ValueError, match="start=.ones. is unknown; choose one of.*or a SoftmaxModel"):
    es.fit_optimum(x, y, start="ones")
