"""The report's real-data section (``real.json``): targets, verdicts, the starts study."""

from __future__ import annotations

import json
import re

from explicit_softmax.bench import report_common as common
from explicit_softmax.bench.report_common import _fmt, _machine


# The real-data targets (bench_real.py): the default estimator against LogisticRegression().
REAL_LOG_LOSS_RATIO = 1.02     # held-out log loss at most 2% above
REAL_ACCURACY_POINTS = 1.0     # accuracy at most one percentage point below
REAL_OURS, REAL_PEER = "explicit_default", "logreg"


def real_targets(datasets: dict) -> dict:
  """The real-data targets, per data set and overall, from the arms' measurements.

  A data set that ran but where the default estimator (or ``LogisticRegression()``)
  did not is listed as ``missing``: the targets cover every data set, so they are
  then not met. Skipped data sets (files absent) are left out.
  """
  per, missing = {}, {}
  for name, d in datasets.items():
    if d.get("status") != "ok":
      continue
    ours, peer = d["arms"].get(REAL_OURS, {}), d["arms"].get(REAL_PEER, {})
    if ours.get("status") != "ok" or peer.get("status") != "ok":
      bad = ours if ours.get("status") != "ok" else peer
      # The reason's first sentence (a ValueError's message can run on for lines).
      reason = re.split(r"(?<=[.!?])\s", (bad.get("reason") or "").strip(), maxsplit=1)[0]
      label = bad.get("label", REAL_OURS if bad is ours else REAL_PEER)
      missing[name] = (f"{label} {bad.get('status', 'missing')}"
                       + (f": {reason[:200]}" if reason else ""))
      continue
    ratio = ours["log_loss"] / peer["log_loss"]
    points = 100 * (ours["accuracy"] - peer["accuracy"])
    per[name] = {"log_loss_ratio": ratio, "log_loss_met": ratio <= REAL_LOG_LOSS_RATIO + 1e-12,
                 "accuracy_points": points,
                 "accuracy_met": points >= -REAL_ACCURACY_POINTS - 1e-9,
                 "ours_cold_seconds": ours["cold_seconds"],
                 "logreg_cold_seconds": peer["cold_seconds"],
                 "ours_import_seconds": d.get("import_seconds", 0.0),
                 "logreg_import_seconds": d.get("peer_import_seconds", 0.0)}
  names = list(per)

  def overall(key, met_key, worst_of):
    if not names:
      return {"met": False, "worst": None, "worst_dataset": None}
    worst = worst_of(names, key=lambda n: per[n][key])
    return {"met": not missing and all(per[n][met_key] for n in names),
            "worst": per[worst][key], "worst_dataset": worst}

  ours = sum(per[n]["ours_cold_seconds"] for n in names)
  peer = sum(per[n]["logreg_cold_seconds"] for n in names)
  ours_imp = ours + sum(per[n]["ours_import_seconds"] for n in names)
  peer_imp = peer + sum(per[n]["logreg_import_seconds"] for n in names)
  timing = {"ours_total_seconds": ours, "logreg_total_seconds": peer,
            "ratio": peer / ours if ours > 0 else None,
            "ours_total_with_import_seconds": ours_imp,
            "logreg_total_with_import_seconds": peer_imp,
            "ratio_with_import": peer_imp / ours_imp if ours_imp > 0 else None}
  timing["met"] = (bool(names) and not missing and timing["ratio"] is not None
                   and timing["ratio"] > 1)
  return {"thresholds": {"log_loss_ratio": REAL_LOG_LOSS_RATIO,
                         "accuracy_points": REAL_ACCURACY_POINTS, "time_ratio": 1.0},
          "per_dataset": per, "missing": missing,
          "log_loss": overall("log_loss_ratio", "log_loss_met", max),
          "accuracy": overall("accuracy_points", "accuracy_met", min),
          "time": timing}


def real_verdicts(t: dict) -> list[str]:
  """One sentence per real-data target: met or not, with the numbers behind it."""
  per, missing = t["per_dataset"], t["missing"]

  def verdict(ok):
    return "met" if ok else "**not met**"

  by_reason = {}
  for name, reason in missing.items():
    by_reason.setdefault(reason, []).append(name)
  why = ("Not compared (the targets cover every data set, so none is met): "
         + "; ".join(f"{', '.join(names)}: {reason.rstrip('.')}"
                     for reason, names in by_reason.items()) + ".")
  gap = f" Not compared on {', '.join(missing)}." if missing else ""
  if not per:
    return ["Real-data targets: no data set where both the default estimator and "
            "`LogisticRegression()` ran: **not met**.", why]
  ll, acc, tm = t["log_loss"], t["accuracy"], t["time"]
  each_ll = ", ".join(f"{n} {v['log_loss_ratio']:.3f}" for n, v in per.items())
  each_acc = ", ".join(f"{n} {v['accuracy_points']:+.2f}" for n, v in per.items())
  return [
      f"Log loss (target: the default estimator's held-out log loss at most "
      f"{100 * (REAL_LOG_LOSS_RATIO - 1):.0f}% above `LogisticRegression()`'s on every data "
      f"set): {verdict(ll['met'])}; worst ratio {ll['worst']:.3f} on {ll['worst_dataset']} "
      f"({each_ll}).{gap}",
      f"Accuracy (target: at most {REAL_ACCURACY_POINTS:g} point below "
      f"`LogisticRegression()`'s on every data set): {verdict(acc['met'])}; worst difference "
      f"{acc['worst']:+.2f} points on {acc['worst_dataset']} ({each_acc}).{gap}",
      f"Fit time (target: the default estimator's total cold fit time over all data sets, "
      f"first call and JAX compilation included, below `LogisticRegression()`'s): "
      f"{verdict(tm['met'])}; `LogisticRegression()` took {tm['logreg_total_seconds']:.2f} s "
      f"against {tm['ours_total_seconds']:.2f} s, ratio {_fmt(tm['ratio'], '.2f')}x over "
      f"{len(per)} data sets (imports included, each in a fresh process: "
      f"{tm['logreg_total_with_import_seconds']:.2f} s against "
      f"{tm['ours_total_with_import_seconds']:.2f} s, "
      f"{_fmt(tm['ratio_with_import'], '.2f')}x).{gap}",
  ] + ([why] if missing else [])


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
  """Real data sets (``bench_real.py``): one table row per arm, one sentence per target."""
  sets = d["datasets"]
  ran = {n: v for n, v in sets.items() if v.get("status") == "ok"}
  mnist = ran.get("mnist", {})
  rows = (f", MNIST on {mnist['n_train']:,} training rows" if mnist else "")
  lines = [f"**Real data** (`explicit-softmax bench real`, {_machine(d)}{rows}): scikit-learn's "
           "bundled sets (standardised), MNIST and a bag of words of tiny Shakespeare's speakers, "
           "each data set in a fresh process. Cold: the first fit in that process (the library's "
           "first arm includes JAX compilation; imports excluded), warm: median of "
           f"{d.get('config', {}).get('warm_repeats', 3)} further fits"
           + (f"; `ExplicitSoftmaxClassifier()` ran with its defaults, "
              f"`{json.dumps(d['default_params'])}`" if d.get("default_params") else "")
           + ".\n",
           "| data set | arm | accuracy % | log loss | cold s | warm s |",
           "| --- | --- | ---: | ---: | ---: | ---: |"]
  not_run = {}
  for name, v in ran.items():
    for a in v["arms"].values():
      if a["status"] != "ok":
        not_run.setdefault(a["label"], []).append(name)
        continue
      lines.append(f"| {name} | {a['label']} | {100 * a['accuracy']:.2f} | "
                   f"{_fmt(a['log_loss'], '.4f')} | {a['cold_seconds']:.3f} | "
                   f"{_fmt(a['warm_seconds'], '.3f')} |")
  lines.append("")
  notes = [f"{label} on {', '.join(names)}" for label, names in not_run.items()]
  if notes:
    lines.append("Not run (not applicable or failed; reasons in `real.json`): "
                 + "; ".join(notes) + ".\n")
  skipped = [f"{n} ({v.get('reason', v.get('status'))})" for n, v in sets.items()
             if v.get("status") != "ok"]
  if skipped:
    lines.append("Skipped: " + "; ".join(skipped) + ".\n")
  lines.extend(f"- {s}" for s in real_verdicts(real_targets(sets)))
  if (common.RESULTS / "real.png").exists():
    lines.append("\n![Real data](benchmarks/results/real.png)")
  if any(v.get("starts") for v in sets.values()):
    lines.append("\n" + start_section(d))
  return "\n".join(lines) + "\n"
