"""A scikit-learn classifier around the explicit softmax solution.

[`ExplicitSoftmaxClassifier`][explicit_softmax.sklearn.ExplicitSoftmaxClassifier] follows the
scikit-learn estimator contract (``fit``/``partial_fit``/``predict``/``predict_proba``/``score``,
``classes_``, ``n_features_in_``, ``feature_names_in_``, cloning, pickling, pipelines, grid search)
and passes ``sklearn.utils.estimator_checks``. Labels of any type are encoded through ``classes_``;
the model itself is ``p(y|x) = softmax(x W + b)`` with ``W, b`` from
[`es.solve`][explicit_softmax.solvers.solve].

For the closed forms the statistics ``F = X^T diag(w) Y`` are sums over
samples, so ``partial_fit`` over batches gives exactly the model that ``fit``
gives on the concatenated batches (up to float round-off), whatever classes
each batch holds.

Example:

  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier

  clf = make_pipeline(StandardScaler(), ExplicitSoftmaxClassifier())
  clf.fit(X_train, y_train).score(X_test, y_test)
"""

from __future__ import annotations


import numpy as np
import scipy.special
try:
  import sklearn  # noqa: F401
except ImportError as err:
  raise ImportError(
      "explicit_softmax.sklearn needs scikit-learn, an optional dependency: pip install "
      "'explicit-softmax[sklearn]'") from err
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._available_if import available_if
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted

from explicit_softmax import _dask
from explicit_softmax import _targets
from explicit_softmax import _validation
from explicit_softmax import fitting
from explicit_softmax import refinement
from explicit_softmax import solvers
from explicit_softmax import statistics
from explicit_softmax._typing import ArrayLike, Features, Labels, SampleWeight, Splits

try:
  from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6
  def _validate_data(estimator, *args, **kwargs):
    return estimator._validate_data(*args, **kwargs)  # pylint: disable=protected-access

__all__ = ["ExplicitSoftmaxClassifier"]

# Features are read as float64 or float32 (kept as given); sparse input as CSR.
_DTYPES = (np.float64, np.float32)


class ExplicitSoftmaxClassifier(ClassifierMixin, BaseEstimator):
  """Softmax (multinomial logistic) classifier: closed forms and the certified optimum.

  With the defaults, ``fit`` gives the model of [`es.fit`][explicit_softmax.fitting.fit]:
  on one-hot inputs the count solution (the exact optimum there); on any other
  features (StandardScaler output, counts, pixels, embeddings, bags of words)
  the L2-regularised multinomial optimum, with the penalty in units of each
  feature's spread (so that rescaling a feature changes no prediction),
  ``l2`` chosen by the evidence of the training data (or on held-out folds,
  given ``cv``), fitted by whitened L-BFGS until its relative gradient norm is
  below ``tol`` (see ``docs/fitting.md``).
  ``method="cooccurrence"`` or ``"newton"`` give the raw closed forms (one
  pass of additive statistics; ``partial_fit`` is available for them).

  Input. Dense arrays and ``scipy.sparse`` matrices (never densified) of any
  finite real features; only ``method="cooccurrence"`` needs nonnegative ones.
  Rows of zeros are ordinary samples (they inform the bias).

  Labels can be of any type (strings, integers, ...); they are sorted into
  ``classes_`` and predictions are returned as those labels. With two classes
  ``decision_function`` returns the logit difference of ``classes_[1]`` over
  ``classes_[0]`` (shape ``(n_samples,)``, as in scikit-learn); with a single
  class the model predicts that class with probability one.

  Args:
    method: ``"auto"`` (default, see above), ``"cooccurrence"`` (the
      co-occurrence solution, O(N M) memory) or ``"newton"`` (one exact Newton
      step from zero, O(N^2) memory).
    smoothing: additive smoothing of the co-occurrence solution (``>= 0``).
    ridge: relative ridge of the Newton solution (``>= 0``).
    l2: ``"auto"`` or a number ``>= 0``: the L2 strength of the optimum
      (``method="auto"``), of ``refine`` and of calibration's bias
      corrections. ``"auto"`` chooses it for ``method="auto"`` as
      [`es.fit`][explicit_softmax.fitting.fit] does (the evidence on dense
      features, held-out loss on sparse ones or given ``cv``) and means ``1 / sum(sample_weight)`` (scikit-learn's
      ``C = 1``) for ``refine``/``calibrate`` after a closed form.
    tol: relative gradient norm at which the optimum (``method="auto"``) and
      L-BFGS ``refine`` stop.
    cv: held-out data for ``l2="auto"``: None (as ``es.fit``: the evidence on
      dense features; on sparse ones 5 stratified folds up to 2,000 samples,
      else one 80/20 split of at most 20,000), a number of folds, or an
      iterable of (train, validation) index pairs, as in scikit-learn's ``*CV``
      estimators.
    calibrate: fit a temperature and class biases after a closed form.
    refine: None, or ``"lbfgs"``, ``"adam"`` or ``"sgd"`` to refine the
      weights on the training data after a closed form (full batch).
    refine_steps: maximum number of refinement steps.

  Attributes:
    classes_: (M,) the sorted class labels.
    model_: the fitted [`es.SoftmaxModel`][explicit_softmax.model.SoftmaxModel] (labels encoded as
      indices into ``classes_``); ``model_.info`` records how it was obtained
      (for ``method="auto"``: the convergence record and the ``l2`` path).
    coef_: (M, N) per-class weights ``W^T``.
    intercept_: (M,) per-class biases ``b``.
    stats_: for the closed forms, the [`es.SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats]
      of all data seen by ``fit``/``partial_fit`` (merge them with ``+``).
    n_features_in_: N, the number of features seen during fit.
    feature_names_in_: feature names, when ``X`` had string column names.
  """

  def __init__(self, method: str = "auto", smoothing: float = 0.1,
               ridge: float = 1e-3, l2: float | str = "auto",
               tol: float = 1e-3,
               cv: Splits = None, calibrate: bool = False,
               refine: str | None = None, refine_steps: int = 50):
    self.method = method
    self.smoothing = smoothing
    self.ridge = ridge
    self.l2 = l2
    self.tol = tol
    self.cv = cv
    self.calibrate = calibrate
    self.refine = refine
    self.refine_steps = refine_steps

  # -- tags --------------------------------------------------------------------
  def _poor_score(self) -> bool:
    # The plain co-occurrence solution has no bias and, on dense continuous
    # features, over-counts the class prior (one factor per feature of the
    # product of experts), so it need not reach a "reasonable" training
    # accuracy; calibration, refinement or the other methods fix this.
    return self.method == "cooccurrence" and not self.calibrate and self.refine is None

  def __sklearn_tags__(self):
    tags = super().__sklearn_tags__()
    tags.input_tags.positive_only = self.method == "cooccurrence"
    tags.input_tags.sparse = True
    tags.classifier_tags.poor_score = self._poor_score()
    return tags

  def _more_tags(self):  # scikit-learn < 1.6
    return {"requires_positive_X": self.method == "cooccurrence",
            "poor_score": self._poor_score()}

  # -- fitting -----------------------------------------------------------------
  def fit(self, X: Features, y: Labels,
          sample_weight: SampleWeight = None) -> ExplicitSoftmaxClassifier:
    """Fits the model (see the class docstring).

    Args:
      X: (T, N) real features, array-like or ``scipy.sparse``; or a dask
        array or DataFrame (computed on its workers, see ``docs/scaling.md``).
      y: (T,) class labels of any type (for a dask DataFrame, the name of its
        label column).
      sample_weight: optional (T,) nonnegative weights.

    Returns:
      self.

    Raises:
      ValueError: for invalid hyperparameters, non-finite features (negative
        ones with ``method="cooccurrence"``), or all-zero weights.
    """
    self._check_params()
    if _dask.is_dask(X):
      return self._fit_dask(X, y, sample_weight)
    _check_features(X)
    X, y = _validate_data(self, X, y, accept_sparse="csr", dtype=_DTYPES, reset=True)
    check_classification_targets(y)
    classes, codes = _targets.encode_labels(y)
    sw = _validation.check_sample_weight(sample_weight, X.shape[0])
    fitted = self._run(X, codes, len(classes), sw)
    self.classes_ = classes
    self._keep(fitted)
    return self

  def _run(self, X, codes, n_classes: int, sample_weight) -> fitting.Fitted:
    """The library's one pipeline (``fitting.run``) with this estimator's parameters."""
    return fitting.run(X, codes, n_classes, self.method, smoothing=self.smoothing,
                       ridge=self.ridge, l2=self.l2, tol=self.tol, sample_weight=sample_weight,
                       cv=self.cv, calibrate=self.calibrate, refine=self.refine,
                       refine_steps=self.refine_steps)

  def _keep(self, fitted: fitting.Fitted) -> None:
    """The fitted model and, for the closed forms, the statistics ``partial_fit`` adds to."""
    if fitted.stats is not None:
      self.stats_ = fitted.stats
    elif hasattr(self, "stats_"):
      del self.stats_
    self._set_model(fitted.model)

  def _fit_dask(self, X, y, sample_weight) -> ExplicitSoftmaxClassifier:
    """[`fit`][explicit_softmax.sklearn.ExplicitSoftmaxClassifier.fit] on a dask array or DataFrame
    (``y``: labels, or its label column's name).

    Labels of any type are encoded per partition; the statistics, the optimum
    and ``refine`` run over the partitions (see ``docs/scaling.md``).
    """
    if self.refine not in (None, "lbfgs"):
      raise ValueError(
          f"refine={self.refine!r} is not available for dask data: only full-batch 'lbfgs' "
          "runs over the partitions.")
    classes, X, codes = _dask.encode_labels(X, y)
    fitted = self._run(X, codes, len(classes), sample_weight)
    model = fitted.model
    self.classes_ = classes
    self._keep(fitted)
    self.n_features_in_ = model.n_features
    if isinstance(y, str):  # a DataFrame: its feature columns, in order
      self.feature_names_in_ = np.asarray(
          [c for c in X.columns if c not in (y, sample_weight)], dtype=object)
    elif hasattr(self, "feature_names_in_"):
      del self.feature_names_in_
    return self

  def _check_partial_fit(self) -> bool:
    if self.method == "auto" or self.calibrate or self.refine is not None:
      raise AttributeError(
          "partial_fit is only available for the closed forms without calibration or "
          "refinement (method='cooccurrence' or 'newton', calibrate=False, refine=None): "
          "it re-solves from additive statistics, while the optimum (method='auto'), "
          "calibrate and refine need all the data at once. Use fit, or "
          "es.calibrate/es.refine on model_ afterwards.")
    return True

  @available_if(_check_partial_fit)
  def partial_fit(self, X: Features, y: Labels, classes: ArrayLike | None = None,
                  sample_weight: SampleWeight = None) -> ExplicitSoftmaxClassifier:
    """Adds a batch to the statistics and re-solves: exact incremental fitting.

    Available for ``method="cooccurrence"`` or ``"newton"`` without
    ``calibrate``/``refine`` (an ``AttributeError`` says so otherwise). The
    statistics are sums over samples, so any sequence of ``partial_fit``
    calls gives the explicit model that ``fit`` gives on all batches at once
    (up to float round-off), also when a batch lacks some classes. After
    ``fit``, ``partial_fit`` continues from the statistics of the data given to
    ``fit``.

    Args:
      X: (T, N) real features, array-like or ``scipy.sparse``.
      y: (T,) labels, each one of ``classes``.
      classes: all class labels; required on the first call (a batch may lack
        some classes), optional afterwards (then it must not change).
      sample_weight: optional (T,) nonnegative weights.

    Returns:
      self.

    Raises:
      ValueError: as [`fit`][explicit_softmax.sklearn.ExplicitSoftmaxClassifier.fit], plus for a
        missing or changed ``classes``, labels outside ``classes``, or a changed number of features.
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
    _check_features(X)
    X, y = _validate_data(self, X, y, accept_sparse="csr", dtype=_DTYPES, reset=first)
    check_classification_targets(y)
    known = np.asarray(classes) if first else self.classes_
    codes = _targets.encode_labels(y, known)[1]
    sw = _validation.check_sample_weight(sample_weight, X.shape[0])
    gram = self.method == "newton" if first else self.stats_.gram is not None
    batch = statistics.SoftmaxStats.from_data(X, codes, n_classes=len(known), sample_weight=sw,
                                              gram=gram)
    stats = batch if first else self.stats_ + batch
    model = solvers.solve(stats, self.method, smoothing=self.smoothing, ridge=self.ridge)
    self.classes_ = known
    self.stats_ = stats
    self._set_model(model)
    return self

  def _set_model(self, model) -> None:
    names = getattr(self, "feature_names_in_", None)
    if names is not None:  # kept in the model's file (model_.save), matched by name later
      model = model.replace(info={**model.info, "feature_names": [str(n) for n in names]})
    self.model_ = model
    self.coef_ = model.weights.T
    self.intercept_ = model.bias

  def _check_params(self) -> None:
    _validation.check_choice("method", self.method, fitting.METHODS)
    for name in ("smoothing", "ridge", "tol"):
      _validation.check_number(name, getattr(self, name))
    _validation.check_l2(self.l2)
    if self.refine is not None:
      _validation.check_choice("refine", self.refine, refinement.METHODS)
    _validation.check_post_process(self.method, self.calibrate, self.refine)
    _validation.check_integer("refine_steps", self.refine_steps, minimum=0)

  # -- prediction --------------------------------------------------------------
  def _logits(self, X) -> np.ndarray:
    """(T, M) float64 logits ``X W + b``."""
    check_is_fitted(self)
    if _dask.is_dask(X):  # lazy (T, M) logits, one block per partition
      return _dask.logits(X, self.model_.weights, self.model_.bias,
                          getattr(self, "feature_names_in_", None))
    _check_features(X)
    X = _validate_data(self, X, accept_sparse="csr", dtype=_DTYPES, reset=False)
    weights = self.model_.weights.astype(np.float64)
    return np.asarray(safe_sparse_dot(X, weights, dense_output=True)) + self.model_.bias

  def decision_function(self, X: Features) -> np.ndarray:
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
    """``p(y|x) = softmax(x W + b)``, (T, M), columns ordered as ``classes_``
    (a lazy dask array for dask ``X``)."""
    z = self._logits(X)
    if _dask.is_dask(z):
      return _dask.softmax_blocks(z)
    return scipy.special.softmax(z, axis=1)

  def predict_log_proba(self, X) -> np.ndarray:
    """``log p(y|x)``, (T, M), columns ordered as ``classes_``."""
    z = self._logits(X)
    if _dask.is_dask(z):
      return _dask.softmax_blocks(z, log=True)
    return scipy.special.log_softmax(z, axis=1)

  def predict(self, X) -> np.ndarray:
    """The most probable label of each sample, (T,) taken from ``classes_``."""
    z = self._logits(X)
    if _dask.is_dask(z):
      return _dask.take_classes(z, self.classes_)
    return self.classes_[np.argmax(z, axis=1)]


def _check_features(X) -> None:
  """The library's refusals of masked arrays and non-numeric features (naming the
  column or cell), before scikit-learn's conversion would fail or drop the mask."""
  _validation.check_not_masked("X", X)
  _validation.check_numeric_columns(X)
