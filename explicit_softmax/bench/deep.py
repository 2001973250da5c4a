"""Initialising real deep models: two CNNs, a new head on a pretrained CNN, a small transformer.

One command::

    explicit-softmax bench deep -- --threads 1          # full run (3 seeds)
    explicit-softmax bench deep -- --quick --threads 1  # smoke test (1 seed, short budgets)

writes into ``--out`` ``deep.json`` (config, machine facts with the load average, every
curve, mean and spread, per-seed times, the target ratios), ``deep.png`` (validation loss
against steps and against seconds) and ``deep_rows.png`` (the head-rows sweep;
``deep_quick.*`` with ``--quick``). ``--tasks`` runs a subset and ``--merge A.json
B.json`` combines partial runs (e.g. the language model and the CNN tasks run as two
processes, one core each, each with its own ``--out``) into one result and plot.

Tasks (issues 18 and 26):

1. ``cnn``: a small CNN on MNIST (conv 3x3 1->8, ReLU, 2x2 max-pool, conv 3x3
   8->16, ReLU, 2x2 max-pool, dense 784->10), from scratch, PyTorch and Flax NNX,
   Adam lr 1e-3, batch 128, one epoch (468 steps).
2. ``cnn_dense``: issue 26's CNN (conv 3x3 1->16, ReLU, pool, conv 3x3 16->32, ReLU,
   pool, dense 1568->128, ReLU, dense 128->10), the same training.
3. ``transfer``: the ``cnn`` network pretrained (one epoch, not counted) on digits
   0-4, given a new head for digits 5-9 and fine-tuned for 300 steps (Adam lr 1e-3,
   batch 128) on digits 5-9, every parameter trainable.
4. ``lm``: a decoder-only transformer character model on tiny Shakespeare (4
   pre-LayerNorm blocks, width 128, 4 heads, context 64, GELU MLP 4x; separate
   query/key/value/output projections), AdamW (lr 1e-3, betas 0.9/0.99, weight
   decay 0.1, 100 warm-up steps then cosine decay to 1e-4, gradient clipping at
   1), batch 4 x 64 characters, 2,000 steps; PyTorch (sized for 2 shared cores).
5. ``rows`` (no training): the explicit head's validation loss and seconds against
   the samples it reads, for the models above at their starting point
   (``es.bench.deep_rows``).

Arms (the same optimiser, schedule and batch order within a seed; each arm's
initialisation seconds are counted):

* ``default``: the framework's default initialisation;
* ``lsuv``: layer-sequential unit variance (Mishkin & Matas 2016): every conv
  and dense weight orthonormal (biases zero, as the paper's Caffe fillers),
  then layer by layer in forward order, the weight is scaled by
  ``1/std(output)`` on one batch until ``|var - 1| < 0.1`` (at most 10 rounds).
  In the transfer task only the new head is LSUV-initialised (the body is the
  pretrained network);
* ``probe``: the head fitted by scikit-learn's ``LogisticRegression()`` on the
  frozen features of the default-initialised (or pretrained) body (Kumar et al.
  2022's linear probe), on the rows the explicit fit reads;
* ``explicit``: the head fitted in closed form (``init_head`` / ``new_head`` with
  ``calibrate=True`` and the default ``max_samples``, given the whole training set)
  on the features the network really produces. For the language model: token
  embedding and head from the SVD of the bigram count solution (``svd_factors``,
  zero-padded from rank V = 65 to width 128), then the head refitted in closed form
  on the final LayerNorm's real outputs, blocks at default;
* ``explicit_lsuv`` (the CNNs from scratch): LSUV for every conv and dense layer
  but the head, then the explicit head on the features of that body;
* ``explicit_blocks`` (language model): as ``explicit``, plus every block's
  attention value/output projections fitted (``init_value_output``) so that each
  attended position carries 1/L of its token's vote for the next token in the
  count solution of "next character given the bag of the last 64 characters"
  (``context_bag_weights``), mapped into the embedding space through the
  pseudo-inverse of the SVD head; the head is fitted last, on the real features.

Measured per task, framework and arm (3 seeds): the validation loss and
accuracy curve; per seed the initialisation seconds, then the steps and seconds
(initialisation included) to the default arm's final loss; and, for each explicit
arm E and each peer P (default, LSUV, probe), with target = P's final validation
loss in the same seed: the steps and seconds E and P need to reach it, their
ratios, and whether E is no worse than P at the end. The target (issues 18 and
26): ratios <= 0.5 against default in every seed, and never worse than default or
LSUV at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

from explicit_softmax.adapters import _fit
from explicit_softmax.bench import _harness
# The configuration, the tasks and the measurements, one module each; re-exported here.
from explicit_softmax.bench.deep_cnn import run_cnn_task
from explicit_softmax.bench.deep_common import (CNN_VAL, LM_BATCH, LM_CLIP,  # noqa: F401
                                                LM_CONTEXT, LM_DECAY, LM_FIT_WINDOWS, LM_HEADS,
                                                LM_LAYERS, LM_LR, LM_MIN_LR, LM_VAL_WINDOWS,
                                                LM_WARMUP, LM_WIDTH, LSUV_BATCH, LSUV_ROUNDS,
                                                LSUV_TOL, ROWS_MULTIPLES, ROWS_TASK, TASKS)
from explicit_softmax.bench.deep_lm import run_lm_task
from explicit_softmax.bench.deep_rows import plot_rows, run_rows_task, summarise_rows
from explicit_softmax.bench.deep_summary import (compare, first_reach, plot,  # noqa: F401
                                                 print_tables, summarise, target_verdicts)
from explicit_softmax.bench.training import BATCH, LR

ALL_TASKS = TASKS + (ROWS_TASK,)


def parse_args(argv=None) -> argparse.Namespace:
  parser = _harness.parser(__doc__, quick="smoke test: 1 seed, CNNs 100 steps, transfer 60, "
                                          "LM 150")
  parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
  parser.add_argument("--tasks", default=",".join(ALL_TASKS),
                      help=f"subset of {','.join(ALL_TASKS)}")
  parser.add_argument("--frameworks", default="torch,flax",
                      help="CNN frameworks, subset of torch,flax (the LM is PyTorch)")
  parser.add_argument("--threads", type=int, default=None,
                      help="threads for BLAS, XLA and torch (default: all cores)")
  parser.add_argument("--merge", nargs="+", default=None, metavar="DEEP.json",
                      help="combine these partial JSON files into --out (and its plots)")
  args = parser.parse_args(argv)
  args.tasks = [t for t in args.tasks.split(",") if t]
  args.frameworks = [f for f in args.frameworks.split(",") if f]
  if set(args.tasks) - set(ALL_TASKS):
    parser.error(f"unknown tasks {sorted(set(args.tasks) - set(ALL_TASKS))}; choose from "
                 f"{ALL_TASKS}.")
  if set(args.frameworks) - {"torch", "flax"}:
    parser.error("frameworks must be a subset of torch,flax.")
  if args.seeds is None:
    args.seeds = 1 if args.quick else 3
  args.budgets = ({"cnn": 100, "cnn_dense": 100, "transfer": 60, "lm": 150} if args.quick
                  else {"cnn": None, "cnn_dense": None, "transfer": 300,
                        "lm": 2000})  # None: one epoch
  return args


def finish(result: dict, out: pathlib.Path) -> None:
  for task in TASKS:
    for fw, entry in result.get(task, {}).items():
      entry["summary"] = summarise(entry)
  result["targets"] = target_verdicts(result)
  if ROWS_TASK in result:
    result[ROWS_TASK]["summary"] = summarise_rows(result[ROWS_TASK])
  _harness.output_dir(out.parent)
  out.write_text(json.dumps(result, indent=1))
  plot(result, out.with_suffix(".png"))
  if ROWS_TASK in result:
    plot_rows(result[ROWS_TASK], out.with_name(out.stem + "_rows.png"))
  print_tables(result)
  print(f"\nwrote {out} and {out.with_suffix('.png')}")


def machine_facts() -> dict:
  from explicit_softmax.bench._harness import machine_facts as base
  facts = base()
  facts["loadavg_start"] = list(os.getloadavg())
  facts["threads_limit"] = os.environ.get("OMP_NUM_THREADS")
  return facts


def main(argv=None) -> dict:
  args = parse_args(argv)
  out = args.out / ("deep_quick.json" if args.quick else "deep.json")
  if args.merge:
    result = {"parts": []}
    for name in args.merge:
      part = json.loads(pathlib.Path(name).read_text())
      result["parts"].append({"file": name, "config": part["config"],
                              "machine": part["machine"],
                              "total_seconds": part["total_seconds"]})
      for task in TASKS:
        if task in part:
          result.setdefault(task, {}).update(part[task])
      if ROWS_TASK in part:
        result[ROWS_TASK] = part[ROWS_TASK]
    first = result["parts"][0]
    result["config"] = {**first["config"], "tasks": [t for t in ALL_TASKS if t in result],
                        "merged": args.merge}
    result["machine"] = first["machine"]
    # The wall-clock span of the parts, whether they ran side by side or one after another.
    starts = [time.mktime(time.strptime(p["machine"]["date"], "%Y-%m-%d %H:%M:%S"))
              for p in result["parts"]]
    result["total_seconds"] = (max(t + p["total_seconds"] for t, p in zip(starts,
                                                                          result["parts"]))
                               - min(starts))
    finish(result, out)
    return result
  _harness.limit_threads(args.threads)
  import torch
  if args.threads:
    torch.set_num_threads(args.threads)
  import warnings
  warnings.filterwarnings("ignore", category=DeprecationWarning)
  start = time.perf_counter()

  def log(message):
    print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)

  result = {"config": {"quick": args.quick, "seeds": args.seeds, "tasks": args.tasks,
                       "frameworks": args.frameworks, "threads": args.threads,
                       "budgets": args.budgets, "learning_rate": LR, "batch_size": BATCH,
                       "samples_per_input": _fit.SAMPLES_PER_INPUT,
                       "rows_multiples": list(ROWS_MULTIPLES), "cnn_validation_rows": CNN_VAL,
                       "lsuv": {"batch": LSUV_BATCH, "tolerance": LSUV_TOL,
                                "max_rounds": LSUV_ROUNDS},
                       "lm": {"width": LM_WIDTH, "layers": LM_LAYERS, "heads": LM_HEADS,
                              "context": LM_CONTEXT, "batch": LM_BATCH, "lr": LM_LR,
                              "min_lr": LM_MIN_LR, "warmup": LM_WARMUP,
                              "weight_decay": LM_DECAY, "clip": LM_CLIP,
                              "fit_windows": LM_FIT_WINDOWS, "val_windows": LM_VAL_WINDOWS},
                       "command": " ".join(sys.argv)},
            "machine": machine_facts()}
  runners = {"lm": run_lm_task, ROWS_TASK: run_rows_task}
  for task in args.tasks:
    result[task] = (runners[task](args, log) if task in runners
                    else run_cnn_task(task, args, log))
  result["total_seconds"] = time.perf_counter() - start
  result["machine"]["loadavg_end"] = list(os.getloadavg())
  finish(result, out)
  return result


if __name__ == "__main__":
  _harness.run(main)
