"""Refinement and calibration (``explicit_softmax.refinement``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from conftest import dense_data, one_hot_data


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_lbfgs_never_increases_the_loss_and_reaches_one_optimum(seed):
  """Property 6: monotone L-BFGS; from the explicit solution and from zero it
  reaches the same optimum (the problem is strictly convex with l2 > 0)."""
  x, y = dense_data(np.random.default_rng(seed), 200, 6, 3)
  l2 = 1e-2
  start = es.fit(x, y, n_classes=3, method="cooccurrence")  # some seeds draw no label 2
  zero = es.SoftmaxModel(np.zeros((6, 3)), np.zeros(3))
  a = es.refine(start, x, y, method="lbfgs", steps=500, l2=l2)
  b = es.refine(zero, x, y, method="lbfgs", steps=500, l2=l2)
  for run in (a, b):
    assert np.all(np.diff(run.history.loss) <= 0)
    record = run.info["refine"]
    assert record["converged"] and record["relative_grad_norm"] <= 1e-6
    assert record["precision"] == "float64"
    assert record["steps"] == len(run.history.loss) < 500
  # Both stop within a relative gradient norm of 1e-6 of the unique optimum;
  # with curvature >= l2 in W that puts them within ~1e-5 of each other there.
  assert a.history.loss[-1] == pytest.approx(b.history.loss[-1], rel=1e-8)
  np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), atol=1e-4)


def test_lbfgs_from_the_one_hot_optimum_stays_there():
  x, y = one_hot_data(np.random.default_rng(0), 6, 4, 400)
  exact = es.fit(x, y, smoothing=0, method="cooccurrence")
  refined = es.refine(exact, x, y, steps=20)
  assert refined.log_loss(x, y) <= exact.log_loss(x, y) + 1e-6
  assert refined.log_loss(x, y) >= exact.log_loss(x, y) - 1e-5


@pytest.mark.parametrize("method", ["adam", "sgd"])
def test_first_order_methods_descend(method):
  x, y = dense_data(np.random.default_rng(1), 600, 6, 3)
  zero = es.SoftmaxModel(np.zeros((6, 3)), np.zeros(3))
  full = es.refine(zero, x, y, method=method, steps=100, learning_rate=0.05)
  mini = es.refine(zero, x, y, method=method, steps=100, batch_size=64, learning_rate=0.05)
  for run in (full, mini):
    assert run.log_loss(x, y) < zero.log_loss(x, y) - 0.05
    assert len(run.history.loss) == 100
    assert np.all(np.diff(run.history.seconds) >= 0)


def test_minibatch_order_is_seeded_and_sparse_and_token_inputs_work():
  rng = np.random.default_rng(2)
  x, y = dense_data(rng, 300, 5, 3)
  zero = es.SoftmaxModel(np.zeros((5, 3)), np.zeros(3))
  a = es.refine(zero, x, y, method="adam", steps=30, batch_size=32, seed=7)
  b = es.refine(zero, sp.csr_matrix(x), y, method="adam", steps=30, batch_size=32, seed=7)
  np.testing.assert_allclose(a.weights, b.weights, rtol=1e-4, atol=1e-5)
  tokens = es.TokenFeatures(rng.integers(0, 4, size=(300, 2)), 4)
  z8 = es.SoftmaxModel(np.zeros((8, 3)), np.zeros(3))
  # SGD, not Adam: these labels hardly depend on the tokens, so some gradients
  # are round-off-sized, and Adam (which divides each by its running RMS) turns
  # the gather/scatter-add path's different summation order (nondeterministic
  # on GPUs) into steps of order lr; SGD keeps it round-off-sized.
  c = es.refine(z8, tokens, y, method="sgd", steps=30, batch_size=32)
  d = es.refine(z8, tokens.to_csr().toarray(), y, method="sgd", steps=30, batch_size=32)
  np.testing.assert_allclose(c.weights, d.weights, rtol=1e-4, atol=1e-5)
  assert c.log_loss(tokens, y) < z8.log_loss(tokens, y)
  e = es.refine(z8, tokens, y, method="lbfgs", steps=10)
  assert e.log_loss(tokens, y) < z8.log_loss(tokens, y)


def test_callback_sees_every_step_and_can_stop():
  x, y = dense_data(np.random.default_rng(3), 100, 4, 2)
  seen = []

  def callback(step, model, record):
    seen.append((step, record["loss"], model.log_loss(x, y)))
    return step == 4

  run = es.refine(es.fit(x, y, method="cooccurrence"), x, y, method="sgd", steps=50, callback=callback)
  assert [s for s, *_ in seen] == [0, 1, 2, 3, 4]
  assert len(run.history.loss) == 5
  assert run.info["refine"]["steps"] == 5


@pytest.mark.parametrize("method", ["adam", "sgd"])
def test_callback_every_k_steps_runs_the_same_steps(method):
  """Steps between callbacks run in one jitted loop: same batches, same rates,
  same iterates as step by step; the callback sees every k-th step and the last."""
  x, y = dense_data(np.random.default_rng(5), 200, 6, 3)
  zero = es.SoftmaxModel(np.zeros((6, 3)), np.zeros(3))
  schedule = lambda k: 0.05 / (1 + k)  # noqa: E731
  kwargs = dict(method=method, steps=47, batch_size=16, learning_rate=schedule, seed=3)
  every_step, every_5 = [], []
  a = es.refine(zero, x, y, callback=lambda k, m, r: every_step.append((k, m)), **kwargs)
  b = es.refine(zero, x, y, callback=lambda k, m, r: every_5.append((k, m)), callback_every=5,
                **kwargs)
  c = es.refine(zero, x, y, **kwargs)  # no callback: whole epochs per call
  assert [k for k, _ in every_step] == list(range(47))
  assert [k for k, _ in every_5] == [4, 9, 14, 19, 24, 29, 34, 39, 44, 46]
  for k, model in every_5:
    np.testing.assert_allclose(model.weights, every_step[k][1].weights, rtol=1e-5, atol=1e-7)
  for run in (b, c):
    np.testing.assert_allclose(run.weights, a.weights, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(run.history.loss, a.history.loss, rtol=1e-5)
    assert len(run.history.seconds) == 47 and np.all(np.diff(run.history.seconds) >= 0)


def test_jitted_segments_serve_tokens_and_preconditioning():
  """Token inputs and whitened coordinates take the jitted loop too: a run with no
  callback (whole epochs per call) equals one called back after every step."""
  rng = np.random.default_rng(7)
  tokens = es.TokenFeatures(rng.integers(0, 5, size=(240, 2)), 5)
  y = (tokens.ids[:, 0] + rng.integers(0, 2, 240)) % 3
  zero = es.SoftmaxModel(np.zeros((10, 3)), np.zeros(3))
  x, yd = dense_data(rng, 240, 6, 3)
  for args, start, kwargs in ((tokens, y), zero, {}), ((x, yd), es.fit(x, yd, method="cooccurrence"),
                                                      {"precondition": True}):
    run = dict(method="adam", steps=40, batch_size=32, learning_rate=0.05, **kwargs)
    stepwise = es.refine(start, *args, callback=lambda k, m, r: None, **run)
    fused = es.refine(start, *args, **run)
    np.testing.assert_allclose(fused.weights, stepwise.weights, rtol=1e-5, atol=1e-6)
    assert fused.log_loss(*args) < start.log_loss(*args)


def test_callback_every_can_stop_and_is_validated():
  x, y = dense_data(np.random.default_rng(6), 200, 6, 3)
  zero = es.SoftmaxModel(np.zeros((6, 3)), np.zeros(3))
  run = es.refine(zero, x, y, method="adam", steps=100, batch_size=16, callback_every=10,
                  callback=lambda k, m, r: k >= 20)
  assert len(run.history.loss) == 30
  with pytest.raises(ValueError, match="callback_every"):
    es.refine(zero, x, y, method="adam", steps=5, batch_size=16, callback_every=0)


def test_calibrate_improves_training_loss_and_only_rescales():
  x, y = dense_data(np.random.default_rng(4), 500, 6, 4)
  model = es.fit(x, y, method="cooccurrence")
  cal = es.calibrate(model, x, y)
  assert cal.log_loss(x, y) < model.log_loss(x, y)
  tau = cal.info["calibration"]["temperature"]
  np.testing.assert_allclose(cal.weights, tau * model.weights, rtol=1e-5)
  # Calibrating again finds nothing more to gain.
  assert es.calibrate(cal, x, y).log_loss(x, y) == pytest.approx(cal.log_loss(x, y), abs=1e-5)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), l2=st.sampled_from([0.0, 1e-3, 0.1]))
def test_calibrate_is_stationary_and_l2_shrinks_the_biases(seed, l2):
  """The calibrated (tau, beta) zero the gradient of the penalised objective
  ``CE + l2/2 ||beta||^2``; a larger l2 never lengthens the bias corrections."""
  x, y = dense_data(np.random.default_rng(seed), 300, 5, 4)
  y[:4] = np.arange(4)  # every class present, so l2 = 0 has a finite optimum
  model = es.fit(x, y, n_classes=4, method="cooccurrence")
  cal = es.calibrate(model, x, y, l2=l2)
  tau = cal.info["calibration"]["temperature"]
  beta = cal.bias - tau * model.bias
  z = x.astype(np.float64) @ model.weights + model.bias
  r = (cal.predict_proba(x) - np.eye(4)[y]) / len(y)
  np.testing.assert_allclose(r.sum(axis=0) + l2 * beta, 0, atol=1e-6)
  assert abs((r * z).sum()) < 1e-6
  stronger = es.calibrate(model, x, y, l2=l2 + 0.5)
  beta_stronger = stronger.bias - stronger.info["calibration"]["temperature"] * model.bias
  assert np.linalg.norm(beta_stronger) <= np.linalg.norm(beta) + 1e-9


def test_calibrate_needs_every_class_or_l2():
  """A class absent from the calibration rows has no finite maximum-likelihood
  bias: an error naming it, unless l2 > 0 keeps the bias finite and lowers it."""
  x, y = dense_data(np.random.default_rng(8), 200, 5, 3)
  y[:3] = np.arange(3)
  model = es.fit(x, y, n_classes=4, method="cooccurrence")
  with pytest.raises(ValueError, match=r"1 of 4 classes \(3\) have no samples.*l2 > 0"):
    es.calibrate(model, x, y)
  cal = es.calibrate(model, x, y, l2=1 / len(y))
  assert np.all(np.isfinite(cal.bias))
  assert cal.bias[3] - cal.info["calibration"]["temperature"] * model.bias[3] < 0
  for bad in (-1.0, float("nan"), float("inf")):
    with pytest.raises(ValueError, match="l2 must be"):
      es.calibrate(model, x, y, l2=bad)


def test_refine_rejects_bad_arguments():
  x, y = dense_data(np.random.default_rng(5), 50, 4, 2)
  model = es.fit(x, y, method="cooccurrence")
  with pytest.raises(ValueError, match="method='newton' is unknown; choose one of"):
    es.refine(model, x, y, method="newton")
  with pytest.raises(ValueError, match="full-batch"):
    es.refine(model, x, y, method="lbfgs", batch_size=8)
  with pytest.raises(ValueError, match="l2"):
    es.refine(model, x, y, l2=-1)
  with pytest.raises(ValueError, match="fitted on 4"):
    es.refine(model, x[:, :3], y)


def test_preconditioned_lbfgs_reaches_the_same_optimum():
  """Whitening by the Gram matrix is a change of variables: same optimum, same
  monotone descent; it only changes the path (and, on ill-conditioned X, speed)."""
  rng = np.random.default_rng(6)
  x, y = dense_data(rng, 300, 6, 3)
  x[:, 1] *= 50  # badly scaled feature
  start = es.fit(x, y, method="cooccurrence")
  plain = es.refine(start, x, y, steps=1000, l2=1e-2)
  whitened = es.refine(start, x, y, steps=1000, l2=1e-2, precondition=True)
  assert np.all(np.diff(whitened.history.loss) <= 0)
  assert whitened.info["refine"]["precondition"] is True
  for run in (plain, whitened):  # convergence, not rounding luck, makes them agree
    assert run.info["refine"]["converged"], run.info["refine"]
  # float32 storage of the weights perturbs the loss by about 1e-7.
  assert whitened.log_loss(x, y) == pytest.approx(plain.log_loss(x, y), abs=2e-6)
  np.testing.assert_allclose(whitened.predict_proba(x), plain.predict_proba(x), atol=1e-4)


def test_refine_says_why_it_stopped():
  """``steps`` is a maximum; the record says whether the run converged and why."""
  x, y = dense_data(np.random.default_rng(8), 300, 6, 3)
  start = es.fit(x, y, method="cooccurrence")
  short = es.refine(start, x, y, steps=2, l2=1e-2)
  assert short.info["refine"]["converged"] is False
  assert short.info["refine"]["reason"] == "reached the maximum number of steps"
  assert short.info["refine"]["steps"] == 2
  done = es.refine(start, x, y, steps=500, l2=1e-2, tol=1e-3)
  assert done.info["refine"]["converged"] and done.info["refine"]["relative_grad_norm"] <= 1e-3
  cert = es.diagnostics.optimality_certificate(done, x, y, l2=1e-2)
  # The certificate recomputes the gradient of the saved (float32) weights.
  assert cert.relative_grad_norm <= 2e-3
  stopped = es.refine(start, x, y, steps=50, l2=1e-2, callback=lambda *a: True)
  assert stopped.info["refine"]["reason"] == "stopped by the callback"
  minibatch = es.refine(start, x, y, method="adam", steps=5, batch_size=32)
  assert minibatch.info["refine"]["converged"] is False
  assert minibatch.info["refine"]["relative_grad_norm"] is None
  with pytest.raises(ValueError, match="tol must be"):
    es.refine(start, x, y, tol=-1)


def test_float32_device_lbfgs_records_how_it_stopped(monkeypatch):
  """Above ``HOST_MAX_WORK`` L-BFGS runs jitted in float32: still monotone, and
  its record says whether it converged or stalled (never a silent stop)."""
  from explicit_softmax import _convergence, refinement
  monkeypatch.setattr(refinement, "HOST_MAX_WORK", 0)
  x, y = dense_data(np.random.default_rng(9), 300, 6, 3)
  run = es.refine(es.fit(x, y, method="cooccurrence"), x, y, steps=300, l2=1e-2, tol=1e-3)
  record = run.info["refine"]
  assert record["precision"] == "float32"
  assert np.all(np.diff(run.history.loss) <= 0)
  assert record["reason"] in (_convergence.REASONS["tol"], _convergence.REASONS["stalled"])
  assert record["converged"] == (record["relative_grad_norm"] <= 1e-3)


def test_gram_preconditioner_is_a_damped_cholesky_factor():
  from explicit_softmax import _design, refinement
  x, _ = dense_data(np.random.default_rng(7), 200, 5, 2)
  chol = refinement.gram_preconditioner(_design.as_design(x), rows=10_000, ridge=0.5)
  x1 = np.hstack([x, np.ones((200, 1))])
  gram = x1.T @ x1 / 200
  expected = gram + 0.5 * np.trace(gram) / 6 * np.eye(6)
  np.testing.assert_allclose(chol @ chol.T, expected, rtol=1e-4)
  assert np.allclose(chol, np.tril(chol))


def test_learning_rates_are_validated():
  """A negative or NaN rate (constant, or a schedule's value at some step) would
  ascend or poison the loss silently; L-BFGS chooses its own steps."""
  x, y = dense_data(np.random.default_rng(3), 120, 5, 3)
  zero = es.SoftmaxModel(np.zeros((5, 3)), np.zeros(3))
  for rate in (-0.1, float("nan"), float("inf")):
    with pytest.raises(ValueError, match="learning_rate must be finite and >= 0"):
      es.refine(zero, x, y, method="sgd", steps=3, learning_rate=rate)
  with pytest.raises(ValueError, match="learning_rate must be a number"):
    es.refine(zero, x, y, method="adam", steps=3, learning_rate="fast")
  for batch_size in (None, 16):  # the per-step path and the jitted segments
    with pytest.raises(ValueError, match="schedule's value at step 4"):
      es.refine(zero, x, y, method="adam", steps=10, batch_size=batch_size,
                learning_rate=lambda k: 0.1 - 0.03 * k)
  with pytest.raises(ValueError, match="L-BFGS takes its step sizes from a line search"):
    es.refine(zero, x, y, method="lbfgs", steps=3, learning_rate=0.1)


@pytest.mark.parametrize("batch_size", [None, 16])
def test_divergence_raises_instead_of_returning_nan(batch_size):
  """A step size far too large overflows the logits (the parameters may stay
  finite): refine says so, with the step, rather than return a NaN model."""
  x, y = dense_data(np.random.default_rng(4), 120, 5, 3)
  x = x * 100
  with pytest.raises(ValueError, match="refinement diverged.*at step 1.*Lower the learning"):
    es.refine(es.fit(x, y, method="cooccurrence"), x, y, method="sgd", steps=20, batch_size=batch_size,
              learning_rate=1e30)


def test_learning_rate_schedule_is_called_per_step():
  """A schedule ``step -> rate`` equals the constant rate when constant; rate 0 halts."""
  x, y = dense_data(np.random.default_rng(3), 300, 5, 3)
  start = es.fit(x, y, method="cooccurrence")
  seen = []

  def constant(k):
    seen.append(k)
    return 0.05

  a = es.refine(start, x, y, method="sgd", steps=20, batch_size=32, learning_rate=constant)
  b = es.refine(start, x, y, method="sgd", steps=20, batch_size=32, learning_rate=0.05)
  assert seen == list(range(20))
  np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6, atol=1e-7)
  frozen = es.refine(start, x, y, method="adam", steps=10, batch_size=32,
                     learning_rate=lambda k: 0.0)
  np.testing.assert_allclose(frozen.weights, start.weights, atol=1e-7)
  decayed = es.refine(start, x, y, method="adam", steps=20,
                      learning_rate=lambda k: 0.05 * (1 - k / 20))
  assert decayed.log_loss(x, y) < start.log_loss(x, y)


def test_an_optax_transformation_reaches_the_optimum_of_the_named_methods():
  """``method`` takes any optax GradientTransformation, run by the loop of "adam".

  ``optax.adam(r)`` is what ``method="adam", learning_rate=r`` runs (up to the float32
  rounding of its hyperparameters), so both converge. Every converged run is near the float64 optimum
  ``theta*`` of host L-BFGS by convexity: ``0 <= J(theta) - J* <= <grad J(theta),
  theta - theta*> <= ||grad J(theta)|| ||theta - theta*||``, gradients in float64.
  """
  import json

  import optax
  from explicit_softmax import _design, _objective, _validation
  x, y = dense_data(np.random.default_rng(11), 300, 6, 3)
  l2, tol = 1e-2, 1e-4
  zero = es.SoftmaxModel(np.zeros((6, 3)), np.zeros(3))
  named = es.refine(zero, x, y, method="adam", learning_rate=0.05, steps=3000, l2=l2, tol=tol)
  runs = [es.refine(zero, x, y, method=tx, steps=3000, l2=l2, tol=tol) for tx in (
      optax.adam(0.05), optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05)),
      optax.lbfgs())]  # optax.lbfgs takes value, grad and value_fn: the loop passes them
  # The shortcut and optax.adam differ in how their hyperparameters round in float32, and
  # over thousands of steps how far that carries differs between CPUs: assert what the
  # math gives, that both converge (the certificate of every transformation is checked below).
  assert named.info["refine"]["converged"] and runs[0].info["refine"]["converged"]
  assert named.info["refine"]["relative_grad_norm"] <= tol
  optimum = es.refine(zero, x, y, steps=1000, l2=l2, tol=1e-10)
  design = _design.as_design(x)
  targets = _validation.check_targets(y, 300, 3)
  w = np.full(300, 1 / 300)

  def objective_and_grad(model):
    theta = np.vstack([model.weights, model.bias]).astype(np.float64)
    return (*_objective.penalised_objective(design, targets, w, theta, l2), theta)

  best, _, theta_star = objective_and_grad(optimum)
  for run in [named] + runs:
    record = run.info["refine"]
    assert record["converged"] and record["relative_grad_norm"] <= tol, record
    assert record["precision"] == "float32" and record["evaluations"] is None
    value, grad, theta = objective_and_grad(run)
    # 1e-9: the optimum's own distance from J*, its gradient norm 1e-10 relative.
    assert -1e-9 <= value - best <= np.linalg.norm(grad) * np.linalg.norm(theta - theta_star) + 1e-9
  for run in runs:
    record = run.info["refine"]
    assert record["method"] == "optax.GradientTransformation"
    assert record["learning_rate"] is None
    json.dumps(record)  # JSON-safe, as the other records


@pytest.mark.parametrize("callback_every", [1, 5])
def test_an_optax_transformation_takes_the_minibatch_steps_of_its_shortcut(callback_every):
  """Minibatches (jitted segments between callbacks) feed a user's transformation the
  batches the shortcut gets: ``optax.sgd(r)`` and ``method="sgd"`` take the same steps."""
  import optax
  x, y = dense_data(np.random.default_rng(5), 200, 6, 3)
  zero = es.SoftmaxModel(np.zeros((6, 3)), np.zeros(3))
  kwargs = dict(steps=30, batch_size=16, seed=3, callback_every=callback_every,
                callback=lambda k, m, r: None)
  named = es.refine(zero, x, y, method="sgd", learning_rate=0.05, **kwargs)
  user = es.refine(zero, x, y, method=optax.sgd(0.05), **kwargs)
  np.testing.assert_allclose(user.weights, named.weights, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(user.history.loss, named.history.loss, rtol=1e-5)
  assert user.info["refine"]["reason"] == named.info["refine"]["reason"]
  assert user.info["refine"]["batch_size"] == 16


def test_refine_rejects_what_is_not_an_optimiser():
  """``method`` is a name or a transformation; a transformation brings its own rate."""
  import optax
  x, y = dense_data(np.random.default_rng(5), 50, 4, 2)
  model = es.fit(x, y, method="cooccurrence")
  for bad in (object(), optax.adam, 3):
    with pytest.raises(ValueError, match=r"method=.* is unknown; choose one of \('lbfgs', "
                                         r"'adam', 'sgd'\) or an optax.GradientTransformation"):
      es.refine(model, x, y, method=bad)
  with pytest.raises(ValueError, match=r"learning_rate=0.1 is for method='adam' or 'sgd'.*"
                                       r"Leave learning_rate=None"):
    es.refine(model, x, y, method=optax.adam(1e-3), learning_rate=0.1)


def test_the_old_preconditioning_module_still_imports_with_a_deprecation_warning():
  import importlib
  import sys
  from explicit_softmax import refinement
  sys.modules.pop("explicit_softmax.preconditioning", None)
  with pytest.warns(DeprecationWarning, match="explicit_softmax.refinement.Standardizer"):
    old = importlib.import_module("explicit_softmax.preconditioning")
  assert old.Standardizer is refinement.Standardizer
