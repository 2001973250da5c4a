"""The Dask benchmark's section (``explicit-softmax bench dask``): passes and throughput."""

from __future__ import annotations

from explicit_softmax.bench.report_common import _machine

_NAMES = {"mnist": "MNIST", "shakespeare": "bag of words"}


def dask_section(d: dict) -> str:
  """Passes over the data to the optimum per start and preconditioner, and the
  statistics' throughput and worker memory against the in-memory pass."""
  load = d.get("loadavg_before", [None])[0]
  out = [f"`explicit-softmax bench dask` ({_machine(d)}, {d['seconds_total']:.0f} s, 1-minute "
         f"load average {load:.1f} at the start) on a 2-worker `LocalCluster`; passes are "
         "distributed computes, the explicit start's statistics pass included:\n",
         f"| data | start | preconditioner | passes to rel. grad {d['tol']:g} | passes to the "
         f"optimum's held-out loss (+{100 * d['heldout_gap']:g}%) | seconds to {d['tol']:g} |",
         "| --- | --- | --- | ---: | ---: | ---: |"]
  for name, block in d["passes"].items():
    label = f"{_NAMES.get(name, name)} {block['rows']:,} x {block['features']:,}"
    for run in block["runs"]:
      out.append(f"| {label} | {run['start']} | {run['precondition']} | {run['passes_to_tol']} | "
                 f"{run['passes_to_optimum_heldout']} | {run['seconds_refine_clock']:.1f} |")
  t = d["throughput"]
  parts = [f"in memory {t['in_memory']['rows_per_second'] / 1e6:.1f} M rows/s"]
  for c in t["clusters"]:
    above = ", ".join(f"{p:.1f}" for p in c["peak_minus_before_in_partitions"])
    parts.append(f"{c['workers']} worker(s) {c['rows_per_second'] / 1e6:.2f} M rows/s (peak "
                 f"worker memory {above} partitions above its post-import baseline, statistics "
                 f"off by {c['max_relative_difference']:.1g} relative)")
  out.append(f"\nStatistics of {t['rows']:,} x {t['features']} float32 "
             f"({t['data_bytes_on_disk'] / 2**20:.0f} MiB in `.npy` chunks, worker memory limit "
             f"{t['memory_limit_bytes'] / 2**20:.0f} MiB): " + "; ".join(parts) + ".")
  return "\n".join(out) + "\n"
