"""The real-data benchmark's arms: the library's estimators and scikit-learn's peers on
one data set, cold and warm."""

from __future__ import annotations

import time
import warnings

import numpy as np

from explicit_softmax.bench.real_data import Skip, _nonnegative, _plain, load
from explicit_softmax.bench.real_starts import run_starts


CS = np.logspace(-3, 3, 7)
# Arm key -> label, in the order they run in each process (the default arm first).
ARMS = {
    "explicit_default": "ExplicitSoftmaxClassifier()",
    "explicit_newton": 'ExplicitSoftmaxClassifier(method="newton")',
    "explicit_cooccurrence": 'ExplicitSoftmaxClassifier(method="cooccurrence")',
    "logreg": "LogisticRegression()",
    "logreg_cv": "LogisticRegressionCV (C tuned by 3-fold CV)",
    "multinomial_nb": "MultinomialNB()",
    "ridge": "RidgeClassifier()",
    "sgd": 'SGDClassifier(loss="log_loss")',
}
LIBRARY_ARMS = ("explicit_default", "explicit_newton", "explicit_cooccurrence")


def make(key: str):
  """A fresh, unfitted estimator of arm ``key``."""
  from sklearn import linear_model, naive_bayes
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
  if key == "explicit_default":
    return ExplicitSoftmaxClassifier()
  if key == "explicit_newton":
    return ExplicitSoftmaxClassifier(method="newton")
  if key == "explicit_cooccurrence":
    return ExplicitSoftmaxClassifier(method="cooccurrence")
  if key == "logreg":
    return linear_model.LogisticRegression()
  if key == "logreg_cv":
    import inspect
    extra = {}
    params = inspect.signature(linear_model.LogisticRegressionCV).parameters
    # Spelled out where scikit-learn warns that a default changes (1.8 to 1.11).
    if "l1_ratios" in params:
      extra["l1_ratios"] = (0.0,)
    if "use_legacy_attributes" in params:
      extra["use_legacy_attributes"] = False
    return linear_model.LogisticRegressionCV(Cs=CS, cv=3, max_iter=1000, scoring="neg_log_loss",
                                             **extra)
  if key == "multinomial_nb":
    return naive_bayes.MultinomialNB()
  if key == "ridge":
    return linear_model.RidgeClassifier()
  if key == "sgd":
    return linear_model.SGDClassifier(loss="log_loss", random_state=0)
  raise ValueError(f"unknown arm {key!r}")


def _details(clf) -> dict:
  """What an arm chose or how it ran: iterations, the tuned C."""
  out = {}
  if hasattr(clf, "C_"):
    out["C"] = float(np.ravel(clf.C_)[0])
  n_iter = getattr(clf, "n_iter_", None)
  if n_iter is not None:
    out["n_iter"] = int(np.max(n_iter))
  return out


def run_arm(key: str, data: tuple, *, warm_repeats: int, warm_cap: float,
            fitted: dict | None = None) -> dict:
  """Fits arm ``key`` once cold, evaluates it, then times ``warm_repeats`` more fits.

  The cold fit's estimator is stored in ``fitted[key]`` when ``fitted`` is a dict.
  """
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.metrics import log_loss
  x, y, x_te, y_te = data
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    start = time.perf_counter()
    try:
      clf = make(key).fit(x, y)
    except ValueError as err:
      return {"status": "not applicable", "reason": f"ValueError: {err}"}
    except Exception as err:  # noqa: BLE001 - one failing arm must not end the data set
      return {"status": "error", "reason": f"{type(err).__name__}: {err}"}
    cold = time.perf_counter() - start
    cold_warnings = list(caught)
    if fitted is not None:
      fitted[key] = clf
    accuracy = float(np.mean(clf.predict(x_te) == y_te))
    loss = None
    if hasattr(clf, "predict_proba"):
      loss = float(log_loss(y_te, clf.predict_proba(x_te), labels=clf.classes_))
    repeats = warm_repeats if cold <= warm_cap else 0  # MNIST's tuned arm: minutes per fit
    warm = []
    for _ in range(repeats):
      start = time.perf_counter()
      make(key).fit(x, y)
      warm.append(time.perf_counter() - start)
  messages = []
  for w in cold_warnings:
    text = f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}"
    if text not in messages:
      messages.append(text)
  out = {"status": "ok", "accuracy": accuracy, "log_loss": loss, "cold_seconds": cold,
         "warm_seconds": float(np.median(warm)) if warm else None, "warm_runs": warm,
         "convergence_warning": any(issubclass(w.category, ConvergenceWarning)
                                    for w in cold_warnings),
         "warnings": messages[:5], **_details(clf)}
  if key == "explicit_default":
    out["params"] = {k: _plain(v) for k, v in clf.get_params().items()}
  return out


def run_one(name: str, args) -> dict:
  """One data set, every arm, in this (fresh) process: what ``--one NAME`` prints."""
  start = time.perf_counter()
  import sklearn.linear_model  # noqa: F401
  import sklearn.metrics  # noqa: F401
  import sklearn.naive_bayes  # noqa: F401
  peer_import = time.perf_counter() - start
  start = time.perf_counter()
  import explicit_softmax  # noqa: F401
  import explicit_softmax.sklearn  # noqa: F401
  lib_import = time.perf_counter() - start
  out = {"name": name, "peer_import_seconds": peer_import, "import_seconds": lib_import}
  start = time.perf_counter()
  try:
    x, y, x_te, y_te, info = load(name, args)
  except Skip as why:
    return {**out, "status": "skipped", "reason": str(why)}
  out["load_seconds"] = time.perf_counter() - start
  nonnegative = _nonnegative(x) and _nonnegative(x_te)
  out.update(status="ok", **info, n_train=int(x.shape[0]), n_test=int(x_te.shape[0]),
             n_features=int(x.shape[1]), n_classes=int(len(np.unique(y))),
             nonnegative=nonnegative, sparse=hasattr(x, "tocsr"))
  arms, fitted = {}, {}
  for key, label in ARMS.items():
    if key == "multinomial_nb" and not nonnegative:
      arms[key] = {"label": label, "status": "not applicable",
                   "reason": "features have negative values (MultinomialNB needs counts)"}
      continue
    if key == "explicit_newton" and x.shape[1] > args.newton_max_features:
      arms[key] = {"label": label, "status": "not applicable",
                   "reason": f"{x.shape[1]:,} features > --newton-max-features "
                             f"{args.newton_max_features:,} (its Gram matrix is N^2)"}
      continue
    arms[key] = {"label": label, **run_arm(key, (x, y, x_te, y_te),
                                           warm_repeats=args.warm_repeats,
                                           warm_cap=args.warm_cap,
                                           fitted=fitted if key == "explicit_default"
                                           else None)}
  out["arms"] = arms
  if not args.no_starts:
    out["starts"] = run_starts((x, y, x_te, y_te), fitted.get("explicit_default"),
                               nonnegative=nonnegative,
                               newton_max_features=args.starts_newton_max_features,
                               budget=args.starts_budget)
  return out
