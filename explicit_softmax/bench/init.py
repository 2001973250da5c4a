"""Explicit initialisation of deeper models, then brief fine-tuning (Flax and PyTorch).

One command:

    explicit-softmax bench init           # full run (3 seeds)
    explicit-softmax bench init --quick   # reduced run (1 seed, short budgets)

writes ``init.json`` (config, machine facts, per-seed values, mean and spread,
timings) and ``init.png`` into ``--out`` (``init_quick.*`` with ``--quick``, so
that a quick run never overwrites a full one).

Two experiments:

1. MNIST MLP 784-256-10 with ReLU, in Flax (NNX) and in PyTorch. Arms:

   * ``default``: the framework's default initialisation;
   * ``explicit_head``: default hidden layer, output layer fitted explicitly on
     its ReLU features (``init_head``; one pass over the training set);
   * ``layerwise``: both layers fitted explicitly (``init_layerwise``);
   * ``residual``: default hidden layer, head ``x W_explicit + x dW + b`` with
     frozen explicit weights and a zero-initialised correction (``ResidualHead``).
     Under Adam without weight decay this is mathematically the same trajectory
     as ``explicit_head`` (the update of ``dW`` is that of ``W``): the arm checks
     the implementation and shows the rounding-level difference.

   Fine-tuned with Adam (lr 1e-3, batch 128, the same batch order for every
   arm of a seed) for 100 and 300 steps and one epoch (468 full batches); test
   accuracy and cross-entropy, mean and standard deviation over the seeds.

2. Toy language models ``logits = (sum_k E[k V + token_k]) H + b`` with
   ``d = 64``, on a synthetic order-1 Markov source (V = 512) and on tiny
   Shakespeare (characters, 3 tokens of context). Arms: ``svd`` (embedding and
   head from the truncated SVD of the centred count solution, ``svd_factors``)
   vs ``random`` (framework default). Adam (lr 1e-3, batch 128). Reported: the
   held-out cross-entropy curve, and the steps and seconds (initialisation
   included) each arm needs to reach two targets: where the SVD arm starts
   (``svd_start``) and where the random arm ends (``random_end``), both averaged
   over seeds.

Threads: ``--threads N`` limits BLAS, XLA and torch to N threads (default: all).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from explicit_softmax.bench import _harness
# The two experiments, the output and the training, one module each; re-exported here.
from explicit_softmax.bench.init_lm import LM_ARMS, run_lm
from explicit_softmax.bench.init_mnist import ARMS, N_HIDDEN, mnist_findings, run_mnist
from explicit_softmax.bench.init_output import plot, print_tables
from explicit_softmax.bench.training import BATCH, LR, batch_order, summary  # noqa: F401


def parse_args(argv=None) -> argparse.Namespace:
  parser = _harness.parser(__doc__, quick="reduced run: 1 seed, budgets 100/300, short LM runs")
  parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
  parser.add_argument("--frameworks", default="torch,flax",
                      help="comma-separated subset of torch,flax")
  parser.add_argument("--skip-mnist", action="store_true")
  parser.add_argument("--skip-lm", action="store_true")
  parser.add_argument("--lm-steps", type=int, default=None,
                      help="fine-tuning steps of the LM runs (default 2000, quick 300)")
  parser.add_argument("--threads", type=int, default=None,
                      help="threads for BLAS, XLA and torch (default: all cores)")
  args = parser.parse_args(argv)
  args.frameworks = [f for f in args.frameworks.split(",") if f]
  unknown = set(args.frameworks) - {"torch", "flax"}
  if unknown:
    parser.error(f"unknown frameworks {sorted(unknown)}; choose from torch, flax.")
  if args.seeds is None:
    args.seeds = 1 if args.quick else 3
  if args.lm_steps is None:
    args.lm_steps = 300 if args.quick else 2000
  return args


def machine_facts() -> dict:
  import importlib.metadata as md
  facts = {
      "platform": platform.platform(),
      "processor": platform.processor() or platform.machine(),
      "python": sys.version.split()[0],
      "logical_cores": os.cpu_count(),
      "threads_limit": os.environ.get("OMP_NUM_THREADS"),
      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
  }
  try:
    import psutil
    facts["physical_cores"] = psutil.cpu_count(logical=False)
    facts["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
  except ImportError:
    pass
  try:
    with open("/proc/cpuinfo") as fh:
      names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
    if names:
      facts["cpu_model"] = names[0]
  except OSError:
    pass
  versions = {}
  for pkg in ("explicit-softmax", "numpy", "scipy", "jax", "jaxlib", "flax", "optax", "torch",
              "matplotlib"):
    try:
      versions[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      versions[pkg] = None
  facts["versions"] = versions
  return facts


def main(argv=None) -> dict:
  args = parse_args(argv)
  _harness.limit_threads(args.threads)
  from tqdm.auto import tqdm
  if "torch" in args.frameworks:
    import torch
    if args.threads:
      torch.set_num_threads(args.threads)
  total = 0
  if not args.skip_mnist:
    total += len(args.frameworks) * len(ARMS) * args.seeds
  if not args.skip_lm:
    total += 2 * len(args.frameworks) * len(LM_ARMS) * args.seeds
  result = {"config": {"quick": args.quick, "seeds": args.seeds, "frameworks": args.frameworks,
                       "learning_rate": LR, "batch_size": BATCH, "hidden": N_HIDDEN,
                       "threads": args.threads, "command": " ".join(sys.argv)},
            "machine": machine_facts()}
  start = time.perf_counter()
  with tqdm(total=total, desc="bench_init", unit="run") as progress:
    if not args.skip_mnist:
      result["mnist"] = run_mnist(args, progress)
      result["findings"] = mnist_findings(result["mnist"], args.frameworks)
    if not args.skip_lm:
      result["lm"] = run_lm(args, progress)
  result["total_seconds"] = time.perf_counter() - start
  out = _harness.output_dir(args.out) / ("init_quick.json" if args.quick else "init.json")
  out.write_text(json.dumps(result, indent=1))
  plot(result, out.with_suffix(".png"))
  print_tables(result)
  print(f"\nwrote {out} and {out.with_suffix('.png')} in {result['total_seconds']:.0f}s")
  return result


if __name__ == "__main__":
  _harness.run(main)
