"""The initialisation benchmark's MNIST experiment: an MLP 784-256-10 in PyTorch and
Flax NNX from each initialiser, fine-tuned with Adam, and whether each beats default."""

from __future__ import annotations

import time

from explicit_softmax.bench.training import (BATCH, batch_order, flax_train, summary,
                                             torch_train)

# The arms (``es.bench.init``'s docstring says what each is) and the hidden width.
ARMS = ("default", "explicit_head", "layerwise", "residual")
N_HIDDEN = 256


def _by_step(points) -> dict:
  """Step -> (test accuracy, test cross-entropy) of a training run's points."""
  return {p["step"]: (p["acc"], p["loss"]) for p in points}


# -- MNIST: PyTorch -----------------------------------------------------------------
def torch_mnist_run(arm, seed, data, budgets):
  import torch
  from torch import nn
  from explicit_softmax.adapters import torch as es_torch
  xtr, ytr, xte, yte = data
  torch.manual_seed(seed)
  model = nn.Sequential(nn.Linear(784, N_HIDDEN), nn.ReLU(), nn.Linear(N_HIDDEN, 10))
  start = time.perf_counter()
  if arm == "explicit_head":
    es_torch.init_head(model, xtr, ytr)
  elif arm == "layerwise":
    es_torch.init_layerwise(model, xtr, ytr, seed=seed)
  elif arm == "residual":
    explicit = es_torch.init_head(model, xtr, ytr)
    model[-1] = es_torch.ResidualHead(explicit)
  init_seconds = time.perf_counter() - start
  xte_t, yte_t = torch.as_tensor(xte), torch.as_tensor(yte)

  def evaluate():
    with torch.no_grad():
      logits = model(xte_t)
      return {"acc": float((logits.argmax(1) == yte_t).float().mean()),
              "loss": float(nn.functional.cross_entropy(logits, yte_t))}

  points = torch_train(model, [p for p in model.parameters() if p.requires_grad],
                       torch.as_tensor(xtr), torch.as_tensor(ytr),
                       batch_order(seed, len(xtr), max(budgets)), set(budgets), evaluate)
  return _by_step(points), init_seconds, points[-1]["seconds"]


# -- MNIST: Flax ----------------------------------------------------------------------
def flax_mnist_run(arm, seed, data, budgets):
  from flax import nnx
  from explicit_softmax.adapters import flax as es_flax
  xtr, ytr, xte, yte = data
  rngs = nnx.Rngs(seed)
  model = nnx.Sequential(nnx.Linear(784, N_HIDDEN, rngs=rngs), nnx.relu,
                         nnx.Linear(N_HIDDEN, 10, rngs=rngs))
  start = time.perf_counter()
  if arm == "explicit_head":
    es_flax.init_head(model, xtr, ytr)
  elif arm == "layerwise":
    es_flax.init_layerwise(model, xtr, ytr, seed=seed)
  elif arm == "residual":
    explicit = es_flax.init_head(model, xtr, ytr)
    model = nnx.Sequential(model.layers[0], nnx.relu, es_flax.ResidualHead(explicit))
  init_seconds = time.perf_counter() - start
  points, _ = flax_train(model, xtr, ytr, batch_order(seed, len(xtr), max(budgets)),
                         set(budgets), xte, yte)
  return _by_step(points), init_seconds, points[-1]["seconds"]


def run_mnist(args, progress) -> dict:
  import warnings
  from explicit_softmax import data as data_lib
  xtr, ytr = data_lib.load_mnist("train", dtype="float32")
  xte, yte = data_lib.load_mnist("test", dtype="float32")
  epoch = len(xtr) // BATCH
  budgets = (100, 300) if args.quick else (100, 300, epoch)
  runners = {"torch": torch_mnist_run, "flax": flax_mnist_run}
  out = {"budgets": list(budgets), "steps_per_epoch": epoch, "timing_seconds": {}}
  for fw in args.frameworks:
    fw_start = time.perf_counter()
    per_arm = {}
    for arm in ARMS:
      runs = []
      for seed in range(args.seeds):
        progress.set_postfix_str(f"mnist {fw} {arm} seed {seed}")
        with warnings.catch_warnings():
          warnings.simplefilter("ignore", DeprecationWarning)
          runs.append(runners[fw](arm, seed, (xtr, ytr, xte, yte), budgets))
        progress.update(1)
      per_arm[arm] = {
          "init_seconds": summary([r[1] for r in runs]),
          "train_seconds": summary([r[2] for r in runs]),
          "by_step": {
              str(step): {"accuracy": summary([r[0][step][0] for r in runs]),
                          "cross_entropy": summary([r[0][step][1] for r in runs])}
              for step in (0,) + budgets},
      }
    out[fw] = per_arm
    out["timing_seconds"][fw] = time.perf_counter() - fw_start
  return out


def mnist_findings(mnist: dict, frameworks) -> dict:
  """Whether each explicit arm beats default init per budget (mean, and beyond spread)."""
  findings = {}
  budgets = mnist["budgets"]
  for fw in frameworks:
    for arm in ARMS[1:]:
      rows = {}
      for step in budgets:
        a = mnist[fw][arm]["by_step"][str(step)]
        b = mnist[fw]["default"]["by_step"][str(step)]
        acc_gap = a["accuracy"]["mean"] - b["accuracy"]["mean"]
        ce_gap = b["cross_entropy"]["mean"] - a["cross_entropy"]["mean"]
        rows[str(step)] = {
            "accuracy_gain": acc_gap,
            "cross_entropy_reduction": ce_gap,
            "better_on_mean": bool(acc_gap > 0 and ce_gap > 0),
            "better_beyond_spread": bool(
                acc_gap > a["accuracy"]["std"] + b["accuracy"]["std"]
                and ce_gap > a["cross_entropy"]["std"] + b["cross_entropy"]["std"]),
        }
      short = [rows[str(s)] for s in budgets if s <= 300]
      findings[f"{fw}/{arm}"] = {
          "by_budget": rows,
          "strictly_better_at_short_budgets": all(r["better_beyond_spread"] for r in short),
          "not_worse_at_longest": bool(
              rows[str(budgets[-1])]["accuracy_gain"]
              >= -mnist[fw]["default"]["by_step"][str(budgets[-1])]["accuracy"]["std"]),
      }
  return findings
