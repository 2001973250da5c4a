"""MNIST: explicit solutions against gradient descent and scikit-learn, same process.

Every method runs on the same 60k/10k split, with held-out cross-entropy and
accuracy recorded against wall-clock seconds (evaluation time excluded; jitted
steps compiled before timing, compile time reported separately). Writes
``mnist.json``, ``mnist.png`` and ``mnist.md`` into ``--out``.

Usage: explicit-softmax bench mnist [--quick] [--out DIR]
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

import explicit_softmax as es

from explicit_softmax import _progress
from explicit_softmax.bench import _harness as _common

TARGET_CE = 0.285
M = 10
# Explicit starts of the decaying-rate arms and the seed study, as (rows fitted,
# rows calibrated): the co-occurrence fit on all rows with calibration (M + 1 =
# 11 parameters) on 5,000, and a cheap one on 3,000 + 1,000 rows, a little worse
# at a fraction of the cost (``start_costs`` measures more sizes). The first is
# also the prior of the sample-worth yardstick.
STARTS = ((60_000, 5_000), (3_000, 1_000))


def _start_name(rows, cal_rows):
  return f"explicit({rows // 1000}k rows)+cal({cal_rows // 1000}k rows)"


def _timed(fn, repeats: int = 1):
  """Returns ``fn()`` and its wall time in seconds.

  With ``repeats > 1`` the first call is a warm-up and the time is the median of
  ``repeats`` more: single runs of a 20-40 ms closed-form fit differed by up to
  2x between two benchmark runs on this 2-core machine.
  """
  if repeats == 1:
    start = time.perf_counter()
    return fn(), time.perf_counter() - start
  return fn(), _common.median_seconds(fn, repeats=repeats, warmup=0)[0]


def _zero(x):
  """The all-zero (uniform) model for features like ``x``: gradient descent's start."""
  return es.SoftmaxModel(np.zeros((x.shape[1], M)), np.zeros(M))


def _linear_decay(lr, steps):
  """A learning rate falling linearly from ``lr`` at step 0 to zero at ``steps``."""
  return lambda k: lr * max(0.0, 1.0 - k / steps)


def _point(model, seconds, xt, yt, **extra):
  return {"step": 0, "seconds": seconds, **_common.evaluate(model, xt, yt), **extra}


def explicit_arms(x, y, xt, yt):
  """Closed forms alone, with and without calibration (times include statistics;
  medians of 5 warm runs, as gradient descent is timed with its steps compiled)."""
  arms = {}
  for method in ("cooccurrence", "newton"):
    model, fit_s = _timed(lambda: es.fit(x, y, n_classes=M, method=method), repeats=5)
    cal, cal_s = _timed(lambda: es.calibrate(model, x, y), repeats=5)
    arms[method] = {"points": [_point(model, fit_s, xt, yt)], "model": model}
    arms[method + "+calibrate"] = {"points": [_point(cal, fit_s + cal_s, xt, yt)], "model": cal}
  return arms


def subsample_start(x, y, rows, cal_rows, seed=0):
  """Co-occurrence fit on ``rows`` random training rows, calibrated on the last
  ``cal_rows`` of the same permutation (disjoint from the fit's when they fit).

  Returns the model and its warm median seconds. The rows are drawn before the
  clock starts, as a user would take a slice of shuffled data.
  """
  order = np.random.default_rng(seed).permutation(len(x))
  fit_x, fit_y = x[order[:rows]], y[order[:rows]]
  cal_x, cal_y = x[order[-cal_rows:]], y[order[-cal_rows:]]
  return _timed(lambda: es.calibrate(es.fit(fit_x, fit_y, n_classes=M, method="cooccurrence"), cal_x, cal_y),
                repeats=5)


def start_costs(x, y, xt, yt, rows=(1_000, 3_000, 10_000, 60_000), cal_rows=(1_000, 5_000)):
  """Seconds and held-out quality of the explicit start by the rows it uses.

  Returns the table and the models by ``(rows, cal_rows)``, so that the starts
  used later have one measured cost (back-to-back timings of the same start
  differ by tens of percent with what ran before them).
  """
  table, models = [], {}
  for r in rows:
    for c in cal_rows:
      model, seconds = subsample_start(x, y, min(r, len(x)), c)  # --quick has 10k rows
      models[r, c] = (model, seconds)
      table.append({"rows": r, "cal_rows": c, "name": _start_name(r, c), "seconds": seconds,
                    **_common.evaluate(model, xt, yt)})
  return table, models


def refine_arms(start, offset, x, y, xt, yt, steps, epoch_steps):
  """Explicit start followed by refinement, checkpoints along the way."""
  arms = {}
  arms["explicit+cal → L-BFGS"] = _common.trajectory(
      start, x, y, xt, yt, method="lbfgs", steps=steps, eval_every=1, offset=offset)
  arms["explicit+cal → preconditioned L-BFGS"] = _common.trajectory(
      start, x, y, xt, yt, method="lbfgs", steps=steps, eval_every=1, offset=offset,
      precondition=True)
  arms["explicit+cal → Adam"] = _common.trajectory(
      start, x, y, xt, yt, method="adam", steps=epoch_steps, eval_every=epoch_steps // 8,
      offset=offset, batch_size=128, learning_rate=3e-3)
  zero = _zero(x)
  arms["zero → preconditioned L-BFGS"] = _common.trajectory(
      zero, x, y, xt, yt, method="lbfgs", steps=steps, eval_every=1, precondition=True)
  return arms


def gradient_descent_grid(x, y, xt, yt, epochs, epoch_steps, rng):
  """SGD and Adam from zero and from a random init over a learning-rate grid."""
  grids = {"adam": [1e-3, 3e-3, 1e-2, 3e-2], "sgd": [0.03, 0.1, 0.3, 1.0]}
  inits = {
      "zero": _zero(x),
      "random": es.SoftmaxModel(rng.normal(0, 0.01, (x.shape[1], M)), np.zeros(M)),
  }
  out = {}
  steps = epochs * epoch_steps
  for init_name, init in inits.items():
    for method, lrs in grids.items():
      runs = []
      for lr in lrs:
        points = _common.trajectory(init, x, y, xt, yt, method=method, steps=steps,
                                    eval_every=max(1, epoch_steps // 4), batch_size=128,
                                    learning_rate=lr)
        runs.append({"setting": {"learning_rate": lr}, "points": points})
      out[f"{method} from {init_name}"] = runs
  return out


def decay_arms(x, y, xt, yt, starts, epoch_steps):
  """Adam with a learning rate decaying linearly to zero over half or one epoch.

  From zero and from each explicit start (``{name: (model, seconds)}``), over the
  same small grid of initial rates and schedule lengths: a schedule helps
  gradient descent reach a low loss (and a warm start might need a shorter
  one), so every arm gets the options.
  """
  out = {}
  arms = [("adam from zero, linear decay", _zero(x), 0.0)]
  arms += [(f"{name} → Adam, linear decay", model, seconds)
           for name, (model, seconds) in starts.items()]
  for name, start, start_seconds in arms:
    runs = []
    for length in (epoch_steps // 2, epoch_steps):
      for lr in (1e-2, 2e-2, 3e-2):
        points = _common.trajectory(start, x, y, xt, yt, method="adam", steps=length,
                                    eval_every=max(1, epoch_steps // 32),
                                    offset=start_seconds, batch_size=128,
                                    learning_rate=_linear_decay(lr, length))
        runs.append({"setting": {"learning_rate": lr, "decay_steps": length},
                     "points": points})
    out[name] = runs
  return out


def seed_study(x, y, xt, yt, starts, epoch_steps, seeds=5):
  """Steps to the target over several batch orders, zero against explicit start.

  The grid envelope above takes the best of many single runs, so it rewards a
  lucky batch order. Here every start (zero and ``{name: (model, seconds)}``)
  runs the same decaying schedules with the same seeds, and held-out CE is
  checked every 7 steps: does an explicit start reach the target in fewer
  steps, and how often does each start reach it at all?
  """
  zero = _zero(x)
  every = 7
  out = []
  for length in (epoch_steps // 2, (3 * epoch_steps) // 5):
    for lr in (2e-2, 3e-2):
      for name, start in [("zero", zero)] + [(k, v[0]) for k, v in starts.items()]:
        reached, final, per_step = [], [], []
        for seed in range(seeds):
          hit = [None]

          def check(step, model, record, hit=hit):
            if hit[0] is None and model.log_loss(xt, yt) <= TARGET_CE:
              hit[0] = step + 1

          model = es.refine(start, x, y, method="adam", steps=length, batch_size=128,
                            learning_rate=_linear_decay(lr, length), seed=seed, callback=check,
                            callback_every=every)
          reached.append(hit[0])
          final.append(float(model.log_loss(xt, yt)))
          per_step.append(float(model.history.seconds[-1]) / length)
        steps = [r for r in reached if r is not None]
        out.append({"start": name, "decay_steps": length, "learning_rate": lr,
                    "steps_to_target": reached, "final_ce": final,
                    "reached": len(steps), "runs": seeds,
                    "median_steps_when_reached": float(np.median(steps)) if steps else None,
                    "mean_final_ce": float(np.mean(final)),
                    "seconds_per_step": float(np.median(per_step))})
  return out


def unobserved_step_seconds(x, y, steps, repeats=5):
  """Seconds per batch-128 Adam step of ``es.refine`` run without a callback.

  The curves above stop every few steps for a held-out check: the check is off
  the clock, but the separate call per segment and the check's after-effects
  are not, so their per-step times overstate what an unobserved run costs.
  """
  zero = _zero(x)
  per_step = [float(es.refine(zero, x, y, method="adam", steps=steps, batch_size=128,
                              learning_rate=1e-2, seed=seed).history.seconds[-1]) / steps
              for seed in range(repeats)]
  return float(np.median(per_step))


def _map_fit(x, y, l2, center, iters=500):
  """Solves ``min mean CE(x W + b) + (l2/2) ||W - W0||^2`` (scipy L-BFGS-B, float64).

  ``center`` is the model whose weights ``W0`` the penalty pulls towards (and the
  starting point): a Gaussian prior at zero or at an explicit solution. Not
  ``es.refine``: its penalty is centred at zero. In float64 because a float32
  objective left L-BFGS-B's line search stalling on round-off in one such fit.
  """
  import scipy.optimize
  import scipy.special

  n, m = center.weights.shape
  x = np.asarray(x, np.float64)
  y_mat = np.eye(m)[y]
  w0 = center.weights

  def fun(params):
    w, b = params[:n * m].reshape(n, m), params[n * m:]
    log_p = scipy.special.log_softmax(x @ w + b, axis=1)
    r = (np.exp(log_p) - y_mat) / len(x)          # d mean CE / d logits
    value = -(y_mat * log_p).sum() / len(x) + 0.5 * l2 * np.sum((w - w0) ** 2)
    grad = np.concatenate([(x.T @ r + l2 * (w - w0)).ravel(), r.sum(axis=0)])
    return value, grad

  start = np.concatenate([center.weights.ravel(), center.bias])
  res = scipy.optimize.minimize(fun, start, jac=True, method="L-BFGS-B",
                                options={"maxiter": iters})
  if not res.success:
    warnings.warn(f"MAP fit on {len(x)} rows, l2={l2}: {res.message}", stacklevel=2)
  return es.SoftmaxModel(res.x[:n * m].reshape(n, m), res.x[n * m:])


def sample_worth(x, y, xt, yt, explicit_start, rows, l2s, seed=0):
  """How many training rows the explicit start is worth, and how many the target needs.

  L2-regularised logistic regression solved exactly on ``n`` random training
  rows (the same rows for both), with the penalty centred at zero or at the
  explicit start, best held-out CE over ``l2s`` for each ``n``: a statistical
  yardstick free of optimiser noise and of timing (one draw of rows; the
  l2 is picked on the test set, for both centres alike). The rows at which the
  zero-centred fit reaches the target are roughly what any fit of this model
  must see; the rows by which centring at the explicit start shifts that curve
  are what the start is worth as a prior.
  """
  zero = _zero(x)
  order = np.random.default_rng(seed).permutation(len(x))
  out = []
  for n in rows:
    idx = order[:n]
    x_n, y_n = x[idx].astype(np.float64), y[idx]  # converted once for all fits on n rows
    for name, center in (("zero", zero), ("explicit", explicit_start)):
      ce = [float(_map_fit(x_n, y_n, l2, center).log_loss(xt, yt)) for l2 in l2s]
      best = int(np.argmin(ce))
      out.append({"rows": n, "center": name, "ce_by_l2": dict(zip(map(str, l2s), ce)),
                  "best_ce": ce[best], "best_l2": l2s[best]})
  curve = {c: [(p["rows"], p["best_ce"]) for p in out if p["center"] == c]
           for c in ("zero", "explicit")}
  return {"fits": out, "l2s": list(l2s),
          "rows_to_target": {c: _rows_for(curve[c], TARGET_CE) for c in curve},
          "zero_rows_matching_explicit": [{"rows": n, "zero_rows": _rows_for(curve["zero"], ce)}
                                          for n, ce in curve["explicit"]]}


def _rows_for(curve, ce):
  """Rows at which a (rows, CE) curve first falls to ``ce``, interpolated in log rows.

  The smallest rows measured if the curve starts at or below ``ce``; ``None`` if
  it never gets there within the measured rows.
  """
  if curve[0][1] <= ce:
    return float(curve[0][0])
  for (n0, c0), (n1, c1) in zip(curve, curve[1:]):
    if c1 <= ce:
      frac = (c0 - ce) / (c0 - c1)
      return float(np.exp(np.log(n0) + frac * (np.log(n1) - np.log(n0))))
  return None


def sklearn_arms(x, y, xt, yt, iters):
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.linear_model import LogisticRegression
  from sklearn.naive_bayes import MultinomialNB

  lr_points = []
  for max_iter in iters:
    clf = LogisticRegression(max_iter=max_iter)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", ConvergenceWarning)
      _, seconds = _timed(lambda: clf.fit(x, y))
    p = clf.predict_proba(xt)
    lr_points.append({"step": max_iter, "seconds": seconds,
                      "ce": float(-np.log(np.maximum(p[np.arange(len(yt)), yt], 1e-12)).mean()),
                      "acc": float((p.argmax(1) == yt).mean())})
  nb = MultinomialNB()
  _, seconds = _timed(lambda: nb.fit(x, y))
  p = nb.predict_proba(xt)
  nb_point = {"step": 0, "seconds": seconds,
              "ce": float(-np.log(np.maximum(p[np.arange(len(yt)), yt], 1e-12)).mean()),
              "acc": float((p.argmax(1) == yt).mean())}
  return {"sklearn LogisticRegression (lbfgs)": lr_points, "sklearn MultinomialNB": [nb_point]}


def claims(x, y, xt, yt, explicit, rng, steps):
  """The source paper's three claims, measured at full scale on MNIST."""
  zero = _zero(x)
  random = es.SoftmaxModel(rng.normal(0, 0.01, (x.shape[1], M)), np.zeros(M))
  out = {}
  # (1) Relative training-loss improvement of gradient descent from the explicit solution.
  for name, start in (("cooccurrence", explicit["cooccurrence"]["model"]),
                      ("cooccurrence+calibrate", explicit["cooccurrence+calibrate"]["model"])):
    before = start.log_loss(x, y)
    after = es.refine(start, x, y, method="adam", steps=steps, batch_size=128,
                      learning_rate=1e-3).log_loss(x, y)
    out[f"relative_improvement_from_{name}"] = {"steps": steps, "before": before, "after": after,
                                                "relative": (before - after) / before}
  # (2) Does gradient descent from a random init move towards the explicit solution?
  references = {name: explicit[name]["model"]
                for name in ("cooccurrence", "cooccurrence+calibrate")}
  distances = []

  def track(step, model, record):
    if step % max(1, steps // 10) == 0 or step + 1 == steps:
      point = {"step": step + 1}
      for name, ref in references.items():
        agree = es.diagnostics.agreement(ref, model, xt)
        point[f"kl_{name}_to_gd"] = agree.mean_kl
        point[f"weight_cosine_{name}_gd"] = agree.weight_cosine
      distances.append(point)

  es.refine(random, x, y, method="adam", steps=steps, batch_size=128, learning_rate=1e-3,
            callback=track)
  out["kl_from_gd_iterates_to_explicit"] = distances
  # (3) Equal step budgets: explicit init versus random init.
  budgets = {}
  for name, start in (("explicit+calibrate", explicit["cooccurrence+calibrate"]["model"]),
                      ("zero", zero), ("random", random)):
    model = es.refine(start, x, y, method="adam", steps=steps, batch_size=128,
                      learning_rate=1e-3)
    budgets[name] = {"train": model.log_loss(x, y), **_common.evaluate(model, xt, yt)}
  out["equal_budget_adam"] = {"steps": steps, **budgets}
  return out


def diagnostics(models: dict, x, y) -> dict:
  """Optimality certificate and loss-gradient Gaussian width of each model (training data)."""
  out = {}
  for name, model in models.items():
    cert = es.diagnostics.optimality_certificate(model, x, y)
    width = es.diagnostics.loss_gradient_width(model, x, y, n_draws=16)
    out[name] = {"relative_grad_norm": cert.relative_grad_norm, "objective": cert.objective,
                 "gradient_width": width.width, "gradient_width_se": width.std_error}
  return out


BEST_LR = " (best lr per budget)"


def plot(result: dict, path) -> None:
  """The curves of a result (this script's JSON) against wall time, as a PNG: the
  explicit starts and their refinements in one row, the runs from zero or random
  weights and scikit-learn in another, each against our best explicit pipeline."""
  curves = {name.replace(BEST_LR, " *"): points for name, points in result["curves"].items()}
  ours = [n for n in curves if n.startswith(("cooccurrence", "newton", "explicit"))]
  pipeline = (result.get("ratios", {}).get("pipeline") or "").replace(BEST_LR, " *")
  _common.plot_curves(
      curves, path, target=result["target_ce"],
      groups=[("explicit starts and their refinements", ours),
              ("from zero or random weights, and scikit-learn",
               [n for n in curves if n not in ours])],
      reference=pipeline or None,
      title=f"MNIST ({result['n_train']:,} train): held-out metrics against wall time",
      note="* gradient descent at the best learning rate for each time budget")


def _curves_and_ratios(explicit: dict, refined: dict, skl: dict, gd: dict):
  """Every arm's held-out curve (the GD grids as their best-lr envelope), each one's
  time to ``TARGET_CE``, and our best explicit-start pipeline against its peers."""
  curves = {name: arm["points"] for name, arm in explicit.items()}
  curves.update(refined)
  curves.update(skl)
  best_gd = {}
  for name, runs in gd.items():
    # The envelope over the learning-rate grid: best held-out CE at each checkpoint time.
    times = sorted({p["seconds"] for run in runs for p in run["points"]})
    env = _common.best_per_budget(runs, times)
    best_gd[name] = [{"seconds": e["budget"], "ce": e["ce"], "acc": e["acc"],
                      "setting": e["setting"]} for e in env if e["ce"] is not None]
  all_curves = {**curves, **{f"{k} (best lr per budget)": v for k, v in best_gd.items()}}

  to_target = {name: _common.time_to_target(points, TARGET_CE)
               for name, points in all_curves.items()}
  # Our best pipeline: the explicit-start arm that reached the target first; its
  # peer: the faster of Adam from zero with a constant and a decaying rate.
  def first(names):
    reached = [(to_target[n], n) for n in names if to_target[n] is not None]
    return min(reached) if reached else (None, names[0])

  ours, pipeline = first([n for n in to_target if n.startswith("explicit")])
  adam, adam_name = first(["adam from zero (best lr per budget)",
                           "adam from zero, linear decay (best lr per budget)"])
  sklearn_t = to_target["sklearn LogisticRegression (lbfgs)"]
  ratios = {
      "pipeline": pipeline,
      "pipeline_seconds": ours,
      "adam": adam_name,
      "adam_from_zero_seconds": adam,
      "sklearn_lbfgs_seconds": sklearn_t,
      "adam_over_pipeline": None if not (ours and adam) else adam / ours,
      "sklearn_over_pipeline": None if not (ours and sklearn_t) else sklearn_t / ours,
  }
  return all_curves, to_target, ratios


def main(argv=None):
  args = _common.parser(__doc__, quick="10k training samples, 1 epoch").parse_args(argv)

  x, y = es.data.load_mnist("train", dtype="float32")
  xt, yt = es.data.load_mnist("test", dtype="float32")
  epochs = 3
  if args.quick:
    x, y, epochs = x[:10_000], y[:10_000], 1
  epoch_steps = len(x) // 128
  rng = np.random.default_rng(0)

  bar = _progress.progress(total=6, desc="mnist", unit="stage")
  compile_s = _timed(lambda: [_common.warm_up_jit(x, y, M, batch_size=128),
                              es.refine(_zero(x), x, y, steps=2, precondition=True)])[1]
  bar.update()
  explicit = explicit_arms(x, y, xt, yt)
  bar.update()
  start = explicit["cooccurrence+calibrate"]
  refined = refine_arms(start["model"], start["points"][0]["seconds"], x, y, xt, yt,
                        steps=20 if args.quick else 40, epoch_steps=epoch_steps)
  bar.update()
  gd = gradient_descent_grid(x, y, xt, yt, epochs, epoch_steps, rng)
  costs, cost_models = start_costs(x, y, xt, yt)
  starts = {_start_name(*key): cost_models[key] for key in STARTS}
  gd.update(decay_arms(x, y, xt, yt, starts, epoch_steps))
  seeds = seed_study(x, y, xt, yt, starts, epoch_steps, seeds=2 if args.quick else 5)
  unobserved = unobserved_step_seconds(x, y, (3 * epoch_steps) // 5)
  prior = _start_name(*STARTS[0])
  worth = sample_worth(x, y, xt, yt, starts[prior][0],
                       [2_500, 5_000, 10_000] if args.quick else [2_500, 5_000, 10_000, 20_000,
                                                                 30_000],
                       l2s=[3e-4, 1e-3, 3e-3, 1e-2])
  worth["start"] = prior
  bar.update()
  skl = sklearn_arms(x, y, xt, yt, [5, 10, 20, 30, 50] if args.quick else
                     [5, 10, 20, 30, 40, 50, 75, 100])
  bar.update()
  claim = claims(x, y, xt, yt, explicit, rng, steps=epoch_steps)
  diag_models = {name: arm["model"] for name, arm in explicit.items()}
  diag_models["explicit+cal → preconditioned L-BFGS (40 steps)"] = es.refine(
      start["model"], x, y, steps=20 if args.quick else 40, precondition=True)
  diag = diagnostics(diag_models, x, y)
  bar.update()
  bar.close()

  all_curves, to_target, ratios = _curves_and_ratios(explicit, refined, skl, gd)
  result = {"dataset": "mnist", "n_train": len(x), "n_test": len(xt), "target_ce": TARGET_CE,
            "compile_seconds": compile_s, "curves": all_curves, "gd_grid": gd,
            "time_to_target": to_target, "ratios": ratios, "seed_study": seeds,
            "unobserved_seconds_per_step": unobserved, "start_costs": costs,
            "sample_worth": worth, "claims": claim,
            "diagnostics": diag, "quick": args.quick}
  path = _common.write_json("mnist.json", result, args.out)
  table = _common.markdown_table(all_curves, to_target, TARGET_CE)
  out_dir = os.path.dirname(path)
  with open(os.path.join(out_dir, "mnist.md"), "w") as fh:
    fh.write(table)
  plot(result, os.path.join(out_dir, "mnist.png"))
  print(table)
  print(ratios)
  print(f"wrote {path}")
  return result


if __name__ == "__main__":
  _common.run(main)
