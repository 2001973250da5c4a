"""The real-data benchmark's starts study: which explicit start pays before
``es.fit_optimum``'s refinement, timed from scratch."""

from __future__ import annotations

import time

import numpy as np

from explicit_softmax.bench.real_data import _plain


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
      # fit_optimum starts from zero instead where zero has the lower objective (6).
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
