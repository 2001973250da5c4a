"""Dask as the data engine (issue 17): passes to the optimum, throughput, worker memory.

(a) Passes. On a ``distributed.LocalCluster`` (2 workers, 1 thread each, data
    persisted in the workers), ``es.refine`` runs float64 L-BFGS with one
    distributed pass per loss-and-gradient evaluation. For MNIST (official
    train/test, pixels / 255) and a wide sparse bag of words (tiny
    Shakespeare's ten most frequent speakers, ``CountVectorizer()`` counts, as
    in ``bench_real.py``), at ``l2 = 1 / T`` (scikit-learn's ``C = 1``), from
    zero and from the explicit start (Newton for MNIST; co-occurrence for the
    bag of words, whose Gram matrix would not fit), with the core's two
    full-batch variants (``precondition="standardize"``, the default, and
    ``precondition=True``, the Gram preconditioner of the Newton closed form;
    not offered above 8,191 features): the distributed passes (counted at the
    scheduler, every compute of the run) until the relative gradient norm is
    1e-4 and until the held-out log loss is within 0.1% of that of the
    optimum (refined in memory to 1e-7), beside wall time.
(b) Throughput and memory. A synthetic data set larger than one worker's
    memory limit (``--rows`` x 64 float32, in ``.npy`` chunk files written by
    ``dask.array.to_npy_stack``) streamed through ``SoftmaxStats.from_data`` on
    LocalClusters of 1 and 2 workers (``memory_limit`` 512 MB each: a worker
    that has imported the library already holds about 230 MB), against the
    in-memory pass; peak resident memory of each worker (sampled every 5 ms
    in the worker) against the size of one partition.

The machine's 2 cores are shared with other jobs: the JSON records
``os.getloadavg()`` before and after.

Run: ``explicit-softmax bench dask [--out DIR]`` (``dask.json`` and ``dask.png`` into
``--out``; there is no ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time

import numpy as np

from explicit_softmax.bench import _harness as _common
from explicit_softmax.bench import real as bench_real

TOL = 1e-4
STEPS = 500
HELDOUT_GAP = 1e-3  # "reached the optimum's held-out log loss": within 0.1%


class _Counter:
  """A scheduler ``get`` that counts the computes (the passes over the data)."""

  def __init__(self, client):
    self.client, self.count = client, 0

  def __call__(self, *args, **kwargs):
    self.count += 1
    return self.client.get(*args, **kwargs)


def passes(client, name, x, y, x_te, y_te, explicit: str, rows: int) -> dict:
  """Part (a) on one data set: every start x preconditioner, passes and seconds."""
  import dask
  import dask.array as da
  import explicit_softmax as es
  import scipy.sparse as sp
  m, n, t = int(y.max()) + 1, x.shape[1], x.shape[0]
  l2 = 1.0 / t
  sparse = sp.issparse(x)
  X = da.from_array(x, chunks=(rows, -1), asarray=not sparse).persist()
  Y = da.from_array(y, chunks=rows).persist()
  zero = es.SoftmaxModel(np.zeros((n, m)), np.zeros(m), info={"method": "zero"})
  tight = es.refine(zero, x, y, steps=3000, tol=1e-7, l2=l2, precondition="standardize")
  optimum_loss = float(tight.log_loss(x_te, y_te))
  out = {"rows": t, "features": n, "classes": m, "partition_rows": rows, "l2": l2,
         "optimum": {"heldout_log_loss": optimum_loss, "record": tight.info["refine"]},
         "runs": []}
  counter = _Counter(client)
  for start in ("zero", explicit):
    for precondition in ("standardize", True):
      if precondition is True and n + 1 > 8191:
        out["runs"].append({"start": start, "precondition": "gram", "skipped":
                            f"precondition=True needs an ({n + 1})^2 factor: above 8,191 "
                            "features the core offers only 'standardize'"})
        continue
      counter.count = 0
      heldout = []
      with dask.config.set(scheduler=counter):
        began = time.perf_counter()
        model = zero if start == "zero" else es.fit(X, Y, n_classes=m, method=start)
        start_seconds = time.perf_counter() - began

        def callback(step, current, record):
          heldout.append({"step": step + 1, "passes": counter.count,
                          "seconds": start_seconds + record["seconds"],
                          "heldout_log_loss": float(current.log_loss(x_te, y_te))})

        run = es.refine(model, X, Y, steps=STEPS, tol=TOL, l2=l2, precondition=precondition,
                        callback=callback)
        seconds = time.perf_counter() - began  # includes the held-out evaluations
      record = run.info["refine"]
      reach = next((h for h in heldout
                    if h["heldout_log_loss"] <= optimum_loss * (1 + HELDOUT_GAP)), None)
      start_loss = float(model.log_loss(x_te, y_te))
      out["runs"].append({
          "start": start, "precondition": "gram" if precondition is True else precondition,
          "start_heldout_log_loss": start_loss,
          "passes_to_tol": counter.count if record["converged"] else None,
          "passes_total": counter.count, "refine_passes": record["passes"],
          "evaluations": record["evaluations"], "steps": record["steps"],
          "converged": record["converged"], "reason": record["reason"],
          "relative_grad_norm": record["relative_grad_norm"],
          "seconds_refine_clock": start_seconds + float(run.history.seconds[-1]),
          "seconds_wall_with_heldout_evaluations": seconds,
          "final_heldout_log_loss": float(run.log_loss(x_te, y_te)),
          "passes_to_optimum_heldout": None if reach is None else reach["passes"],
          "seconds_to_optimum_heldout": None if reach is None else reach["seconds"],
          "heldout_curve": heldout})
      print(name, out["runs"][-1]["start"], out["runs"][-1]["precondition"],
            {k: out["runs"][-1][k] for k in ("passes_to_tol", "passes_to_optimum_heldout",
                                             "steps", "seconds_refine_clock")}, flush=True)
  return out


def throughput(rows: int, repeats: int) -> dict:
  """Part (b): statistics passes over ``.npy`` chunk files on 1 and 2 workers, and in memory."""
  import dask
  import dask.array as da
  import distributed
  import explicit_softmax as es
  n, m, part = 64, 10, 50_000
  tmp = tempfile.TemporaryDirectory(prefix="bench_dask_")
  root = pathlib.Path(tmp.name)
  rng = da.random.default_rng(0)
  x = rng.random((rows, n), dtype=np.float32, chunks=(part, n))
  y = rng.integers(0, m, rows, chunks=part)
  with dask.config.set(scheduler="threads", num_workers=1):
    da.to_npy_stack(root / "x", x)
    da.to_npy_stack(root / "y", y)
  file_bytes = sum(f.stat().st_size for f in (root / "x").glob("*.npy"))
  out = {"rows": rows, "features": n, "classes": m, "partition_rows": part,
         "partition_bytes_float32": part * n * 4, "data_bytes_on_disk": file_bytes,
         "memory_limit_bytes": 512 * 2**20, "repeats": repeats, "clusters": []}

  # In memory: the whole array in this process.
  xs = np.concatenate([np.load(root / "x" / f"{i}.npy") for i in range(-(-rows // part))])
  ys = np.concatenate([np.load(root / "y" / f"{i}.npy") for i in range(-(-rows // part))])
  reference = es.SoftmaxStats.from_data(xs, ys, n_classes=m)
  seconds, _ = _common.median_seconds(lambda: es.SoftmaxStats.from_data(xs, ys, n_classes=m),
                                      repeats=repeats)
  out["in_memory"] = {"seconds": seconds, "rows_per_second": rows / seconds}
  del xs, ys
  print("in memory", out["in_memory"], flush=True)

  for workers in (1, 2):
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  memory_limit="512MB", dashboard_address=None) as cluster, \
        distributed.Client(cluster) as client:
      X = da.from_npy_stack(str(root / "x"), mmap_mode="r")
      Y = da.from_npy_stack(str(root / "y"), mmap_mode="r")
      client.run(_import_library)
      baseline = client.run(_rss)
      client.run(_start_sampler)
      stats = es.SoftmaxStats.from_data(X, Y, n_classes=m)  # warm-up pass
      seconds, times = _common.median_seconds(
          lambda: es.SoftmaxStats.from_data(X, Y, n_classes=m), repeats=repeats, warmup=0)
      peaks = client.run(_stop_sampler)
      diff = float(np.max(np.abs(stats.cooccurrence - reference.cooccurrence) /
                          np.abs(reference.cooccurrence)))
      entry = {"workers": workers, "seconds": seconds, "times": times,
               "rows_per_second": rows / seconds, "max_relative_difference": diff,
               "worker_rss_before_bytes": sorted(baseline.values()),
               "worker_peak_rss_bytes": sorted(peaks.values()),
               "peak_minus_before_in_partitions": sorted(
                   (peaks[k] - baseline[k]) / out["partition_bytes_float32"] for k in peaks)}
      out["clusters"].append(entry)
      print("workers", workers, {k: entry[k] for k in ("seconds", "rows_per_second",
                                                        "peak_minus_before_in_partitions")},
            flush=True)
  tmp.cleanup()
  return out


def _import_library():
  import explicit_softmax  # noqa: F401  (so that the baseline includes the library)


def _rss() -> int:
  import psutil
  return int(psutil.Process().memory_info().rss)


# Peak resident memory of a worker, sampled every 5 ms by a thread in the worker
# (ru_maxrss would report the nanny's parent's peak: it is inherited at fork).
def _start_sampler(dask_worker=None):
  import threading
  import psutil
  process, state = psutil.Process(), {"peak": 0, "run": True}

  def sample():
    while state["run"]:
      state["peak"] = max(state["peak"], process.memory_info().rss)
      time.sleep(0.005)

  state["thread"] = threading.Thread(target=sample, daemon=True)
  state["thread"].start()
  dask_worker.bench_rss_sampler = state


def _stop_sampler(dask_worker=None) -> int:
  state = dask_worker.bench_rss_sampler
  state["run"] = False
  state["thread"].join()
  return int(state["peak"])


def plot(result: dict, path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
  labels, to_tol, to_heldout = [], [], []
  for name, res in result["passes"].items():
    for run in res["runs"]:
      if "skipped" in run:
        continue
      labels.append(f"{name}\n{run['start']}, {run['precondition']}")
      to_tol.append(run["passes_to_tol"] or np.nan)
      to_heldout.append(run["passes_to_optimum_heldout"] or np.nan)
  at = np.arange(len(labels))
  axes[0].bar(at - 0.2, to_tol, 0.4, label=f"to relative gradient norm {TOL:g}")
  axes[0].bar(at + 0.2, to_heldout, 0.4, label="to the optimum's held-out log loss (+0.1%)")
  axes[0].set_xticks(at, labels, fontsize=7, rotation=45, ha="right")
  axes[0].set_ylabel("passes over the data (distributed computes)")
  axes[0].legend(fontsize=8)
  axes[0].set_title("(a) passes on a 2-worker LocalCluster")
  tp = result["throughput"]
  workers = [c["workers"] for c in tp["clusters"]]
  axes[1].plot(workers, [c["rows_per_second"] for c in tp["clusters"]], "o-",
               label="LocalCluster, .npy chunks")
  axes[1].axhline(tp["in_memory"]["rows_per_second"], color="k", ls="--", label="in memory")
  axes[1].set_xticks(workers)
  axes[1].set_xlabel("workers (1 thread each)")
  axes[1].set_ylabel("rows per second (statistics pass)")
  axes[1].legend(fontsize=8)
  axes[1].set_title(f"(b) {tp['rows']:,} x {tp['features']} float32 "
                    f"({tp['data_bytes_on_disk'] / 2**20:.0f} MiB)")
  for c in tp["clusters"]:
    axes[2].scatter([c["workers"]] * len(c["worker_peak_rss_bytes"]),
                    np.array(c["worker_peak_rss_bytes"]) / 2**20, label=f"{c['workers']} workers")
  axes[2].axhline(tp["memory_limit_bytes"] / 2**20, color="r", ls=":", label="memory limit")
  axes[2].axhline(tp["data_bytes_on_disk"] / 2**20, color="k", ls="--", label="data set")
  axes[2].set_xticks(workers)
  axes[2].set_ylabel("peak resident MiB per worker")
  axes[2].legend(fontsize=8)
  axes[2].set_title(f"partition {tp['partition_bytes_float32'] / 2**20:.1f} MiB")
  _common.save_figure(fig, path, dpi=110)


def main(argv=None) -> None:
  parser = _common.parser(__doc__, quick=None)
  parser.add_argument("--rows", type=int, default=2_400_000,
                      help="rows of the synthetic data of part (b) (64 float32 features)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--datasets", nargs="*", default=["mnist", "shakespeare"])
  args = parser.parse_args(argv)
  import distributed
  began = time.perf_counter()
  load_before = os.getloadavg()
  result = {"tol": TOL, "steps": STEPS, "heldout_gap": HELDOUT_GAP, "passes": {}}
  with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                dashboard_address=None) as cluster, \
      distributed.Client(cluster) as client:
    for name in args.datasets:
      data_args = argparse.Namespace(mnist_rows=None, text=None)
      x, y, x_te, y_te, info = bench_real.load(name, data_args)
      classes, y = np.unique(y, return_inverse=True)
      y_te = np.searchsorted(classes, y_te)
      explicit = "newton" if name == "mnist" else "cooccurrence"
      rows = -(-x.shape[0] // 8)  # 8 partitions
      result["passes"][name] = {"data": info, **passes(client, name, x, y, x_te, y_te,
                                                       explicit, rows)}
  result["throughput"] = throughput(args.rows, args.repeats)
  result["seconds_total"] = time.perf_counter() - began
  result["loadavg_before"], result["loadavg_after"] = load_before, os.getloadavg()
  path = _common.write_json("dask.json", result, args.out)
  plot(result, path.with_suffix(".png"))
  print(f"wrote {path} and {path.with_suffix('.png')} in {result['seconds_total']:.0f} s")


if __name__ == "__main__":
  _common.run(main)
