"""The one-call path ``es.fit`` (``explicit_softmax.fitting``): the model a user wants."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import explicit_softmax as es
from conftest import dense_data, one_hot_data
from explicit_softmax import _design, _progress, fitting


def _real_data(seed: int, t: int = 400, n: int = 6, m: int = 3):
  """Real-valued (centred, mixed-sign) features with a linear class signal."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(t, n)) * rng.uniform(0.5, 3.0, n)
  logits = x @ rng.normal(size=(n, m))
  y = np.array([rng.choice(m, p=np.exp(z - z.max()) / np.exp(z - z.max()).sum())
                for z in logits])
  return x, y


def _certificate(model, x, y, sample_weight=None):
  """The certificate of ``model`` in the terms its record claims (l2 and units)."""
  return es.diagnostics.optimality_certificate(
      model, x, y, sample_weight, l2=model.info["refine"]["l2"], units=model.info["units"])


def test_one_hot_inputs_get_the_exact_count_solution():
  """One-hot rows (dense, CSR, one token) are where the count form is the optimum."""
  x, y = one_hot_data(np.random.default_rng(0), 6, 4, 400)
  auto = es.fit(x, y, smoothing=0.0)
  count = es.fit(x, y, smoothing=0.0, method="cooccurrence")
  np.testing.assert_array_equal(auto.weights, count.weights)
  assert auto.info["method"] == "cooccurrence"
  one_token = es.TokenFeatures(np.random.default_rng(1).integers(0, 5, 300), 5)
  assert es.fit(one_token, np.arange(300) % 3).info["method"] == "cooccurrence"
  assert _design.as_design(sp.csr_matrix(x)).is_one_hot()
  assert not _design.as_design(2 * x).is_one_hot()


def test_several_tokens_and_their_csr_form_get_the_same_optimum():
  """Item 7 of issue 22: bags of tokens get the optimum, whatever their container."""
  rng = np.random.default_rng(2)
  ids = rng.integers(0, 12, (600, 2))
  y = (ids[:, 0] % 3 + (ids[:, 1] > 6)) % 3
  tokens = es.TokenFeatures(ids, 12)
  a = es.fit(tokens, y, tol=1e-8)
  b = es.fit(tokens.to_csr(), y, tol=1e-8)
  assert a.info["method"] == b.info["method"] == "auto"
  assert a.info["l2_path"]["C"] == pytest.approx(b.info["l2_path"]["C"], rel=1e-6)
  np.testing.assert_allclose(a.predict_proba(tokens), b.predict_proba(tokens.to_csr()),
                             atol=1e-6)
  count = es.fit(tokens, y, method="cooccurrence")
  assert a.log_loss(tokens, y) < count.log_loss(tokens, y)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_default_fit_is_the_certified_optimum(seed):
  """Property: on real features the default model is stationary for the
  penalised objective (6) it reports, in its units (certificate <= tol)."""
  x, y = _real_data(seed)
  model = es.fit(x, y, n_classes=3)
  record = model.info["refine"]
  assert model.info["method"] == "auto" and record["converged"]
  assert record["relative_grad_norm"] <= record["tol"]
  # The certificate recomputes the gradient of the float32-stored weights, whose
  # rounding (2^-24 relative) is far below tol = 1e-4.
  assert _certificate(model, x, y).relative_grad_norm <= 2 * record["tol"]
  path = model.info["l2_path"]
  assert path["method"] == "evidence" and path["fits"] >= 3
  best = int(np.argmax(path["log_evidence"]))
  assert path["C_tried"][max(best - 1, 0)] <= path["C"] <= path["C_tried"][
      min(best + 1, len(path["C_tried"]) - 1)]
  assert record["l2"] == pytest.approx(1 / (path["C"] * len(y)))


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000), log_scale=st.lists(st.floats(-3, 3), min_size=6,
                                                        max_size=6),
       shift=st.lists(st.floats(-100, 100), min_size=6, max_size=6))
def test_rescaling_or_shifting_a_feature_changes_no_prediction(seed, log_scale, shift):
  """The units (7) make the fit invariant to per-feature affine maps (item 4 of issue 22)."""
  x, y = _real_data(seed, t=300)
  scale = 10.0 ** np.asarray(log_scale) * np.where(np.arange(6) % 2, -1, 1)
  moved = x * scale + np.asarray(shift) * 10.0 ** np.asarray(log_scale)
  a, b = es.fit(x, y, tol=1e-8), es.fit(moved, y, tol=1e-8)
  assert a.info["l2_path"]["C"] == pytest.approx(b.info["l2_path"]["C"], rel=1e-4)
  np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(moved), atol=1e-4)


@pytest.mark.parametrize("start", ["zero", "newton", "cooccurrence"])
def test_every_start_reaches_the_same_optimum(start):
  """A fixed l2 makes (6) strictly convex in W: the start changes the path, not
  the answer (agreement to 1e-4 in probability, from convergence)."""
  x, y = dense_data(np.random.default_rng(3), 500, 8, 4)
  reference = es.fit_optimum(x, y, l2=1e-2, start="zero", tol=1e-8)
  model = es.fit_optimum(x, y, l2=1e-2, start=start, tol=1e-8)
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


def test_sample_weights_equal_repeated_rows():
  """Integer weights are repetitions: the statistics, the evidence (9) and the
  optimum are the same sums, so the same C and model (to the tight tol asked)."""
  x, y = _real_data(6, t=120)
  w = np.random.default_rng(0).integers(0, 4, len(y))
  rep = np.repeat(np.arange(len(y)), w)
  a = es.fit(x, y, sample_weight=w, tol=1e-9)
  b = es.fit(x[rep], y[rep], tol=1e-9)
  assert a.info["l2_path"]["C"] == pytest.approx(b.info["l2_path"]["C"], rel=1e-6)
  np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), atol=1e-5)


def test_heldout_folds_choose_l2_when_given():
  """``cv`` replaces the evidence by held-out loss along the warm-started path."""
  x, y = _real_data(9, t=200)
  model = es.fit(x, y, cv=3)
  path = model.info["l2_path"]
  assert path["method"] == "heldout" and path["folds"] == 3
  best = int(np.argmin(path["heldout_loss"]))  # C: the parabola's vertex around it
  grid = path["C_grid"]
  assert grid[max(best - 1, 0)] <= path["C"] <= grid[min(best + 1, len(grid) - 1)]
  assert model.info["refine"]["converged"]
  folds = [(np.flatnonzero(np.arange(200) % 2 == k), np.flatnonzero(np.arange(200) % 2 != k))
           for k in range(2)]
  assert es.fit(x, y, cv=folds).info["l2_path"]["folds"] == 2


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


def test_large_dense_fits_run_float32_products_and_still_converge():
  """Item 6 of issue 22: float32 products, float64 sums; the certificate,
  recomputed from scratch, holds on any CPU's rounding (it is a bound on the
  gradient, not agreement with one machine's run)."""
  rng = np.random.default_rng(11)
  x = rng.normal(size=(6000, 80)).astype(np.float32) * 3 + 5
  y = (x[:, :10] @ rng.normal(size=(10, 10))).argmax(1)
  model = es.fit(x, y)
  record = model.info["refine"]
  assert record["precision"] == "float32" and record["converged"]
  assert _certificate(model, x, y).relative_grad_norm <= 2 * record["tol"]
  tight = es.fit(x, y, tol=1e-7)
  assert tight.info["refine"]["precision"] == "float64"


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_long_fits_show_progress_and_verbose_false_silences_it(monkeypatch):
  """Item 8 of issue 22: a fit longer than PROGRESS_DELAY_SECONDS shows a bar."""
  x, y = _real_data(10)
  monkeypatch.setattr(fitting, "PROGRESS_DELAY_SECONDS", 0.0)
  bars = []
  real = _progress.progress

  def plain(*args, **kwargs):
    tty = _Terminal()
    bar = _progress.TextBar(*args, stream=tty, **kwargs)
    bars.append((bar, tty))
    return bar

  monkeypatch.setattr(_progress, "progress", plain)
  es.fit(x, y)
  assert "es.fit" in bars[-1][1].getvalue() and "step" in bars[-1][1].getvalue()
  es.fit(x, y, verbose=False)
  assert bars[-1][1].getvalue() == ""
  monkeypatch.setattr(_progress, "progress", real)
  with pytest.raises(ValueError, match="verbose must be"):
    es.fit(x, y, verbose="yes")


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
  with pytest.raises(ValueError, match="units must have a mean and a scale of shape"):
    es.diagnostics.optimality_certificate(es.fit(x, y), x, y, units=([0.0], [1.0]))


def test_a_fit_on_host_data_never_loads_jax():
  """Importing the library and fitting host data load no JAX (seconds per process):
  it loads with the first jitted loop, device array or sharded pass."""
  import subprocess
  import sys
  code = ("import sys, numpy as np, explicit_softmax as es\n"
          "x = np.random.default_rng(0).normal(size=(200, 5)); y = (x[:, 0] > 0).astype(int)\n"
          "m = es.fit(x, y); es.refine(m, x, y, steps=3)\n"
          "es.calibrate(es.fit(x, y, method='newton'), x, y)\n"
          "assert 'jax' not in sys.modules and 'optax' not in sys.modules, 'JAX was loaded'\n"
          "es.refine(m, x, y, method='adam', steps=2)\n"
          "assert 'jax' in sys.modules\n")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]


def test_start_auto_is_deprecated_for_zero():
  x, y = _real_data(12, t=80)
  with pytest.warns(DeprecationWarning, match="start='auto'.*pass start='zero'"):
    model = es.fit_optimum(x, y, l2=1e-2, start="auto")
  assert model.info["start"] == "zero"
