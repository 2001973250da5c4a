"""The report's deep-model section (``deep.json``): arms, target ratios and verdicts."""

from __future__ import annotations

from explicit_softmax.bench.report_common import _machine


DEEP_TASKS = {"cnn": "MNIST CNN from scratch", "cnn_dense": "MNIST CNN 16/32 + dense 128",
              "transfer": "transfer: new head for digits 5-9", "lm": "char transformer LM"}


def _ratio(r):
  return "n/a" if r is None else f"{r['mean']:.2f} ± {r['std']:.2f}"


def deep_verdicts(d) -> list[str]:
  """The target per task and framework, worded from the measured ratios."""
  out = []
  for key, v in d.get("targets", {}).items():
    if v is None:
      continue
    task, fw = key.split("/")
    comps = d[task][fw]["summary"]["comparisons"]
    c = comps[f"{v['arm']}_vs_default"]
    parts = []
    parts.append(f"steps ratio {_ratio(c['steps_ratio'])}"
                 + ("" if c["half_steps"] else " (not <= 0.5 in every seed)"))
    parts.append(f"seconds ratio {_ratio(c['seconds_ratio'])}"
                 + ("" if c["half_seconds"] else " (not <= 0.5 in every seed)"))
    if c.get("cpu_seconds_ratio") is not None:
      parts.append(f"CPU-seconds ratio {_ratio(c['cpu_seconds_ratio'])}"
                   + ("" if c["half_cpu_seconds"] else " (not <= 0.5 in every seed)"))
    diff = c["final_difference"]
    parts.append(f"final loss {diff['mean']:+.4f} against default"
                 + ("" if c["never_worse_at_end"] else " (worse in some seed)"))
    lsuv = comps.get(f"{v['arm']}_vs_lsuv")
    if lsuv is not None:
      parts.append(f"{lsuv['final_difference']['mean']:+.4f} against LSUV"
                   + ("" if lsuv["never_worse_at_end"] else " (worse in some seed)"))
    out.append(f"{DEEP_TASKS[task]} ({fw}), *{v['arm']}*: **{'met' if v['met'] else 'not met'}**"
               f" (reached default's final loss in {c['reached']} seeds; " + "; ".join(parts)
               + ")")
  return out


def _cell(x, spec):
  return "-" if x is None else format(x, spec)


def per_seed_table(d) -> list[str]:
  """Every arm and seed: init seconds, then steps and seconds (init included) to the
  default's final loss of that seed, their ratios to the default's own, the losses."""
  out = ["| task | framework | arm | seed | init s | steps to default's final | seconds "
         "(init included) | steps ratio | seconds ratio | CPU-seconds ratio | loss at step 0 "
         "| final loss |",
         "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for task in DEEP_TASKS:
    for fw, entry in d.get(task, {}).items():
      for arm, rows in entry["summary"].get("per_seed", {}).items():
        for seed, r in enumerate(rows):
          out.append(f"| {task} | {fw} | {arm} | {seed} | {r['init_seconds']:.2f} | "
                     f"{'never' if r['steps'] is None else r['steps']} | "
                     f"{_cell(r['seconds'], '.2f')} | {_cell(r['steps_ratio'], '.2f')} | "
                     f"{_cell(r['seconds_ratio'], '.2f')} | "
                     f"{_cell(r.get('cpu_seconds_ratio'), '.2f')} | {r['start_loss']:.3f} | "
                     f"{r['final_loss']:.4f} |")
  return out


def diagnostics_table(d) -> list[str]:
  """Why an arm ends where it does: the head's weight norm after initialisation, the
  RMS of the features the explicit head read, the rows it read, and the head start
  (steps the default needs to reach the arm's loss at step 0)."""
  out = ["| task | framework | arm | head weight norm | feature RMS | rows read | "
         "head start (default's steps to this arm's step-0 loss) |",
         "| --- | --- | --- | ---: | ---: | ---: | --- |"]
  for task in DEEP_TASKS:
    for fw, entry in d.get(task, {}).items():
      for arm, a in entry["summary"]["arms"].items():
        starts = [r["head_start"] for r in entry["summary"].get("per_seed", {}).get(arm, [])]
        norm, rms, rows = a.get("head_norm"), a.get("feature_rms"), a.get("rows")
        out.append(f"| {task} | {fw} | {arm} | {_cell(norm and norm['mean'], '.1f')} | "
                   f"{_cell(rms and rms['mean'], '.3f')} | {_cell(rows and rows['mean'], ',.0f')} | "
                   + ", ".join("never" if s is None else str(s) for s in starts) + " |")
  return out


def rows_table(d) -> list[str]:
  """The head-rows sweep: held-out loss above reading every row, and seconds."""
  rows = d.get("rows")
  if not rows or "summary" not in rows:
    return []
  multiples = [m for m in rows["multiples"]] + ["auto", None]
  names = {None: "every row", "auto": "default (`\"auto\"`)"}
  out = ["| model (head inputs N, classes) | "
         + " | ".join(names.get(m, f"{m} (N + 1)") for m in multiples) + " |",
         "| --- | " + " | ".join("---:" for _ in multiples) + " |"]
  for name, points in rows["summary"].items():
    info = rows["torch"][name]
    by = {p["multiple"]: p for p in points}
    cells = []
    for m in multiples:
      p = by.get(m)
      cells.append("-" if p is None else
                   (f"{p['loss']:.3f}, {p['seconds']:.2f} s" if m is None else
                    f"{p['excess']:+.3f}, {p['seconds']:.2f} s"
                    + (f" ({p['samples']:,.0f} samples)" if m == "auto" else "")))
    out.append(f"| {name} (N = {info['head_inputs']}, {info['classes']} classes, "
               f"{info['total_samples']:,} samples) | " + " | ".join(cells) + " |")
  return out


def deep_section(d) -> str:
  """The deep-model initialisers (`explicit-softmax bench deep`): arms, per-seed times, target
  ratios and verdicts, what sets the ends, and the head-rows sweep."""
  m = d.get("machine", {})
  load = m.get("loadavg_start")
  cfg = d["config"]
  out = [f"**Initialising real deep models** (`explicit-softmax bench deep`, {_machine(d)}, "
         f"{cfg.get('threads') or 'all'} thread(s) per process"
         + (f", load average {load[0]:.1f} at the start" if load else "")
         + f", {cfg['seeds']} seeds, {d['total_seconds'] / 60:.1f} min): validation loss "
         "(nats) and accuracy after the budget, mean ± std; each initialiser's seconds are "
         "counted.\n"]
  out.append("| task | framework | arm | init s | loss at step 0 | final loss | final accuracy | "
             "to default's final loss: steps, seconds (seeds) |")
  out.append("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
  for task in DEEP_TASKS:
    for fw, entry in d.get(task, {}).items():
      for arm, a in entry["summary"]["arms"].items():
        reach = a.get("to_default_final", {})
        cell = ("never" if not reach.get("steps") else
                f"{reach['steps']['mean']:.0f}, {reach['seconds']['mean']:.1f} s "
                f"({reach['reached']})")
        out.append(f"| {task} ({entry['budget']} steps) | {fw} | {arm} | "
                   f"{a['init_seconds']['mean']:.2f} | {a['start_loss']['mean']:.3f} | "
                   f"{a['final_loss']['mean']:.4f} ± {a['final_loss']['std']:.4f} | "
                   f"{100 * a['final_acc']['mean']:.2f}% | {cell} |")
  out.append("")
  out.append("Steps and seconds (initialisation included) an explicit arm needs to reach a "
             "peer's final validation loss, divided by the peer's own (the target asks <= 0.5 "
             "against default; mean ± std over the seeds that reached it), and the explicit "
             "arm's final loss minus the peer's. The arms of a seed run one after another on "
             "cores shared with other work, so measured step times drift with the load; the "
             "second seconds column prices both arms' steps at the peer's mean step time "
             "(initialisation seconds as measured), and the CPU-seconds column counts the "
             "process's CPU time instead of wall time (one thread per process: the time it "
             "had a core, which other jobs do not inflate):\n")
  out.append("| task | framework | explicit arm vs peer | seeds reaching | steps ratio | "
             "seconds ratio | seconds ratio at the peer's step cost | CPU-seconds ratio | "
             "final loss difference |")
  out.append("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
  for task in DEEP_TASKS:
    for fw, entry in d.get(task, {}).items():
      for name, c in entry["summary"]["comparisons"].items():
        diff = c["final_difference"]
        out.append(f"| {task} | {fw} | {name.replace('_vs_', ' vs ')} | {c['reached']} | "
                   f"{_ratio(c['steps_ratio'])} | {_ratio(c['seconds_ratio'])} | "
                   f"{_ratio(c.get('seconds_ratio_equal_step_cost'))} | "
                   f"{_ratio(c.get('cpu_seconds_ratio'))} | "
                   f"{diff['mean']:+.4f} ± {diff['std']:.4f} |")
  out.append("")
  verdicts = deep_verdicts(d)
  if verdicts:
    out.append("Target (an explicit arm reaches default's final loss in at most half the steps "
               "and half the seconds, initialisation included, in every seed, and ends no "
               "worse than default or LSUV):\n")
    out.extend(f"- {v}" for v in verdicts)
  out.append("\n![deep models](benchmarks/results/deep.png)\n")
  if any(entry["summary"].get("per_seed") for task in DEEP_TASKS
         for entry in d.get(task, {}).values()):
    out.append("Every arm and seed: the initialisation's seconds, then the steps and seconds "
               "(initialisation included) to the default arm's final validation loss of the "
               "same seed, and their ratios to the default's own:\n")
    out.extend(per_seed_table(d))
    out.append("")
    out.append("What sets the ends: the norm of the head's weights after initialisation "
               "(compare the default arm's), the root-mean-square of the features the explicit "
               "head read, the rows it (and the probe) read, and, per seed, how many steps the "
               "default needs to reach this arm's loss at step 0 (what a better start alone "
               "can save):\n")
    out.extend(diagnostics_table(d))
    out.append("")
  table = rows_table(d)
  if table:
    out.append("How many rows the head needs (`--tasks rows`, PyTorch, the models above at "
               "their starting point, `calibrate=True`, mean of the seeds): the validation "
               "loss above that of reading every row, and the seconds of `init_head` / "
               "`new_head`, for a budget of `s (N + 1)` samples, the default and every row "
               "(its loss itself); '-': more samples than there are:\n")
    out.extend(table)
    out.append("\n![head rows](benchmarks/results/deep_rows.png)\n")
  return "\n".join(out)


def deep_verdict(deep) -> str:
  """One bullet: where the target held on real deep models, from deep.json."""
  targets = {k: v for k, v in (deep or {}).get("targets", {}).items() if v}
  if not targets:
    return ""

  def name(key):
    task, fw = key.split("/")
    return f"{DEEP_TASKS[task]} ({fw})"

  met = [name(k) for k, v in targets.items() if v["met"]]
  missed = [name(k) for k, v in targets.items() if not v["met"]]
  return ("- **As an initialiser of real deep models (CNNs, a new head, a transformer).** "
          "The target (an explicit arm reaching default's final validation loss in at most "
          "half the steps and half the seconds, initialisation included, in every seed, and "
          "ending no worse than default or LSUV) was met on "
          + (", ".join(met) if met else "no task") + "; **not met** on "
          + (", ".join(missed) if missed else "no task")
          + " (`explicit-softmax bench deep`; numbers under *Initialising real deep models*).")
