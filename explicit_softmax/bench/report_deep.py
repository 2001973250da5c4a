"""The report's deep-model section (``deep.json``): arms, target ratios and verdicts."""

from __future__ import annotations

from explicit_softmax.bench.report_common import _machine


DEEP_TASKS = {"cnn": "MNIST CNN from scratch", "transfer": "transfer: new head for digits 5-9",
              "lm": "char transformer LM"}


def _ratio(r):
  return "n/a" if r is None else f"{r['mean']:.2f} ± {r['std']:.2f}"


def deep_verdicts(d) -> list[str]:
  """Issue 18's target per task and framework, worded from the measured ratios."""
  out = []
  for key, v in d.get("targets", {}).items():
    if v is None:
      continue
    task, fw = key.split("/")
    c = d[task][fw]["summary"]["comparisons"][f"{v['arm']}_vs_default"]
    parts = []
    parts.append(f"steps ratio {_ratio(c['steps_ratio'])}"
                 + ("" if c["half_steps"] else " (not <= 0.5 in every seed)"))
    parts.append(f"seconds ratio {_ratio(c['seconds_ratio'])}"
                 + ("" if c["half_seconds"] else " (not <= 0.5 in every seed)"))
    diff = c["final_difference"]
    parts.append(f"final loss {diff['mean']:+.4f} against default"
                 + ("" if c["never_worse_at_end"] else " (worse in some seed)"))
    out.append(f"{DEEP_TASKS[task]} ({fw}), *{v['arm']}*: **{'met' if v['met'] else 'not met'}**"
               f" (reached default's final loss in {c['reached']} seeds; " + "; ".join(parts)
               + ")")
  return out


def deep_section(d) -> str:
  """The deep-model initialisers (bench_deep.py): arms, target ratios and verdicts."""
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
             "(initialisation seconds as measured):\n")
  out.append("| task | framework | explicit arm vs peer | seeds reaching | steps ratio | "
             "seconds ratio | seconds ratio at the peer's step cost | final loss difference |")
  out.append("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
  for task in DEEP_TASKS:
    for fw, entry in d.get(task, {}).items():
      for name, c in entry["summary"]["comparisons"].items():
        diff = c["final_difference"]
        out.append(f"| {task} | {fw} | {name.replace('_vs_', ' vs ')} | {c['reached']} | "
                   f"{_ratio(c['steps_ratio'])} | {_ratio(c['seconds_ratio'])} | "
                   f"{_ratio(c.get('seconds_ratio_equal_step_cost'))} | "
                   f"{diff['mean']:+.4f} ± {diff['std']:.4f} |")
  out.append("")
  verdicts = deep_verdicts(d)
  if verdicts:
    out.append("Target (an explicit arm reaches default's final loss in at most half the steps "
               "and half the seconds, and is never worse at the end):\n")
    out.extend(f"- {v}" for v in verdicts)
  out.append("\n![deep models](benchmarks/results/deep.png)\n")
  return "\n".join(out)


def deep_verdict(deep) -> str:
  """One bullet: where issue 18's target held on real deep models, from deep.json."""
  targets = {k: v for k, v in (deep or {}).get("targets", {}).items() if v}
  if not targets:
    return ""

  def name(key):
    task, fw = key.split("/")
    return f"{DEEP_TASKS[task]} ({fw})"

  met = [name(k) for k, v in targets.items() if v["met"]]
  missed = [name(k) for k, v in targets.items() if not v["met"]]
  return ("- **As an initialiser of real deep models (a CNN, a new head, a transformer).** "
          "The target (an explicit arm reaching default's final validation loss in at most "
          "half the steps and seconds in every seed, never worse at the end) was met on "
          + (", ".join(met) if met else "no task") + "; **not met** on "
          + (", ".join(missed) if missed else "no task")
          + " (`explicit-softmax bench deep`; numbers under *Initialising real deep models*).")
