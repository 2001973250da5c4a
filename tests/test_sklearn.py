"""Tests of the scikit-learn estimator ``ExplicitSoftmaxClassifier``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, StandardScaler  # noqa: E402
from scipy.special import softmax as scipy_softmax  # noqa: E402
from sklearn.utils.estimator_checks import check_classifiers_train  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import explicit_softmax as es  # noqa: E402
from explicit_softmax.sklearn import ExplicitSoftmaxClassifier  # noqa: E402

from conftest import dense_data  # noqa: E402

# The default estimator and the Newton closed form pass every check. The raw
# co-occurrence solution needs nonnegative features (tag positive_only), which
# one check does not honour.
EXPECTED_FAILED_CHECKS = {
    "check_decision_proba_consistency": (
        "fits make_blobs data with negative values without honouring the "
        "positive_only tag; method='cooccurrence' correctly refuses negative "
        "training features."),
}


def _expected_failed_checks(estimator):
  return EXPECTED_FAILED_CHECKS if estimator.method == "cooccurrence" else {}


@parametrize_with_checks(
    [ExplicitSoftmaxClassifier(), ExplicitSoftmaxClassifier(method="newton"),
     ExplicitSoftmaxClassifier(method="cooccurrence")],
    expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
  check(estimator)


def test_tags():
  default = ExplicitSoftmaxClassifier().__sklearn_tags__()
  assert not default.input_tags.positive_only and default.input_tags.sparse
  assert not default.classifier_tags.poor_score
  cooc = ExplicitSoftmaxClassifier(method="cooccurrence").__sklearn_tags__()
  # Only the plain co-occurrence solution declares poor_score (no bias, prior
  # over-counted on dense data) and needs nonnegative features.
  assert cooc.input_tags.positive_only and cooc.classifier_tags.poor_score
  for params in ({"calibrate": True}, {"refine": "lbfgs"}):
    tags = ExplicitSoftmaxClassifier(method="cooccurrence", **params).__sklearn_tags__()
    assert not tags.classifier_tags.poor_score


@pytest.mark.slow  # calibration of each of the check's data sets
def test_calibrated_passes_the_accuracy_check():
  check_classifiers_train("ExplicitSoftmaxClassifier",
                          ExplicitSoftmaxClassifier(method="cooccurrence", calibrate=True))


@pytest.fixture(scope="module")
def digits():
  x, y = load_digits(return_X_y=True)  # pixel intensities 0..16: nonnegative
  return x[:900], y[:900], x[900:1300], y[900:1300]


def test_default_is_the_certified_core_optimum(digits):
  """The default estimator is ``es.fit``'s L2 optimum: same model, certified."""
  x, y, x_test, y_test = digits
  x, x_test = StandardScaler().fit(x).transform(x), StandardScaler().fit(x).transform(x_test)
  clf = ExplicitSoftmaxClassifier().fit(x, y)
  core = es.fit(x, y)
  np.testing.assert_allclose(clf.predict_proba(x_test), core.predict_proba(x_test), atol=1e-6)
  record = clf.model_.info["refine"]
  assert record["converged"] and record["relative_grad_norm"] <= clf.tol
  assert clf.model_.info["l2_path"]["method"] == "evidence"
  assert clf.score(x_test, y_test) > 0.9


def test_matches_core_fit(digits):
  x, y, x_test, _ = digits
  clf = ExplicitSoftmaxClassifier(method="cooccurrence", smoothing=0.5).fit(x, y)
  core = es.fit(x, y, smoothing=0.5, method="cooccurrence")
  np.testing.assert_allclose(clf.coef_, core.weights.T, rtol=1e-6)
  np.testing.assert_allclose(clf.predict_proba(x_test), core.predict_proba(x_test), atol=1e-5)
  np.testing.assert_array_equal(clf.predict(x_test), core.predict(x_test))
  assert clf.n_features_in_ == 64
  assert clf.score(x_test, digits[3]) > 0.8


def test_pipeline_and_grid_search(digits):
  x, y, x_test, y_test = digits
  pipe = make_pipeline(StandardScaler(), ExplicitSoftmaxClassifier())
  assert pipe.fit(x, y).score(x_test, y_test) > 0.9
  search = GridSearchCV(pipe, {"explicitsoftmaxclassifier__l2": [1e-3, 1e-2]}, cv=3)
  search.fit(x, y)
  assert search.best_params_["explicitsoftmaxclassifier__l2"] in (1e-3, 1e-2)
  assert search.score(x_test, y_test) > 0.9
  cooc = make_pipeline(MinMaxScaler(clip=True), ExplicitSoftmaxClassifier(method="cooccurrence"))
  search = GridSearchCV(cooc, {"explicitsoftmaxclassifier__smoothing": [0.01, 1.0]}, cv=3)
  assert search.fit(x, y).score(x_test, y_test) > 0.8
  # Held-out pixels outside the training range (negative after scaling) predict.
  scaled = MinMaxScaler().fit(x).transform(x_test) - 0.05
  assert ExplicitSoftmaxClassifier(method="cooccurrence").fit(
      MinMaxScaler().fit_transform(x), y).predict(scaled).shape == (len(x_test),)


@pytest.mark.parametrize("method", ["cooccurrence", "newton"])
def test_partial_fit_equals_fit(digits, method):
  x, y, x_test, _ = digits
  rng = np.random.default_rng(0)
  w = rng.uniform(0.5, 2.0, len(y))
  full = ExplicitSoftmaxClassifier(method=method).fit(x, y, sample_weight=w)
  # Batches sorted by label: most batches lack most classes.
  order = np.argsort(y, kind="stable")
  streamed = ExplicitSoftmaxClassifier(method=method)
  for part in np.array_split(order, 7):
    assert len(np.unique(y[part])) < 10
    streamed.partial_fit(x[part], y[part], classes=np.arange(10), sample_weight=w[part])
  np.testing.assert_array_equal(streamed.classes_, full.classes_)
  np.testing.assert_allclose(streamed.stats_.cooccurrence, full.stats_.cooccurrence, rtol=1e-9)
  np.testing.assert_allclose(streamed.coef_, full.coef_, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(streamed.predict_proba(x_test), full.predict_proba(x_test),
                             atol=1e-6)


def test_partial_fit_exists_only_where_it_is_exact(digits):
  """partial_fit re-solves a closed form from statistics: it is not offered
  where it would silently drop the optimum, calibration or refinement."""
  x, y, _, _ = digits
  for params in ({}, {"method": "newton", "calibrate": True},
                 {"method": "cooccurrence", "refine": "lbfgs"}):
    clf = ExplicitSoftmaxClassifier(**params)
    assert not hasattr(clf, "partial_fit")
    with pytest.raises(AttributeError) as err:
      clf.fit(x, y).partial_fit(x[:10], y[:10])
    # scikit-learn's available_if chains the reason as the cause.
    reason = str(err.value.__cause__ or err.value)
    assert "partial_fit is only available" in reason and "closed forms" in reason
  assert hasattr(ExplicitSoftmaxClassifier(method="newton"), "partial_fit")


def test_partial_fit_errors_and_continuation(digits):
  x, y, _, _ = digits
  clf = ExplicitSoftmaxClassifier(method="cooccurrence")
  with pytest.raises(ValueError, match="classes must be passed"):
    clf.partial_fit(x[:10], y[:10])
  clf.partial_fit(x[:10], y[:10], classes=np.arange(10))
  with pytest.raises(ValueError, match="not in classes"):
    clf.partial_fit(x[:10], y[:10] + 10)
  with pytest.raises(ValueError, match="differs"):
    clf.partial_fit(x[:10], y[:10], classes=np.arange(11))
  # fit, then partial_fit continues from fit's statistics.
  cooc = ExplicitSoftmaxClassifier(method="cooccurrence")
  half = clone(cooc).fit(x[:450], y[:450]).partial_fit(x[450:], y[450:])
  np.testing.assert_allclose(half.coef_, clone(cooc).fit(x, y).coef_, rtol=1e-5, atol=1e-6)


def test_string_labels_and_binary():
  rng = np.random.default_rng(1)
  x, y = dense_data(rng, 300, 6, 3)
  names = np.array(["cat", "dog", "emu"])[y]
  clf = ExplicitSoftmaxClassifier(method="newton").fit(x, names)
  np.testing.assert_array_equal(clf.classes_, ["cat", "dog", "emu"])
  assert set(clf.predict(x)) <= {"cat", "dog", "emu"}
  assert clf.predict_proba(x).shape == (300, 3)
  assert clf.decision_function(x).shape == (300, 3)
  assert clf.score(x, names) > 0.5
  # Two classes: decision_function is the logit of classes_[1] over classes_[0].
  binary = ExplicitSoftmaxClassifier().fit(x, np.where(y == 0, "no", "yes"))
  z = binary.decision_function(x)
  assert z.shape == (300,)
  np.testing.assert_array_equal(binary.predict(x), np.where(z > 0, "yes", "no"))
  np.testing.assert_allclose(binary.predict_proba(x)[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-6)
  # One class: always predicted, with probability one.
  single = ExplicitSoftmaxClassifier().fit(x, np.full(300, "only"))
  np.testing.assert_array_equal(single.predict(x), "only")
  np.testing.assert_allclose(single.predict_proba(x), 1.0)


@pytest.mark.parametrize("params", [{"method": "cooccurrence"},
                                    {"method": "auto", "l2": 1e-3, "tol": 1e-9}])
def test_sparse_input_equals_dense(digits, params):
  x, y, x_test, _ = digits
  x, x_test = x[:300] / 16, x_test / 16
  dense = ExplicitSoftmaxClassifier(**params).fit(x, y[:300])
  for fmt in (sp.csr_matrix, sp.csc_matrix, sp.coo_array):
    sparse = ExplicitSoftmaxClassifier(**params).fit(fmt(x), y[:300])
    # Both converge to the same optimum (relative gradient norm 1e-9).
    np.testing.assert_allclose(sparse.predict_proba(fmt(x_test)), dense.predict_proba(x_test),
                               atol=1e-5)


def test_sparse_and_dense_choose_the_same_l2(digits):
  """The evidence (9) is a function of the data, not of its storage: the same C up to
  the search's own tolerance (its fits stop at a relative gradient norm of 1e-4)."""
  x, y, _, _ = digits
  x = x[:300] / 16
  dense = ExplicitSoftmaxClassifier().fit(x, y[:300]).model_.info["l2_path"]["C"]
  sparse = ExplicitSoftmaxClassifier().fit(sp.csr_matrix(x), y[:300]).model_.info["l2_path"]
  assert sparse["C"] == pytest.approx(dense, rel=1e-2)


def test_real_valued_features_fit_and_cooccurrence_names_the_alternative():
  rng = np.random.default_rng(3)
  x, y = dense_data(rng, 300, 5, 3)
  centred = x - x.mean(axis=0)
  for method in ("auto", "newton"):
    clf = ExplicitSoftmaxClassifier(method=method).fit(centred, y)
    assert clf.score(centred, y) > 0.6
  for data in (centred, sp.csr_matrix(centred)):
    with pytest.raises(ValueError, match="nonnegative features.*method='newton'"):
      ExplicitSoftmaxClassifier(method="cooccurrence").fit(data, y)


@pytest.mark.parametrize("method", ["auto", "newton", "cooccurrence"])
def test_zero_rows_are_samples_that_inform_the_bias(method):
  """One rule everywhere: rows of zeros are valid, predicted by the bias."""
  rng = np.random.default_rng(2)
  x, y = dense_data(rng, 200, 5, 3)
  with_empty = np.vstack([x, np.zeros((40, 5))])
  labels = np.concatenate([y, np.zeros(40, int)])  # empty rows are mostly class 0
  clf = ExplicitSoftmaxClassifier(method=method).fit(with_empty, labels)
  p_zero = clf.predict_proba(np.zeros((1, 5)))[0]
  np.testing.assert_allclose(p_zero, scipy_softmax(clf.intercept_), rtol=1e-6)
  assert np.isfinite(p_zero).all()
  if method != "cooccurrence":  # the count solution has no bias (b = 0)
    assert p_zero.argmax() == 0
  blank = ExplicitSoftmaxClassifier(method=method).fit(np.zeros((40, 3)), [0, 1] * 20)
  np.testing.assert_allclose(blank.predict_proba(np.zeros((2, 3))), 0.5, atol=1e-6)


def test_calibrate_and_refine_match_the_core(digits):
  x, y, x_test, _ = digits
  base = ExplicitSoftmaxClassifier(method="cooccurrence").fit(x, y)
  clf = ExplicitSoftmaxClassifier(method="cooccurrence", calibrate=True, refine="adam",
                                  refine_steps=10, l2=1e-4)
  clf.fit(x, y)
  core = es.refine(es.calibrate(es.fit(x, y, method="cooccurrence"), x, y, l2=1e-4), x, y, method="adam", steps=10,
                   l2=1e-4)
  np.testing.assert_allclose(clf.predict_proba(x_test), core.predict_proba(x_test), atol=1e-5)
  loss = lambda c: -np.mean(c.predict_log_proba(x)[np.arange(len(y)), y])
  assert loss(clf) < loss(base)
  assert clf.model_.info["refine"]["method"] == "adam"
  assert "calibration" in clf.model_.info


def test_calibrate_with_a_zero_weight_class_needs_l2(digits):
  """Zero weights on every sample of class 0 leave its calibrated bias no finite
  optimum: an error that names the class; with l2 > 0 the fit is finite."""
  x, y, _, _ = digits
  sw = (y != 0).astype(float)
  with pytest.raises(ValueError, match=r"\(0\) have no samples"):
    ExplicitSoftmaxClassifier(method="cooccurrence", calibrate=True, l2=0.0).fit(
        x, y, sample_weight=sw)
  clf = ExplicitSoftmaxClassifier(method="cooccurrence", calibrate=True, l2=1e-3).fit(
      x, y, sample_weight=sw)
  assert np.all(np.isfinite(clf.predict_proba(x)))


def test_bad_hyperparameters_raise_at_fit_not_init(digits):
  x, y, _, _ = digits
  for params in ({"method": "magic"}, {"smoothing": -1.0}, {"refine": "bfgs"},
                 {"refine_steps": 2.5}, {"ridge": float("nan")}, {"l2": "big"}, {"tol": -1.0},
                 {"calibrate": True}, {"cv": 1}):
    clf = ExplicitSoftmaxClassifier(**params)  # no error here (sklearn contract)
    with pytest.raises(ValueError):
      clf.fit(x[:50], y[:50])


def test_unfitted_clone_and_pickle(digits):
  x, y, x_test, _ = digits
  with pytest.raises(NotFittedError):
    ExplicitSoftmaxClassifier().predict(x_test)
  clf = ExplicitSoftmaxClassifier(smoothing=0.3).fit(x, y)
  assert clone(clf).get_params()["smoothing"] == 0.3
  again = pickle.loads(pickle.dumps(clf))
  np.testing.assert_array_equal(again.predict_proba(x_test), clf.predict_proba(x_test))
