"""One softmax model from rows spread over several JAX processes (multi-controller JAX).

Run one process per host; on one machine, two processes (this is what
``tests/test_multiprocess.py`` runs, and ``docs/scaling.md`` quotes)::

    python examples/jax_multiprocess.py --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 0 --out results &
    python examples/jax_multiprocess.py --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 1 --out results

Each process holds only its own rows (here its slice of a seeded synthetic data
set, in practice its own files) and builds the global arrays with
``jax.make_array_from_process_local_data``. Every process then makes the same
calls: the statistics and the closed forms reduce over all processes (a
``psum`` through gloo on CPUs), and ``es.refine`` evaluates the loss and
gradient on each process's rows and all-gathers the float64 sums, so every
process gets the same model. Each process writes ``<out>/process_<id>.npz``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

# The data set: T rows, N features, M classes; L2 the penalty of the optimum.
T, N, M = 4000, 6, 3
L2 = 1.0 / T


def make_data(seed: int = 0):
  """A seeded (T, N) float32 feature matrix and (T,) labels from a softmax model."""
  rng = np.random.default_rng(seed)
  x = rng.gamma(1.0, 1.0, (T, N)).astype(np.float32)
  x[rng.random(x.shape) < 0.3] = 0
  x[:, 0] += 0.1
  logits = x @ rng.normal(size=(N, M))
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  y = (p.cumsum(1) > rng.random((T, 1))).argmax(1)
  return x, y


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--coordinator", required=True, help="host:port of process 0")
  parser.add_argument("--num-processes", type=int, required=True)
  parser.add_argument("--process-id", type=int, required=True)
  parser.add_argument("--out", required=True, help="folder for process_<id>.npz")
  args = parser.parse_args(argv)

  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives
  jax.distributed.initialize(coordinator_address=args.coordinator,
                             num_processes=args.num_processes, process_id=args.process_id)
  from jax.sharding import NamedSharding, PartitionSpec as P
  import explicit_softmax as es

  mesh = jax.make_mesh((jax.device_count(),), ("data",))   # every process's devices
  x, y = make_data()
  rows = T // args.num_processes
  mine = slice(args.process_id * rows, (args.process_id + 1) * rows)  # this process's rows
  X = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data", None)), x[mine])
  Y = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), y[mine])

  stats = es.SoftmaxStats.from_data(X, Y, n_classes=M, gram=True)
  cooccurrence = es.fit(X, Y, n_classes=M, method="cooccurrence")
  newton = es.fit(X, Y, n_classes=M, method="newton")
  zero = es.SoftmaxModel(np.zeros((N, M)), np.zeros(M))
  refined = es.refine(zero, X, Y, steps=500, l2=L2, precondition="standardize")
  optimum = es.fit(X, Y, n_classes=M, l2=L2)   # method="auto" with a given l2

  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  np.savez(out / f"process_{args.process_id}.npz",
           cooccurrence=stats.cooccurrence, class_mass=stats.class_mass,
           total_weight=stats.total_weight, mass_sq=stats.mass_sq, n_samples=stats.n_samples,
           gram=stats.gram, min_feature=stats.min_feature,
           **{f"{name}_{part}": getattr(model, part)
              for name, model in [("cooccurrence_fit", cooccurrence), ("newton_fit", newton),
                                  ("refined", refined), ("optimum", optimum)]
              for part in ("weights", "bias")},
           refine_record=json.dumps(refined.info["refine"]),
           optimum_record=json.dumps(optimum.info["refine"]))
  print(f"process {args.process_id} of {args.num_processes}: wrote {out}/process_{args.process_id}.npz")


if __name__ == "__main__":
  main()
