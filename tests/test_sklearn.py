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
from sklearn.preprocessing import MinMaxScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_classifiers_train  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import explicit_softmax as es  # noqa: E402
from explicit_softmax.sklearn import ExplicitSoftmaxClassifier  # noqa: E402

from conftest import dense_data  # noqa: E402

# Checks that cannot pass, each with the reason. Keep this list short.
EXPECTED_FAILED_CHECKS = {
    "check_decision_proba_consistency": (
        "fits make_blobs data with negative values without honouring the "
        "positive_only tag (unlike every other check); the estimator correctly refuses "
        "negative training features with 'Negative values in data'."),
}


def _expected_failed_checks(estimator):
  del estimator
  return EXPECTED_FAILED_CHECKS


@parametrize_with_checks(
    [ExplicitSoftmaxClassifier(), ExplicitSoftmaxClassifier(method="newton")],
    expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
  check(estimator)


def test_tags():
  tags = ExplicitSoftmaxClassifier().__sklearn_tags__()
  assert tags.input_tags.positive_only and tags.input_tags.sparse
  # Only the plain co-occurrence solution declares poor_score (no bias, prior
  # over-counted on dense data); calibrated, refined or Newton models do not.
  assert tags.classifier_tags.poor_score
  for params in ({"calibrate": True}, {"refine": "lbfgs"}, {"method": "newton"}):
    assert not ExplicitSoftmaxClassifier(**params).__sklearn_tags__().classifier_tags.poor_score


@pytest.mark.slow  # ~15 s: calibration is compiled for each of the check's data shapes
def test_calibrated_passes_the_accuracy_check():
  check_classifiers_train("ExplicitSoftmaxClassifier", ExplicitSoftmaxClassifier(calibrate=True))


@pytest.fixture(scope="module")
def digits():
  x, y = load_digits(return_X_y=True)  # pixel intensities 0..16: nonnegative
  return x[:900], y[:900], x[900:1300], y[900:1300]


def test_matches_core_fit(digits):
  x, y, x_test, _ = digits
  clf = ExplicitSoftmaxClassifier(smoothing=0.5).fit(x, y)
  core = es.fit(x, y, smoothing=0.5)
  np.testing.assert_allclose(clf.coef_, core.weights.T, rtol=1e-6)
  np.testing.assert_allclose(clf.predict_proba(x_test), core.predict_proba(x_test), atol=1e-5)
  np.testing.assert_array_equal(clf.predict(x_test), core.predict(x_test))
  assert clf.n_features_in_ == 64
  assert clf.score(x_test, digits[3]) > 0.8


def test_pipeline_and_grid_search(digits):
  x, y, x_test, y_test = digits
  pipe = make_pipeline(MinMaxScaler(clip=True), ExplicitSoftmaxClassifier())
  assert pipe.fit(x, y).score(x_test, y_test) > 0.8
  search = GridSearchCV(pipe, {"explicitsoftmaxclassifier__smoothing": [0.01, 0.1, 1.0]}, cv=3)
  search.fit(x, y)
  assert search.best_params_["explicitsoftmaxclassifier__smoothing"] in (0.01, 0.1, 1.0)
  assert search.score(x_test, y_test) > 0.8
  # Held-out pixels outside the training range (negative after scaling) predict.
  scaled = MinMaxScaler().fit(x).transform(x_test) - 0.05
  assert ExplicitSoftmaxClassifier().fit(MinMaxScaler().fit_transform(x), y).predict(
      scaled).shape == (len(x_test),)


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


def test_partial_fit_errors_and_continuation(digits):
  x, y, _, _ = digits
  clf = ExplicitSoftmaxClassifier()
  with pytest.raises(ValueError, match="classes must be passed"):
    clf.partial_fit(x[:10], y[:10])
  clf.partial_fit(x[:10], y[:10], classes=np.arange(10))
  with pytest.raises(ValueError, match="not in classes"):
    clf.partial_fit(x[:10], y[:10] + 10)
  with pytest.raises(ValueError, match="differs"):
    clf.partial_fit(x[:10], y[:10], classes=np.arange(11))
  # fit, then partial_fit continues from fit's statistics.
  half = ExplicitSoftmaxClassifier().fit(x[:450], y[:450]).partial_fit(x[450:], y[450:])
  np.testing.assert_allclose(half.coef_, ExplicitSoftmaxClassifier().fit(x, y).coef_,
                             rtol=1e-5, atol=1e-6)


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


def test_sparse_input_equals_dense(digits):
  x, y, x_test, _ = digits
  dense = ExplicitSoftmaxClassifier().fit(x, y)
  for fmt in (sp.csr_matrix, sp.csc_matrix, sp.coo_array):
    sparse = ExplicitSoftmaxClassifier().fit(fmt(x), y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sparse.predict_proba(fmt(x_test)), dense.predict_proba(x_test),
                               atol=1e-6)


def test_negative_features_are_refused_with_a_fix():
  x = np.array([[1.0, -0.5], [0.2, 0.3]])
  for data in (x, sp.csr_matrix(x)):
    with pytest.raises(ValueError, match="Negative values in data.*MinMaxScaler"):
      ExplicitSoftmaxClassifier().fit(data, [0, 1])


def test_empty_rows_are_left_out_of_the_statistics():
  rng = np.random.default_rng(2)
  x, y = dense_data(rng, 200, 5, 3)
  with_empty = np.vstack([x, np.zeros((20, 5))])
  labels = np.concatenate([y, rng.integers(0, 3, 20)])
  a = ExplicitSoftmaxClassifier().fit(with_empty, labels)
  b = ExplicitSoftmaxClassifier().fit(x, y)
  np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6)
  with pytest.raises(ValueError, match="nonzero feature"):
    ExplicitSoftmaxClassifier().fit(np.zeros((4, 3)), [0, 1, 0, 1])


def test_calibrate_and_refine_match_the_core(digits):
  x, y, x_test, _ = digits
  base = ExplicitSoftmaxClassifier().fit(x, y)
  clf = ExplicitSoftmaxClassifier(calibrate=True, refine="adam", refine_steps=10, l2=1e-4)
  clf.fit(x, y)
  core = es.refine(es.calibrate(es.fit(x, y), x, y, l2=1e-4), x, y, method="adam", steps=10,
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
    ExplicitSoftmaxClassifier(calibrate=True).fit(x, y, sample_weight=sw)
  clf = ExplicitSoftmaxClassifier(calibrate=True, l2=1e-3).fit(x, y, sample_weight=sw)
  assert np.all(np.isfinite(clf.predict_proba(x)))


def test_bad_hyperparameters_raise_at_fit_not_init(digits):
  x, y, _, _ = digits
  for params in ({"method": "magic"}, {"smoothing": -1.0}, {"refine": "bfgs"},
                 {"refine_steps": 2.5}, {"ridge": float("nan")}):
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
