"""Cost of one explicit fit against the physical floor: one pass over X.

Times ``es.fit(X, y, method="cooccurrence")`` against a bare numpy ``X.T @ Y``
on MNIST-shaped data (60,000 x 784 float32, 10 classes), in the same process,
as medians of repeated runs, and writes ``fit.json`` into ``--out``.

Three protocols, all reported:

* ``idle`` (the target's measure): each timed call starts after a 0.25 s pause.
  OpenBLAS's worker threads spin for a while (about 0.1 s by default,
  ``OPENBLAS_THREAD_TIMEOUT``) after every BLAS call; the pause lets them go to
  sleep, so neither call competes with the other's leftover threads.
* ``blocks``: as ``timeit`` would, a block of consecutive matmuls, then a block
  of consecutive fits (the fit itself calls no BLAS), alternating blocks.
* ``back_to_back``: the fit runs right after a matmul, every time. The
  statistics pass runs on its own threads, which then share the cores with the
  spinning OpenBLAS threads, and it slows down accordingly.

Usage: explicit-softmax bench fit [--quick] [--out DIR] [-- --repeats 15 --samples 60000]
"""

from __future__ import annotations

import time

import numpy as np

import explicit_softmax as es

from explicit_softmax.bench._harness import median_seconds, write_json  # noqa: E402
from explicit_softmax.bench import _harness  # noqa: E402

# Seconds of idle before each timed call in the ``idle`` protocol.
PAUSE = 0.25


def _timed(fn, pause: float) -> float:
  time.sleep(pause)
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def _interleaved_runs(fit, matmul, repeats: int) -> dict:
  """Seconds of each repeat; interleaved, so both see the same machine state (this
  VM's timings drift by tens of percent between consecutive runs)."""
  fit(), matmul()  # warm-up
  runs = {"matmul": [], "fit": [], "matmul_back_to_back": [], "fit_back_to_back": []}
  for _ in range(repeats):
    runs["matmul"].append(_timed(matmul, PAUSE))
    runs["fit"].append(_timed(fit, PAUSE))
    runs["matmul_back_to_back"].append(_timed(matmul, 0))
    runs["fit_back_to_back"].append(_timed(fit, 0))
  runs["matmul_blocks"], runs["fit_blocks"] = [], []
  for _ in range(3):
    runs["matmul_blocks"] += median_seconds(matmul, repeats, warmup=1)[1]
    runs["fit_blocks"] += median_seconds(fit, repeats, warmup=1)[1]
  return runs


def _device_pass_seconds(x, y, m: int, repeats: int):
  """The jitted device pass (used for accelerator and multi-device jax.Arrays) on
  JAX's default device: the CPU here (where CPU-resident arrays take the host
  pass instead), a GPU where one is present. Timed up to the host statistics."""
  import jax
  device = jax.devices()[0]
  x_dev = jax.device_put(x, device)
  device_pass = lambda: es.SoftmaxStats.from_sharded(x_dev, y, n_classes=m)  # noqa: E731
  device_pass()  # compile
  return float(np.median([_timed(device_pass, PAUSE) for _ in range(repeats)])), device


def _print_summary(result: dict, path) -> None:
  matmul, fit, fit_u8 = (result["numpy_matmul_seconds"], result["fit_seconds"],
                         result["fit_uint8_seconds"])
  print(f"numpy X.T @ Y      {matmul * 1e3:8.1f} ms")
  print(f"es.fit (float32)   {fit * 1e3:8.1f} ms   ratio {fit / matmul:.2f}x  (target <= 1.5x)")
  print(f"es.fit (uint8)     {fit_u8 * 1e3:8.1f} ms   ratio {fit_u8 / matmul:.2f}x")
  print(f"jitted device pass {result['device_pass_seconds'] * 1e3:8.1f} ms   (XLA on "
        f"{result['device']}; statistics only)")
  print(f"blocks             {result['fit_blocks_seconds'] * 1e3:8.1f} ms   ratio "
        f"{result['ratio_blocks']:.2f}x  (consecutive fits vs consecutive matmuls)")
  print(f"back to back       {result['fit_back_to_back_seconds'] * 1e3:8.1f} ms   ratio "
        f"{result['ratio_back_to_back']:.2f}x  (fit right after a BLAS call)")
  print(f"wrote {path}")


def main(argv=None):
  parser = _harness.parser(__doc__, quick="fewer repeats")
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument("--samples", type=int, default=60_000)
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

  fit = lambda: es.fit(x, y, n_classes=m, method="cooccurrence")  # noqa: E731
  runs = _interleaved_runs(fit, lambda: x.T @ y_onehot, repeats)
  med = {k: float(np.median(v)) for k, v in runs.items()}
  stats, _ = median_seconds(lambda: es.SoftmaxStats.from_data(x, y, n_classes=m), repeats)
  x_u8 = (x * 255).astype(np.uint8)
  fit_u8 = float(np.median([_timed(lambda: es.fit(x_u8, y, n_classes=m, method="cooccurrence"),
                                   PAUSE) for _ in range(repeats)]))
  device_s, device = _device_pass_seconds(x, y, m, repeats)
  matmul, fit_s = med["matmul"], med["fit"]
  result = {
      "shape": [t, n, m],
      "numpy_matmul_seconds": matmul,
      "fit_seconds": fit_s,
      "statistics_seconds": stats,
      "fit_uint8_seconds": fit_u8,
      "ratio_fit_to_matmul": fit_s / matmul,
      "ratio_uint8_fit_to_matmul": fit_u8 / matmul,
      "device_pass_seconds": device_s,
      "device": device.device_kind,
      "device_platform": device.platform,
      "pause_seconds": PAUSE,
      "matmul_back_to_back_seconds": med["matmul_back_to_back"],
      "fit_back_to_back_seconds": med["fit_back_to_back"],
      "ratio_back_to_back": med["fit_back_to_back"] / med["matmul_back_to_back"],
      "matmul_blocks_seconds": med["matmul_blocks"],
      "fit_blocks_seconds": med["fit_blocks"],
      "ratio_blocks": med["fit_blocks"] / med["matmul_blocks"],
      "runs": runs,
      "target_ratio": 1.5,
  }
  path = write_json("fit.json", result, args.out)
  _print_summary(result, path)
  return result


if __name__ == "__main__":
  _harness.run(main)
