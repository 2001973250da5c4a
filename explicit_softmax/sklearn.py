"""A scikit-learn classifier around the explicit softmax solution.

:class:`ExplicitSoftmaxClassifier` follows the scikit-learn estimator contract
(``fit``/``partial_fit``/``predict``/``predict_proba``/``score``, ``classes_``,
``n_features_in_``, ``feature_names_in_``, cloning, pickling, pipelines, grid
search) and passes ``sklearn.utils.estimator_checks``. Labels of any type are
encoded through ``classes_``; the model itself is ``p(y|x) = softmax(x W + b)``
with ``W, b`` from :func:`explicit_softmax.solve`.

Because the statistics ``F = X^T diag(w) Y`` are sums over samples,
``partial_fit`` over batches gives exactly the model that ``fit`` gives on the
concatenated batches (up to float round-off), whatever classes each batch holds.

Example::

  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import MinMaxScaler
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier

  clf = make_pipeline(MinMaxScaler(clip=True), ExplicitSoftmaxClassifier(calibrate=True))
  clf.fit(X_train, y_train).score(X_test, y_test)
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import scipy.special
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from explicit_softmax import _targets
from explicit_softmax import refinement
from explicit_softmax import solvers
from explicit_softmax import statistics

try:
  from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6
  def _validate_data(estimator, *args, **kwargs):
    return estimator._validate_data(*args, **kwargs)  # pylint: disable=protected-access

__all__ = ["ExplicitSoftmaxClassifier"]

# Features are read as float64 or float32 (kept as given); sparse input as CSR.
_DTYPES = (np.float64, np.float32)


class ExplicitSoftmaxClassifier(ClassifierMixin, BaseEstimator):
  """Softmax (multinomial logistic) classifier fitted in closed form.

  ``fit`` computes the additive statistics of the data in one pass and solves
  for ``W, b`` explicitly (:func:`explicit_softmax.solve`); optionally it then
  calibrates a temperature and class biases (:func:`explicit_softmax.calibrate`)
  and/or refines the weights iteratively (:func:`explicit_softmax.refine`),
  both on the training data.

  Input. Training features must be nonnegative (counts, tf-idf, pixel
  intensities, ReLU or softmax activations): the explicit solution is built
  from feature-class co-occurrences, which negative features do not have.
  Negative training data raise a ``ValueError`` ("Negative values in data ...");
  put e.g. ``MinMaxScaler(clip=True)`` in front of the classifier. Prediction
  evaluates the linear logits ``x W + b``, defined for any finite ``x``, so
  held-out data slightly outside the training range are accepted. Dense arrays
  and ``scipy.sparse`` matrices are accepted (sparse data are never densified).

  Samples without any nonzero feature carry no feature-class co-occurrence:
  they are left out of the explicit statistics (a data set in which every
  sample is empty is an error), but ``calibrate``/``refine`` use them, since
  they inform the class biases.

  Labels can be of any type (strings, integers, ...); they are sorted into
  ``classes_`` and predictions are returned as those labels. With two classes
  ``decision_function`` returns the logit difference of ``classes_[1]`` over
  ``classes_[0]`` (shape ``(n_samples,)``, as in scikit-learn); with a single
  class the model predicts that class with probability one.

  Args:
    method: ``"cooccurrence"`` (the co-occurrence solution, O(N M) memory) or
      ``"newton"`` (one exact Newton step from zero, O(N^2) memory).
    smoothing: additive smoothing of the co-occurrence solution (``>= 0``).
    ridge: relative ridge of the Newton solution (``>= 0``).
    calibrate: fit a temperature and class biases after the explicit solve.
    refine: None, or ``"lbfgs"``, ``"adam"`` or ``"sgd"`` to refine the
      weights on the training data after the explicit solve (full batch).
    refine_steps: number of refinement steps.
    l2: L2 penalty ``(l2 / 2) ||W||^2`` of the refinement, and ``(l2 / 2) ||beta||^2``
      of the calibration's bias corrections (needed there when every sample
      of some class has zero weight).

  Attributes:
    classes_: (M,) the sorted class labels.
    model_: the fitted :class:`explicit_softmax.SoftmaxModel` (labels encoded as
      indices into ``classes_``).
    coef_: (M, N) per-class weights ``W^T``.
    intercept_: (M,) per-class biases ``b``.
    stats_: the :class:`explicit_softmax.SoftmaxStats` of all data seen by
      ``fit``/``partial_fit`` (merge them with ``+`` across shards).
    n_features_in_: N, the number of features seen during fit.
    feature_names_in_: feature names, when ``X`` had string column names.
  """

  def __init__(self, method: str = "cooccurrence", smoothing: float = solvers.DEFAULT_SMOOTHING,
               ridge: float = solvers.DEFAULT_RIDGE, calibrate: bool = False,
               refine: str | None = None, refine_steps: int = 50, l2: float = 0.0):
    self.method = method
    self.smoothing = smoothing
    self.ridge = ridge
    self.calibrate = calibrate
    self.refine = refine
    self.refine_steps = refine_steps
    self.l2 = l2

  # -- tags --------------------------------------------------------------------
  def _poor_score(self) -> bool:
    # The plain co-occurrence solution has no bias and, on dense continuous
    # features, over-counts the class prior (one factor per feature of the
    # product of experts), so it need not reach a "reasonable" training
    # accuracy; calibration, refinement or the Newton solution fix this.
    return self.method == "cooccurrence" and not self.calibrate and self.refine is None

  def __sklearn_tags__(self):
    tags = super().__sklearn_tags__()
    tags.input_tags.positive_only = True  # fit needs nonnegative features
    tags.input_tags.sparse = True
    tags.classifier_tags.poor_score = self._poor_score()
    return tags

  def _more_tags(self):  # scikit-learn < 1.6
    return {"requires_positive_X": True, "poor_score": self._poor_score()}

  # -- fitting -----------------------------------------------------------------
  def fit(self, X, y, sample_weight=None) -> "ExplicitSoftmaxClassifier":
    """Fits the explicit solution (then calibrates/refines if requested).

    Args:
      X: (T, N) nonnegative features, array-like or ``scipy.sparse``.
      y: (T,) class labels of any type.
      sample_weight: optional (T,) nonnegative weights.

    Returns:
      self.

    Raises:
      ValueError: for invalid hyperparameters, negative or non-finite features,
        all-zero weights, or data in which no sample has a nonzero feature.
    """
    self._check_params()
    X, y = _validate_data(self, X, y, accept_sparse="csr", dtype=_DTYPES, reset=True)
    check_classification_targets(y)
    _check_nonnegative(X, f"{type(self).__name__}.fit")
    classes, codes = np.unique(y, return_inverse=True)
    sw = _check_weights(sample_weight, X)
    stats = _batch_stats(X, codes, sw, len(classes), gram=self.method == "newton")
    if stats is None:
      raise ValueError(_NO_INFORMATIVE_SAMPLES)
    model = solvers.solve(stats, self.method, smoothing=self.smoothing, ridge=self.ridge)
    if self.calibrate:
      model = refinement.calibrate(model, X, codes, sample_weight=sw, l2=self.l2)
    if self.refine is not None:
      model = refinement.refine(model, X, codes, method=self.refine, steps=self.refine_steps,
                                l2=self.l2, sample_weight=sw)
    self.classes_ = classes
    self.stats_ = stats
    self._set_model(model)
    return self

  def partial_fit(self, X, y, classes=None, sample_weight=None) -> "ExplicitSoftmaxClassifier":
    """Adds a batch to the statistics and re-solves: exact incremental fitting.

    The statistics are sums over samples, so any sequence of ``partial_fit``
    calls gives the explicit model that ``fit`` gives on all batches at once
    (up to float round-off), also when a batch lacks some classes. Only the
    explicit solve is applied: ``calibrate`` and ``refine`` need the whole
    training data in memory and are ignored here (call
    :func:`explicit_softmax.calibrate`/:func:`explicit_softmax.refine` on
    ``model_`` afterwards if the data allow it). After ``fit``, ``partial_fit``
    continues from the statistics of the data given to ``fit``.

    Args:
      X: (T, N) nonnegative features, array-like or ``scipy.sparse``.
      y: (T,) labels, each one of ``classes``.
      classes: all class labels; required on the first call (a batch may lack
        some classes), optional afterwards (then it must not change).
      sample_weight: optional (T,) nonnegative weights.

    Returns:
      self.

    Raises:
      ValueError: as :meth:`fit`, plus for a missing or changed ``classes``,
        labels outside ``classes``, or a changed number of features.
    """
    self._check_params()
    first = not hasattr(self, "stats_")
    if first and classes is None:
      raise ValueError(
          "classes must be passed on the first call to partial_fit (a batch may lack "
          "some classes): partial_fit(X, y, classes=np.unique(all_labels)).")
    if classes is not None:
      classes = unique_labels(classes)
      if not first and not np.array_equal(classes, self.classes_):
        raise ValueError(
            f"classes={classes!r} differs from the classes of the previous calls "
            f"{self.classes_!r}; pass the same classes on every call (or none after the "
            "first).")
    X, y = _validate_data(self, X, y, accept_sparse="csr", dtype=_DTYPES, reset=first)
    check_classification_targets(y)
    _check_nonnegative(X, f"{type(self).__name__}.partial_fit")
    known = classes if first else self.classes_
    codes = _encode(y, known)
    sw = _check_weights(sample_weight, X)
    gram = self.method == "newton" if first else self.stats_.gram is not None
    batch = _batch_stats(X, codes, sw, len(known), gram=gram)
    stats = self.stats_ if not first else None
    if batch is not None:
      stats = batch if stats is None else stats + batch
    if stats is None:
      raise ValueError(_NO_INFORMATIVE_SAMPLES)
    model = solvers.solve(stats, self.method, smoothing=self.smoothing, ridge=self.ridge)
    self.classes_ = known
    self.stats_ = stats
    self._set_model(model)
    return self

  def _set_model(self, model) -> None:
    self.model_ = model
    self.coef_ = model.weights.T
    self.intercept_ = model.bias

  def _check_params(self) -> None:
    if self.method not in solvers.METHODS:
      raise ValueError(f"method={self.method!r} is unknown; choose one of {solvers.METHODS}.")
    for name in ("smoothing", "ridge", "l2"):
      value = getattr(self, name)
      if (not isinstance(value, numbers.Real) or isinstance(value, bool)
          or not np.isfinite(value) or value < 0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")
    if self.refine is not None and self.refine not in refinement.METHODS:
      raise ValueError(
          f"refine={self.refine!r} is unknown; use None or one of {refinement.METHODS}.")
    _targets.check_integer("refine_steps", self.refine_steps, minimum=0)

  # -- prediction --------------------------------------------------------------
  def _logits(self, X) -> np.ndarray:
    """(T, M) float64 logits ``X W + b``."""
    check_is_fitted(self)
    X = _validate_data(self, X, accept_sparse="csr", dtype=_DTYPES, reset=False)
    weights = self.model_.weights.astype(np.float64)
    return np.asarray(safe_sparse_dot(X, weights, dense_output=True)) + self.model_.bias

  def decision_function(self, X) -> np.ndarray:
    """Logits ``x W + b``.

    Args:
      X: (T, N) features.

    Returns:
      (T, M) logits; (T,) logit difference ``z_1 - z_0`` for two classes and
      (T,) constant logits for a single class (scikit-learn convention).
    """
    z = self._logits(X)
    if z.shape[1] == 2:
      return z[:, 1] - z[:, 0]
    if z.shape[1] == 1:
      return z[:, 0]
    return z

  def predict_proba(self, X) -> np.ndarray:
    """``p(y|x) = softmax(x W + b)``, (T, M), columns ordered as ``classes_``."""
    return scipy.special.softmax(self._logits(X), axis=1)

  def predict_log_proba(self, X) -> np.ndarray:
    """``log p(y|x)``, (T, M), columns ordered as ``classes_``."""
    return scipy.special.log_softmax(self._logits(X), axis=1)

  def predict(self, X) -> np.ndarray:
    """The most probable label of each sample, (T,) taken from ``classes_``."""
    z = self._logits(X)
    return self.classes_[np.argmax(z, axis=1)]


_NO_INFORMATIVE_SAMPLES = (
    "no sample with positive weight has a nonzero feature, so there is nothing to fit "
    "(the explicit solution is built from feature-class co-occurrences). Check the "
    "features, or append a constant feature column.")


def _check_nonnegative(X, whom: str) -> None:
  values = X.data if sp.issparse(X) else X
  if values.size and values.min() < 0:
    raise ValueError(
        f"Negative values in data passed to {whom}: the explicit solution needs "
        "nonnegative features (counts, intensities, activations after ReLU/softmax). "
        "Shift or rescale them first, e.g. with sklearn.preprocessing.MinMaxScaler(clip=True) "
        "in a Pipeline.")


def _check_weights(sample_weight, X) -> np.ndarray:
  sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
  if not np.isfinite(sw).all() or sw.min() < 0:
    raise ValueError("sample_weight must be finite and nonnegative.")
  if sw.sum() <= 0:
    raise ValueError(
        "sample_weight is zero for every sample; at least one sample needs a positive "
        "weight.")
  return sw


def _encode(y, classes: np.ndarray) -> np.ndarray:
  """Indices of the labels ``y`` in the sorted ``classes``; unknown labels raise."""
  unknown = ~np.isin(y, classes)
  if np.any(unknown):
    raise ValueError(
        f"y contains labels {np.unique(np.asarray(y)[unknown])!r} that are not in classes "
        f"{classes!r}; pass every label in `classes` on the first partial_fit call.")
  return np.searchsorted(classes, y)


def _batch_stats(X, codes, sw, n_classes: int, gram: bool):
  """The statistics of the samples that have feature mass, or None if there are none.

  Empty samples (no nonzero feature) contribute nothing to ``F = X^T diag(w) Y``;
  zero-weight samples contribute nothing at all. Both are left out.
  """
  mass = np.asarray(X.sum(axis=1)).ravel()
  keep = (mass > 0) & (sw > 0)
  if not keep.any():
    return None
  if not keep.all():
    X, codes, sw = X[keep], codes[keep], sw[keep]
  return statistics.SoftmaxStats.from_data(
      X, codes, n_classes=n_classes, sample_weight=sw, gram=gram)
