"""The outputs of the benchmarks against scikit-learn: ``real.md`` (and ``tabular.md``),
the plots and the printed summary lines."""

from __future__ import annotations

import json

from explicit_softmax.bench import report
from explicit_softmax.bench import _harness
from explicit_softmax.bench.real_arms import ARMS, HEADLINE, LR, LRCV, OURS
from explicit_softmax.bench.report_real import _marks, headline_seconds


def _cell(x, spec):
  return "n/a" if x is None else format(x, spec)


def page(title: str, section: str, payload: dict) -> str:
  """A benchmark's markdown page: ``title``, the machine, then its report ``section``."""
  m = payload["machine"]
  return (f"# {title}\n\n"
          f"Machine: {m['cores']} cores, {m['cpu']}, {m['date']}, load average "
          f"{', '.join(f'{x:.1f}' for x in m.get('loadavg', []))} at the end.\n\n"
          + section.replace("benchmarks/results/", ""))


def markdown(payload: dict) -> str:
  """``real.md``: the report's real-data section (every table and verdict) on its own."""
  return page("Real data: the default classifier against scikit-learn",
              report.real_section(payload), payload)


def write_outputs(stem: str, payload: dict, out, markdown_fn, **plot_options) -> dict:
  """Writes ``STEM.json`` (with the machine facts), ``STEM.md`` and ``STEM.png`` to
  ``out``, prints the verdicts and returns the payload as written."""
  path = _harness.write_json(f"{stem}.json", payload, out)
  payload = json.loads(path.read_text())  # with the machine facts
  (path.parent / f"{stem}.md").write_text(markdown_fn(payload))
  plot(payload, path.parent / f"{stem}.png", **plot_options)
  for sentence in report.peer_verdicts(payload["targets"]):
    print(sentence)
  print(f"wrote {path}, {stem}.md and {stem}.png ({payload['total_seconds']:.0f} s)")
  return payload


def plot(payload: dict, path, *, title: str | None = None) -> None:
  """Held-out log loss against its target bound, and the seconds of the headline arms
  (the default cold, each peer's best), per data set."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sets = payload["datasets"]
  t = report.peer_targets(sets)
  names = [n for n in sets if n in t["per_dataset"]]
  if not names:
    return
  per = t["per_dataset"]
  fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(names) + 3), 8), sharex=True)
  x = range(len(names))
  colors = {OURS: "C3", LR: "C0", LRCV: "C2"}
  for key in HEADLINE:
    arms = [sets[n]["arms"].get(key, {}) for n in names]
    loss = [(i, a["log_loss"] / per[n]["log_loss_bound"]) for i, (n, a) in
            enumerate(zip(names, arms)) if a.get("status") == "ok" and a.get("log_loss")]
    style = dict(color=colors[key], marker="*" if key == OURS else "o", ls="none",
                 ms=11 if key == OURS else 6, label=ARMS[key])
    if loss:
      axes[0].plot(*zip(*loss), **style)
    seconds = []
    for i, (n, a) in enumerate(zip(names, arms)):
      s, bound = headline_seconds(key, a)
      if s is not None:
        seconds.append((i, s, bound))
    if seconds:
      axes[1].plot([i for i, _, _ in seconds], [s for _, s, _ in seconds], **style)
      bounds = [(i, s) for i, s, b in seconds if b]
      if bounds:  # a peer stopped by the timeout: at least this long
        axes[1].plot(*zip(*bounds), color=colors[key], marker="^", ls="none", ms=9)
    if key != OURS:  # the peer as users run it: cold, default threads (hollow)
      cold = [(i, a["cold_seconds"]) for i, a in enumerate(arms) if a.get("status") == "ok"]
      if cold:
        axes[1].plot(*zip(*cold), **{**style, "mfc": "none", "label": None})
  axes[0].axhline(1.0, color="k", lw=1, ls="--", label="target bound")
  axes[0].set_yscale("log")
  axes[0].set_ylabel("held-out log loss / (1.02 min(LR, LRCV) + 0.005), log scale")
  axes[1].set_yscale("log")
  axes[1].set_ylabel("fit seconds, log scale\n(default: cold; peers: best, hollow: cold)")
  from matplotlib.ticker import FormatStrFormatter, NullFormatter  # 0.8, 1, 2: not 8 x 10^-1
  for ax in axes:
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
  # The ratio spans less than a decade: label its minor ticks too, not the seconds'.
  axes[0].yaxis.set_minor_formatter(FormatStrFormatter("%g"))
  axes[1].yaxis.set_minor_formatter(NullFormatter())
  axes[1].set_xticks(list(x))
  axes[1].set_xticklabels(names, rotation=60 if len(names) > 8 else 0, ha="right"
                          if len(names) > 8 else "center", fontsize=8 if len(names) > 8 else 10)
  for ax in axes:
    ax.grid(alpha=0.3, which="both", axis="y")
  axes[0].legend(fontsize=8, loc="best")
  fig.suptitle(title or "Real data: the default against scikit-learn, each arm cold in a "
               "fresh process")
  _harness.save_figure(fig, path, dpi=110)


def _summary(d: dict) -> str:
  """One data set in a line: accuracy, log loss and seconds of the headline arms."""
  if d.get("status") != "ok":
    return f"{d['name']}: {d.get('status')} ({d.get('reason', '')})"
  parts = []
  for key in HEADLINE:
    a = d["arms"].get(key, {})
    if a.get("status") == "ok":
      best = a.get("best_seconds")
      parts.append(f"{ARMS[key]} acc {a['accuracy']:.4f} loss {_cell(a['log_loss'], '.4f')} "
                   f"cold {a['cold_seconds']:.3g} s"
                   + (f" best {best:.3g} s" if best is not None else ""))
    else:
      parts.append(f"{ARMS[key]} {a.get('status', 'missing')}")
  t = report.dataset_targets(d)
  missed = f"not compared: {t['missing']}" if "missing" in t else _marks(t)
  text = (f"{d['name']} ({d.get('process_seconds', 0):.1f} s): " + "; ".join(parts)
          + f" [targets: {missed}]")
  if d.get("starts"):
    text += "\n  starts: " + report.start_sentence(d["name"], d["starts"])
  return text

