"""The language-model benchmark's arms on one data set: the explicit solutions, gradient
methods from each start, and scikit-learn's peers."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

import explicit_softmax as es

from explicit_softmax.bench import _harness
from explicit_softmax.bench._harness import median_seconds, warm_up_jit
from explicit_softmax.bench.lm_curves import TrainProbe, run_curve, score, score_log_proba, tqdm
from explicit_softmax.bench.lm_data import (CALIBRATION_ELEMENTS, CALIBRATION_FLOPS, INIT_SCALE,
                                            MLE_SMOOTHING, SMOOTHING, Spec, make_tokens)
from explicit_softmax.bench.lm_summary import claims, summarize_runs


def run_naive_bayes(x_csr, y, x_test_csr, y_test, n_classes: int) -> dict:
  """MultinomialNB (alpha = the explicit smoothing) fitted with ``partial_fit`` in chunks."""
  from sklearn.naive_bayes import MultinomialNB
  chunk = max(1000, 2**24 // n_classes)
  classes = np.arange(n_classes)
  start = time.perf_counter()
  nb = MultinomialNB(alpha=SMOOTHING)
  for lo in range(0, x_csr.shape[0], chunk):
    nb.partial_fit(x_csr[lo:lo + chunk], y[lo:lo + chunk], classes=classes)
  seconds = time.perf_counter() - start
  return {"seconds": seconds, **score_log_proba(nb.predict_log_proba, x_test_csr, y_test,
                                                  n_classes),
          "notes": f"alpha={SMOOTHING}, partial_fit in chunks of {chunk} rows"}


def run_logistic_regression(x_csr, y, x_test_csr, y_test, n_classes: int,
                            max_iter: int) -> dict:
  """scikit-learn ``LogisticRegression(solver="lbfgs")`` (multinomial), default C."""
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.linear_model import LogisticRegression
  lr = LogisticRegression(solver="lbfgs", max_iter=max_iter)
  start = time.perf_counter()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ConvergenceWarning)
    lr.fit(x_csr, y)
  seconds = time.perf_counter() - start
  converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

  def log_proba(xc):
    out = np.full((xc.shape[0], n_classes), -np.inf)
    out[:, lr.classes_] = lr.predict_log_proba(xc)
    return out

  return {"seconds": seconds, **score_log_proba(log_proba, x_test_csr, y_test, n_classes),
          "notes": f"C=1.0, n_iter={int(np.max(lr.n_iter_))}/{max_iter}, "
                   f"{'converged' if converged else 'NOT converged (ConvergenceWarning)'}"}


def run_dataset(spec: Spec, args, cache: dict) -> dict | None:
  made = make_tokens(spec, args, cache)
  if made is None:
    print(f"[{spec.name}] skipped: tiny Shakespeare not found; download "
          f"{_harness.TEXT_URL} and pass --text PATH (or set EXPLICIT_SOFTMAX_DATA).")
    return None
  train_tokens, test_tokens, v, entropy_rate = made
  k = spec.n_context
  x, y = es.data.context_tokens(train_tokens, k, v)
  x_test, y_test = es.data.context_tokens(test_tokens, k, v)
  t = len(y)
  data = (x, y, x_test, y_test)
  out = {"description": spec.description, "vocab_size": v, "n_context": k,
         "n_train": t, "n_test": len(y_test), "entropy_rate": entropy_rate,
         "log_vocab": math.log(v), "methods": {}, "skipped": {}, "runs": []}
  log = (tqdm.write if tqdm is not None else print)
  log(f"[{spec.name}] T={t:,} held-out={len(y_test):,} V={v} K={k}"
      + (f" entropy rate {entropy_rate:.4f}" if entropy_rate is not None else ""))

  fit_s, explicit, stats, mle, probe = _explicit_methods(data, v, k, args, out)
  _iterative_runs(data, v, k, spec, args, out, (explicit, mle, stats, probe, fit_s))
  _sklearn_methods((train_tokens, test_tokens), data, v, k, args, out)

  summarize_runs(out, fit_s, spec.budget)
  out["claims"] = claims(out, probe, explicit)
  return out


def _explicit_methods(data, v: int, k: int, args, out: dict):
  """The explicit solutions (co-occurrence, calibrated, Newton) into ``out["methods"]``;
  returns the fit's seconds, the fit, its statistics, the training optimum and the probe."""
  x, y, x_test, y_test = data
  t, m = len(y), v
  methods, skipped = out["methods"], out["skipped"]
  # Explicit solutions (numpy / scipy only: nothing to compile).
  fit_s, fit_runs = median_seconds(lambda: es.fit(x, y, n_classes=m, method="cooccurrence"), repeats=3, warmup=0)
  explicit = es.fit(x, y, n_classes=m, method="cooccurrence")
  stats = es.SoftmaxStats.from_data(x, y, n_classes=m)
  methods["explicit"] = {"seconds": fit_s, **score(explicit, x_test, y_test),
                         "notes": f"cooccurrence, smoothing={SMOOTHING}, median of "
                                  f"{len(fit_runs)} fits (statistics included)"}
  # The training optimum for one-hot contexts: the co-occurrence solution without
  # smoothing (a vanishing pseudo-count keeps never-seen pairs finite, ~ -20).
  mle = es.fit(x, y, n_classes=m, smoothing=MLE_SMOOTHING, method="cooccurrence") if k == 1 else None
  probe = TrainProbe(explicit, x, y, stats, args.seed, args.probe_rows, mle=mle)

  # The calibration rows are held out of this fit: calibrated on the rows it was
  # fitted on, the temperature learns the fit's overconfidence (on a hashed source
  # it sharpened a model that overfits and raised the held-out CE). With V in the
  # thousands some classes miss the rows, so the biases get l2 = 1/n (a standard
  # normal prior on each correction) instead of going to minus infinity.
  cal_rows = min(t // 10, CALIBRATION_ELEMENTS // m, CALIBRATION_FLOPS // m**2)
  held = np.zeros(t, bool)
  held[np.random.default_rng([args.seed, 5]).choice(t, cal_rows, replace=False)] = True
  start = time.perf_counter()  # numpy and scipy only: nothing to compile
  calibrated = es.calibrate(es.fit(x[~held], y[~held], n_classes=m, method="cooccurrence"), x[held], y[held],
                            l2=1.0 / cal_rows)
  cal_s = time.perf_counter() - start
  methods["explicit+calibrate"] = {
      "seconds": cal_s, **score(calibrated, x_test, y_test),
      "temperature": calibrated.info["calibration"]["temperature"],
      "notes": (f"fitted on {t - cal_rows:,} training samples, calibrated (l2 = 1/n) on the "
                f"other n = {cal_rows:,} (calibrate keeps rows x V float64 arrays and its "
                "Newton steps cost rows x V^2)")}

  if k * v + 1 <= args.newton_max_features:
    start = time.perf_counter()
    newton = es.fit(x, y, n_classes=m, method="newton")
    methods["explicit-newton"] = {"seconds": time.perf_counter() - start,
                                  **score(newton, x_test, y_test),
                                  "notes": f"ridge={es.solvers.DEFAULT_RIDGE}; one Newton "
                                           "step from uniform (a scaled ridge regression "
                                           "of one-hot targets)"}
  else:
    skipped["explicit-newton"] = (
        f"K V + 1 = {k * v + 1} features > --newton-max-features={args.newton_max_features}: "
        f"Gram matrix {8 * (k * v + 1)**2 / 2**20:.0f} MiB and an O((KV)^3) solve")
  return fit_s, explicit, stats, mle, probe


def _iterative_runs(data, v: int, k: int, spec: Spec, args, out: dict, explicit_fit) -> None:
  """Gradient methods from the explicit, zero, random (and optimal) starts into
  ``out["runs"]``; ``explicit_fit``: (explicit fit, training optimum, statistics, probe,
  fit seconds), from ``_explicit_methods``."""
  x, y, _, _ = data
  t, m = len(y), v
  skipped = out["skipped"]
  explicit, mle, stats, probe, fit_s = explicit_fit
  # Iterative methods: compile every jitted step on these shapes first.
  batch = min(args.batch_size, t)
  steps_per_epoch = max(1, t // batch)
  max_steps = args.epochs * steps_per_epoch
  full_batch_ok = t * m * 4 <= args.full_batch_mib * 2**20
  warm_up_jit(x, y, m, methods=("adam", "sgd") + (("lbfgs",) if full_batch_ok else ()),
              batch_size=batch)
  feature_freq = stats.feature_mass / stats.total_weight
  sgd_unit = 1.0 / (k * float(feature_freq.max()))
  out["sgd_learning_rate_unit"] = sgd_unit
  out["batch_size"], out["steps_per_epoch"] = batch, steps_per_epoch
  grids = {"adam": list(args.adam_grid), "sgd": [g * sgd_unit for g in args.sgd_grid]}
  zero = es.SoftmaxModel(np.zeros((k * v, m)), np.zeros(m))
  rng = np.random.default_rng([args.seed, 11])
  random_init = es.SoftmaxModel(rng.normal(0.0, INIT_SCALE, (k * v, m)), np.zeros(m))
  common = dict(budget=spec.budget, batch_size=batch, steps_per_epoch=steps_per_epoch,
                probe=probe, seed=args.seed)

  plan = [("explicit+" + meth, "explicit", meth, lr, fit_s,
           min(max_steps, args.refine_epochs * steps_per_epoch))
          for meth in ("adam", "sgd") for lr in grids[meth][:args.refine_grid]]
  plan += [("gd", init, meth, lr, 0.0, max_steps)
           for init in ("zero", "random") for meth in ("adam", "sgd") for lr in grids[meth]]
  if mle is not None:  # claim 1 from the training optimum itself (one epoch)
    plan += [("mle+" + meth, "mle", meth, grids[meth][0], fit_s,
              min(max_steps, steps_per_epoch)) for meth in ("adam", "sgd")]
  starts = {"explicit": explicit, "zero": zero, "random": random_init, "mle": mle}
  for family, init, meth, lr, offset, steps in plan:
    out["runs"].append(run_curve(starts[init], data, family=family, init=init, method=meth,
                                 learning_rate=lr, max_steps=steps, offset=offset, **common))

  if full_batch_ok:
    for init, offset in (("explicit", fit_s), ("zero", 0.0)):
      out["runs"].append(run_curve(
          starts[init], data, family=("explicit+lbfgs" if init == "explicit" else "lbfgs"),
          init=init, method="lbfgs", learning_rate=None, max_steps=args.lbfgs_steps,
          offset=offset, budget=spec.budget, batch_size=None, steps_per_epoch=1,
          probe=probe, seed=args.seed))
  else:
    skipped["lbfgs"] = (f"full batch needs T x V = {t:,} x {m:,} float32 logits = "
                        f"{t * m * 4 / 2**30:.1f} GiB per evaluation (> --full-batch-mib="
                        f"{args.full_batch_mib})")


def _sklearn_methods(tokens, data, v: int, k: int, args, out: dict) -> None:
  """scikit-learn's MultinomialNB and LogisticRegression into ``out["methods"]``."""
  train_tokens, test_tokens = tokens
  _, y, _, y_test = data
  t, m = len(y), v
  methods, skipped = out["methods"], out["skipped"]
  # scikit-learn on the sparse one-hot features.
  x_csr, _ = es.data.context_features(train_tokens, k, v)
  x_test_csr, _ = es.data.context_features(test_tokens, k, v)
  methods["sklearn-MultinomialNB"] = run_naive_bayes(x_csr, y, x_test_csr, y_test, m)
  if t * m * 8 <= args.full_batch_mib * 2**20:
    methods["sklearn-LogisticRegression"] = run_logistic_regression(
        x_csr, y, x_test_csr, y_test, m, args.sklearn_max_iter)
  else:
    skipped["sklearn-LogisticRegression"] = (
        f"lbfgs keeps T x V = {t:,} x {m:,} float64 = {t * m * 8 / 2**30:.1f} GiB per "
        f"evaluation (> --full-batch-mib={args.full_batch_mib})")
