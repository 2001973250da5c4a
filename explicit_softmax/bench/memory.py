"""Peak memory of fitting from a memory-mapped file ten times larger than one batch.

Writes a (10 B, N) float32 array and its labels to a temporary directory, then
measures, each in a fresh subprocess, the peak resident set size (``VmHWM``;
``ru_maxrss`` would include the parent's size, as it survives fork + exec) of
``SoftmaxStats.from_batches`` + ``es.solve`` over batches of B rows:

* ``fresh-memmap``: every batch is its own ``np.memmap(path, offset=...)``,
  dropped after use, so resident memory stays about one batch;
* ``sliced-memmap``: slices of one ``np.memmap`` of the whole file. The data read
  is still one batch at a time, but pages already read stay mapped and count as
  (file-backed, reclaimable) resident memory, so the peak RSS grows towards the
  file size when memory is plentiful; its anonymous memory (``RssAnon``) stays
  small. Both numbers are reported;
* ``in-memory``: the whole array loaded with ``np.fromfile``, for contrast;
* ``one-batch``: ``SoftmaxStats.from_data`` on one batch held in memory: the
  floor any streamed fit must pay.

Writes ``memory.json`` and ``memory.png`` into ``--out``.

Usage: explicit-softmax bench memory [--quick] [--out DIR] [-- --batch-rows 131072
       --features 128 --classes 10 --batches 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from explicit_softmax.bench._harness import write_json  # noqa: E402
from explicit_softmax.bench import _harness  # noqa: E402

MODES = ("one-batch", "fresh-memmap", "sliced-memmap", "in-memory")


def child(mode: str, directory: str, rows: int, n: int, m: int, batches: int) -> dict:
  import explicit_softmax as es

  # Warm up imports, BLAS and the solver on a small problem, so that one-off
  # allocations are part of the baseline, not of the measurement.
  warm = np.random.default_rng(0).random((4096, n), dtype=np.float32)
  es.solve(es.SoftmaxStats.from_data(warm, np.arange(4096) % m, n_classes=m))
  del warm
  baseline = _harness.status_bytes("VmRSS")
  baseline_anon = _harness.status_bytes("RssAnon")
  x_path, y_path = os.path.join(directory, "x.f32"), os.path.join(directory, "y.i32")
  total = rows * batches
  anon_peak = [baseline_anon]

  def observe():
    anon_peak[0] = max(anon_peak[0], _harness.status_bytes("RssAnon"))

  def fresh():
    for b in range(batches):
      x = np.memmap(x_path, np.float32, "r", offset=b * rows * n * 4, shape=(rows, n))
      y = np.memmap(y_path, np.int32, "r", offset=b * rows * 4, shape=(rows,))
      yield x, y
      observe()
      del x, y

  def sliced():
    x = np.memmap(x_path, np.float32, "r", shape=(total, n))
    y = np.memmap(y_path, np.int32, "r", shape=(total,))
    for b in range(batches):
      yield x[b * rows:(b + 1) * rows], y[b * rows:(b + 1) * rows]
      observe()

  start = time.perf_counter()
  if mode == "fresh-memmap":
    stats = es.SoftmaxStats.from_batches(fresh(), n_classes=m)
  elif mode == "sliced-memmap":
    stats = es.SoftmaxStats.from_batches(sliced(), n_classes=m)
  elif mode == "in-memory":
    x = np.fromfile(x_path, np.float32).reshape(total, n)
    y = np.fromfile(y_path, np.int32)
    stats = es.SoftmaxStats.from_data(x, y, n_classes=m)
    observe()
  elif mode == "one-batch":
    x = np.fromfile(x_path, np.float32, count=rows * n).reshape(rows, n)
    y = np.fromfile(y_path, np.int32, count=rows)
    stats = es.SoftmaxStats.from_data(x, y, n_classes=m)
    observe()
  else:
    raise ValueError(mode)
  model = es.solve(stats)
  seconds = time.perf_counter() - start
  observe()
  return {"mode": mode, "samples": stats.n_samples, "seconds": seconds,
          "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
          "samples_per_second": stats.n_samples / seconds,
          "baseline_rss_bytes": baseline, "peak_rss_bytes": _harness.peak_rss(),
          "peak_minus_baseline_bytes": _harness.peak_rss() - baseline,
          "baseline_anon_bytes": baseline_anon, "peak_anon_sampled_bytes": anon_peak[0],
          "model_shape": list(model.weights.shape)}


def _write_data(directory: str, rows: int, n: int, m: int, batches: int, seed: int) -> None:
  """The data set, written batch by batch (never whole in this process's memory)."""
  rng = np.random.default_rng(seed)
  proto = rng.normal(size=(m, n)).astype(np.float32)
  with open(os.path.join(directory, "x.f32"), "wb") as fx, \
       open(os.path.join(directory, "y.i32"), "wb") as fy:
    for _ in range(batches):
      y = rng.integers(0, m, rows).astype(np.int32)
      x = np.maximum(proto[y] + rng.normal(size=(rows, n)).astype(np.float32), 0)
      x[:, 0] += 0.01
      fx.write(x.tobytes())
      fy.write(y.tobytes())


def _plot(runs, batch_bytes, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  names = [r["mode"] for r in runs]
  extra = [r["peak_minus_baseline_bytes"] / batch_bytes for r in runs]
  anon = [(r["peak_anon_sampled_bytes"] - r["baseline_anon_bytes"]) / batch_bytes for r in runs]
  pos = np.arange(len(runs))
  ax.bar(pos - 0.2, extra, 0.4, label="peak RSS - baseline (VmHWM)")
  ax.bar(pos + 0.2, anon, 0.4, label="anonymous memory growth (sampled)")
  ax.axhline(1.0, color="gray", ls=":", lw=1, label="one batch")
  ax.set_xticks(pos, names)
  ax.set_ylabel("memory / one batch")
  ax.set_title("Fitting 10 batches of data: extra resident memory")
  ax.legend(fontsize=8)
  _harness.save_figure(fig, path, dpi=120)


def main(argv=None):
  parser = _harness.parser(__doc__, quick="16,384-row batches")
  parser.add_argument("--batch-rows", type=int, default=131_072)
  parser.add_argument("--features", type=int, default=128)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--batches", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
  parser.add_argument("--dir", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.quick:
    args.batch_rows = 16_384
  if args.child:
    print(json.dumps(child(args.child, args.dir, args.batch_rows, args.features, args.classes,
                           args.batches)))
    return None

  n, m, rows = args.features, args.classes, args.batch_rows
  batch_bytes = rows * n * 4 + rows * 4
  stats_bytes = 8 * (n * m + m)
  directory = tempfile.mkdtemp(prefix="es-bench-memory-")
  runs = []
  try:
    _write_data(directory, rows, n, m, args.batches, args.seed)
    for mode in MODES:
      cmd = [sys.executable, "-m", "explicit_softmax.bench.memory", "--child", mode, "--dir", directory,
             "--batch-rows", str(rows), "--features", str(n), "--classes", str(m),
             "--batches", str(args.batches)]
      proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
      if proc.returncode:
        raise RuntimeError(f"{mode} failed:\n{proc.stderr[-3000:]}")
      run = json.loads(proc.stdout.strip().splitlines()[-1])
      run["peak_minus_baseline_batches"] = run["peak_minus_baseline_bytes"] / batch_bytes
      run["anon_growth_batches"] = ((run["peak_anon_sampled_bytes"] - run["baseline_anon_bytes"])
                                    / batch_bytes)
      runs.append(run)
      print(f"{mode:>14}: peak RSS {run['peak_rss_bytes'] / 2**20:7.1f} MiB = baseline "
            f"{run['baseline_rss_bytes'] / 2**20:6.1f} + "
            f"{run['peak_minus_baseline_bytes'] / 2**20:6.1f} MiB "
            f"({run['peak_minus_baseline_batches']:.2f} batches; anonymous growth "
            f"{run['anon_growth_batches']:.2f} batches), "
            f"{run['samples_per_second'] / 1e6:.2f} M samples/s")
  finally:
    shutil.rmtree(directory, ignore_errors=True)
  png = str(_harness.output_dir(args.out) / "memory.png")
  _plot(runs, batch_bytes, png)
  result = {
      "shape": {"batch_rows": rows, "features": n, "classes": m, "batches": args.batches},
      "batch_bytes": batch_bytes, "data_bytes": batch_bytes * args.batches,
      "statistics_bytes": stats_bytes,
      "what": "peak resident memory (VmHWM) of SoftmaxStats.from_batches + solve in a "
              "fresh process, minus its resident memory after imports and a 4,096-row "
              "warm-up fit that allocates BLAS's work buffers (baseline); anonymous memory "
              "(RssAnon) sampled after each batch",
      "runs": runs, "plot": os.path.basename(png),
  }
  path = write_json("memory.json", result, args.out)
  print(f"wrote {path} and {png}")
  return result


if __name__ == "__main__":
  _harness.run(main)
