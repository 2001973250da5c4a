"""The initialisation benchmark's output: the printed tables and the plot."""

from __future__ import annotations

import pathlib

from explicit_softmax.bench import _harness
from explicit_softmax.bench.init_lm import LM_ARMS
from explicit_softmax.bench.init_mnist import ARMS


def print_tables(result: dict) -> None:
  mnist = result.get("mnist")
  if mnist:
    print("\nMNIST 784-256-10 ReLU, Adam lr 1e-3 batch 128: test accuracy / cross-entropy "
          "(mean ± std over seeds)")
    steps = ["0"] + [str(s) for s in mnist["budgets"]]
    for fw in (f for f in ("torch", "flax") if f in mnist):
      print(f"  [{fw}]  " + " | ".join(f"step {s:>4}" for s in steps) + " | init s")
      for arm in ARMS:
        cells = []
        for s in steps:
          r = mnist[fw][arm]["by_step"][s]
          cells.append(f"{100 * r['accuracy']['mean']:.2f}±{100 * r['accuracy']['std']:.2f}% "
                       f"{r['cross_entropy']['mean']:.3f}±{r['cross_entropy']['std']:.3f}")
        print(f"  {arm:>14}: " + " | ".join(cells)
              + f" | {mnist[fw][arm]['init_seconds']['mean']:.1f}")
  lm = result.get("lm")
  if lm:
    print(f"\nToy LMs (d={lm['d']}, Adam lr 1e-3, batch 128, {lm['steps']} steps): held-out CE"
          " and steps / seconds (init included) to reach the targets")
    for name in ("markov", "shakespeare"):
      entry = lm[name]
      print(f"  [{name}] explicit full-rank CE {entry['explicit_full_rank_ce']:.3f}"
            + (f", entropy rate {entry['entropy_rate']:.3f}" if "entropy_rate" in entry else ""))
      for fw in (f for f in ("torch", "flax") if f in entry):
        r = entry[fw]
        print(f"    {fw}: targets " + ", ".join(f"{k}={v:.3f}" for k, v in r["targets"].items()))
        for arm in LM_ARMS:
          a = r[arm]
          reach = []
          for tname, hit in a["to_target"].items():
            if hit["steps"] is None:
              reach.append(f"{tname}: not reached")
            else:
              reach.append(f"{tname}: {hit['steps']['mean']:.0f} steps "
                           f"{hit['seconds']['mean']:.2f}s ({hit['reached']})")
          print(f"      {arm:>6}: CE {a['ce_start']['mean']:.3f} -> {a['ce_end']['mean']:.3f}"
                f"±{a['ce_end']['std']:.3f}; " + "; ".join(reach))


def plot(result: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, 2, figsize=(12, 9))
  colors = dict(zip(ARMS + LM_ARMS, ["tab:gray", "tab:blue", "tab:green", "tab:orange",
                                     "tab:blue", "tab:gray"]))
  styles = {"torch": "-", "flax": "--"}
  mnist = result.get("mnist")
  if mnist:
    steps = [0] + mnist["budgets"]
    for fw in (f for f in ("torch", "flax") if f in mnist):
      for arm in ARMS:
        for ax, key, scale in ((axes[0, 0], "accuracy", 100), (axes[0, 1], "cross_entropy", 1)):
          rows = [mnist[fw][arm]["by_step"][str(s)][key] for s in steps]
          ax.errorbar(steps, [scale * r["mean"] for r in rows],
                      yerr=[scale * r["std"] for r in rows], color=colors[arm],
                      linestyle=styles[fw], marker="x" if arm == "residual" else "o",
                      ms=6 if arm == "residual" else 3, lw=0.8 if arm == "residual" else 1.5,
                      capsize=2, label=f"{arm} ({fw})")
    axes[0, 0].set(title="MNIST MLP: test accuracy", xlabel="Adam steps",
                   ylabel="accuracy (%)", ylim=(80, 100))
    axes[0, 1].set(title="MNIST MLP: test cross-entropy", xlabel="Adam steps",
                   ylabel="nats", yscale="log")
    axes[0, 0].legend(fontsize=7, ncol=2)
  lm = result.get("lm")
  if lm:
    for ax, name in ((axes[1, 0], "markov"), (axes[1, 1], "shakespeare")):
      entry = lm[name]
      for fw in (f for f in ("torch", "flax") if f in entry):
        r = entry[fw]
        for arm in LM_ARMS:
          ax.plot(r["step_axis"], r[arm]["curve_mean"], color=colors[arm],
                  linestyle=styles[fw], label=f"{arm} ({fw})")
      ax.axhline(entry["explicit_full_rank_ce"], color="k", lw=0.8, ls=":",
                 label="explicit full rank")
      if "entropy_rate" in entry:
        ax.axhline(entry["entropy_rate"], color="tab:red", lw=0.8, ls=":",
                   label="entropy rate")
      ax.set(title=f"LM d={lm['d']} ({name}, K={entry['n_context']}, V={entry['vocab_size']})",
             xlabel="Adam steps", ylabel="held-out cross-entropy (nats)")
      ax.legend(fontsize=7)
  _harness.save_figure(fig, path, dpi=120)
