"""The deep-model benchmark's measurements: steps and seconds to a peer's final loss,
per-arm and per-seed summaries, the target verdicts (issues 18 and 26), the plot and the
printed tables."""

from __future__ import annotations

import pathlib

from explicit_softmax.bench.deep_common import EXPLICIT_ARMS, PEERS, TASKS
from explicit_softmax.bench.training import summary
from explicit_softmax.bench import _harness


# -- the measurements -----------------------------------------------------------
def first_reach(run: dict, target: float):
  """(steps, seconds incl. init) of the first evaluation at or below ``target``."""
  for p in run["points"]:
    if p["loss"] <= target + 1e-12:
      return p["step"], p["seconds"] + run["init_seconds"]
  return None, None


def first_reach_cpu(run: dict, target: float):
  """CPU seconds (the process's, init included) to the first evaluation at or below
  ``target``; None if not reached or not recorded. With one thread per process this
  is the time the run had a core, which other jobs on shared cores do not inflate."""
  if "init_cpu_seconds" not in run:
    return None
  for p in run["points"]:
    if p["loss"] <= target + 1e-12:
      return p.get("cpu_seconds", float("nan")) + run["init_cpu_seconds"]
  return None


def step_cost(run: dict) -> float:
  """Mean training seconds per step of a run (evaluation excluded)."""
  return run["points"][-1]["seconds"] / max(run["points"][-1]["step"], 1)


def compare(runs: dict) -> dict:
  """Each explicit arm against each peer: steps/seconds ratios to the peer's final loss."""
  out = {}
  for e in (a for a in EXPLICIT_ARMS if a in runs):
    for p in (a for a in PEERS if a in runs):
      per_seed = []
      for er, pr in zip(runs[e], runs[p]):
        target = pr["points"][-1]["loss"]
        es_, et = first_reach(er, target)
        ps, pt = first_reach(pr, target)
        ec, pc = first_reach_cpu(er, target), first_reach_cpu(pr, target)
        per_seed.append({
            "target": target, "explicit_steps": es_, "explicit_seconds": et,
            "peer_steps": ps, "peer_seconds": pt,
            # A peer at its own final loss already at step 0 (and 0 s) leaves no ratio.
            "steps_ratio": None if es_ is None or not ps else es_ / ps,
            "seconds_ratio": None if et is None or not pt else et / pt,
            "cpu_seconds_ratio": None if ec is None or not pc else ec / pc,
            # Load-independent seconds: both arms' steps priced at the peer's mean step time
            # (arms run one after another on shared cores, so measured step times drift).
            "seconds_ratio_equal_step_cost": (
                None if es_ is None or not ps else
                (er["init_seconds"] + es_ * step_cost(pr))
                / (pr["init_seconds"] + ps * step_cost(pr))),
            "final_difference": er["points"][-1]["loss"] - target})
      reached = [s for s in per_seed if s["steps_ratio"] is not None]
      steps_ratio = summary([s["steps_ratio"] for s in reached]) if reached else None
      seconds_ratio = summary([s["seconds_ratio"] for s in reached]) if reached else None
      equal_cost = summary([s["seconds_ratio_equal_step_cost"] for s in reached]) if reached \
          else None
      diff = summary([s["final_difference"] for s in per_seed])
      cpu = [s["cpu_seconds_ratio"] for s in reached]
      cpu_ratio = summary(cpu) if reached and None not in cpu else None
      out[f"{e}_vs_{p}"] = {
          "per_seed": per_seed, "reached": f"{len(reached)}/{len(per_seed)}",
          "steps_ratio": steps_ratio, "seconds_ratio": seconds_ratio,
          "seconds_ratio_equal_step_cost": equal_cost, "cpu_seconds_ratio": cpu_ratio,
          "final_difference": diff,
          "half_steps": bool(len(reached) == len(per_seed)
                             and max(s["steps_ratio"] for s in reached) <= 0.5),
          "half_seconds": bool(len(reached) == len(per_seed)
                               and max(s["seconds_ratio"] for s in reached) <= 0.5),
          "half_cpu_seconds": (None if cpu_ratio is None else
                               bool(len(reached) == len(per_seed) and max(cpu) <= 0.5)),
          "never_worse_at_end": bool(max(diff["values"]) <= 0.0),
      }
  return out


def head_start(run: dict, default: dict):
  """Steps the default arm needs to reach ``run``'s loss at step 0 (None: never): the
  most a better start alone can save, if both arms then learn at the same pace."""
  start = run["points"][0]["loss"]
  for p in default["points"]:
    if p["loss"] <= start + 1e-12:
      return p["step"]
  return None


def per_seed(entry: dict) -> dict:
  """Per arm and seed: init seconds, steps and seconds (init included) to the default's
  final loss of the seed and their ratios to the default's own, start and final loss."""
  out = {}
  for arm, runs in entry["runs"].items():
    rows = []
    for r, d in zip(runs, entry["runs"]["default"]):
      target = d["points"][-1]["loss"]
      steps, seconds = first_reach(r, target)
      d_steps, d_seconds = first_reach(d, target)
      cpu, d_cpu = first_reach_cpu(r, target), first_reach_cpu(d, target)
      rows.append({
          "init_seconds": r["init_seconds"], "steps": steps, "seconds": seconds,
          "init_cpu_seconds": r.get("init_cpu_seconds"), "cpu_seconds": cpu,
          "steps_ratio": None if steps is None or not d_steps else steps / d_steps,
          "seconds_ratio": None if seconds is None or not d_seconds else seconds / d_seconds,
          "cpu_seconds_ratio": None if cpu is None or not d_cpu else cpu / d_cpu,
          "start_loss": r["points"][0]["loss"], "final_loss": r["points"][-1]["loss"],
          "head_start": head_start(r, d), "head_norm": r.get("head_norm"),
          "rows": r.get("rows"), "feature_rms": r.get("feature_rms")})
    out[arm] = rows
  return out


def summarise(entry: dict) -> dict:
  """Per arm: init seconds, start/final loss and accuracy, the mean curve; comparisons."""
  import numpy as np
  arms = {}
  for arm, runs in entry["runs"].items():
    loss = np.array([[p["loss"] for p in r["points"]] for r in runs])
    acc = np.array([[p["acc"] for p in r["points"]] for r in runs])
    secs = np.array([[p["seconds"] + r["init_seconds"] for p in r["points"]] for r in runs])
    arms[arm] = {
        "init_seconds": summary([r["init_seconds"] for r in runs]),
        "train_seconds": summary([r["points"][-1]["seconds"] for r in runs]),
        "start_loss": summary(loss[:, 0]), "final_loss": summary(loss[:, -1]),
        "start_acc": summary(acc[:, 0]), "final_acc": summary(acc[:, -1]),
        "curve_steps": [p["step"] for p in runs[0]["points"]],
        "loss_mean": loss.mean(0).tolist(),
        "loss_std": (loss.std(0, ddof=1) if len(loss) > 1 else 0 * loss[0]).tolist(),
        "acc_mean": acc.mean(0).tolist(), "seconds_mean": secs.mean(0).tolist(),
    }
    # Steps and seconds (init included) to the default arm's final loss of the same seed.
    hits = [first_reach(r, d["points"][-1]["loss"])
            for r, d in zip(runs, entry["runs"]["default"])]
    ok = [h for h in hits if h[0] is not None]
    arms[arm]["to_default_final"] = {
        "reached": f"{len(ok)}/{len(hits)}",
        "steps": summary([h[0] for h in ok]) if ok else None,
        "seconds": summary([h[1] for h in ok]) if ok else None}
    for key in ("head_norm", "rows", "feature_rms"):
      values = [r[key] for r in runs if r.get(key) is not None]
      if values:
        arms[arm][key] = summary(values)
    if "test" in runs[0]:
      arms[arm]["test_acc"] = summary([r["test"]["acc"] for r in runs])
      arms[arm]["test_loss"] = summary([r["test"]["loss"] for r in runs])
  return {"arms": arms, "comparisons": compare(entry["runs"]), "per_seed": per_seed(entry)}


def target_verdicts(result: dict) -> dict:
  """The target per task and framework: some explicit arm reaches default's final loss in
  <= half the steps and seconds (initialisation included) in every seed, and ends no worse
  than default (issue 18) nor, where the task has an LSUV arm, than LSUV (issue 26) in
  every seed."""
  out = {}
  for task in TASKS:
    for fw, entry in result.get(task, {}).items():
      comps = entry["summary"]["comparisons"]
      best, best_score = None, -1
      for e in EXPLICIT_ARMS:
        c = comps.get(f"{e}_vs_default")
        if c is None:
          continue
        lsuv = comps.get(f"{e}_vs_lsuv")
        no_worse_than_lsuv = None if lsuv is None else lsuv["never_worse_at_end"]
        checks = (c["half_steps"], c["half_seconds"], c["never_worse_at_end"],
                  no_worse_than_lsuv is not False)
        # The arm that meets the target, else the one that meets most of its parts.
        if sum(checks) > best_score:
          best_score = sum(checks)
          best = {"arm": e, "met": all(checks), "half_steps": c["half_steps"],
                  "half_seconds": c["half_seconds"],
                  "half_cpu_seconds": c.get("half_cpu_seconds"),
                  "never_worse_at_end": c["never_worse_at_end"],
                  "no_worse_than_lsuv": no_worse_than_lsuv}
      out[f"{task}/{fw}"] = best
  return out


def plot(result: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  from matplotlib.ticker import FormatStrFormatter
  panels = [(task, fw) for task in TASKS for fw in result.get(task, {})]
  if not panels:
    return
  fig, axes = plt.subplots(len(panels), 2, figsize=(13, 3.6 * len(panels)), squeeze=False)
  colors = {"default": "tab:gray", "lsuv": "tab:orange", "probe": "tab:green",
            "explicit": "tab:blue", "explicit_lsuv": "tab:red", "explicit_blocks": "tab:purple"}
  titles = {"cnn": "MNIST CNN 8/16 from scratch",
            "cnn_dense": "MNIST CNN 16/32 + dense 128 from scratch",
            "transfer": "transfer 0-4 -> 5-9, new head",
            "lm": "char transformer, tiny Shakespeare"}
  for row, (task, fw) in enumerate(panels):
    arms = result[task][fw]["summary"]["arms"]
    for arm, a in arms.items():
      mean, std = np.array(a["loss_mean"]), np.array(a["loss_std"])
      steps, secs = np.array(a["curve_steps"]), np.array(a["seconds_mean"])
      for ax, x in ((axes[row, 0], steps), (axes[row, 1], secs)):
        ax.plot(x, mean, color=colors[arm], label=arm, marker=".", ms=3)
        ax.fill_between(x, mean - std, mean + std, color=colors[arm], alpha=0.2)
    target = arms["default"]["final_loss"]["mean"]
    for ax, xlabel in ((axes[row, 0], "steps"), (axes[row, 1], "seconds (init included)")):
      ax.axhline(target, color="k", lw=0.8, ls=":", label="default's final loss")
      ax.set(yscale="log", xlabel=xlabel, ylabel="validation loss (nats, log)",
             title=f"{titles[task]} ({fw})")
      ax.grid(alpha=0.3, which="both")
      ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.3, 0.4, ... not 3 x 10^-1
      ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    axes[row, 1].set_xscale("symlog", linthresh=1.0)
    axes[row, 1].set_xlim(left=0)
    axes[row, 0].legend(fontsize=7)
  _harness.save_figure(fig, path, dpi=100)


def print_tables(result: dict) -> None:
  for task in TASKS:
    for fw, entry in result.get(task, {}).items():
      s = entry["summary"]
      print(f"\n[{task} / {fw}] budget {entry['budget']} steps")
      for arm, a in s["arms"].items():
        print(f"  {arm:>15}: init {a['init_seconds']['mean']:6.2f}s  loss "
              f"{a['start_loss']['mean']:.3f} -> {a['final_loss']['mean']:.4f}"
              f"±{a['final_loss']['std']:.4f}  acc {100 * a['final_acc']['mean']:.2f}%")
      for arm, rows in s["per_seed"].items():
        for seed, r in enumerate(rows):
          steps = "never" if r["steps"] is None else f"{r['steps']:4d} steps {r['seconds']:6.2f}s"
          ratios = ("" if r["steps_ratio"] is None else
                    f" (x{r['steps_ratio']:.2f} steps, x{r['seconds_ratio']:.2f} s"
                    + ("" if r["cpu_seconds_ratio"] is None else
                       f", x{r['cpu_seconds_ratio']:.2f} CPU s") + ")")
          print(f"  {arm:>15} seed {seed}: init {r['init_seconds']:5.2f}s, to default's final "
                f"{steps}{ratios}, loss {r['start_loss']:.3f} -> {r['final_loss']:.4f}")
      for name, c in s["comparisons"].items():
        sr, tr = c["steps_ratio"], c["seconds_ratio"]
        srs = "-" if sr is None else f"{sr['mean']:.2f}"
        trs = "-" if tr is None else f"{tr['mean']:.2f}"
        print(f"  {name:>28}: reached {c['reached']}, steps ratio {srs}, seconds ratio "
              f"{trs}, final diff {c['final_difference']['mean']:+.4f}")
  for key, v in result.get("targets", {}).items():
    print(f"target {key}: {v}")
