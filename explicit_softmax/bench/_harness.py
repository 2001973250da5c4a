"""The benchmarks' shared harness: options, where results go, machine facts, timing, JSON,
errors.

Every benchmark is a module of ``es.bench``, run as
``explicit-softmax bench NAME`` (or ``python -m explicit_softmax.bench.NAME``).
Each parses its command line with ``parser``: results go to ``--out DIR``, by default
a new folder ``explicit-softmax-bench-<date>-<time>`` in the current directory,
created only when the first result is written. The results committed with the
source (``benchmarks/results`` of a checkout) are rewritten only by
``explicit-softmax bench NAME --update-committed``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import sys
import time
from importlib import metadata

import numpy as np

# The source checkout, if this is one (benchmarks/ next to the package).
REPO = pathlib.Path(__file__).resolve().parents[2]
COMMITTED = REPO / "benchmarks" / "results"


def default_out() -> str:
  """The name of a new results folder: ``explicit-softmax-bench-<date>-<time>``."""
  return time.strftime("explicit-softmax-bench-%Y%m%d-%H%M%S")


def parser(doc: str, *, quick: str | None) -> argparse.ArgumentParser:
  """A benchmark's command-line parser, with the options every benchmark shares.

  ``--out DIR`` is parsed into an absolute path, so that the child processes a
  benchmark starts get the same folder; without it, a new folder in the current
  directory (``default_out``), named when the arguments are parsed and created only
  when results are written (``output_dir``, ``write_json``): ``--help`` and a run that
  fails before its results leave nothing behind.

  Args:
    doc: the benchmark module's docstring; its first line describes the benchmark.
    quick: the help of ``--quick`` (what the reduced run leaves out); None for a
      benchmark without a reduced run.

  Returns:
    The parser, to which the benchmark adds its own options.
  """
  made = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
  if quick is not None:
    made.add_argument("--quick", action="store_true", help=quick)
  made.add_argument("--out", metavar="DIR", default=default_out(),
                    type=lambda folder: pathlib.Path(folder).resolve(),
                    help="results folder (default: a new folder "
                         "explicit-softmax-bench-DATE-TIME in the current directory)")
  return made


def use_checkout_data() -> None:
  """In a source checkout next to ``shared/data`` (the development machines), read
  data from there unless ``EXPLICIT_SOFTMAX_DATA`` says otherwise; elsewhere the
  library's own search applies (argument, environment, cache, npm)."""
  shared = REPO.parent / "shared" / "data"
  if "EXPLICIT_SOFTMAX_DATA" not in os.environ and shared.is_dir():
    os.environ["EXPLICIT_SOFTMAX_DATA"] = str(shared)


def run(main) -> None:
  """Runs a benchmark's ``main()``; a missing extra (checked first), a missing data
  file or a bad argument is one line on stderr and exit status 1, not a traceback."""
  from explicit_softmax import bench
  use_checkout_data()
  spec = getattr(sys.modules.get(main.__module__), "__spec__", None)
  module = (spec.name if spec is not None else main.__module__).rsplit(".", 1)[-1]
  names = [name for name, mod in bench.MODULES.items() if mod == module]
  try:
    for name in names:
      bench.check_extras(name)
    main()
  except (FileNotFoundError, ValueError) as err:
    print(f"explicit-softmax bench: error: {err}", file=sys.stderr)
    raise SystemExit(1) from None


def machine_facts() -> dict:
  """Cores, CPU, Python and library versions, to store with every result."""
  versions = {}
  for name in ("numpy", "scipy", "jax", "jaxlib", "optax", "scikit-learn", "flax", "torch"):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as fh:
      cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
          "platform": platform.platform(), "versions": versions,
          "date": time.strftime("%Y-%m-%d %H:%M:%S"),
          "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
          # 1, 5 and 15 minute load: other jobs may share the cores.
          "loadavg": list(os.getloadavg())}


TEXT_NAME = "tinyshakespeare.txt"
TEXT_URL = ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
            "tinyshakespeare/input.txt")


def tiny_shakespeare(path=None) -> pathlib.Path:
  """The tiny Shakespeare corpus: ``path``, else ``$EXPLICIT_SOFTMAX_TEXT``, else
  ``tinyshakespeare.txt`` in ``$EXPLICIT_SOFTMAX_DATA``, in the library's data cache,
  or in ``shared/data`` next to a source checkout.

  Raises:
    FileNotFoundError: naming where it looked and how to get the file.
  """
  from explicit_softmax.data import cache_dir
  if path is not None:
    candidates = [pathlib.Path(path)]
  else:
    candidates = [pathlib.Path(p) for p in (os.environ.get("EXPLICIT_SOFTMAX_TEXT"),) if p]
    if os.environ.get("EXPLICIT_SOFTMAX_DATA"):
      candidates.append(pathlib.Path(os.environ["EXPLICIT_SOFTMAX_DATA"]) / TEXT_NAME)
    candidates += [cache_dir("text") / TEXT_NAME, REPO.parent / "shared" / "data" / TEXT_NAME]
  for candidate in candidates:
    if candidate.is_file():
      return candidate
  raise FileNotFoundError(
      f"tiny Shakespeare not found (looked in {', '.join(map(str, candidates))}); download "
      f"{TEXT_URL} to one of them, or pass its path (--text PATH).")


def status_bytes(field: str) -> int:
  """A ``/proc/self/status`` field (``VmRSS``, ``VmHWM``, ``RssAnon``) in bytes; 0 if absent."""
  try:
    with open("/proc/self/status") as fh:
      for line in fh:
        if line.startswith(field + ":"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def peak_rss() -> int:
  """This process's peak resident set size in bytes.

  ``VmHWM`` (Linux) is the high-water mark of this process's own address space.
  ``ru_maxrss`` is the fallback elsewhere; on Linux it is not used because it
  survives fork + exec, so a child reports at least its parent's size at spawn.
  """
  return status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
  """This process's resident set size now (``VmRSS``), else its peak."""
  return status_bytes("VmRSS") or peak_rss()


def limit_threads(threads: int | None) -> None:
  """BLAS, XLA and torch threads limited to ``threads``; must run before jax and torch
  are imported (None: all cores). BLAS libraries already loaded (numpy and scipy come
  with the package) are limited through threadpoolctl, where it is installed."""
  if not threads:
    return
  for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(threads)
  try:
    import threadpoolctl
  except ImportError:  # scikit-learn's dependency; without it only the variables above act
    pass
  else:
    threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
  if threads == 1:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false"
                               " intra_op_parallelism_threads=1").strip()


def output_dir(out) -> pathlib.Path:
  """The results folder ``out`` (a benchmark's ``--out``), created if need be."""
  folder = pathlib.Path(out)
  folder.mkdir(parents=True, exist_ok=True)
  return folder


def save_figure(fig, path, *, dpi: int = 110, rect=None) -> None:
  """Lays out ``fig`` (within ``rect`` of the figure, leaving room for a legend below
  when given), writes it to ``path`` and closes it."""
  import matplotlib.pyplot as plt
  if rect is None:
    fig.tight_layout()
  else:
    fig.tight_layout(rect=rect)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def median_seconds(fn, repeats: int = 7, warmup: int = 1) -> tuple[float, list[float]]:
  """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times)), times


def write_json(name: str, payload: dict, out_dir) -> pathlib.Path:
  """Writes ``payload`` with this machine's facts to ``out_dir/name``; returns the path."""
  path = output_dir(out_dir) / name
  path.write_text(json.dumps({"machine": machine_facts(), **payload}, indent=2))
  return path


def evaluate(model, x, y) -> dict:
  """Held-out cross-entropy (nats) and accuracy of a model."""
  return {"ce": float(model.log_loss(x, y)), "acc": float(np.mean(model.predict(x) == y))}


def trajectory(start, x, y, x_test, y_test, *, method, steps, eval_every, offset=0.0,
               **refine_kwargs) -> list[dict]:
  """Runs ``es.refine`` and evaluates held-out every ``eval_every`` steps.

  Evaluation time is excluded from the clock (``refine`` stops its clock during
  callbacks); ``offset`` adds the seconds already spent (e.g. an explicit fit).

  Returns:
    Points ``{"step", "seconds", "ce", "acc", "train_loss"}``, starting with step 0.
  """
  import explicit_softmax as es
  points = [{"step": 0, "seconds": offset, **evaluate(start, x_test, y_test), "train_loss": None}]

  def callback(step, model, record):
    points.append({"step": step + 1, "seconds": offset + record["seconds"],
                   **evaluate(model, x_test, y_test), "train_loss": record["loss"]})

  # The steps between checkpoints run in one jitted loop (minibatch adam/sgd).
  es.refine(start, x, y, method=method, steps=steps, callback=callback, callback_every=eval_every,
            **refine_kwargs)
  return points


def time_to_target(points: list[dict], target: float) -> float | None:
  """The first wall time at which held-out cross-entropy is at most ``target``."""
  for p in points:
    if p["ce"] <= target:
      return p["seconds"]
  return None


def best_per_budget(runs: list[dict], budgets) -> list[dict]:
  """For each time budget, the best held-out CE over a grid of settings.

  ``runs`` are ``{"setting": ..., "points": [...]}``; peers get their best tuning
  at every budget, chosen after the fact (an upper bound on what tuning can do).
  """
  out = []
  for budget in budgets:
    best = None
    for run in runs:
      within = [p for p in run["points"] if p["seconds"] <= budget]
      if within:
        p = min(within, key=lambda q: q["ce"])
        if best is None or p["ce"] < best["ce"]:
          best = {"budget": budget, "ce": p["ce"], "acc": p["acc"], "setting": run["setting"]}
    out.append(best or {"budget": budget, "ce": None, "acc": None, "setting": None})
  return out


def warm_up_jit(x, y, n_classes, methods=("lbfgs", "adam", "sgd"), batch_size=None):
  """Compiles the jitted refinement steps once, so timed runs exclude compilation."""
  import explicit_softmax as es
  zero = es.SoftmaxModel(np.zeros((x.shape[1], n_classes)), np.zeros(n_classes))
  for method in methods:
    es.refine(zero, x, y, method=method, steps=2,
              batch_size=None if method == "lbfgs" else batch_size)


def markdown_table(curves: dict, to_target: dict, target: float) -> str:
  """One row per method: final (best) held-out CE, accuracy, time, time to target."""
  lines = [f"| method | seconds | held-out CE | accuracy | seconds to CE <= {target} |",
           "| --- | ---: | ---: | ---: | ---: |"]
  for name, points in curves.items():
    if not points:
      continue
    best = min(points, key=lambda p: p["ce"])
    reach = to_target.get(name)
    lines.append(f"| {name} | {best['seconds']:.2f} | {best['ce']:.4f} | {best['acc']:.4f} | "
                 f"{'never' if reach is None else f'{reach:.2f}'} |")
  return "\n".join(lines) + "\n"


def plot_curves(curves: dict, path, *, title: str, target: float | None = None,
                floor: float | None = None, groups: list | None = None,
                reference: str | None = None, note: str = "") -> None:
  """Held-out cross-entropy and accuracy against wall time (log-scaled), one line per method.

  One row of two panels (cross-entropy, accuracy) per group of ``groups``
  (``(title, names)`` pairs; default: one row of every curve), each row with its
  own legend below it, so that no legend outgrows the page: ten colours per
  row, then the same colours dashed. ``reference`` (a curve's name) is drawn in
  black in every row, as the yardstick the others are read against. The rows
  share their axes. Cross-entropy is on a log axis, so that the spread near the
  target is visible beside starts several times higher.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  with plt.rc_context({"font.size": 11}):  # legible at the documentation's page width
    _plot_curve_rows(plt, curves, path, title=title, target=target, floor=floor,
                     groups=groups or [("", list(curves))], reference=reference, note=note)


def _plot_curve_rows(plt, curves, path, *, title, target, floor, groups, reference, note):
  from matplotlib.ticker import FormatStrFormatter

  legend_rows = [-(-(len(names) + (reference is not None) + 1) // 2) for _, names in groups]
  heights = [h for rows in legend_rows for h in (4.0, 0.22 * rows)]
  fig = plt.figure(figsize=(10, sum(heights) + 0.8 * len(groups)))
  grid = fig.add_gridspec(2 * len(groups), 2, height_ratios=heights, hspace=0.4)
  colors = plt.get_cmap("tab10").colors
  axes = []
  for row, (group, names) in enumerate(groups):
    # Every row on the same axes as the first, so that the rows compare.
    first = axes[0] if axes else (None, None)
    ax_ce = fig.add_subplot(grid[2 * row, 0], sharex=first[0], sharey=first[0])
    ax_acc = fig.add_subplot(grid[2 * row, 1], sharex=first[1], sharey=first[1])
    legend_ax = fig.add_subplot(grid[2 * row + 1, :])
    legend_ax.axis("off")
    axes.append((ax_ce, ax_acc))
    drawn = [n for n in names if n in curves] + ([reference] if reference in curves
                                                 and reference not in names else [])
    for i, name in enumerate(drawn):
      pts = [p for p in curves[name] if p.get("seconds", 0) > 0]
      if not pts:
        continue
      t = [p["seconds"] for p in pts]
      ref = name == reference and name not in names
      style = dict(color="k" if ref else colors[i % 10], ms=4 if len(pts) > 1 else 7,
                   label="best explicit pipeline (reference)" if ref else name,
                   lw=2 if ref else 1.2, marker="." if len(pts) > 1 else "osD^"[i // 10 % 4],
                   ls=("-", "--")[i // 10 % 2] if len(pts) > 1 else "none")
      ax_ce.plot(t, [p["ce"] for p in pts], **style)
      ax_acc.plot(t, [p["acc"] for p in pts], **style)
    for ax, label in ((ax_ce, "held-out cross-entropy (nats)"), (ax_acc, "held-out accuracy")):
      ax.set_xscale("log")
      ax.set_xlabel("wall-clock seconds (log scale)")
      ax.set_ylabel(label)
      ax.grid(alpha=0.3, which="both")
    if group:
      fig.text(0.5, ax_ce.get_position().y1 + 0.01, group, ha="center", va="bottom",
               fontsize=12, fontweight="bold")
    ax_ce.set_yscale("log")  # plain 0.3, 0.4, ... not 3 x 10^-1
    ax_ce.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax_ce.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    if target is not None:
      ax_ce.axhline(target, color="k", ls="--", lw=1, label=f"target {target}")
    if floor is not None:
      ax_ce.axhline(floor, color="r", ls=":", lw=1, label=f"entropy rate {floor:.3f}")
    handles, labels = ax_ce.get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="upper center", ncol=2, fontsize=10, frameon=False,
                     bbox_to_anchor=(0.5, 1.0))
  fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=12)
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
