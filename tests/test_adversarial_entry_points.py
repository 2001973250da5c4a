"""Bad and edge-case inputs through every public entry point beyond es.fit.

Each case is a call and the words its ValueError must contain: the parameter
and the problem (issues "Nothing silently wrong", first and second pass).
``test_adversarial.py`` drives random inputs through fit/refine/calibrate/
predict/load; this module covers the sharded pass, SparseCountModel, the
diagnostics, the estimator, the adapters and the CLI, plus the checks that only
a table of cases shows to be complete. The second pass adds models that remember
their columns (CSV headers, DataFrames) and the last inputs that slipped through.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

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
  """As the host pass does: the labels' distinct values are counted (on the device
  for a device array) before any (N, M) or (chunk, M) array exists."""
  import jax.numpy as jnp
  huge = Y.copy()
  huge[0] = 2 * 10**8
  for labels in (huge, jnp.asarray(huge)):
    with pytest.raises(ValueError, match="go up to 200,000,000 but only 4 distinct.*encode them"):
      _sharded_labels(labels)
  # Codes that do occur, but too many for memory: the size is named.
  with pytest.raises(ValueError, match="GiB, more than the 4 GiB limit"):
    _sharded(n_classes=2 * 10**8)


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



# == second pass: files that remember their columns ======================================

def _cli_in_process(*argv):
  """The CLI in this process: (exit status, stdout, stderr)."""
  from explicit_softmax import cli
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    status = cli.main([str(a) for a in argv])
  return status, out.getvalue(), err.getvalue()


def _write_table(path, x, y, names, order, label="label"):
  """A CSV of the columns ``names + [label]`` taken in ``order`` (indices into them)."""
  columns = list(names) + [label]
  table = np.column_stack([x.astype(object), np.asarray(y, object)])
  with open(path, "w", newline="") as fh:
    writer = csv.writer(fh)
    writer.writerow([columns[j] for j in order])
    writer.writerows([[repr(float(row[j])) if j < len(names) else row[j] for j in order]
                      for row in table])


@pytest.fixture(scope="module")
def wine_model(tmp_path_factory):
  """The CLI's model of scikit-learn's wine data (13 named columns, labels 0..2)."""
  pytest.importorskip("sklearn")
  from sklearn.datasets import load_wine
  data = load_wine()
  folder = tmp_path_factory.mktemp("wine")
  names = list(data.feature_names)
  _write_table(folder / "train.csv", data.data, data.target, names, range(len(names) + 1))
  status, out, err = _cli_in_process("fit", folder / "train.csv", "--out", folder / "m.npz")
  assert status == 0, err
  assert "labels: column 'label' (index 13) of" in out  # the CLI says which column
  status, reference, err = _cli_in_process("predict", folder / "m.npz", folder / "train.csv",
                                           "--proba")
  assert status == 0 and "not used as a feature" in err, err
  return folder, data, names, reference


def test_the_model_file_keeps_the_feature_and_label_names(wine_model):
  folder, _, names, _ = wine_model
  model = es.load(folder / "m.npz")
  assert model.info["feature_names"] == names and model.info["label_column"] == "label"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(range(14)))
def test_reordered_columns_give_the_same_predictions_through_the_cli(wine_model, order):
  """The column order of a table (label column included) does not matter: the
  columns are selected by the names the model file stores."""
  folder, data, names, reference = wine_model
  path = folder / "permuted.csv"
  _write_table(path, data.data, data.target, names, order)
  status, out, err = _cli_in_process("predict", folder / "m.npz", path, "--proba")
  assert status == 0, err
  assert out == reference
  if [j for j in order if j != 13] != list(range(13)):
    assert "matched to the model's features by name" in err


def test_a_missing_or_unexpected_column_is_refused_by_name(wine_model):
  folder, data, names, _ = wine_model
  x = data.data
  _write_table(folder / "missing.csv", x[:, 1:], data.target, names[1:], range(13))
  status, _, err = _cli_in_process("predict", folder / "m.npz", folder / "missing.csv")
  assert status == 1 and f"lacks the model's feature column {names[0]!r}" in err, err
  status, _, err = _cli_in_process("evaluate", folder / "m.npz", folder / "missing.csv")
  assert status == 1 and f"lacks the model's feature column {names[0]!r}" in err, err
  extra = names + ["colour"]
  _write_table(folder / "extra.csv", np.column_stack([x, x[:, :1]]), data.target, extra,
               range(15))
  status, _, err = _cli_in_process("predict", folder / "m.npz", folder / "extra.csv")
  assert status == 1 and "has the column 'colour' that the model was not fitted on" in err
  assert "--label-column" in err  # the label column may be what it is


def test_the_cli_says_when_it_takes_columns_by_position(wine_model, tmp_path):
  folder, data, names, reference = wine_model
  np.savez(tmp_path / "test.npz", X=data.data, y=data.target)
  status, out, err = _cli_in_process("predict", folder / "m.npz", tmp_path / "test.npz",
                                     "--proba")
  assert status == 0 and out == reference
  assert "has no column names: its columns are taken by position" in err
  # A model without names (fitted from .npz) on a table with a header.
  status, _, err = _cli_in_process("fit", tmp_path / "test.npz", "--out", tmp_path / "n.npz",
                                   "--method", "newton")
  assert status == 0, err
  status, out, err = _cli_in_process("evaluate", tmp_path / "n.npz", folder / "train.csv")
  assert status == 0 and "the model stores no feature names" in err, err
  assert "labels           column 'label' (index 13)" in out


def test_a_model_file_without_feature_names_still_loads(tmp_path):
  """Files written before the names were stored (format version 1, no names) load."""
  import zipfile
  meta = json.dumps({"format": "explicit-softmax", "version": 1,
                     "info": {"method": "cooccurrence"}})
  np.savez(tmp_path / "old.npz", weights=np.ones((4, 3), np.float32),
           bias=np.zeros(3, np.float32), meta=np.array(meta))
  old = es.load(tmp_path / "old.npz")
  assert "feature_names" not in old.info and old.predict(X).shape == (60,)
  assert zipfile.is_zipfile(tmp_path / "old.npz")
  bad = json.dumps({"format": "explicit-softmax", "version": 1,
                    "info": {"feature_names": ["a", "a", "b", "c"]}})
  np.savez(tmp_path / "bad.npz", weights=np.ones((4, 3), np.float32),
           bias=np.zeros(3, np.float32), meta=np.array(bad))
  with pytest.raises(ValueError, match=r"feature_names'\] must list one distinct string"):
    es.load(tmp_path / "bad.npz")


def test_a_dataframe_fit_keeps_its_names_and_predicts_by_name(tmp_path):
  pd = pytest.importorskip("pandas")
  frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
  for model in (es.fit(frame, Y), es.fit(frame, Y, method="cooccurrence")):
    assert model.info["feature_names"] == ["a", "b", "c", "d"]
    shuffled = frame[["c", "a", "d", "b"]]
    np.testing.assert_array_equal(model.predict_proba(shuffled), model.predict_proba(frame))
    assert model.log_loss(shuffled, Y) == model.log_loss(frame, Y)
    with pytest.raises(ValueError, match="lacks the model's feature column 'd'"):
      model.predict(frame[["a", "b", "c"]])
    with pytest.raises(ValueError, match="has the column 'e' that the model was not fitted"):
      model.predict(frame.assign(e=1.0))
    model.save(tmp_path / "frame.npz")
    assert es.load(tmp_path / "frame.npz").info["feature_names"] == ["a", "b", "c", "d"]
  # Positions (a numpy array) still work: the names cannot be checked there.
  assert es.fit(frame, Y).predict(X).shape == (60,)


def test_the_estimator_stores_feature_names_in_its_model(tmp_path):
  pd = pytest.importorskip("pandas")
  pytest.importorskip("sklearn")
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
  frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
  clf = ExplicitSoftmaxClassifier(method="newton").fit(frame, Y)
  assert clf.model_.info["feature_names"] == ["a", "b", "c", "d"]
  clf.model_.save(tmp_path / "m.npz")
  np.testing.assert_allclose(es.load(tmp_path / "m.npz").predict_proba(frame[["d", "c", "b", "a"]]),
                             clf.predict_proba(frame), atol=1e-6)


# == second pass: the last inputs that slipped through ======================================

@settings(max_examples=40, deadline=None)
@given(mask=hnp.arrays(bool, (60, 4)), which=st.sampled_from(["X", "y", "sample_weight"]))
def test_masked_arrays_are_never_read_as_data(mask, which):
  """Masked entries would be used as values by np.asarray: refused, naming the
  count and the first masked entry; an array with nothing masked is plain data."""
  rows = mask.any(axis=1)
  given_ = {"X": np.ma.masked_array(X, mask), "y": np.ma.masked_array(Y, rows),
            "sample_weight": np.ma.masked_array(np.ones(60), rows)}[which]
  args = {"X": X, "y": Y, "sample_weight": None, which: given_}
  masked = int(mask.sum() if which == "X" else rows.sum())
  if masked:
    with pytest.raises(ValueError, match=rf"^{which} is a masked array with {masked} masked"):
      es.fit(method="cooccurrence", **args)
  else:
    np.testing.assert_array_equal(es.fit(method="cooccurrence", **args).weights, MODEL.weights)


_WEIGHT_DTYPES = ["bool", "int8", "uint8", "int64", "uint64", "float16", "float32", "float64",
                  "complex64", "complex128", "U3", "S3", "object", "datetime64[s]",
                  "timedelta64[s]"]


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(_WEIGHT_DTYPES), method=st.sampled_from(["cooccurrence", "newton"]),
       scale=st.integers(1, 3))
def test_weights_of_any_dtype_are_real_numbers_or_refused(dtype, method, scale):
  """Real weights of any dtype give the float64 weights' model; complex ones (whose
  imaginary part numpy would drop), strings, objects and dates are refused."""
  w = np.full(60, scale).astype(dtype) if dtype != "bool" else np.ones(60, bool)
  if np.dtype(dtype).kind in "biuf":
    expected = es.fit(X, Y, method=method, sample_weight=w.astype(np.float64))
    np.testing.assert_array_equal(es.fit(X, Y, method=method, sample_weight=w).weights,
                                  expected.weights)
  else:
    with pytest.raises(ValueError, match=rf"^sample_weight must be numbers, real ones .* got "
                                         rf"dtype {re.escape(str(np.dtype(dtype)))}"):
      es.fit(X, Y, method=method, sample_weight=w)


def test_complex_weights_are_refused_on_every_path():
  import jax.numpy as jnp
  w = np.ones(60) + 1j
  for call in (lambda: es.SoftmaxStats.from_sharded(jnp.asarray(X), Y, sample_weight=w),
               lambda: es.refine(MODEL, X, Y, sample_weight=w, steps=1),
               lambda: es.calibrate(MODEL, X, Y, sample_weight=w),
               lambda: COUNTS.log_loss(TOKENS, Y, sample_weight=w)):
    with pytest.raises(ValueError, match="sample_weight must be numbers, real ones.*complex"):
      call()


@pytest.mark.parametrize("batch, got", [((X,), "1 items"), ((X, Y, None, 5), "4 items"),
                                        (X, "a ndarray")])
def test_from_batches_takes_pairs_or_triples_only(batch, got):
  for build in (lambda b: es.SoftmaxStats.from_batches([(X, Y), b], n_classes=3),
                lambda b: es.SparseCountModel.from_batches(
                    [(TOKENS, Y), b if b is X else (TOKENS,) + tuple(b[1:])], n_classes=3)):
    with pytest.raises(ValueError, match=rf"^batch 1 must be a tuple \(X, y\) or \(X, y, "
                                         rf"sample_weight\); got {got}"):
      build(batch)


STATS = es.SoftmaxStats.from_data(X, Y, gram=True)


@pytest.mark.parametrize("fields, match", [
    ({"cooccurrence": -STATS.cooccurrence}, r"cooccurrence has negative entries .* min_feature"),
    ({"cooccurrence": -STATS.cooccurrence, "min_feature": 0.0}, "cannot be negative"),
    ({"class_mass": np.ones(5)}, r"class_mass must have shape \(3,\), one entry per class"),
    ({"class_mass": -STATS.class_mass}, "class_mass must be nonnegative"),
    ({"gram": np.ones((2, 2))}, r"gram must be the \(4, 4\) matrix"),
    ({"cooccurrence": np.ones(4)}, r"cooccurrence must be the \(N, M\) matrix .* got shape \(4,\)"),
    ({"total_weight": -1.0}, "total_weight must be a number >= 0"),
    ({"n_samples": 2.5}, "n_samples must be an integer >= 0"),
    ({"cooccurrence": STATS.cooccurrence + 1j}, "cooccurrence must hold real numbers"),
])
def test_hand_made_statistics_are_checked_against_their_definitions(fields, match):
  values = {"cooccurrence": STATS.cooccurrence, "class_mass": STATS.class_mass,
            "total_weight": STATS.total_weight, "mass_sq": STATS.mass_sq,
            "n_samples": STATS.n_samples, "gram": STATS.gram}
  values.update(fields)
  with pytest.raises(ValueError, match=match):
    es.solve(es.SoftmaxStats(**values))


def test_negative_cooccurrences_of_negative_features_are_consistent():
  """F = X^T diag(w) Y of real features can be negative: min_feature < 0 says so."""
  stats = es.SoftmaxStats.from_data(X - 1, Y, gram=True)
  assert stats.cooccurrence.min() < 0 and stats.min_feature < 0
  assert np.isfinite(es.solve(stats, "newton").weights).all()
  with pytest.raises(ValueError, match="Negative values in data"):
    es.solve(stats, "cooccurrence")


def test_the_mean_feature_mass_of_no_data_is_refused_not_nan():
  with pytest.raises(ValueError, match=r"mean_feature_mass is undefined .* \(total weight 0, so 0/0\)"):
    es.SoftmaxStats.empty(5, 3).mean_feature_mass


@pytest.mark.parametrize("context", [[1.7, 2.2], np.array([1.0]), ["1"]])
def test_a_sampling_context_must_be_integer_token_ids(context):
  with pytest.raises(ValueError, match="context must be a 1-D sequence of integer token ids"):
    LM.sample(context, n=3)
  assert LM.sample(np.array([1, 2], np.uint8), n=3).shape == (3,)


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
@pytest.mark.parametrize("option", ["--smoothing", "--ridge"])
def test_cli_options_that_the_default_method_does_not_use_are_still_checked(tmp_path, option,
                                                                            value):
  np.savez(tmp_path / "d.npz", X=X, y=Y)
  for method in ("auto", "cooccurrence", "newton"):
    status, _, err = _cli_in_process("fit", tmp_path / "d.npz", "--out", tmp_path / "m.npz",
                                     "--method", method, option, value)
    assert status == 1 and f"{option[2:]} must be a finite number >= 0" in err, (method, err)
  assert not (tmp_path / "m.npz").exists()
  with pytest.raises(ValueError, match="smoothing must be a finite number >= 0"):
    es.fit(X, Y, smoothing=float(value))


def test_newton_on_features_whose_squares_underflow_is_refused():
  """X * 1e-300: every square underflows float64 (the Gram matrix is 0); the Newton
  step would be the uniform model. Weights that large are beyond float32 anyway."""
  x = X.astype(np.float64)  # in float32, X * 1e-300 would be zeros
  with pytest.raises(ValueError, match=r"Gram matrix .* underflows float64.*rescale X"):
    es.fit(x * 1e-300, Y, method="newton")
  tiny = es.fit(x * 1e-30, Y, method="newton")  # squares 1e-60: fine
  np.testing.assert_array_equal(tiny.predict(x * 1e-30), es.fit(x, Y, method="newton").predict(x))


def test_refine_says_why_it_stopped_before_the_first_step():
  """A calibrated model on X * 1e30: logits near 1e30, every probability 0 or 1; the
  preconditioned line search cannot change the loss at float64 precision."""
  start = es.calibrate(MODEL, X, Y)
  out = es.refine(start, X.astype(np.float64) * 1e30, Y, precondition="standardize")
  record = out.info["refine"]
  # The loss is near 1e29 nats; a step in the standardised variables changes it by
  # O(1), far below its float64 resolution (1e13), on any CPU.
  assert record["steps"] == 0 and not record["converged"]
  assert "before the first step: the penalised loss at the start is" in record["reason"]
  assert "logits on X reach" in record["reason"] and "744" in record["reason"]
  assert "Rescale X" in record["reason"]


def test_load_text_skips_a_byte_order_mark_and_names_a_directory(tmp_path):
  (tmp_path / "bom.txt").write_bytes("\ufeffab ba".encode())
  tokens, vocab = es.data.load_text(tmp_path / "bom.txt")
  assert vocab == [" ", "a", "b"] and len(tokens) == 5
  with pytest.raises(ValueError, match="is a directory, not a file"):
    es.data.load_text(tmp_path)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    es.data.load_text(tmp_path / "none.txt")
  with pytest.raises(ValueError, match="encoding='nope' is not a text encoding"):
    es.data.load_text(tmp_path / "bom.txt", encoding="nope")


@pytest.mark.parametrize("y, kwargs, match", [
    (np.r_[Y[:-1], 1e20], {}, r"found values in \[0, 100,000,000,000,000,000,000\], beyond 2\*\*53"),
    (np.r_[Y[:-1], 2**62].astype(np.uint64), {}, "go up to 4,611,686,018,427,387,904 but"),
    (np.where(np.arange(60) == 0, np.uint64(2**64 - 1), Y.astype(np.uint64)), {"n_classes": 3},
     r"found values in \[0, 18446744073709551615\]"),
    (np.where(np.arange(60) == 0, np.uint64(2**64 - 1), Y.astype(np.uint64)), {},
     "go up to 18,446,744,073,709,551,615 but only 4 distinct"),
    (np.zeros((60, 0)), {}, r"soft labels need one column per class .* got shape \(60, 0\)"),
    (Y, {"n_classes": 2**60}, "beyond 2\\*\\*53 classes"),
])
def test_labels_are_reported_as_given_not_as_wrapped_integers(y, kwargs, match):
  import jax.numpy as jnp
  for call in (lambda: es.fit(X, y, **kwargs), lambda: es.fit(X, y, method="newton", **kwargs),
               lambda: es.SoftmaxStats.from_sharded(jnp.asarray(X), y, **kwargs)):
    with pytest.raises(ValueError, match=match):
      call()


def test_a_model_needs_a_class():
  with pytest.raises(ValueError, match=r"a model needs at least one class; got weights of shape \(4, 0\)"):
    es.SoftmaxModel(np.zeros((4, 0)), np.zeros(0))


def test_a_callback_that_is_not_a_function_is_refused_before_any_step():
  calls = []
  with pytest.raises(ValueError, match=r"^callback must be a function \(step, model, record\)"):
    es.refine(MODEL, X, Y, callback=3, steps=5)
  es.refine(MODEL, X, Y, callback=lambda *a: calls.append(a[0]), steps=2)
  assert calls == [0, 1]


def test_minibatches_of_zero_weight_rows_are_steps_of_the_penalty_alone():
  """Rows 0..49 have weight zero: a batch drawn only from them carries no data (its
  loss term is 0, not 0/0) and is no reason to call the run diverged."""
  w = np.r_[np.zeros(50), np.ones(10)]
  out = es.refine(MODEL, X, Y, method="adam", batch_size=10, steps=30, sample_weight=w, seed=1)
  assert len(out.history.loss) == 30 and np.isfinite(out.history.loss).all()
  assert (out.history.loss == 0).any()  # some batch held only zero-weight rows
  assert np.isfinite(out.weights).all()


def test_save_names_the_users_path_never_the_temporary_file(tmp_path, monkeypatch):
  import tempfile
  with pytest.raises(ValueError, match=r"it is a directory; give a file name such as"):
    MODEL.save(tmp_path)
  if os.path.isdir("/proc"):  # no file can be created there, whoever runs the tests
    with pytest.raises(ValueError, match=r"cannot save to '/proc/m.npz': cannot write in the "
                                         r"folder '/proc'") as err:
      MODEL.save("/proc/m.npz")
    assert ".explicit-softmax-" not in str(err.value)

  def denied(*args, **kwargs):
    raise PermissionError(13, "Permission denied", str(tmp_path / ".explicit-softmax-x.tmp"))

  monkeypatch.setattr(tempfile, "mkstemp", denied)
  with pytest.raises(ValueError, match=r"cannot write in the folder .* \(Permission denied\)") as err:
    MODEL.save(tmp_path / "m.npz")
  assert ".explicit-softmax-" not in str(err.value)


def test_the_cli_names_bad_files_with_their_line(tmp_path):
  (tmp_path / "a.svm").write_text("1 1:0.5 2:0.3\n0 1:a\n")
  (tmp_path / "b.svm").write_text("1 1:0.5\n\n0 3\n")
  (tmp_path / "c.svm").write_text("x 1:0.5\n")
  (tmp_path / "d.svm").write_text("1 one:0.5\n")
  np.savez(tmp_path / "scalar.npz", X=X, y=np.array(3))
  np.savez(tmp_path / "flat.npz", X=X[:, 0], y=Y)
  (tmp_path / "folder.csv").mkdir()
  cases = [
      ("a.svm", f"{tmp_path / 'a.svm'}:2: the value 'a' of feature 1 is not a number"),
      ("b.svm", f"{tmp_path / 'b.svm'}:3: '3' is not an index:value pair"),
      ("c.svm", f"{tmp_path / 'c.svm'}:1: the label 'x' is not a number"),
      ("d.svm", "the feature index 'one' (in 'one:0.5') is not a nonnegative integer"),
      ("scalar.npz", "are a scalar (shape ()); expected one label per row"),
      ("flat.npz", "have shape (60,); expected a 2-D (samples, features) array"),
      ("folder.csv", "is a directory, not a file"),
  ]
  for name, match in cases:
    status, _, err = _cli_in_process("fit", tmp_path / name, "--out", tmp_path / "m.npz")
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and match in lines[0], (name, err)


def test_the_estimator_names_string_features():
  pytest.importorskip("sklearn")
  pd = pytest.importorskip("pandas")
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
  with pytest.raises(ValueError, match=r"X must be a numeric array; got dtype <U1 with the "
                                       r"value 'a' at \(0, 0\)"):
    ExplicitSoftmaxClassifier().fit(np.array([["a", "b"]] * 6), [0, 1] * 3)
  frame = pd.DataFrame(X, columns=list("abcd")).assign(colour="red")
  with pytest.raises(ValueError, match="X column 'colour' holds .* not numbers; encode it"):
    ExplicitSoftmaxClassifier().fit(frame, Y)
  with pytest.raises(ValueError, match="X column 'colour' holds"):
    es.fit(frame, Y)


def test_a_flax_model_fed_the_wrong_width_is_named():
  pytest.importorskip("flax")
  from flax import nnx
  from explicit_softmax.adapters import flax as adapters
  rngs = nnx.Rngs(0)
  model = nnx.Sequential(nnx.Linear(5, 8, rngs=rngs), nnx.Linear(8, 3, rngs=rngs))
  with pytest.raises(ValueError, match=r"the forward pass of Sequential failed on inputs of "
                                       r"shape \(60, 4\) before reaching its head"):
    adapters.init_head(model, X, Y)


def test_a_missing_extra_is_named_before_any_bench_starts(tmp_path, monkeypatch):
  """Without matplotlib, ``bench real`` stops at once with the pip command (it ran
  for 30 s before a traceback); every benchmark checks its extras first."""
  from explicit_softmax import bench
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  status, out, err = _cli_in_process("bench", "real", "--quick", "--out", tmp_path / "r")
  assert status == 1 and not (tmp_path / "r").exists()
  assert "bench real needs the optional extra 'bench' (matplotlib not installed): pip install " \
         "'explicit-softmax[bench]'" in err
  for name in bench.MODULES:
    with pytest.raises(ValueError, match=rf"^bench {name} needs the optional extra"):
      bench.check_extras(name)
  monkeypatch.undo()
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ValueError, match=r"bench deep needs the optional extra 'torch' .*"
                                       r"explicit-softmax\[bench,flax,torch\]"):
    bench.check_extras("deep")
  bench.check_extras("fit")  # needs only the bench extra, installed here


# -- sizes from labels and n_classes, under a 3 GB limit ---------------------------------------

_LIMITED = textwrap.dedent("""
    import resource, sys
    limit = 3 * 2**30  # the limit at which the issue's processes were killed
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np
    import explicit_softmax as es
    from explicit_softmax import _validation
    assert _validation.available_memory() < limit
    rng = np.random.default_rng(0)
    X, Y = rng.random((60, 4)), rng.integers(0, 3, 60)
    big = es.SoftmaxModel(np.zeros((2, 10**7), np.float32), np.zeros(10**7, np.float32))
    ids = Y.copy()
    ids[0] = 10**8
    import jax.numpy as jnp
    calls = {
        "fit": lambda: es.fit(X[:, :2], Y, n_classes=10**7),
        "sharded": lambda: es.SoftmaxStats.from_sharded(jnp.asarray(X), ids),
        "sharded_n": lambda: es.SoftmaxStats.from_sharded(jnp.asarray(X), Y, n_classes=10**8),
        "refine": lambda: es.refine(big, X[:, :2], Y),
        "calibrate": lambda: es.calibrate(big, X[:, :2], Y, l2=1.0),
        "predict": lambda: big.predict_proba(X[:, :2]),
        "empty": lambda: es.SoftmaxStats.empty(4, 10**8),
    }
    for name, call in calls.items():
      try:
        call()
        print(name, "ACCEPTED")
      except ValueError as err:
        print(name, "REFUSED", " ".join(str(err).split()))
    # What fits is still done: 10**7 classes of co-occurrences (160 MB), one row's logits.
    model = es.fit(X[:, :2], Y, n_classes=10**7, method="cooccurrence")
    print("cooccurrence", model.n_classes, big.predict(X[:1, :2]).tolist())
""")


def test_sizes_from_labels_and_n_classes_are_refused_before_allocation(tmp_path):
  """Under a 3 GB address-space limit (where the issue's calls were killed) every
  call is refused with what was asked for and what it would need, or done."""
  np.savez(tmp_path / "d.npz", X=X, y=Y)
  run = subprocess.run([sys.executable, "-c", _LIMITED], capture_output=True, text=True,
                       timeout=300)
  assert run.returncode == 0, run.stderr
  said = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
  assert said["fit"].startswith("REFUSED n_classes=10,000,000 but only 3 distinct labels occur")
  assert said["sharded"].startswith("REFUSED the labels go up to 100,000,000 but only 4 distinct")
  assert said["sharded_n"].startswith("REFUSED n_classes=100,000,000, of which only 3 occur")
  assert "(4, 100,000,000) float64 (3.2 GB each)" in said["sharded_n"]
  assert said["refine"].startswith("REFUSED refining a model of 10,000,000 classes would need")
  assert "of memory available" in said["refine"] and "(60, 10,000,000)" in said["refine"]
  assert said["calibrate"].startswith("REFUSED calibrating a model of 10,000,000 classes")
  assert said["predict"].startswith("REFUSED the logits of 60 samples x 10,000,000 classes")
  assert said["empty"].startswith("REFUSED 100,000,000 classes x 4 features would need")
  assert said["cooccurrence"] == "10000000 [0]"
  # The CLI: --n-classes 1000000 on three labels (it ran for minutes past 4.7 GB).
  status, _, err = _cli_in_process("fit", tmp_path / "d.npz", "--out", tmp_path / "m.npz",
                                   "--n-classes", "1000000")
  assert status == 1 and "n_classes=1,000,000 but only 3 distinct labels occur" in err


def test_the_memory_check_reads_the_address_space_limit():
  import resource
  from explicit_softmax import _validation
  soft, hard = resource.getrlimit(resource.RLIMIT_AS)
  used = _validation._proc_status_bytes("VmSize")
  if used is None:
    pytest.skip("no /proc/self/status here")
  resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, hard))
  try:
    assert _validation.available_memory() <= 2**30
  finally:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
  assert _validation.format_bytes(1.6e8) == "160 MB"
