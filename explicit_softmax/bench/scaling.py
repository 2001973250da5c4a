"""Statistics throughput against the number of devices (forced CPU host devices).

For each device count D in 1, 2, 4, 8, a fresh subprocess starts JAX with
``XLA_FLAGS=--xla_force_host_platform_device_count=D``, places a (T, N) float32
array sharded over the sample axis (``NamedSharding(mesh, P("data", None))``)
and times ``explicit_softmax.SoftmaxStats.from_sharded`` (what ``es.fit``
runs for such an array): samples per second, median of repeats after one
warm-up call (compilation excluded). For reference it also times, in the same
process, a bare ``shard_map`` of ``psum(X^T onehot(y))`` (no validation, no
compensated sums) and, for D = 1, the host path ``SoftmaxStats.from_data`` on
the numpy array. Writes ``scaling.json`` and ``scaling.png`` into ``--out``.

Honest caveat: forced host devices are threads of one process sharing this
machine's cores (2 here). One CPU device runs largely on one core, so 2 devices
may be faster by using both, but beyond the core count nothing can be gained:
on CPU this measures the cost of the sharded code path, not the speed-up of
several real accelerators, where the same code splits the pass over devices.

Usage: explicit-softmax bench scaling [--quick] [--out DIR] [-- --samples 524288
       --features 128 --classes 16 --devices 1,2,4,8 --repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from explicit_softmax.bench._harness import median_seconds, write_json  # noqa: E402
from explicit_softmax.bench import _harness  # noqa: E402


def child(devices: int, t: int, n: int, m: int, repeats: int) -> dict:
  import jax
  from jax.sharding import NamedSharding, PartitionSpec as P

  import explicit_softmax as es

  assert jax.device_count() == devices, (jax.device_count(), devices)
  rng = np.random.default_rng(0)
  x = rng.random((t, n), dtype=np.float32)
  x[x < 0.5] = 0
  x[:, 0] += 0.01
  y = rng.integers(0, m, t).astype(np.int32)
  host = host_seconds = host_best = None
  if devices == 1:  # before any JAX work, whose idle worker threads would compete
    host_seconds, host_runs = median_seconds(
        lambda: es.SoftmaxStats.from_data(x, y, n_classes=m), repeats)
    host, host_best = t / host_seconds, t / min(host_runs)
  mesh = jax.make_mesh((devices,), ("data",))
  start = time.perf_counter()
  xs = jax.device_put(x, NamedSharding(mesh, P("data", None)))
  ys = jax.device_put(y, NamedSharding(mesh, P("data")))
  jax.block_until_ready((xs, ys))
  put_seconds = time.perf_counter() - start

  start = time.perf_counter()
  es.SoftmaxStats.from_sharded(xs, ys, n_classes=m)
  first_call = time.perf_counter() - start
  sharded, runs = median_seconds(lambda: es.SoftmaxStats.from_sharded(xs, ys, n_classes=m),
                                 repeats, warmup=0)

  bare_fn = jax.jit(jax.shard_map(
      lambda a, b: jax.lax.psum(a.T @ jax.nn.one_hot(b, m, dtype=a.dtype), "data"),
      mesh=mesh, in_specs=(P("data", None), P("data")), out_specs=P()))
  bare, bare_runs = median_seconds(lambda: jax.block_until_ready(bare_fn(xs, ys)), repeats)

  reference = es.SoftmaxStats.from_data(x[: t // 8], y[: t // 8], n_classes=m)
  part = es.SoftmaxStats.from_sharded(
      jax.device_put(x[: t // 8], NamedSharding(mesh, P("data", None))), y[: t // 8],
      n_classes=m)
  rel = float(np.max(np.abs(part.cooccurrence - reference.cooccurrence)
                     / np.maximum(np.abs(reference.cooccurrence), 1e-30)))
  return {"devices": devices, "samples_per_second": t / sharded, "seconds": sharded,
          "best_samples_per_second": t / min(runs),
          "runs": runs, "first_call_seconds": first_call, "device_put_seconds": put_seconds,
          "bare_psum_matmul_samples_per_second": t / bare,
          "bare_psum_matmul_best_samples_per_second": t / min(bare_runs),
          "host_path_samples_per_second": host, "host_path_seconds": host_seconds,
          "host_path_best_samples_per_second": host_best,
          "max_relative_difference_vs_host": rel}


def _plot(runs, path, shape):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  d = [r["devices"] for r in runs]
  fig, ax = plt.subplots(figsize=(6.0, 4.0))
  ax.plot(d, [r["samples_per_second"] for r in runs], "o-", label="SoftmaxStats.from_sharded")
  ax.plot(d, [r["bare_psum_matmul_samples_per_second"] for r in runs], "s--",
          label="bare psum(X^T onehot(y))")
  host = [r["host_path_samples_per_second"] for r in runs if r["host_path_samples_per_second"]]
  if host:
    ax.axhline(host[0], color="gray", ls=":", label="host numpy path (1 process)")
  ax.set_xscale("log", base=2)
  ax.set_xticks(d, [str(v) for v in d])
  ax.set_xlabel("forced CPU host devices (sharing %d cores)" % os.cpu_count())
  ax.set_ylabel("samples / s")
  ax.set_ylim(bottom=0)
  ax.set_title(f"Statistics throughput, T x N x M = {shape[0]:,} x {shape[1]} x {shape[2]}")
  ax.legend(fontsize=8)
  _harness.save_figure(fig, path, dpi=120)


def main(argv=None):
  parser = _harness.parser(__doc__, quick="2^16 samples, 2 repeats")
  parser.add_argument("--samples", type=int, default=2**19)
  parser.add_argument("--features", type=int, default=128)
  parser.add_argument("--classes", type=int, default=16)
  parser.add_argument("--devices", default="1,2,4,8")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.quick:
    args.samples, args.repeats = 2**16, 2
  if args.child:
    print(json.dumps(child(args.child, args.samples, args.features, args.classes,
                           args.repeats)))
    return None

  runs = []
  for d in (int(v) for v in args.devices.split(",")):
    if args.samples % (8 * d):
      raise SystemExit(f"--samples must be a multiple of 8 x devices; got {args.samples}.")
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={d}",
               JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "explicit_softmax.bench.scaling", "--child", str(d), "--samples", str(args.samples),
           "--features", str(args.features), "--classes", str(args.classes),
           "--repeats", str(args.repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
      raise RuntimeError(f"child with {d} devices failed:\n{proc.stderr[-3000:]}")
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    runs.append(run)
    host = run["host_path_samples_per_second"]
    print(f"{d} device(s): {run['samples_per_second'] / 1e6:6.2f} M samples/s "
          f"(bare psum matmul {run['bare_psum_matmul_samples_per_second'] / 1e6:6.2f} M/s"
          + (f", host numpy path {host / 1e6:6.2f} M/s" if host else "")
          + f"; first call {run['first_call_seconds']:.1f} s)")
  shape = [args.samples, args.features, args.classes]
  png = str(_harness.output_dir(args.out) / "scaling.png")
  _plot(runs, png, shape)
  result = {
      "shape": shape,
      "what": "samples/s of SoftmaxStats.from_sharded on X sharded over the sample axis, median of "
              "repeats after a warm-up (compilation excluded); each device count in a fresh "
              "process with XLA_FLAGS=--xla_force_host_platform_device_count=D",
      "noise": "the machine is shared with other jobs; medians and bests of the repeats are "
               "both stored (runs lists every repeat)",
      "caveat": f"forced host devices are threads sharing this machine's {os.cpu_count()} "
                "CPU cores: one CPU device runs its program largely on one core, so going "
                "from 1 to 2 devices can be faster by using both cores, but more devices "
                "than cores cannot add speed. The numbers show the cost of the sharded path "
                "(per-device scans, compensated sums, validation, psum), not the speed-up "
                "of several real accelerators.",
      "runs": runs,
      "plot": os.path.basename(png),
  }
  path = write_json("scaling.json", result, args.out)
  print(f"wrote {path} and {png}")
  return result


if __name__ == "__main__":
  _harness.run(main)
