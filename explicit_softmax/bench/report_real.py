"""The report's sections for the benchmarks against scikit-learn (``real.json`` and
``tabular.json``): issue 22's targets, their verdicts, the tables, the starts study."""

from __future__ import annotations

import json

from explicit_softmax.bench import report_common as common
from explicit_softmax.bench.report_common import _fmt, _machine

# Issue 22's targets: the default estimator (cold, as users run it) against
# LogisticRegression() and LogisticRegressionCV() (each at its best thread setting).
LOG_LOSS_RATIO = 1.02     # held-out log loss at most 1.02 min(LR(), LRCV()) + 0.005
LOG_LOSS_SLACK = 0.005
ACCURACY_POINTS = 1.0     # accuracy at most one percentage point below the better peer
FIT_TIME_MIN_ROWS = 1000  # the fit-time target covers sets with at least this many rows
LRCV_SPEEDUP = 5.0        # at least 5x below LogisticRegressionCV()
TOTAL_STRETCH = 2.0       # stretch: the total at most half LogisticRegression()'s
OURS, LR, LRCV = "explicit_default", "logreg", "logreg_cv"
LABELS = {OURS: "the default", LR: "`LogisticRegression()`", LRCV: "`LogisticRegressionCV()`"}


def _first_sentence(text: str) -> str:
  text = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
  return text.split(". ")[0].rstrip(".")[:200]


def arm_seconds(arm: dict) -> tuple[float | None, bool]:
  """``(seconds, is_lower_bound)`` of a headline arm: a peer's best (the smallest of its
  cold fit and its thread settings), the default's cold fit; for an arm stopped by the
  timeout, the seconds it ran (a lower bound); ``(None, False)`` if it did not run."""
  if arm.get("status") == "ok":
    return float(arm.get("best_seconds", arm["cold_seconds"])), False
  if arm.get("status") == "timeout" and arm.get("seconds_at_least") is not None:
    return float(arm["seconds_at_least"]), True
  return None, False


def headline_seconds(key: str, arm: dict) -> tuple[float | None, bool]:
  """The seconds a headline arm is compared by: the default's cold fit, a peer's
  ``arm_seconds``."""
  if key == OURS:
    return (float(arm["cold_seconds"]), False) if arm.get("status") == "ok" else (None, False)
  return arm_seconds(arm)


def _why(arm: dict, key: str) -> str:
  label = arm.get("label", key)
  if arm.get("status") == "timeout":
    return f"{label} timed out"
  reason = _first_sentence(arm.get("reason", ""))
  return f"{label} {arm.get('status', 'missing')}" + (f": {reason}" if reason else "")


def dataset_targets(d: dict) -> dict:
  """Issue 22's targets on one data set (``d``: a data set's record with its arms).

  Returns a dict with ``missing`` (why the default cannot be compared here) or the
  measurements and, per target, whether it is met (``time_met`` is None where the
  set has fewer than ``FIT_TIME_MIN_ROWS`` training rows). A peer that did not run is
  left out of the quality bounds (``peers`` lists those compared); a peer stopped by
  the timeout still bounds the speed targets from below.
  """
  arms = d.get("arms", {})
  ours = arms.get(OURS, {})
  if ours.get("status") != "ok":
    return {"missing": _why(ours, OURS) if ours else "the default did not run"}
  peers = {k: arms[k] for k in (LR, LRCV) if arms.get(k, {}).get("status") == "ok"}
  if not peers:
    return {"missing": "; ".join(_why(arms.get(k, {}), k) for k in (LR, LRCV))}
  out = {"n_train": d.get("n_train", 0), "peers": list(peers),
         "log_loss": ours["log_loss"], "accuracy": ours["accuracy"],
         "ours_seconds": ours["cold_seconds"]}
  if ours["log_loss"] is None or any(p["log_loss"] is None for p in peers.values()):
    return {"missing": "a log loss is missing"}
  best_loss = min(p["log_loss"] for p in peers.values())
  out["log_loss_bound"] = LOG_LOSS_RATIO * best_loss + LOG_LOSS_SLACK
  out["log_loss_met"] = ours["log_loss"] <= out["log_loss_bound"] + 1e-12
  out["best_peer_accuracy"] = max(p["accuracy"] for p in peers.values())
  out["accuracy_points"] = 100 * (ours["accuracy"] - out["best_peer_accuracy"])
  out["accuracy_met"] = out["accuracy_points"] >= -ACCURACY_POINTS - 1e-9
  for key in (LR, LRCV):
    seconds, bound = arm_seconds(arms.get(key, {}))
    out[f"{key}_seconds"], out[f"{key}_seconds_at_least"] = seconds, bound
    out[f"{key}_ratio"] = None if seconds is None else seconds / max(ours["cold_seconds"], 1e-12)
    # As users run it: the peer's cold fit with the default threads (or its lower bound).
    cold = arms[key]["cold_seconds"] if key in peers else seconds
    out[f"{key}_cold_seconds"] = cold
    out[f"{key}_cold_ratio"] = None if cold is None else cold / max(ours["cold_seconds"], 1e-12)
  lr_ratio, cv_ratio = out[f"{LR}_ratio"], out[f"{LRCV}_ratio"]
  out["time_applies"] = out["n_train"] >= FIT_TIME_MIN_ROWS
  # A peer stopped by the timeout took at least its seconds: a ratio met on the bound
  # is met; one missed on the bound is undetermined, and counted as not met.
  out["time_met"] = (None if not out["time_applies"] else
                     lr_ratio is not None and lr_ratio >= 1 - 1e-12)
  out["lrcv_met"] = cv_ratio is not None and cv_ratio >= LRCV_SPEEDUP - 1e-12
  return out


def peer_targets(datasets: dict) -> dict:
  """Issue 22's targets per data set and overall, from the arms' measurements.

  The targets cover every data set that ran: one where the default or both peers did
  not run is listed in ``missing``, and then no target is met. Skipped data sets
  (files absent) are left out.
  """
  per, missing = {}, {}
  for name, d in datasets.items():
    if d.get("status") != "ok":
      continue
    t = dataset_targets(d)
    if "missing" in t:
      missing[name] = t["missing"]
    else:
      per[name] = t
  names = list(per)
  complete = bool(names) and not missing

  def summary(met_key, applies=lambda n: True):
    sets = [n for n in names if applies(n)]
    failed = [n for n in sets if not per[n][met_key]]
    return {"met": complete and not failed, "sets": sets, "failed": failed}

  timed = [n for n in names if per[n][f"{LR}_seconds"] is not None]
  ours = sum(per[n]["ours_seconds"] for n in timed)
  peer = sum(per[n][f"{LR}_seconds"] for n in timed)
  cv_timed = [n for n in names if per[n][f"{LRCV}_seconds"] is not None]
  total = {"ours_seconds": ours, "logreg_seconds": peer, "sets": timed,
           "logreg_cv_seconds": sum(per[n][f"{LRCV}_seconds"] for n in cv_timed),
           "ours_seconds_lrcv_sets": sum(per[n]["ours_seconds"] for n in cv_timed),
           "logreg_cv_sets": cv_timed,
           "logreg_at_least": any(per[n][f"{LR}_seconds_at_least"] for n in timed),
           "logreg_cold_seconds": sum(per[n][f"{LR}_cold_seconds"] for n in timed),
           "ratio": peer / ours if ours > 0 else None}
  total["met"] = complete and len(timed) == len(names) and (total["ratio"] or 0) > 1
  total["stretch_met"] = total["met"] and total["ratio"] >= TOTAL_STRETCH - 1e-12
  return {"thresholds": {"log_loss_ratio": LOG_LOSS_RATIO, "log_loss_slack": LOG_LOSS_SLACK,
                         "accuracy_points": ACCURACY_POINTS,
                         "fit_time_min_rows": FIT_TIME_MIN_ROWS, "lrcv_speedup": LRCV_SPEEDUP,
                         "total_stretch": TOTAL_STRETCH},
          "per_dataset": per, "missing": missing,
          "log_loss": summary("log_loss_met"), "accuracy": summary("accuracy_met"),
          "fit_time": summary("time_met", lambda n: per[n]["time_applies"]),
          "lrcv": summary("lrcv_met"), "total": total}


def _verdict(ok) -> str:
  return "met" if ok else "**not met**"


def _times_x(r: float) -> str:
  """A ratio as ``2.3x``, ``72x``, ``480x``."""
  return f"{r:,.0f}x" if r >= 100 else f"{r:.2g}x"


def _count(summary: dict, n: int) -> str:
  return f"{n - len(summary['failed'])} of {n} data set{'s' * (n != 1)}"


def _seconds(x, at_least=False) -> str:
  return "n/a" if x is None else (">" if at_least else "") + f"{x:.3g} s"


def peer_verdicts(t: dict) -> list[str]:
  """One sentence per target of issue 22: met or not, and where it is missed, with the
  numbers behind it."""
  per, missing = t["per_dataset"], t["missing"]
  gap = (" Not compared on " + "; ".join(f"{n} ({why})" for n, why in missing.items())
         + ", so no target is met.") if missing else ""
  if not per:
    return ["Targets: no data set where the default and a peer both ran: **not met**." + gap]
  ll, acc, ft, cv, tot = t["log_loss"], t["accuracy"], t["fit_time"], t["lrcv"], t["total"]
  worst_ll = max(per, key=lambda n: per[n]["log_loss"] / per[n]["log_loss_bound"])
  worst_acc = min(per, key=lambda n: per[n]["accuracy_points"])
  out = []
  missed = ", ".join(f"{n} ({per[n]['log_loss']:.4f} > {per[n]['log_loss_bound']:.4f})"
                     for n in ll["failed"])
  w = per[worst_ll]
  out.append(
      f"Log loss (target: at most {LOG_LOSS_RATIO:g} x min(`LogisticRegression()`, "
      f"`LogisticRegressionCV()`) + {LOG_LOSS_SLACK:g} on every data set): "
      f"{_verdict(ll['met'])} ({_count(ll, len(per))})"
      + (f"; missed on {missed}" if missed else
         f"; closest to its bound: {worst_ll}, {w['log_loss']:.4f} against "
         f"{w['log_loss_bound']:.4f}") + ".")
  missed = ", ".join(f"{n} ({per[n]['accuracy_points']:+.2f} points)" for n in acc["failed"])
  out.append(
      f"Accuracy (target: at most {ACCURACY_POINTS:g} point below the better peer on every "
      f"data set): {_verdict(acc['met'])} ({_count(acc, len(per))})"
      + (f"; missed on {missed}" if missed else
         f"; worst {per[worst_acc]['accuracy_points']:+.2f} points on {worst_acc}") + ".")
  missed = ", ".join(f"{n} ({per[n]['ours_seconds']:.3g} s against "
                     f"{_seconds(per[n][f'{LR}_seconds'], per[n][f'{LR}_seconds_at_least'])})"
                     for n in ft["failed"])
  out.append(
      f"Fit time (target: the default's cold fit no slower than `LogisticRegression()` at "
      f"its best thread setting on every data set with at least {FIT_TIME_MIN_ROWS:,} "
      f"training rows): {_verdict(ft['met'])} ("
      + (_count(ft, len(ft["sets"])) if ft["sets"] else
         f"no data set has {FIT_TIME_MIN_ROWS:,} training rows")
      + ")" + (f"; slower on {missed}" if missed else "") + ".")
  ratio = tot["ratio"]
  cold = tot["logreg_cold_seconds"] / tot["ours_seconds"] if tot["ours_seconds"] else None
  out.append(
      f"Total fit time (target: below `LogisticRegression()`'s total; stretch: half): "
      f"{_verdict(tot['met'])}, stretch {_verdict(tot['stretch_met'])}: the default took "
      f"{tot['ours_seconds']:.2f} s against {'at least ' * tot['logreg_at_least']}"
      f"{tot['logreg_seconds']:.2f} s over {len(tot['sets'])} data sets, "
      f"{_fmt(ratio, '.2f')}x (against `LogisticRegression()` as users run it, cold with "
      f"the default threads: {tot['logreg_cold_seconds']:.2f} s, "
      f"{_fmt(cold, '.2f')}x).")
  worst_cv = min((n for n in per if per[n][f"{LRCV}_ratio"] is not None),
                 key=lambda n: per[n][f"{LRCV}_ratio"], default=None)
  missed = ", ".join(
      f"{n} ({_fmt(per[n][f'{LRCV}_ratio'], '.1f')}x"
      + (", a lower bound: it timed out" if per[n][f"{LRCV}_seconds_at_least"] else "") + ")"
      for n in cv["failed"])
  out.append(
      f"Against `LogisticRegressionCV()` (target: at least {LRCV_SPEEDUP:g}x faster than its "
      f"best on every data set): {_verdict(cv['met'])} ({_count(cv, len(per))})"
      + (f"; short on {missed}" if missed else
                       (f"; least {per[worst_cv][f'{LRCV}_ratio']:.1f}x on {worst_cv}"
                        if worst_cv else "")) + ".")
  if gap:
    out.append(gap.strip())
  return out


def _trio(d: dict, field: str, spec: str, scale: float = 1.0) -> str:
  cells = []
  for key in (OURS, LR, LRCV):
    arm = d["arms"].get(key, {})
    value = arm.get(field) if arm.get("status") == "ok" else None
    cells.append("–" if value is None else format(scale * value, spec))
  return " / ".join(cells)


def _times(d: dict, t: dict | None) -> tuple[str, str, str]:
  """Seconds ours / LR() best / LRCV() best, and the two ratios (peer / ours)."""
  cells, ratios = [], []
  for key in (OURS, LR, LRCV):
    seconds, bound = headline_seconds(key, d["arms"].get(key, {}))
    cells.append("–" if seconds is None else (">" if bound else "") + f"{seconds:.3g}")
  for key in (LR, LRCV):
    r = None if t is None else t.get(f"{key}_ratio")
    bound = t is not None and t.get(f"{key}_seconds_at_least")
    ratios.append("–" if r is None else (">" if bound else "") + _times_x(r))
  return " / ".join(cells), ratios[0], ratios[1]


def _marks(t: dict | None) -> str:
  """The targets missed on one data set (loss, acc, time, 5x), or ``–``."""
  if t is None:
    return "not compared"
  missed = [name for name, key in (("loss", "log_loss_met"), ("acc", "accuracy_met"),
                                   ("time", "time_met"), ("5x", "lrcv_met"))
            if t.get(key) is False]
  return ", ".join(missed) if missed else "all met"


def headline_table(datasets: dict, targets: dict, *, compact: bool = False) -> list[str]:
  """Per data set: accuracy and log loss (ours / LR() / LRCV()), seconds (ours cold /
  LR() best / LRCV() best), the ratios, and (unless ``compact``) the targets missed."""
  per = targets["per_dataset"]
  head = ("| data set | accuracy %: ours / LR() / LRCV() | log loss: ours / LR() / LRCV() | "
          "seconds: ours / LR() / LRCV() | LR() / ours | LRCV() / ours |")
  rule = "| --- | --- | --- | --- | ---: | ---: |"
  if not compact:
    head = "| data set | train rows x features, classes |" + head[len("| data set |"):] \
        + " targets missed |"
    rule = "| --- | --- |" + rule[len("| --- |"):] + " --- |"
  lines = [head, rule]
  for name, d in datasets.items():
    if d.get("status") != "ok":
      continue
    t = per.get(name)
    seconds, lr, cv = _times(d, t)
    row = (f"| {name} | {_trio(d, 'accuracy', '.1f', 100)} | {_trio(d, 'log_loss', '.4f')} | "
           f"{seconds} | {lr} | {cv} |")
    if not compact:
      row = (f"| {name} | {d['n_train']:,} x {d['n_features']:,}, {d['n_classes']} |"
             + row[len(f"| {name} |"):] + f" {_marks(t)} |")
    lines.append(row)
  return lines


def not_run_line(title: str, datasets: dict) -> list[str]:
  """The line ``TITLE: name (reason); ...`` for the data sets that did not run, else nothing."""
  skipped = [f"{n} ({v.get('reason', v.get('status'))})" for n, v in datasets.items()
             if v.get("status") != "ok"]
  return [f"{title}: " + "; ".join(skipped) + ".\n"] if skipped else []


def breakdown_table(datasets: dict) -> list[str]:
  """Where the default's time goes: its record's seconds per stage (and the rest of the
  cold call, outside ``es.fit``'s clock: the estimator's checks, first-call costs), the
  ``C`` it chose, the search's fits and steps, and the final fit's steps, certificate and
  precision."""
  lines = ["| data set | cold s | statistics s | choosing l2 s | final fit s | outside es.fit s | "
           "method | C | search fits / steps | final steps | relative gradient norm | "
           "precision, whitening |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
  for name, d in datasets.items():
    arm = d.get("arms", {}).get(OURS, {})
    if d.get("status") != "ok" or arm.get("status") != "ok":
      continue
    sec, path, ref = arm.get("seconds", {}), arm.get("l2_path", {}), arm.get("refine", {})
    search = (f"{path.get('fits', '–')} / {path.get('steps', '–')}"
              + (f" on {path['rows']:,} rows" if path.get("rows") else "")) if path else "–"
    lines.append(
        f"| {name} | {arm['cold_seconds']:.3g} | {_fmt(sec.get('statistics'), '.3g')} | "
        f"{_fmt(sec.get('l2'), '.3g')} | {_fmt(sec.get('fit'), '.3g')} | "
        f"{_fmt(arm['cold_seconds'] - sec['total'] if 'total' in sec else None, '.3g')} | "
        f"{path.get('method', arm.get('fit_method') or '–')} | {_fmt(path.get('C'), '.3g')} | "
        f"{search} | {ref.get('steps', '–')} | {_fmt(ref.get('relative_grad_norm'), '.2g')} | "
        f"{ref.get('precision', '–')}, {ref.get('whitening', '–')} |")
  return lines


def peer_timing_table(datasets: dict) -> list[str]:
  """Each peer's cold fit (default threads) and its fits at 1 thread and at all cores."""
  lines = ["| data set | peer | cold s (default threads) | 1 thread s | all cores s | best s | "
           "cold / default's cold | best / default's cold | C | iterations | notes |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
  for name, d in datasets.items():
    if d.get("status") != "ok":
      continue
    ours, _ = headline_seconds(OURS, d["arms"].get(OURS, {}))

    def ratio(x, at_least=False):
      if ours is None or x is None:
        return "–"
      return (">" if at_least else "") + _times_x(x / max(ours, 1e-12))

    for key in (LR, LRCV):
      arm = d["arms"].get(key, {})
      if arm.get("status") == "timeout":
        bound = arm.get("seconds_at_least", 0)
        lines.append(f"| {name} | {arm['label']} | >{bound:.0f} | | | | {ratio(bound, True)} | | "
                     f"| | timed out |")
        continue
      if arm.get("status") != "ok":
        continue
      threads = arm.get("threads", {})
      single = threads.get("1", {}).get("seconds")
      many = [v["seconds"] for k, v in threads.items() if k != "1"]
      notes = ([arm["threads_note"]] if arm.get("threads_note") else []) + (
          ["ConvergenceWarning"] if arm.get("convergence_warning") else []) + arm.get(
          "notes", [])
      lines.append(f"| {name} | {arm['label']} | {arm['cold_seconds']:.3g} | "
                   f"{_fmt(single, '.3g')} | {_fmt(many[0] if many else None, '.3g')} | "
                   f"{arm.get('best_seconds', arm['cold_seconds']):.3g} | "
                   f"{ratio(arm['cold_seconds'])} | "
                   f"{ratio(arm.get('best_seconds', arm['cold_seconds']))} | "
                   f"{_fmt(arm.get('C'), '.3g')} | {arm.get('n_iter', '')} | "
                   f"{'; '.join(notes)} |")
  return lines


def arms_table(datasets: dict) -> tuple[list[str], dict]:
  """Every arm that ran (accuracy, log loss, cold and warm seconds), and those that did
  not (label -> data sets)."""
  lines = ["| data set | arm | accuracy % | log loss | cold s | warm s |",
           "| --- | --- | ---: | ---: | ---: | ---: |"]
  not_run = {}
  for name, v in datasets.items():
    if v.get("status") != "ok":
      continue
    for a in v["arms"].values():
      if a.get("status") != "ok":
        not_run.setdefault(f"{a['label']} ({a.get('status')})", []).append(name)
        continue
      lines.append(f"| {name} | {a['label']} | {100 * a['accuracy']:.2f} | "
                   f"{_fmt(a['log_loss'], '.4f')} | {a['cold_seconds']:.3g} | "
                   f"{_fmt(a.get('warm_seconds'), '.3g')} |")
  return lines, not_run


def how_timed(d: dict) -> str:
  """How the arms were timed (one paragraph, from the run's config)."""
  c = d.get("config", {})
  cv = c.get("logreg_cv_params")
  if "thread_cap_seconds" not in c:  # a result of the benchmark before issue 22
    return ("These results predate the timing described on the benchmarks page: all arms "
            "ran in one process per data set (cold: the first fit of each arm), the peers "
            "only with the default threads, and the tuned peer was `LogisticRegressionCV` "
            f"over {len(c.get('logreg_cv_Cs', [])) or 'its'} Cs with 3 folds.")
  return (
      "Each headline arm runs in a fresh process of its own; its cold fit is the first fit "
      "in that process (imports and data loading excluded"
      + (", a garbage collection run before it, as timeit does" if "cold_processes" in c
         else "") + "). The default "
      "(`ExplicitSoftmaxClassifier()`, `es.fit`) is timed cold, as users run it (the "
      "library sets its own threads)"
      + (f", in {c['cold_processes']} fresh processes, of which the median is kept"
         if c.get("cold_processes", 1) > 1 else "") + ". Each peer is timed cold with the default BLAS threads "
      "and then, in the same process (so without its first-call costs), at 1 thread and at "
      "all cores (threadpoolctl); its time here is the best of the three (the ratios are "
      "the less flattering ones for the default; peers whose "
      f"cold fit took over {c.get('thread_cap_seconds', 120):g} s keep their cold time). "
      "`LogisticRegressionCV()` runs with its defaults (5 folds, 10 Cs"
      + (f"; spelled out at the values scikit-learn announces: "
         f"`{json.dumps(cv)}`" if cv else "") + "). "
      f"Processes are stopped after {c.get('timeout_seconds', 1800):g} s; a peer stopped "
      "in its fit shows `>` its seconds (a lower bound).")
def _converged_starts(s: dict) -> dict:
  """The starts of one data set's study that ran and reached ``tol``."""
  return {k: v for k, v in s.get("by_start", {}).items()
          if v.get("status") == "ok" and v.get("converged")}


def _run_spread(v: dict):
  """Largest over smallest total (start + refinement) of a start's timed runs, or None."""
  totals = [c + r for c, r in zip(v.get("start_runs") or [], v.get("refine_runs") or [])]
  return max(totals) / min(totals) if len(totals) > 1 and min(totals) > 0 else None


def start_sentence(name: str, s: dict) -> str:
  """One data set's starts study in a sentence: the start with the lowest total time
  (start + refinement) and the one with the fewest L-BFGS steps, with the numbers.

  Only starts that reached ``tol`` compete, and not those that ``fit_optimum`` replaced
  by the zero start (their fit is zero's, plus the cost of computing them).
  """
  if s.get("status") != "ok":
    return f"{name}: starts not studied ({s.get('reason', s.get('status'))})."
  converged = _converged_starts(s)
  ok = {k: v for k, v in converged.items() if not v.get("replaced_by_zero")}
  if not ok:
    return f"{name}: no start reached the relative gradient norm {s.get('tol', 1e-6):g}."
  fastest = min(ok, key=lambda k: ok[k]["total_seconds"])
  least = min(v["steps"] for v in ok.values())
  fewest = [k for k, v in ok.items() if v["steps"] == least]
  f, zero = ok[fastest], ok.get("zero")
  text = (f"{name} (l2 = {s['l2']:.3g}): lowest total time from *{fastest}*, "
          f"{f['total_seconds']:.4f} s ({f['start_seconds']:.4f} s for the start, "
          f"{f['refine_seconds']:.4f} s refining)")
  if zero and fastest != "zero":
    text += f", against {zero['total_seconds']:.4f} s from zero"
  if len(ok) > 1 and len(fewest) == len(ok):
    text += f"; every start took {least} L-BFGS steps"
  else:
    text += (f"; fewest L-BFGS steps from {' and '.join(f'*{k}*' for k in fewest)}, {least}"
             + (f" (from zero {zero['steps']})" if zero and "zero" not in fewest else ""))
  finals = [v["final_log_loss"] for v in converged.values()]
  text += (f". Final held-out CE {min(finals):.4f} to {max(finals):.4f} over "
           f"{len(converged)} starts")
  rows = s.get("by_start", {})
  replaced = [k for k, v in converged.items() if v.get("replaced_by_zero")]
  missed = [k for k, v in rows.items() if v.get("status") == "ok" and k not in converged]
  failed = [k for k, v in rows.items() if v.get("status") == "error"]
  if replaced:
    text += (f"; `fit_optimum` started from zero instead of {', '.join(replaced)} (their "
             "penalised objective was above zero's), so they only add their own cost")
  if missed:
    text += f"; not converged, so not compared: {', '.join(missed)}"
  if failed:
    text += f"; failed: {', '.join(failed)}"
  spreads = {k: _run_spread(v) for k, v in rows.items() if v.get("status") == "ok"}
  spreads = {k: r for k, r in spreads.items() if r is not None}
  if spreads:
    worst = max(spreads, key=spreads.get)
    if spreads[worst] > 1.5:
      text += (f". Timings are noisy here: the timed runs of *{worst}* differed by "
               f"{spreads[worst]:.1f}x")
  return text + "."


def start_section(d) -> str:
  """Which explicit start pays (``bench_real.py``'s ``starts``): a table and one sentence
  per data set, or "" when no data set has the study."""
  sets = {n: v["starts"] for n, v in d.get("datasets", {}).items()
          if v.get("status") == "ok" and v.get("starts")}
  if not sets:
    return ""
  studied = [n for n, s in sets.items() if s.get("status") == "ok"]
  any_ok = next((sets[n] for n in studied), {})
  lines = ["**Which explicit start pays** (`explicit-softmax bench real`, after the arms in each "
           "data set's process): `es.fit_optimum(X, y, l2=l2, start=..., tol="
           f"{any_ok.get('tol', 1e-6):g})` at the `l2` the default estimator chose there, from "
           "each start. Start cost: computing the start from scratch; total: start plus "
           f"refinement; medians of {any_ok.get('repeats', 3)} warm runs (one where a run took "
           f"over {any_ok.get('slow_seconds', 20):g} s). CE: held-out log loss (nats). "
           "Steps: the final fit's L-BFGS iterations (* not converged); \"replaced by zero\": "
           "`fit_optimum` started from zero, where that start's penalised objective was "
           "higher.\n",
           "| data set | start | start cost s | start held-out CE | L-BFGS steps to tol | "
           "total s | final CE |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
  not_run = {}
  for name in studied:
    for key, v in sets[name]["by_start"].items():
      if v.get("status") != "ok":
        reason = (v.get("reason") or v.get("status", "")).strip().splitlines()[0][:160]
        keys, names = not_run.setdefault(reason, ([], []))
        if key not in keys:
          keys.append(key)
        if name not in names:
          names.append(name)
        continue
      steps = f"{v['steps']}" + ("" if v["converged"] else "*")
      start = key + (" (replaced by zero)" if v.get("replaced_by_zero") else "")
      lines.append(f"| {name} | {start} | {v['start_seconds']:.4f} | {v['start_log_loss']:.4f} | "
                   f"{steps} | {v['total_seconds']:.4f} | {v['final_log_loss']:.4f} |")
  lines.append("")
  if not_run:
    lines.append("Not run: " + "; ".join(f"{', '.join(keys)} on {', '.join(names)} ({why})"
                                         for why, (keys, names) in not_run.items()) + ".\n")
  lines.extend(f"- {start_sentence(n, s)}" for n, s in sets.items())
  return "\n".join(lines) + "\n"


def real_section(d) -> str:
  """Real data sets (``real.json``): the headline table with the targets missed per set,
  the verdicts, where the default's time goes, the peers' thread settings, every arm."""
  sets = d["datasets"]
  t = peer_targets(sets)
  mnist = sets.get("mnist", {})
  rows = f", MNIST on {mnist['n_train']:,} training rows" if mnist.get("n_train") else ""
  lines = [f"**Real data** (`explicit-softmax bench real`, {_machine(d)}{rows}): scikit-learn's "
           "bundled sets (standardised, and breast_cancer and digits raw), a badly scaled "
           "synthetic set, MNIST, a bag of words of tiny Shakespeare's speakers and a "
           "200,000-word synthetic bag of words; stratified 75/25 splits. " + how_timed(d)
           + (f" `ExplicitSoftmaxClassifier()` ran with its defaults, "
              f"`{json.dumps(d['default_params'])}`." if d.get("default_params") else "")
           + " Seconds: the default's cold fit, each peer's best; ratios: peer / default "
             "(above 1: the default is faster).\n"]
  lines += headline_table(sets, t) + [""]
  lines += [f"- {s}" for s in peer_verdicts(t)] + [""]
  lines += ["Where the default's time goes (its `model_.info`: seconds for the statistics, "
            "for choosing `l2` and for the final fit; the rest of the cold call, outside "
            "`es.fit`'s clock; how `l2` was chosen, with the search's "
            "fits and L-BFGS steps; the final fit's steps, relative gradient norm, precision "
            "and whitening):\n"] + breakdown_table(sets) + [""]
  lines += ["The peers at each thread setting (cold: the first fit in the process; the "
            "others: medians of the further fits):\n"] + peer_timing_table(sets) + [""]
  table, not_run = arms_table(sets)
  lines += ["Every arm (the closed forms and the further peers ran after the headline arms, "
            "together in one more process):\n"] + table + [""]
  if not_run:
    lines.append("Not run (reasons in `real.json`): " + "; ".join(
        f"{label} on {', '.join(names)}" for label, names in not_run.items()) + ".\n")
  lines += not_run_line("Skipped", sets)
  if (common.RESULTS / "real.png").exists():
    lines.append("![Real data](benchmarks/results/real.png)\n")
  if any(v.get("starts") for v in sets.values()):
    lines.append(start_section(d))
  return "\n".join(lines) + "\n"


def real_readme(real: dict) -> list[str]:
  """The README's compact table of ``real.json`` and the verdicts."""
  sets = real["datasets"]
  t = peer_targets(sets)
  return (["`ExplicitSoftmaxClassifier()` (the default, `es.fit`) against scikit-learn's "
           "`LogisticRegression()` and `LogisticRegressionCV()` on held-out data "
           f"({_machine(real)}; `explicit-softmax bench real`). Seconds: the default's cold "
           "first fit, each peer's best of its cold fit, 1 BLAS thread and all cores; ratios: "
           "peer / default (above 1: the default is faster)."
           + ("" if "thread_cap_seconds" in real.get("config", {}) else " " + how_timed(real))
           + "\n"]
          + headline_table(sets, t, compact=True) + [""]
          + [f"- {v}" for v in peer_verdicts(t)] + [""])
