"""The real-data benchmark's output: ``real.md``, ``real.png`` and the printed summary."""

from __future__ import annotations

import json

from explicit_softmax.bench import report
from explicit_softmax.bench.real_arms import ARMS
from explicit_softmax.bench import _harness


def _cell(x, spec):
  return "n/a" if x is None else format(x, spec)


def markdown(payload: dict) -> str:
  """``real.md``: every arm of every data set, then the targets' verdicts."""
  m = payload["machine"]
  lines = ["# Real data: the default classifier against scikit-learn\n",
           f"Machine: {m['cores']} cores, {m['cpu']}, {m['date']}. Cold: first fit in a fresh "
           "process (JAX compilation included for the library's first arm, imports excluded); "
           f"warm: median of {payload['config']['warm_repeats']} further fits.\n"]
  for name, d in payload["datasets"].items():
    if d["status"] != "ok":
      lines.append(f"**{name}**: {d['status']} ({d.get('reason', '')}).\n")
      continue
    lines.append(f"## {name}\n")
    lines.append(f"{d['n_train']:,} train / {d['n_test']:,} test, {d['n_features']:,} features, "
                 f"{d['n_classes']} classes; {d['features']}; {d['split']}. Imports: scikit-learn "
                 f"{d['peer_import_seconds']:.2f} s, then the library {d['import_seconds']:.2f} s; "
                 f"process {d['process_seconds']:.1f} s.\n")
    lines.append("| arm | accuracy | log loss | cold s | warm s | notes |")
    lines.append("| --- | ---: | ---: | ---: | ---: | --- |")
    for a in d["arms"].values():
      if a["status"] != "ok":
        reason = a["reason"].strip().splitlines()[0][:160].replace("|", "\\|")
        lines.append(f"| {a['label']} | | | | | {a['status']}: {reason} |")
        continue
      notes = []
      if "C" in a:
        notes.append(f"C = {a['C']:g}")
      if "n_iter" in a:
        notes.append(f"{a['n_iter']} iterations")
      if a["convergence_warning"]:
        notes.append("ConvergenceWarning")
      if len(a["warm_runs"]) < payload["config"]["warm_repeats"]:
        notes.append(f"no warm fits (cold > {payload['config']['warm_cap_seconds']:g} s)")
      lines.append(f"| {a['label']} | {a['accuracy']:.4f} | {_cell(a['log_loss'], '.4f')} | "
                   f"{a['cold_seconds']:.3f} | {_cell(a['warm_seconds'], '.3f')} | "
                   f"{'; '.join(notes)} |")
    lines.append("")
  starts = report.start_section(payload)
  if starts:
    lines.append(starts)
  lines.append("## Targets\n")
  lines.extend(f"- {s}" for s in report.real_verdicts(payload["targets"]))
  params = payload.get("default_params")
  if params:
    lines.append(f"\nDefault parameters: `{json.dumps(params)}`.")
  return "\n".join(lines) + "\n"


def plot(payload: dict, path) -> None:
  """Held-out log loss and fit seconds (cold filled, warm hollow) per data set and arm."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.lines import Line2D

  names = [n for n, d in payload["datasets"].items() if d["status"] == "ok"]
  if not names:
    return
  fig, axes = plt.subplots(1, 2, figsize=(14, 6))
  colors = plt.get_cmap("tab10").colors
  keys = list(ARMS)
  width = 0.8 / len(keys)
  handles = []
  for i, key in enumerate(keys):
    # The headline arm stands out: a larger star.
    style = dict(color=colors[i % 10], marker="*" if key == "explicit_default" else "o",
                 ls="none", ms=12 if key == "explicit_default" else 6)
    pts = [(j, payload["datasets"][n]["arms"].get(key, {})) for j, n in enumerate(names)]
    pts = [(j - 0.4 + (i + 0.5) * width, a) for j, a in pts if a.get("status") == "ok"]
    loss = [(p, a["log_loss"]) for p, a in pts if a["log_loss"] is not None]
    if loss:
      axes[0].plot(*zip(*loss), **style)
    if pts:
      handles.append(Line2D([], [], label=ARMS[key], **style))
      axes[1].plot([p for p, _ in pts], [a["cold_seconds"] for _, a in pts], **style)
      warm = [(p, a["warm_seconds"]) for p, a in pts if a["warm_seconds"]]
      if warm:
        axes[1].plot(*zip(*warm), **{**style, "mfc": "none"})
  for ax, label in zip(axes, ("held-out log loss (nats, log scale)",
                              "fit seconds, log scale (filled: cold, hollow: warm)")):
    ax.set_yscale("log")
    ax.set_ylabel(label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    for j in range(len(names) - 1):
      ax.axvline(j + 0.5, color="0.85", lw=0.8)
    ax.grid(alpha=0.3, which="both", axis="y")
  fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
  fig.suptitle("Real data: each data set in a fresh process, same split for every arm")
  _harness.save_figure(fig, path, dpi=110, rect=(0, 0.1, 1, 1))


def _summary(d: dict) -> str:
  if d["status"] != "ok":
    return f"{d['name']}: {d['status']} ({d.get('reason', '')})"
  parts = []
  for key in ("explicit_default", "logreg"):
    a = d["arms"][key]
    parts.append(f"{a['label']} " + (
        f"acc {a['accuracy']:.4f} loss {_cell(a['log_loss'], '.4f')} cold "
        f"{a['cold_seconds']:.2f} s warm "
        + ("n/a" if a["warm_seconds"] is None else f"{a['warm_seconds']:.3f} s")
        if a["status"] == "ok" else a["status"]))
  text = f"{d['name']} ({d['process_seconds']:.1f} s): " + "; ".join(parts)
  if d.get("starts"):
    text += "\n  starts: " + report.start_sentence(d["name"], d["starts"])
  return text
