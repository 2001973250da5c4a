"""Real data: the default classifier against scikit-learn peers, cold and warm.

Data sets nobody here wrote, each in a fresh Python process (this script
re-invoked with ``--one NAME``, which prints one JSON line):

* scikit-learn's bundled ``iris``, ``wine``, ``breast_cancer`` and ``digits``:
  stratified 75/25 split (``random_state=0``), ``StandardScaler`` fitted on the
  training part (so the features have negative values);
* ``mnist``: ``explicit_softmax.data.load_mnist`` train (the first
  ``--mnist-rows`` images, default all 60,000) and test (10,000), pixels / 255
  as float32. Skipped with a one-line note if the files are not found (searched
  in ``$EXPLICIT_SOFTMAX_DATA``, set to ``../shared/data`` next to the repository
  when unset and that directory exists, then the user cache);
* ``shakespeare``: bag of words of the speeches of the ten most frequent
  speakers of tiny Shakespeare (``--text``, default
  ``../shared/data/tinyshakespeare.txt`` next to the repository, then
  ``$EXPLICIT_SOFTMAX_DATA/tinyshakespeare.txt``): the corpus is blocks
  ``"NAME:\\nline\\nline\\n\\n"``, each block (its lines joined) is a document
  labelled by its speaker; stratified 75/25 split (seed 0), ``CountVectorizer()``
  fitted on the training part. Skipped with a one-line note if the file is absent.

Arms, all fitted on the same split, in this order in each process:

* ``ExplicitSoftmaxClassifier()`` with its defaults (the headline arm; its
  ``get_params()`` are recorded), then the raw closed forms ``method="newton"``
  and ``method="cooccurrence"``. An arm that raises a ``ValueError`` (e.g. the
  co-occurrence form on negative features) is recorded as not applicable, with
  the message; the Newton form is not applicable above ``--newton-max-features``
  features (its Gram matrix is N^2);
* ``LogisticRegression()`` (defaults, as users run it; its warnings are
  suppressed and recorded), ``LogisticRegressionCV`` over
  ``C in logspace(-3, 3, 7)`` with 3 stratified folds, ``max_iter=1000``,
  scored by held-out log loss (the default scoring from scikit-learn 1.11),
  ``MultinomialNB()`` (nonnegative features only: MNIST and the bag of words),
  ``RidgeClassifier()`` (no ``predict_proba``: log loss null) and
  ``SGDClassifier(loss="log_loss", random_state=0)``.

Per arm: held-out accuracy and log loss (``sklearn.metrics.log_loss`` with
``labels=clf.classes_``), the cold fit (the first construct + fit in the process,
after data loading: the library's first arm includes JAX's compilation) and the
warm fit (median of ``--warm-repeats`` further fits; none, and warm null, when the
cold fit took more than ``--warm-cap`` seconds: on all of MNIST the tuned
``LogisticRegressionCV`` takes minutes per fit on two cores). Imports are timed
separately, scikit-learn first, then the library on top of it (``import_seconds``:
JAX and the library).

Which explicit start pays (``starts`` in each data set's record; ``--no-starts``
skips it): after the arms, in the same process (compilation already paid),
``es.fit_optimum(X, codes, l2=l2, start=START, tol=1e-6)`` at the ``l2`` that the
default arm chose there, from each start: ``zero``; ``newton`` and
``newton+calibrate`` (``es.calibrate(..., l2=1/T)``; skipped above
``--starts-newton-max-features`` features, default 5,000: its Gram matrix is
(N+1)^2); on nonnegative features only (MNIST, the bag of words) also
``cooccurrence``, ``cooccurrence+calibrate`` and ``class_normalised`` (multinomial
naive Bayes weights ``log((F + 1) / (F^T 1 + N))`` and the log class prior, from the
same co-occurrence statistics). Per start: the cost of computing it from scratch
and of the refinement (one untimed run, then medians of 3 timed runs, or 1 where a
run takes over 20 s), the start's own held-out log loss and accuracy, the final
fit's L-BFGS steps, convergence and held-out log loss (all starts should reach the
same optimum: the largest weight difference from the zero start's fit is
recorded). Once ``--starts-budget`` seconds (default 600) have gone on a data set,
its remaining starts are skipped. ``report.start_section`` renders it.

Targets (``report.real_targets``; per data set and overall): the default
estimator's held-out log loss at most 2% above ``LogisticRegression()``'s, its
accuracy at most one point below, and its total cold fit time over all data sets
below ``LogisticRegression()``'s (ratio LR / ours > 1).

Writes ``real.json``, ``real.md`` and ``real.png`` to ``--out`` (default
``benchmarks/results``).

MNIST (all 60,000 rows by default) takes most of the default run's time, above all
the tuned ``LogisticRegressionCV``; ``--mnist-rows 10000`` shortens it (the rows
used are recorded). Each data set's process is stopped after ``--timeout`` seconds
(recorded as an error).

Usage: python benchmarks/bench_real.py [--quick] [--mnist-rows N] [--text PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import subprocess
import sys
import time
import warnings

import numpy as np

from explicit_softmax.bench import report  # noqa: E402
from explicit_softmax.bench._harness import write_json  # noqa: E402

from explicit_softmax.bench import _harness  # noqa: E402
DATASETS = ("iris", "wine", "breast_cancer", "digits", "mnist", "shakespeare")
QUICK = ("iris", "wine", "digits")
SKLEARN_SETS = ("iris", "wine", "breast_cancer", "digits")
N_SPEAKERS = 10
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


class Skip(Exception):
  """A data set that cannot run here (missing files); the message says why."""


# -- data ------------------------------------------------------------------------

def _default_text() -> pathlib.Path:
  try:
    return _harness.tiny_shakespeare()
  except FileNotFoundError:
    return pathlib.Path(_harness.TEXT_NAME)  # reported as not found, and skipped


def speeches(text: str, n_speakers: int = N_SPEAKERS) -> tuple[list[str], list[str]]:
  """The speeches of the ``n_speakers`` most frequent speakers of a play corpus.

  Blocks are separated by blank lines; a block whose first line ends with ``:``
  is a speech by that name, its other lines (joined by spaces) the document.
  Frequency is the number of speeches (ties keep the order of first appearance).

  Returns:
    ``(documents, speakers)``, in corpus order.
  """
  blocks = text.replace("\r\n", "\n").split("\n\n")
  pairs = []
  for block in blocks:
    lines = [line.strip() for line in block.strip("\n").split("\n")]
    if len(lines) >= 2 and lines[0].endswith(":") and len(lines[0]) > 1:
      pairs.append((lines[0][:-1], " ".join(line for line in lines[1:] if line)))
  top = {name for name, _ in collections.Counter(n for n, _ in pairs).most_common(n_speakers)}
  kept = [(name, doc) for name, doc in pairs if name in top]
  return [doc for _, doc in kept], [name for name, _ in kept]


def load(name: str, args) -> tuple:
  """``(x_train, y_train, x_test, y_test, info)`` of one data set; raises Skip."""
  from sklearn.model_selection import train_test_split
  if name in SKLEARN_SETS:
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler
    x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    info = {"source": f"sklearn.datasets.load_{name}", "split": "stratified 75/25, seed 0",
            "features": "StandardScaler fitted on the training part"}
    return scaler.transform(x_tr), y_tr, scaler.transform(x_te), y_te, info
  if name == "mnist":
    from explicit_softmax import data
    try:
      x, y = data.load_mnist("train")
      x_te, y_te = data.load_mnist("test")
    except FileNotFoundError as err:
      raise Skip(f"MNIST files not found ({str(err).splitlines()[0]})") from None
    total = len(x)
    if args.mnist_rows:
      x, y = x[:args.mnist_rows], y[:args.mnist_rows]
    prep = lambda a: (a.reshape(len(a), -1).astype(np.float32) / 255)  # noqa: E731
    info = {"source": "explicit_softmax.data.load_mnist", "split": "official train / test",
            "features": "pixels / 255, float32", "train_rows_available": int(total),
            "train_rows_used": int(len(x))}
    return prep(x), y, prep(x_te), y_te, info
  if name == "shakespeare":
    from sklearn.feature_extraction.text import CountVectorizer
    path = pathlib.Path(args.text) if args.text else _default_text()
    if not path.is_file():
      raise Skip(f"text corpus {str(path)!r} not found (pass --text PATH)")
    docs, speakers = speeches(path.read_text(encoding="utf-8"), N_SPEAKERS)
    d_tr, d_te, y_tr, y_te = train_test_split(docs, np.asarray(speakers), test_size=0.25,
                                              stratify=speakers, random_state=0)
    vectorizer = CountVectorizer().fit(d_tr)
    info = {"source": str(path), "split": "stratified 75/25, seed 0",
            "features": "CountVectorizer() counts fitted on the training part (sparse)",
            "speakers": sorted(set(speakers)), "documents": len(docs)}
    return vectorizer.transform(d_tr), y_tr, vectorizer.transform(d_te), y_te, info
  raise ValueError(f"unknown data set {name!r}; choose from {DATASETS}.")


# -- arms ------------------------------------------------------------------------

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


def _plain(value):
  """A JSON value for a hyperparameter (numbers, strings, None; anything else as repr)."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, np.generic):
    return value.item()
  return repr(value)


def _nonnegative(x) -> bool:
  values = x.data if hasattr(x, "tocsr") else x
  return bool(values.size == 0 or values.min() >= 0)


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


# -- which explicit start pays ---------------------------------------------------------

STARTS_TOL = 1e-6
STARTS_REPEATS = 3          # timed runs after one untimed warm-up run
STARTS_SLOW_SECONDS = 20.0  # a run (start + refinement) above this: one timed run only
CLASS_NORMALISED_ALPHA = 1.0
# Start key -> what it is, in the order they run.
STARTS = {
    "zero": "all-zero weights and biases (costs nothing)",
    "newton": 'es.fit(X, y, method="newton")',
    "newton+calibrate": 'es.calibrate(newton, X, y, l2=1/T)',
    "cooccurrence": 'es.fit(X, y, method="cooccurrence")',
    "cooccurrence+calibrate": 'es.calibrate(cooccurrence, X, y, l2=1/T)',
    "class_normalised": "multinomial naive Bayes weights log((F + 1) / (F^T 1 + N)), "
                        "bias log class prior",
}
NONNEGATIVE_STARTS = ("cooccurrence", "cooccurrence+calibrate", "class_normalised")
NEWTON_STARTS = ("newton", "newton+calibrate")


def class_normalised(x, codes, n_classes: int, alpha: float = CLASS_NORMALISED_ALPHA):
  """Multinomial naive Bayes as a softmax model, from the co-occurrence statistics.

  ``W[n, m] = log((F[n, m] + alpha) / (sum_n' F[n', m] + N alpha))`` (each class's
  feature distribution, additively smoothed) and ``b = log(c / sum(c))`` (the class
  prior), with ``F = X^T Y`` and ``c = Y^T 1``.
  """
  import explicit_softmax as es
  stats = es.SoftmaxStats.from_data(x, codes, n_classes=n_classes)
  f = np.asarray(stats.cooccurrence, np.float64)
  per_class = f.sum(axis=0)  # (M,): each class's feature mass
  weights = np.log((f + alpha) / (per_class + f.shape[0] * alpha))
  bias = np.log(stats.class_mass / stats.class_mass.sum())
  return es.SoftmaxModel(weights, bias, info={"method": "class_normalised"})


def make_start(name: str, x, codes, n_classes: int):
  """The explicit start ``name``, computed from scratch on the training data."""
  import explicit_softmax as es
  if name == "zero":
    return es.SoftmaxModel(np.zeros((x.shape[1], n_classes)), np.zeros(n_classes),
                           info={"method": "zero"})
  if name in ("newton", "cooccurrence"):
    return es.fit(x, codes, n_classes=n_classes, method=name)
  if name.endswith("+calibrate"):
    base = es.fit(x, codes, n_classes=n_classes, method=name.split("+")[0])
    return es.calibrate(base, x, codes, l2=1.0 / len(codes))
  if name == "class_normalised":
    return class_normalised(x, codes, n_classes)
  raise ValueError(f"unknown start {name!r}")


def time_start(name: str, data: tuple, n_classes: int, l2: float) -> dict:
  """One start: its own cost and held-out loss, then ``fit_optimum`` from it.

  One untimed run first (compilation, caches), then the medians of
  ``STARTS_REPEATS`` timed runs, or of one when the warm-up or a timed run took
  more than ``STARTS_SLOW_SECONDS``. A run is the start computed from scratch
  (the zero start counts as free) and the final fit at the fixed ``l2``.
  """
  import explicit_softmax as es
  x, codes, x_te, codes_te = data

  def once():
    begin = time.perf_counter()
    start = make_start(name, x, codes, n_classes)
    made = time.perf_counter()
    final = es.fit_optimum(x, codes, n_classes, l2=l2, start=start, tol=STARTS_TOL)
    done = time.perf_counter()
    return start, final, (0.0 if name == "zero" else made - begin), done - made

  *_, cost, refine = once()  # warm-up, untimed
  runs = []
  for _ in range(1 if cost + refine > STARTS_SLOW_SECONDS else STARTS_REPEATS):
    start, final, cost, refine = once()
    runs.append((cost, refine))
    if cost + refine > STARTS_SLOW_SECONDS:
      break
  costs, refines = [c for c, _ in runs], [r for _, r in runs]
  record = final.info.get("refine", {})
  return {
      "status": "ok",
      "start_seconds": float(np.median(costs)),
      "refine_seconds": float(np.median(refines)),
      "total_seconds": float(np.median([c + r for c, r in runs])),
      "start_runs": costs, "refine_runs": refines,
      "start_log_loss": float(start.log_loss(x_te, codes_te)),
      "start_accuracy": float(np.mean(start.predict(x_te) == codes_te)),
      "steps": int(record.get("steps", -1)),
      "newton_polish_steps": int(record.get("newton_polish_steps", 0)),
      "converged": bool(record.get("converged", False)),
      "relative_grad_norm": _plain(record.get("relative_grad_norm")),
      "reason": _plain(record.get("reason")),
      # fit_optimum starts from zero instead where zero has the lower objective (4).
      "start_used": _plain(final.info.get("start")),
      "replaced_by_zero": name != "zero" and final.info.get("start") == "zero",
      "final_log_loss": float(final.log_loss(x_te, codes_te)),
      "final_accuracy": float(np.mean(final.predict(x_te) == codes_te)),
      "_weights": np.asarray(final.weights, np.float64),
  }


def run_starts(data: tuple, clf, *, nonnegative: bool, newton_max_features: int,
               budget: float = 600.0) -> dict:
  """Which explicit start pays: ``fit_optimum`` at the default arm's ``l2`` from each start.

  ``clf`` is the fitted default estimator of this data set (its ``l2`` and label
  encoding are reused). Starts that do not apply are recorded as skipped, with the
  reason; once ``budget`` seconds have gone, the remaining starts are skipped too.
  """
  if clf is None or not hasattr(clf, "model_"):
    return {"status": "skipped", "reason": "the default estimator did not fit here"}
  x, y, x_te, y_te = data
  classes = clf.classes_
  codes = np.unique(y, return_inverse=True)[1]
  codes_te = np.searchsorted(classes, y_te)
  m = len(classes)
  default = clf.model_.info.get("refine", {})
  l2 = float(default["l2"])
  out = {"status": "ok", "l2": l2, "tol": STARTS_TOL, "repeats": STARTS_REPEATS,
         "slow_seconds": STARTS_SLOW_SECONDS, "class_normalised_alpha": CLASS_NORMALISED_ALPHA,
         "default": {"start": _plain(clf.model_.info.get("start")),
                     "steps": _plain(default.get("steps")),
                     "converged": _plain(default.get("converged"))},
         "by_start": {}}
  begin = time.perf_counter()
  for name, label in STARTS.items():
    row = {"label": label}
    if name in NONNEGATIVE_STARTS and not nonnegative:
      row.update(status="skipped", reason="features have negative values (the co-occurrence "
                 "statistics need nonnegative features)")
    elif name in NEWTON_STARTS and x.shape[1] > newton_max_features:
      row.update(status="skipped", reason=f"{x.shape[1]:,} features > {newton_max_features:,} "
                 "(the Newton start needs the (N+1)^2 Gram matrix)")
    elif time.perf_counter() - begin > budget:
      row.update(status="skipped", reason=f"the study's budget of {budget:g} s was spent")
    else:
      try:
        row.update(time_start(name, (x, codes, x_te, codes_te), m, l2))
      except Exception as err:  # noqa: BLE001 - one failing start must not end the study
        row.update(status="error", reason=f"{type(err).__name__}: {err}")
    out["by_start"][name] = row
  # All starts should reach the same optimum: how far each final fit is from zero's.
  rows = out["by_start"]
  ref = rows["zero"].get("_weights")
  for row in rows.values():
    weights = row.pop("_weights", None)
    if ref is not None and weights is not None:
      row["max_weight_diff_from_zero_start"] = float(np.max(np.abs(weights - ref)))
  out["seconds"] = time.perf_counter() - begin
  return out


# -- the parent: one process per data set, then the outputs ---------------------------------

def _child(name: str, args) -> dict:
  cmd = [sys.executable, "-m", "explicit_softmax.bench.real", "--one", name,
         "--warm-repeats", str(args.warm_repeats), "--warm-cap", str(args.warm_cap),
         "--newton-max-features", str(args.newton_max_features),
         "--starts-newton-max-features", str(args.starts_newton_max_features),
         "--starts-budget", str(args.starts_budget)]
  if args.no_starts:
    cmd.append("--no-starts")
  if args.mnist_rows:
    cmd += ["--mnist-rows", str(args.mnist_rows)]
  if args.text:
    cmd += ["--text", str(args.text)]
  start = time.perf_counter()
  try:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
  except subprocess.TimeoutExpired:
    return {"name": name, "status": "error", "reason": f"timed out after {args.timeout} s"}
  wall = time.perf_counter() - start
  lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
  if proc.returncode != 0 or not lines:
    return {"name": name, "status": "error", "process_seconds": wall,
            "reason": f"child exited with status {proc.returncode} and no result "
                      "(its stderr is above)"}
  return {**json.loads(lines[-1]), "process_seconds": wall}


def _cell(x, spec):
  return "n/a" if x is None else format(x, spec)


def markdown(payload: dict) -> str:
  """``real.md``: every arm of every data set, then the targets' verdicts."""
  m = payload["machine"]
  lines = ["# Real data: the default classifier against scikit-learn\n",
           f"Machine: {m['cores']} cores, {m['cpu']}, {m['date']}. Cold: first fit in a fresh "
           "process (JAX compilation included for the library's first arm, imports excluded); "
           f"warm: median of {payload['config']['warm_repeats']} further fits.\n"]
  for name, d in payload["datasets"].items():
    if d["status"] != "ok":
      lines.append(f"**{name}**: {d['status']} ({d.get('reason', '')}).\n")
      continue
    lines.append(f"## {name}\n")
    lines.append(f"{d['n_train']:,} train / {d['n_test']:,} test, {d['n_features']:,} features, "
                 f"{d['n_classes']} classes; {d['features']}; {d['split']}. Imports: scikit-learn "
                 f"{d['peer_import_seconds']:.2f} s, then the library {d['import_seconds']:.2f} s; "
                 f"process {d['process_seconds']:.1f} s.\n")
    lines.append("| arm | accuracy | log loss | cold s | warm s | notes |")
    lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for a in d["arms"].values():
      if a["status"] != "ok":
        reason = a["reason"].strip().splitlines()[0][:160].replace("|", "\\|")
        lines.append(f"| {a['label']} | | | | | {a['status']}: {reason} |")
        continue
      notes = []
      if "C" in a:
        notes.append(f"C = {a['C']:g}")
      if "n_iter" in a:
        notes.append(f"{a['n_iter']} iterations")
      if a["convergence_warning"]:
        notes.append("ConvergenceWarning")
      if len(a["warm_runs"]) < payload["config"]["warm_repeats"]:
        notes.append(f"no warm fits (cold > {payload['config']['warm_cap_seconds']:g} s)")
      lines.append(f"| {a['label']} | {a['accuracy']:.4f} | {_cell(a['log_loss'], '.4f')} | "
                   f"{a['cold_seconds']:.3f} | {_cell(a['warm_seconds'], '.3f')} | "
                   f"{'; '.join(notes)} |")
    lines.append("")
  starts = report.start_section(payload)
  if starts:
    lines.append(starts)
  lines.append("## Targets\n")
  lines.extend(f"- {s}" for s in report.real_verdicts(payload["targets"]))
  params = payload.get("default_params")
  if params:
    lines.append(f"\nDefault parameters: `{json.dumps(params)}`.")
  return "\n".join(lines) + "\n"


def plot(payload: dict, path) -> None:
  """Held-out log loss and fit seconds (cold filled, warm hollow) per data set and arm."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D

  names = [n for n, d in payload["datasets"].items() if d["status"] == "ok"]
  if not names:
    return
  fig, axes = plt.subplots(1, 2, figsize=(14, 6))
  colors = plt.get_cmap("tab10").colors
  keys = list(ARMS)
  width = 0.8 / len(keys)
  handles = []
  for i, key in enumerate(keys):
    # The headline arm stands out: a larger star.
    style = dict(color=colors[i % 10], marker="*" if key == "explicit_default" else "o",
                 ls="none", ms=12 if key == "explicit_default" else 6)
    pts = [(j, payload["datasets"][n]["arms"].get(key, {})) for j, n in enumerate(names)]
    pts = [(j - 0.4 + (i + 0.5) * width, a) for j, a in pts if a.get("status") == "ok"]
    loss = [(p, a["log_loss"]) for p, a in pts if a["log_loss"] is not None]
    if loss:
      axes[0].plot(*zip(*loss), **style)
    if pts:
      handles.append(Line2D([], [], label=ARMS[key], **style))
      axes[1].plot([p for p, _ in pts], [a["cold_seconds"] for _, a in pts], **style)
      warm = [(p, a["warm_seconds"]) for p, a in pts if a["warm_seconds"]]
      if warm:
        axes[1].plot(*zip(*warm), **{**style, "mfc": "none"})
  for ax, label in zip(axes, ("held-out log loss (nats, log scale)",
                              "fit seconds, log scale (filled: cold, hollow: warm)")):
    ax.set_yscale("log")
    ax.set_ylabel(label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    for j in range(len(names) - 1):
      ax.axvline(j + 0.5, color="0.85", lw=0.8)
    ax.grid(alpha=0.3, which="both", axis="y")
  fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
  fig.suptitle("Real data: each data set in a fresh process, same split for every arm")
  fig.tight_layout(rect=(0, 0.1, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
  parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=None,
                      help="run these data sets (default: all, or the --quick ones)")
  parser.add_argument("--mnist-rows", type=int, default=None,
                      help="MNIST training rows used (the first ones; default all 60,000)")
  parser.add_argument("--text", default=None, help="tiny Shakespeare (default "
                      "../shared/data/tinyshakespeare.txt next to the repository)")
  parser.add_argument("--warm-repeats", type=int, default=3)
  parser.add_argument("--warm-cap", type=float, default=30.0,
                      help="an arm whose cold fit took longer (seconds) gets no warm fits")
  parser.add_argument("--newton-max-features", type=int, default=20_000)
  parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per data set")
  parser.add_argument("--no-starts", action="store_true",
                      help="skip the study of explicit starts for fit_optimum")
  parser.add_argument("--starts-newton-max-features", type=int, default=5000,
                      help="the starts study skips the Newton starts above this many features")
  parser.add_argument("--starts-budget", type=float, default=600.0,
                      help="seconds per data set after which the remaining starts are skipped")
  parser.add_argument("--out", default=None, help="output directory (default benchmarks/results)")
  parser.add_argument("--one", choices=DATASETS, default=None,
                      help="(internal) run one data set here and print one JSON line")
  return parser.parse_args(argv)


def _summary(d: dict) -> str:
  if d["status"] != "ok":
    return f"{d['name']}: {d['status']} ({d.get('reason', '')})"
  parts = []
  for key in ("explicit_default", "logreg"):
    a = d["arms"][key]
    parts.append(f"{a['label']} " + (
        f"acc {a['accuracy']:.4f} loss {_cell(a['log_loss'], '.4f')} cold "
        f"{a['cold_seconds']:.2f} s warm "
        + ("n/a" if a["warm_seconds"] is None else f"{a['warm_seconds']:.3f} s")
        if a["status"] == "ok" else a["status"]))
  text = f"{d['name']} ({d['process_seconds']:.1f} s): " + "; ".join(parts)
  if d.get("starts"):
    text += "\n  starts: " + report.start_sentence(d["name"], d["starts"])
  return text


def main(argv=None):
  args = parse_args(argv)
  if args.one:
    print(json.dumps(run_one(args.one, args), default=_plain), flush=True)
    return None
  names = args.datasets or (QUICK if args.quick else DATASETS)
  start = time.perf_counter()
  results = {}
  for name in names:
    results[name] = _child(name, args)
    print(_summary(results[name]), flush=True)
  default_params = next((d["arms"]["explicit_default"].get("params") for d in results.values()
                         if d["status"] == "ok"
                         and d["arms"]["explicit_default"]["status"] == "ok"), None)
  if default_params is None:  # the default arm failed everywhere: its parameters all the same
    from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
    default_params = {k: _plain(v) for k, v in ExplicitSoftmaxClassifier().get_params().items()}
  payload = {
      "config": {"datasets": list(names), "quick": args.quick, "mnist_rows": args.mnist_rows,
                 "warm_repeats": args.warm_repeats, "warm_cap_seconds": args.warm_cap,
                 "newton_max_features": args.newton_max_features, "n_speakers": N_SPEAKERS,
                 "logreg_cv_Cs": CS.tolist()},
      "default_params": default_params,
      "datasets": results,
      "targets": report.real_targets(results),
      "total_seconds": time.perf_counter() - start,
  }
  path = write_json("real.json", payload, args.out)
  payload = json.loads(path.read_text())  # with the machine facts
  (path.parent / "real.md").write_text(markdown(payload))
  plot(payload, path.parent / "real.png")
  for sentence in report.real_verdicts(payload["targets"]):
    print(sentence)
  print(f"wrote {path}, real.md and real.png ({payload['total_seconds']:.0f} s)")
  return payload


if __name__ == "__main__":
  _harness.run(main)
