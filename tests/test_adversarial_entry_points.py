"""Bad and edge-case inputs through every public entry point beyond es.fit.

Each case is a call and the words its ValueError must contain: the parameter
and the problem (issue "Nothing silently wrong"). ``test_adversarial.py`` drives
random inputs through fit/refine/calibrate/predict/load; this module covers the
sharded pass, SparseCountModel, the diagnostics, the estimator, the adapters and
the CLI, plus the checks that only a table of cases shows to be complete.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import explicit_softmax as es
from explicit_softmax import _validation
from explicit_softmax import diagnostics as dg

RNG = np.random.default_rng(0)
X = RNG.random((60, 4)).astype(np.float32)
Y = RNG.integers(0, 3, 60)
IDS = RNG.integers(0, 5, (60, 2))
TOKENS = es.TokenFeatures(IDS, 5)
MODEL = es.fit(X, Y, method="cooccurrence")
COUNTS = es.SparseCountModel.fit(TOKENS, Y)
LM = es.SparseCountModel.fit(es.TokenFeatures(IDS[:, :1], 5), IDS[:, 1], n_classes=5)
# Values that are not what a numeric parameter takes; each must name the parameter.
NOT_NUMBERS = [np.nan, np.inf, -1, "1", None, True, [1]]
NOT_COUNTS = [np.nan, np.inf, -1, "1", None, True, [1], 2.5, 0]


def _sharded(**kwargs):
  import jax.numpy as jnp
  return es.SoftmaxStats.from_sharded(jnp.asarray(X), Y, **kwargs)


# -- numeric parameters: every entry point, every kind of wrong value -------------------

INTEGER_PARAMETERS = {
    "n_classes": lambda v: _sharded(n_classes=v),
    "chunk_rows": lambda v: _sharded(chunk_rows=v),
    "n_draws": lambda v: dg.loss_gradient_width(MODEL, X, Y, n_draws=v),
    "vocab_size": lambda v: es.TokenFeatures(IDS, v),
    "n_features": lambda v: es.SoftmaxStats.empty(v, 3),
    "batch_size": lambda v: es.refine(MODEL, X, Y, method="adam", batch_size=v, steps=1),
    "n": lambda v: LM.sample([1], v),
}
NUMBER_PARAMETERS = {
    "smoothing": lambda v: COUNTS.with_smoothing(v),
    "l2": lambda v: dg.optimality_certificate(MODEL, X, Y, l2=v),
    "tol": lambda v: es.fit(X, Y, tol=v),
    "ridge": lambda v: es.fit(X, Y, method="newton", ridge=v),
}


@pytest.mark.parametrize("value", NOT_COUNTS, ids=repr)
@pytest.mark.parametrize("name", sorted(INTEGER_PARAMETERS))
def test_integer_parameters_name_themselves_and_the_value(name, value):
  if name == "n" and value == 0:
    assert LM.sample([1], 0).shape == (0,)  # zero draws is a valid request
    return
  if value is None and name in ("n_classes", "chunk_rows", "batch_size"):
    INTEGER_PARAMETERS[name](value)  # None is their documented default
    return
  with pytest.raises(ValueError, match=rf"^{name} must be (a positive integer|an integer >= \d); got"):
    INTEGER_PARAMETERS[name](value)


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
@pytest.mark.parametrize("name", sorted(NUMBER_PARAMETERS))
def test_number_parameters_name_themselves_and_the_value(name, value):
  with pytest.raises(ValueError, match=rf"^{name} must be a finite number [>=]+ 0; got"):
    NUMBER_PARAMETERS[name](value)


@pytest.mark.parametrize("value", [-1, 2.5, "7", None, True])
def test_seeds_are_checked_by_name(value):
  if value is None:  # None is no seed for the sampler: its default
    return
  with pytest.raises(ValueError, match="^seed must be an integer >= 0; got"):
    dg.loss_gradient_width(MODEL, X, Y, seed=value)
  with pytest.raises(ValueError, match="^seed must be an integer >= 0; got"):
    LM.sample([1], 3, seed=value)


@pytest.mark.parametrize("cv, match", [
    (1, "cv must be an integer >= 2; got 1"),
    (2.5, "cv must be an integer >= 2 or .* got 2.5"),
    ("5", "cv must be an integer >= 2 or .* got '5'"),
    ([1, 2], "got the entry 1"),
    ([(np.arange(10), np.array([], int))], r"shapes \(10,\) and \(0,\)"),
    ([(np.arange(10.0), np.arange(10, 20))], "dtypes float64 and int64"),
    ([(np.arange(10), np.arange(50, 70))], r"in \[0, 60\)"),
    ([], "cv gave no pairs"),
])
def test_cv_is_checked_before_any_fit(cv, match):
  with pytest.raises(ValueError, match=match):
    es.fit(X, Y, cv=cv)


# -- non-model arguments --------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: es.refine(None, X, Y),
    lambda: es.calibrate(X, X, Y),
    lambda: dg.optimality_certificate("model", X, Y),
    lambda: dg.loss_gradient_width(None, X, Y),
    lambda: dg.mean_kl(MODEL, None, X),
    lambda: dg.weight_cosine(None, MODEL),
    lambda: dg.agreement(MODEL, COUNTS, X),
])
def test_functions_of_a_model_refuse_anything_else(call):
  with pytest.raises(ValueError, match=r"must be a SoftmaxModel \(fit one with es.fit"):
    call()


# -- the sharded pass gives the in-memory messages ----------------------------------------

@pytest.mark.parametrize("y, kwargs, match", [
    (Y[:-1], {}, "X has 60 samples but y has 59"),
    (Y + 0.5, {}, "not integral"),
    (Y - 1, {"n_classes": 3}, r"labels must lie in \[0, n_classes=3\); found values in \[-1"),
    (np.eye(3)[Y] * 0.5, {}, "soft-label rows must sum to 1"),
    (np.eye(3)[Y], {"n_classes": 4}, "soft labels have 3 columns but n_classes=4"),
    (Y, {"sample_weight": -np.ones(60)}, "sample_weight must be finite and nonnegative"),
    (Y, {"sample_weight": np.ones(59)}, r"sample_weight must have shape \(60,\)"),
    (Y, {"sample_weight": 0.0}, "sums to zero"),
    (np.array(["a"] * 60), {}, "got dtype <U1"),
])
def test_sharded_statistics_refuse_like_the_host_pass(y, kwargs, match):
  import jax.numpy as jnp
  for call in (lambda: _sharded(**kwargs) if y is Y else
               es.SoftmaxStats.from_sharded(jnp.asarray(X), y, **kwargs),
               lambda: es.SoftmaxStats.from_data(X, y, **kwargs)):
    with pytest.raises(ValueError, match=match):
      call()


def test_sharded_statistics_refuse_ids_as_labels_before_allocating():
  huge = Y.copy()
  huge[0] = 2 * 10**8
  with pytest.raises(ValueError, match="GiB, more than the 4 GiB limit.*encode them first"):
    _sharded_labels(huge)


def _sharded_labels(y):
  import jax.numpy as jnp
  return es.SoftmaxStats.from_sharded(jnp.asarray(X), y)


# -- SparseCountModel -------------------------------------------------------------------

@pytest.mark.parametrize("args, match", [
    ((np.ones((4, 3)), 2, 1.0, 1), "counts must be a 2-D scipy.sparse matrix"),
    ((sp.csr_matrix(-np.ones((4, 3))), 2, 1.0, 1), "counts must be nonnegative"),
    ((sp.csr_matrix(np.full((4, 3), np.nan)), 2, 1.0, 1), "counts contain NaN or inf"),
    ((sp.csr_matrix(np.ones((5, 3))), 2, 1.0, 1), "not a positive multiple of vocab_size=2"),
    ((sp.csr_matrix(np.ones((4, 3))), 2, 0.0, 1), "total_weight must be a finite number > 0"),
    ((sp.csr_matrix(np.ones((4, 3))), 2, 1.0, -1), "n_samples must be an integer >= 0"),
    ((sp.csr_matrix(np.ones((4, 3))), 2, 1.0, 1, 0.0), "smoothing must be a finite number > 0"),
])
def test_sparse_count_model_checks_its_fields(args, match):
  with pytest.raises(ValueError, match=match):
    es.SparseCountModel(*args)


@pytest.mark.parametrize("call, match", [
    (lambda: COUNTS.predict(X), "needs token contexts as es.TokenFeatures"),
    (lambda: COUNTS.predict(es.TokenFeatures(IDS[:, :1], 5)), "1 context tokens over"),
    (lambda: COUNTS.log_loss(TOKENS, Y[:-1]), "X has 60 samples but y has 59"),
    (lambda: COUNTS.log_loss(TOKENS, np.eye(3)[Y]), "counts integer targets"),
    (lambda: COUNTS.sample([1, 2], 3), "targets must be the vocabulary"),
    (lambda: LM.sample([7], 3), r"context must hold at least 1 tokens in \[0, 5\)"),
    (lambda: es.SparseCountModel.fit(X, Y), "needs token contexts"),
    (lambda: es.SparseCountModel.from_batches([], n_classes=3), "no batches"),
])
def test_sparse_count_model_calls_refuse_with_the_reason(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_sparse_count_model_is_immutable():
  with pytest.raises(ValueError, match="read-only"):
    COUNTS.counts.data[0] = 5.0
  with pytest.raises(TypeError, match="read-only"):
    COUNTS.info["smoothing"] = 1.0


# -- diagnostics ------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: dg.optimality_certificate(MODEL, X[:, :3], Y), "X has 3 features but the model"),
    (lambda: dg.optimality_certificate(MODEL, X, Y + 5), r"labels must lie in \[0, n_classes=3\)"),
    (lambda: dg.gradient_set_width(X, np.ones((59, 3))), r"residuals must have shape \(60,"),
    (lambda: dg.gradient_set_width(X, np.full((60, 3), np.nan)), "residuals contain NaN"),
    (lambda: dg.mean_kl(MODEL, es.SoftmaxModel(np.zeros((3, 3)), np.zeros(3)), X),
     "compare models of the same features"),
    (lambda: dg.agreement(MODEL, MODEL, np.full((2, 4), np.inf)), "NaN or inf"),
])
def test_diagnostics_refuse_with_the_reason(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# -- the estimator ------------------------------------------------------------------------

@pytest.mark.parametrize("params, match", [
    ({"method": "magic"}, "method='magic' is unknown"),
    ({"l2": "none"}, "l2 must be 'auto' or a finite number"),
    ({"l2": -1.0}, "l2 must be a finite number >= 0; got -1.0"),
    ({"tol": "1e-6"}, "tol must be a finite number >= 0"),
    ({"method": "newton", "refine": "bfgs"}, "refine='bfgs' is unknown"),
    ({"method": "newton", "refine": "lbfgs", "refine_steps": 2.5}, "refine_steps must be"),
    ({"cv": 1}, "cv must be an integer >= 2"),
    ({"calibrate": True}, "method='auto' already returns the refined optimum"),
])
def test_the_estimator_names_its_bad_parameter(params, match):
  pytest.importorskip("sklearn")
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
  with pytest.raises(ValueError, match=match):
    ExplicitSoftmaxClassifier(**params).fit(X, Y)


def test_the_estimator_refuses_bad_data_with_the_core_messages():
  pytest.importorskip("sklearn")
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
  clf = ExplicitSoftmaxClassifier(method="newton").fit(X, Y)
  with pytest.raises(ValueError, match="sample_weight sums past float64's range"):
    ExplicitSoftmaxClassifier(method="newton").fit(X, Y, sample_weight=np.full(60, 1e307))
  with pytest.raises(ValueError, match="4 features"):
    clf.predict(X[:, :3])


# -- the adapters -------------------------------------------------------------------------

@pytest.mark.parametrize("case, match", [
    ("width", "the layer takes 5 input features but the features reaching the head have 4"),
    ("no_y", "y is missing"),
    ("method", "method='x' is unknown"),
    ("strings", "X must hold real numbers; got dtype <U"),
    ("nan", r"contain NaN or inf \(batch 0\)"),
    ("labels", r"labels must lie in \[0, n_classes=3\)"),
    ("length", "X has 60 samples but y has 59"),
    ("negative", "Negative values in data.*negative entries.*method='newton'"),
])
def test_torch_init_head_refuses_with_the_reason(case, match):
  torch = pytest.importorskip("torch")
  from explicit_softmax.adapters import torch as adapters
  net = torch.nn.Sequential(torch.nn.Linear(5 if case == "width" else 4, 3))
  before = [p.detach().clone() for p in net.parameters()]
  args = {"width": (X, Y), "no_y": (X,), "method": (X, Y), "strings": (X.astype(str), Y),
          "nan": (np.full_like(X, np.nan), Y), "labels": (X, Y + 3), "length": (X, Y[:-1]),
          "negative": (X - 1, Y)}[case]
  kwargs = {"method": "x"} if case == "method" else (
      {"method": "cooccurrence"} if case == "negative" else {})
  with pytest.raises(ValueError, match=match):
    adapters.init_head(net, *args, **kwargs)
  for old, new in zip(before, net.parameters()):
    assert torch.equal(old, new)  # a refusal writes nothing


# -- the CLI: one line, nonzero exit ----------------------------------------------------------

def _cli(*args, cwd):
  return subprocess.run([sys.executable, "-m", "explicit_softmax", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300)


def test_cli_errors_are_one_line_with_a_nonzero_exit(tmp_path):
  np.save(tmp_path / "X.npy", X)
  np.save(tmp_path / "y.npy", Y)
  ids = Y.copy()
  ids[0] = 10**8
  np.save(tmp_path / "ids.npy", ids)
  (tmp_path / "nolabel.csv").write_text("1,2,0\n3,4,1\n5,6,0\n")
  cases = [
      (("fit", "X.npy", "y.npy", "--out", "m.npz", "--method", "cooccurrence",
        "--smoothing", "nan"), "smoothing must be a finite number >= 0; got nan"),
      (("fit", "X.npy", "ids.npy", "--out", "m.npz"), "encode them first"),
      (("fit", "nolabel.csv", "--out", "m.npz"), "which column of 'nolabel.csv' holds the labels"),
      (("fit", "X.npy", "y.npy", "--out", "m.npz", "--method", "newton", "--refine", "adam",
        "--batch-size", "0"), "batch_size must be a positive integer; got 0"),
      (("fit", "X.npy", "y.npy", "--out", "m.npz", "--n-classes", "2"), "labels must lie in"),
      (("predict", "X.npy", "X.npy"), "is not a model file"),
      (("demo", "--tokens", "5"), "--tokens must be an integer >= 100; got 5"),
      (("demo", "--seconds", "-1"), "--seconds must be a finite number > 0"),
  ]
  for args, match in cases:
    run = _cli(*args, cwd=tmp_path)
    assert run.returncode != 0, args
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, (args, run.stderr)
    assert match in lines[0], (args, lines[0])
  assert not (tmp_path / "m.npz").exists()


# -- sizes and overflow -----------------------------------------------------------------

def test_sums_beyond_float64_are_refused_with_the_fix():
  with pytest.raises(ValueError, match=r"sample_weight sums past float64's range.*rescale"):
    es.fit(X, Y, method="cooccurrence", sample_weight=np.full(60, 1e307))
  big = X.astype(np.float64) * 1e160
  with pytest.raises(ValueError, match=r"Gram matrix X\^T diag\(w\) X overflows float64"):
    es.fit(big, Y, method="newton")
  # The count solution never squares X: it fits the same data.
  assert np.isfinite(es.fit(big, Y, method="cooccurrence").weights).all()


def test_statistics_are_read_only_and_do_not_hold_the_callers_arrays():
  stats = es.SoftmaxStats.from_data(X, Y, gram=True)
  for array in (stats.cooccurrence, stats.class_mass, stats.gram):
    with pytest.raises(ValueError, match="read-only"):
      array[0] = 1.0
  mine = np.ones((4, 3))
  built = es.SoftmaxStats(mine, np.ones(3), 3.0, 3.0, 3)
  mine[0, 0] = 7.0  # the caller keeps a writable array
  assert mine.flags.writeable and not built.cooccurrence.flags.writeable


def test_model_info_is_frozen_all_the_way_down_and_stays_saveable(tmp_path):
  model = es.fit(X, Y)
  for mutate in (lambda: model.info.__setitem__("x", 1),
                 lambda: model.info["refine"].update(steps=0),
                 lambda: model.info["l2_path"]["C_tried"].append(1.0),
                 lambda: model.info.pop("method")):
    with pytest.raises(TypeError, match="read-only"):
      mutate()
  assert json.loads(json.dumps(model.info)) == model.info
  changed = model.replace(info={**model.info, "note": "mine"})
  assert changed.info["note"] == "mine" and "note" not in model.info
  model.save(tmp_path / "m.npz")
  assert es.load(tmp_path / "m.npz").info == model.info


def test_every_numeric_check_lives_in_the_validation_module():
  """No module words its own refusal of a numeric parameter: the messages of
  check_integer / check_number appear in _validation.py only."""
  import pathlib
  package = pathlib.Path(es.__file__).parent
  phrases = ("must be a positive integer", "must be a finite number", "must be finite and >=",
             "must be a nonnegative integer", "must be one of")
  offenders = [
      f"{path.relative_to(package)}: {phrase}"
      for path in package.rglob("*.py") if path.name != "_validation.py"
      for phrase in phrases if phrase in path.read_text()]
  assert offenders == []
  assert _validation.check_integer("k", np.int64(3)) == 3


# -- the remaining one-line reproductions of the issue ------------------------------------

def test_a_label_of_ten_to_the_fifteen_is_refused_by_name():
  huge = Y.copy()
  huge[0] = 10**15
  with pytest.raises(ValueError, match="the labels go up to 1,000,000,000,000,000"):
    es.fit(X, huge)


def test_refine_refuses_nan_in_a_jax_array_before_any_step():
  import jax.numpy as jnp
  bad = X.copy()
  bad[7, 2] = np.nan
  with pytest.raises(ValueError, match=r"NaN or inf \(first in row 7\)"):
    es.refine(MODEL, jnp.asarray(bad), Y)


@pytest.mark.parametrize("scale", [1.0, 1e20])
@pytest.mark.parametrize("precondition", [False, "standardize"])
def test_the_convergence_record_is_consistent_on_badly_scaled_features(scale, precondition):
  """X * 1e20 with weights fitted at scale 1 saturates every logit: refine may
  stop early, but its record says so (converged iff the relative gradient norm
  it reports is <= tol)."""
  record = es.refine(MODEL, X * scale, Y, precondition=precondition).info["refine"]
  assert record["converged"] == (record["relative_grad_norm"] <= record["tol"])
  if scale == 1.0 and precondition:
    assert record["converged"]


def test_duplicate_sparse_entries_add_up_and_the_callers_matrix_is_kept():
  # Row 0 holds (2, -1) in column 1: the entry 1, nonnegative.
  x = sp.csr_matrix((np.array([2.0, -1.0, 1.0]), np.array([1, 1, 0]), np.array([0, 2, 3])),
                    shape=(2, 3))
  before = (x.data.copy(), x.indices.copy())
  model = es.fit(x, np.array([0, 1]), method="cooccurrence")
  assert model.n_features == 3
  np.testing.assert_array_equal(x.data, before[0])
  np.testing.assert_array_equal(x.indices, before[1])
  np.testing.assert_allclose(model.predict_proba(x), model.predict_proba(x.toarray()), atol=1e-6)


@pytest.mark.parametrize("d", [2.5, "2", 0, True])
def test_svd_factors_take_an_integer_width(d):
  from explicit_softmax.adapters import _tokens
  lm = es.fit(es.TokenFeatures(IDS[:, :1], 5), IDS[:, 1], n_classes=5)
  with pytest.raises(ValueError, match="^d must be a positive integer; got"):
    _tokens.svd_factors(lm, d)
