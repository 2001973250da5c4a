"""The report's MNIST section and the seed study's and sample worth's sentences."""

from __future__ import annotations

from explicit_softmax.bench import report_common as common
from explicit_softmax.bench.report_common import _fmt, _machine


def _best_by_start(study) -> dict:
  """The seed study's row for each start at its best schedule, in the study's order.

  Best: reaching the target in the most runs, then the lowest mean final CE.
  """
  def rank(row):
    return -row["reached"], row["mean_final_ce"]

  best = {}
  for row in study:
    if row["start"] not in best or rank(row) < rank(best[row["start"]]):
      best[row["start"]] = row
  return best


def _steps_saved(best: dict, start: str):
  """Median steps to the target from zero minus from ``start``; None if either never got
  there. Negative when the explicit start needed more steps."""
  a, b = best["zero"]["median_steps_when_reached"], best[start]["median_steps_when_reached"]
  return None if None in (a, b) else a - b


def _seed_sentence(study, costs, unobserved=None) -> str:
  """The seed study in a few sentences: each start at its own best schedule, and what
  each explicit start saved against what it cost (``costs``: the start-cost table)."""
  if not study:
    return ""

  def reached(row):
    return (f"{row['reached']}/{row['runs']} runs (median step "
            f"{_fmt(row['median_steps_when_reached'], '.0f')} of those that did; "
            f"{row['decay_steps']} steps, lr {row['learning_rate']:g})")

  best = _best_by_start(study)
  explicit = [name for name in best if name != "zero"]
  zero = best["zero"]
  text = (f"Over {zero['runs']} batch orders, each start at its best decaying schedule, Adam "
          f"reached the target from zero in {reached(zero)}"
          + "".join(f", from *{name}* in {reached(best[name])}" for name in explicit) + ". ")
  cost = {c["name"]: c["seconds"] for c in costs or []}
  for name in explicit:
    saved, row = _steps_saved(best, name), best[name]
    if saved is None or name not in cost:
      continue
    if saved > 0:
      text += (f"*{name}* saved {saved:.0f} steps, worth "
               f"{1e3 * saved * row['seconds_per_step']:.1f} ms at "
               f"{1e3 * row['seconds_per_step']:.2f} ms per step, and costs "
               f"{1e3 * cost[name]:.1f} ms. ")
    else:
      text += (f"*{name}* saved no steps ({-saved:.0f} more than from zero) and costs "
               f"{1e3 * cost[name]:.1f} ms. ")
  if unobserved:
    text += (f"(Per-step times on these curves include the cost of stopping every few steps "
             f"for a held-out check; run without a callback, a step took "
             f"{1e3 * unobserved:.2f} ms. Faster steps only make the explicit start's fixed "
             "cost weigh more.) ")
  return text


def _worth_sentence(worth, study, target) -> str:
  """The sample-worth yardstick: rows the target needs, rows the explicit start is worth."""
  if not worth:
    return ""

  def rows(v):
    return "n/a" if v is None else f"{round(v, -2):,.0f}"

  need = worth["rows_to_target"]
  l2s = ", ".join(f"{v:g}" for v in worth["l2s"])
  shifts = [(w["rows"], w["zero_rows"] - w["rows"]) for w in worth["zero_rows_matching_explicit"]
            if w["zero_rows"] is not None]
  if shifts:
    low, high = rows(min(d for _, d in shifts)), rows(max(d for _, d in shifts))
    worth_rows = (f"{low if low == high else f'{low} to {high}'} training rows up to "
                  f"n = {max(n for n, _ in shifts):,}")
  best = _best_by_start(study) if study else {}
  zero = best.get("zero")
  prior = worth.get("start")  # the explicit start the prior is centred at
  head = ("**Why: as a prior, the explicit start is worth "
          + (worth_rows if shifts else "more than the rows measured") + ".** ")
  text = (head + "L2-regularised logistic regression solved exactly "
          f"on n random training rows (best of l2 in {{{l2s}}} per n, picked on the test set "
          f"for both centres) reaches CE <= {target} from about {rows(need['zero'])} rows with "
          f"the penalty centred at zero and {rows(need['explicit'])} centred at the explicit "
          "start")
  if zero and zero["median_steps_when_reached"]:
    steps = zero["median_steps_when_reached"]
    text += (f"; Adam from zero has seen about {rows(128 * steps)} rows ({steps:.0f} steps "
             "of 128) when it gets there")
  if shifts:
    text += (". Centred at the explicit start, the fit on n rows matches the zero-centred fit on "
             "more rows: it is worth "
             + ", ".join(f"{rows(d)} rows at n = {n:,}" for n, d in shifts))
    unmatched = [w["rows"] for w in worth["zero_rows_matching_explicit"]
                 if w["zero_rows"] is None]
    if unmatched:
      text += (f" (at n = {', '.join(f'{n:,}' for n in unmatched)} the zero-centred fit did not "
               "match it within the rows measured)")
    saved = _steps_saved(best, prior) if zero and prior in best else None
    if saved is not None:
      text += (f"; in the seed study that start (*{prior}*) saved Adam "
               + (f"{128 * saved:,.0f} rows ({saved:.0f} steps of 128)" if saved > 0
                  else "no steps"))
  return text + ". "


def mnist_section(d):
  r = d["ratios"]
  lines = [f"**MNIST** (`explicit-softmax bench mnist`, {_machine(d)}, {d['n_train']:,} train / "
           f"{d['n_test']:,} test; JAX compile time, {d['compile_seconds']:.1f} s, excluded; "
           "best and first-reaching points per method):\n"]
  lines.append((common.RESULTS / "mnist.md").read_text() if (common.RESULTS / "mnist.md").exists() else "")
  lines.append(
      f"\nTarget held-out CE <= {d['target_ce']}: the pipeline *{r['pipeline']}* reached it in "
      f"{_fmt(r['pipeline_seconds'], '.2f')} s, best-tuned Adam from zero "
      f"(*{r.get('adam', 'constant rate')}*) in "
      f"{_fmt(r['adam_from_zero_seconds'], '.2f')} s "
      f"(ratio {_fmt(r['adam_over_pipeline'], '.2f')}x), "
      f"scikit-learn lbfgs in {_fmt(r['sklearn_lbfgs_seconds'], '.2f')} s (ratio "
      f"{_fmt(r['sklearn_over_pipeline'], '.2f')}x).\n\n![MNIST](benchmarks/results/mnist.png)\n")
  if d.get("seed_study"):
    runs = d["seed_study"][0]["runs"]
    lines.append(f"Same schedules, same {runs} batch orders for every start (Adam, batch 128, rate "
                 "decaying linearly to zero; held-out CE checked every 7 steps):\n")
    lines.append("| start | decay steps | initial lr | runs reaching the target | median step "
                 "reaching it | mean final CE |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in d["seed_study"]:
      lines.append(f"| {row['start']} | {row['decay_steps']} | {row['learning_rate']:g} | "
                   f"{row['reached']}/{row['runs']} | "
                   f"{_fmt(row['median_steps_when_reached'], '.0f')} | "
                   f"{row['mean_final_ce']:.4f} |")
    lines.append("")
  if d.get("start_costs"):
    lines.append("The explicit start by the rows it uses (co-occurrence fit on random training "
                 "rows, calibration on others; seconds are warm medians of 5 and include both):\n")
    lines.append("| rows fitted | rows calibrated | seconds | held-out CE | accuracy |")
    lines.append("| ---: | ---: | ---: | ---: | ---: |")
    for c in d["start_costs"]:
      lines.append(f"| {c['rows']:,} | {c['cal_rows']:,} | {c['seconds']:.4f} | {c['ce']:.4f} | "
                   f"{c['acc']:.4f} |")
    lines.append("")
  if "diagnostics" in d:
    lines.append("Diagnostics on the training data (`es.diagnostics`): relative gradient norm "
                 "(1 at the uniform model, 0 at the optimum) and the Gaussian width of the "
                 "per-sample loss gradients (16 draws):\n")
    lines.append("| model | training CE | relative gradient norm | gradient width |")
    lines.append("| --- | ---: | ---: | ---: |")
    for name, v in d["diagnostics"].items():
      lines.append(f"| {name} | {v['objective']:.4f} | {v['relative_grad_norm']:.2e} | "
                   f"{v['gradient_width']:.1f} ± {v['gradient_width_se']:.1f} |")
    lines.append("")
  return "\n".join(lines)
