"""The benchmarks' arms against scikit-learn (``bench real``, ``bench tabular``): the
library's default estimator and scikit-learn's peers on one data set, each headline arm
cold in a process of its own, the peers also at their best BLAS thread setting."""

from __future__ import annotations

import gc
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

from explicit_softmax.bench.real_data import _plain


# Arm key -> label. The headline arms (the default and the two peers of issue 22's
# targets) run first, each in a fresh process; the others share one process after them.
ARMS = {
    "explicit_default": "ExplicitSoftmaxClassifier()",
    "logreg": "LogisticRegression()",
    "logreg_cv": "LogisticRegressionCV()",
    "explicit_newton": 'ExplicitSoftmaxClassifier(method="newton")',
    "explicit_cooccurrence": 'ExplicitSoftmaxClassifier(method="cooccurrence")',
    "multinomial_nb": "MultinomialNB()",
    "ridge": "RidgeClassifier()",
    "sgd": 'SGDClassifier(loss="log_loss")',
}
OURS, LR, LRCV = "explicit_default", "logreg", "logreg_cv"
HEADLINE = (OURS, LR, LRCV)
PEERS = (LR, LRCV)  # timed also at 1 BLAS thread and at all cores
OTHERS = tuple(k for k in ARMS if k not in HEADLINE)
LIBRARY_ARMS = ("explicit_default", "explicit_newton", "explicit_cooccurrence")
# What LogisticRegressionCV() is here: its defaults (5 stratified folds, 10 Cs from
# logspace(-4, 4), lbfgs, max_iter=100), with the three parameters whose defaults
# scikit-learn announces to change spelled out at their announced values, so that the
# arm does not change under a version bump: scoring by held-out log loss (the default
# from 1.11; 1.9 and 1.10 warn and score accuracy), l1_ratios=(0,) (plain L2, as now),
# use_legacy_attributes=False (the fitted attributes only).
LRCV_FUTURE_DEFAULTS = {"scoring": "neg_log_loss", "l1_ratios": (0.0,),
                        "use_legacy_attributes": False}


def lrcv_params() -> dict:
  """The parameters that ``make`` passes to ``LogisticRegressionCV`` (those this
  scikit-learn version has)."""
  from sklearn import linear_model
  known = inspect.signature(linear_model.LogisticRegressionCV).parameters
  return {k: v for k, v in LRCV_FUTURE_DEFAULTS.items() if k in known}


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
    return linear_model.LogisticRegressionCV(**lrcv_params())
  if key == "multinomial_nb":
    return naive_bayes.MultinomialNB()
  if key == "ridge":
    return linear_model.RidgeClassifier()
  if key == "sgd":
    return linear_model.SGDClassifier(loss="log_loss", random_state=0)
  raise ValueError(f"unknown arm {key!r}")


def _details(clf) -> dict:
  """What an arm chose or how it ran: iterations, the tuned C, and for the default
  estimator the record of its fit (``model_.info``: seconds per stage, how ``l2`` was
  chosen, the final fit's steps and certificate)."""
  out = {}
  if hasattr(clf, "C_"):
    out["C"] = float(np.ravel(clf.C_)[0])
  n_iter = getattr(clf, "n_iter_", None)
  if n_iter is not None:
    out["n_iter"] = int(np.max(n_iter))
  info = getattr(getattr(clf, "model_", None), "info", None)
  if info is not None:
    out["fit_method"] = _plain(info.get("method"))
    if "seconds" in info:
      out["seconds"] = {k: float(v) for k, v in info["seconds"].items()}
    if "l2_path" in info:
      path = info["l2_path"]
      out["l2_path"] = {k: _plain(path.get(k)) for k in ("method", "C", "fits", "steps", "rows")
                        if k in path}
    if "refine" in info:
      refine = info["refine"]
      out["refine"] = {k: _plain(refine.get(k)) for k in (
          "steps", "relative_grad_norm", "precision", "whitening", "converged", "l2")
          if k in refine}
  return out


def _evaluate(clf, x_te, y_te) -> dict:
  from sklearn.metrics import log_loss
  out = {"accuracy": float(np.mean(clf.predict(x_te) == y_te)), "log_loss": None}
  if hasattr(clf, "predict_proba"):
    out["log_loss"] = float(log_loss(y_te, clf.predict_proba(x_te), labels=clf.classes_))
  return out


def _timed_fits(key: str, x, y, runs: int) -> list[float]:
  times = []
  for _ in range(runs):
    estimator = make(key)
    start = time.perf_counter()
    estimator.fit(x, y)
    times.append(time.perf_counter() - start)
  return times


def run_arm(key: str, data: tuple, *, warm_repeats: int, warm_cap: float,
            thread_cap: float | None = None, emit=None, fitted: dict | None = None) -> dict:
  """Fits arm ``key`` once cold (as users run it: default threads, the first fit of this
  arm in the process), evaluates it, then times further fits.

  Further fits: ``warm_repeats`` at the default setting (none when the cold fit took
  over ``warm_cap`` seconds); for a peer (``thread_cap`` given) also with
  threadpoolctl's limits at 1 thread and at all cores (the median of ``warm_repeats``
  runs each, one run when the cold fit took over ``warm_cap`` seconds, none when it
  took over ``thread_cap``). A peer's ``best_seconds`` is the smallest of its cold fit
  and its thread settings' times.

  ``emit(record)``, if given, receives the record after the cold fit and again after
  each setting (so a timeout keeps what was measured); ``fitted[key]`` the cold fit's
  estimator when ``fitted`` is a dict.
  """
  from sklearn.exceptions import ConvergenceWarning
  x, y, x_te, y_te = data
  # Constructed first: its imports (scikit-learn's modules, the library's estimator) are
  # not part of the fit.
  estimator = make(key)
  # A full garbage collection of the objects the imports left (about 70 ms in a process
  # with scikit-learn and matplotlib loaded) lands in whichever call allocates when it
  # falls due; as timeit does, no arm's time includes it.
  gc.collect()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    start = time.perf_counter()
    try:
      clf = estimator.fit(x, y)
    except ValueError as err:
      return {"status": "not applicable", "reason": f"ValueError: {err}"}
    except Exception as err:  # noqa: BLE001 - one failing arm must not end the data set
      return {"status": "error", "reason": f"{type(err).__name__}: {err}"}
    cold = time.perf_counter() - start
    cold_warnings = list(caught)
  if fitted is not None:
    fitted[key] = clf
  messages = []
  for w in cold_warnings:
    text = f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}"
    if text not in messages:
      messages.append(text)
  out = {"status": "ok", **_evaluate(clf, x_te, y_te), "cold_seconds": cold,
         "convergence_warning": any(issubclass(w.category, ConvergenceWarning)
                                    for w in cold_warnings),
         "warnings": messages[:5], **_details(clf), "warm_seconds": None, "warm_runs": []}
  if key == "explicit_default":
    out["params"] = {k: _plain(v) for k, v in clf.get_params().items()}
  if thread_cap is not None:
    out["best_seconds"], out["best_setting"] = cold, "cold, default threads"
    out["threads"] = {}
  emit = emit or (lambda record: None)
  emit(out)
  repeats = warm_repeats if cold <= warm_cap else 0
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if repeats:
      out["warm_runs"] = _timed_fits(key, x, y, repeats)
      out["warm_seconds"] = float(np.median(out["warm_runs"]))
      emit(out)
    if thread_cap is None:
      return out
    if cold > thread_cap:
      out["threads_note"] = (f"thread settings not timed: the cold fit took {cold:.0f} s "
                             f"> {thread_cap:g} s")
      return out
    from threadpoolctl import threadpool_limits
    for threads in sorted({1, os.cpu_count() or 1}):
      with threadpool_limits(limits=threads):
        runs = _timed_fits(key, x, y, max(repeats, 1))
      out["threads"][str(threads)] = {"seconds": float(np.median(runs)), "runs": runs}
      if out["threads"][str(threads)]["seconds"] < out["best_seconds"]:
        out["best_seconds"] = out["threads"][str(threads)]["seconds"]
        out["best_setting"] = f"{threads} thread{'s' * (threads > 1)}"
      emit(out)
  return out


def child_main(load, name: str, arms: list[str], args, *, starts=None) -> None:
  """One data set's arms in this (fresh) process, printing a JSON line of everything
  measured so far after each step (the parent keeps the last one)."""
  from explicit_softmax.bench.real_data import Skip, _nonnegative
  out = {"name": name, "arms": {}}

  def emit():
    print(json.dumps(out, default=_plain), flush=True)

  start = time.perf_counter()
  try:
    x, y, x_te, y_te, info = load(name, args)
  except Skip as why:
    out.update(status="skipped", reason=str(why))
    emit()
    return
  out["load_seconds"] = time.perf_counter() - start
  nonnegative = _nonnegative(x) and _nonnegative(x_te)
  out.update(status="ok", **info, n_train=int(x.shape[0]), n_test=int(x_te.shape[0]),
             n_features=int(x.shape[1]), n_classes=int(len(np.unique(y))),
             nonnegative=nonnegative, sparse=hasattr(x, "tocsr"))
  fitted = {}
  for key in arms:
    label = ARMS[key]
    if key == "multinomial_nb" and not nonnegative:
      out["arms"][key] = {"label": label, "status": "not applicable",
                          "reason": "features have negative values (MultinomialNB needs counts)"}
      continue
    if key == "explicit_newton" and x.shape[1] > args.newton_max_features:
      out["arms"][key] = {"label": label, "status": "not applicable",
                          "reason": f"{x.shape[1]:,} features > --newton-max-features "
                                    f"{args.newton_max_features:,} (its Gram matrix is N^2)"}
      continue

    def record(r, key=key, label=label):
      out["arms"][key] = {"label": label, **r}
      emit()

    # Marked as running first: if the process is stopped, the parent knows since when.
    record({"status": "running", "started_at": time.time()})
    record(run_arm(key, (x, y, x_te, y_te), warm_repeats=args.warm_repeats,
                   warm_cap=args.warm_cap,
                   thread_cap=args.thread_cap if key in PEERS else None,
                   emit=record, fitted=fitted))
  if starts is not None and OURS in arms:
    out["starts"] = starts((x, y, x_te, y_te), fitted.get(OURS), nonnegative=nonnegative)
    emit()


def run_child(cmd: list[str], name: str, arms: list[str], timeout: float) -> dict:
  """Runs one child process of a data set (``cmd`` prints JSON lines) and returns its
  last record; on a timeout, the arms that had not finished their cold fit are marked
  ``timeout`` with the seconds they had (a lower bound on their fit time)."""
  start = time.perf_counter()
  timed_out = False
  try:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    stdout, status = proc.stdout, proc.returncode
  except subprocess.TimeoutExpired as err:
    stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
    status, timed_out = None, True
  wall = time.perf_counter() - start
  lines = [line for line in stdout.splitlines() if line.startswith("{")]
  record = json.loads(lines[-1]) if lines else {"name": name, "arms": {}}
  record["process_seconds"] = wall
  if timed_out:
    stopped = time.time()
    for key in arms:
      arm = record["arms"].get(key)
      if arm is None:
        record["arms"][key] = {"label": ARMS[key], "status": "not run",
                               "reason": f"its process timed out ({timeout:g} s) before"}
      elif arm.get("status") == "running":  # stopped in its cold fit: a lower bound
        record["arms"][key] = {
            "label": ARMS[key], "status": "timeout",
            "seconds_at_least": stopped - arm["started_at"],
            "reason": f"timed out: its process was stopped after {timeout:g} s, "
                      f"{stopped - arm['started_at']:.0f} s into the cold fit"}
      elif arm.get("status") == "ok":
        arm.setdefault("notes", []).append(
            f"its process timed out ({timeout:g} s) during the further timed fits")
    if "load_seconds" not in record:
      record.update(status="error", reason=f"timed out after {timeout:g} s while loading")
  elif not lines or "status" not in record:
    record.update(status="error", reason=f"child exited with status {status} and no result "
                                         "(its stderr is above)")
  elif status != 0:
    for arm in record["arms"].values():
      if arm.get("status") == "running":
        arm.update(status="error", reason=f"its process exited with status {status} "
                                          "during the fit (its stderr is above)")
        arm.pop("started_at", None)
  if record.get("status") == "ok":
    for key in arms:
      record["arms"].setdefault(key, {"label": ARMS[key], "status": "not run",
                                      "reason": f"its process ended (status {status}) before"})
  return record


# The default alone is timed in this many fresh processes and its median cold fit kept:
# a cold call is one sample of a noisy shared 2-core VM.
COLD_PROCESSES = 3


def run_dataset(module: str, name: str, groups: list[list[str]], extra: list[str],
                timeout: float) -> dict:
  """One data set: a child process (``python -m module --one name --arms ...``) per group
  of arms, in order, merged into one record (the arms in the order of ``ARMS``); the
  default alone runs in ``COLD_PROCESSES`` processes (``_median_cold``)."""
  merged: dict = {"name": name, "arms": {}, "processes": {}}
  reasons = []
  for arms in groups:
    cmd = [sys.executable, "-m", module, "--one", name, "--arms", ",".join(arms), *extra]
    record = run_child(cmd, name, arms, timeout)
    if arms == [OURS] and record.get("status") == "ok":
      record = _median_cold(record, [run_child(cmd, name, arms, timeout)
                                     for _ in range(COLD_PROCESSES - 1)])
    merged["processes"][",".join(arms)] = record.pop("process_seconds")
    if record.get("status") == "skipped":
      return {"name": name, "status": "skipped", "reason": record.get("reason")}
    got = record.pop("arms", {})
    if record.get("status") != "ok":
      reasons.append(record.get("reason", "no result"))
      for key in arms:
        merged["arms"][key] = {"label": ARMS[key], "status": "error",
                               "reason": record.get("reason", "no result")}
      continue
    for key, value in record.items():
      merged.setdefault(key, value)
    merged["arms"].update(got)
  merged["arms"] = {k: merged["arms"][k] for k in ARMS if k in merged["arms"]}
  merged["process_seconds"] = sum(merged["processes"].values())
  if "status" not in merged:  # no process got as far as loading the data
    merged.update(status="error", reason=reasons[0] if reasons else "no process ran")
  return merged


def _median_cold(record: dict, more: list[dict]) -> dict:
  """``record`` (the default's first process) with the median cold fit of it and ``more``
  (the other processes' records), each process's in ``cold_runs``."""
  arm = record["arms"][OURS]
  runs = [arm["cold_seconds"]] + [r["arms"][OURS]["cold_seconds"] for r in more
                                  if r.get("status") == "ok"
                                  and r.get("arms", {}).get(OURS, {}).get("status") == "ok"]
  arm["cold_runs"] = runs
  arm["cold_seconds"] = float(statistics.median(runs))
  record["process_seconds"] += sum(r.get("process_seconds", 0.0) for r in more)
  return record
