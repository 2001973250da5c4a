"""Cost of one explicit fit against the physical floor: one pass over X.

Times ``es.fit(X, y, method="cooccurrence")`` against a bare numpy ``X.T @ Y``
on MNIST-shaped data (60,000 x 784 float32, 10 classes), in the same process,
as medians of repeated runs, and writes ``results/fit.json``.

Usage: python benchmarks/bench_fit.py [--repeats 9] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import explicit_softmax as es

sys.path.insert(0, __import__("os").path.dirname(__file__))
from _common import median_seconds, write_json  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--samples", type=int, default=60_000)
  parser.add_argument("--out", default=None)
  parser.add_argument("--quick", action="store_true", help="fewer repeats")
  args = parser.parse_args(argv)
  repeats = 3 if args.quick else args.repeats

  rng = np.random.default_rng(0)
  t, n, m = args.samples, 784, 10
  # MNIST-like: mostly-zero rows with intensities in [0, 1].
  x = rng.random((t, n), dtype=np.float32)
  x[x < 0.8] = 0
  x[:, 0] += 1e-3
  y = rng.integers(0, m, t)
  y_onehot = np.eye(m, dtype=np.float32)[y]

  # Interleaved repeats, so both see the same machine state (this VM's timings
  # drift by tens of percent between consecutive runs).
  matmul_runs, fit_runs = [], []
  for _ in range(repeats):
    matmul_runs += median_seconds(lambda: x.T @ y_onehot, 1)[1]
    fit_runs += median_seconds(lambda: es.fit(x, y, n_classes=m), 1)[1]
  matmul, fit = float(np.median(matmul_runs)), float(np.median(fit_runs))
  stats, _ = median_seconds(lambda: es.SoftmaxStats.from_data(x, y, n_classes=m), repeats)
  x_u8 = (x * 255).astype(np.uint8)
  fit_u8, _ = median_seconds(lambda: es.fit(x_u8, y, n_classes=m), repeats)
  result = {
      "shape": [t, n, m],
      "numpy_matmul_seconds": matmul,
      "fit_seconds": fit,
      "statistics_seconds": stats,
      "fit_uint8_seconds": fit_u8,
      "ratio_fit_to_matmul": fit / matmul,
      "ratio_uint8_fit_to_matmul": fit_u8 / matmul,
      "runs": {"matmul": matmul_runs, "fit": fit_runs},
      "target_ratio": 1.5,
  }
  path = write_json("fit.json", result, args.out)
  print(f"numpy X.T @ Y      {matmul * 1e3:8.1f} ms")
  print(f"es.fit (float32)   {fit * 1e3:8.1f} ms   ratio {fit / matmul:.2f}x  (target <= 1.5x)")
  print(f"es.fit (uint8)     {fit_u8 * 1e3:8.1f} ms   ratio {fit_u8 / matmul:.2f}x")
  print(f"wrote {path}")
  return result


if __name__ == "__main__":
  main()
