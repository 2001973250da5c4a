"""The deep-model benchmark's head-rows sweep: the explicit head's held-out loss and its
seconds against the samples ``init_head`` / ``new_head`` read (``max_samples``).

For each model of the benchmark at its starting point (the CNNs and the transformer at
their default initialisation, the transfer network pretrained on digits 0-4), the head
is fitted with ``calibrate=True`` on ``s (N + 1)`` samples for ``s`` in
``ROWS_MULTIPLES``, on the default budget (``max_samples="auto"``) and on every row
(``max_samples=None``), ``N`` the head's input width, and its validation loss is
measured before any training step. This is what the
default budget (``max_samples="auto"``) was chosen from. PyTorch only: the fit is the
same numpy code for both frameworks, only the forward pass that reads the features
differs.
"""

from __future__ import annotations

import time

from explicit_softmax.bench.deep_common import CNN_VAL, ROWS_MULTIPLES

ROWS_MODELS = ("cnn", "cnn_dense", "transfer", "lm")


def _loss(model, x, y, n_classes: int, batch: int = 1000) -> float:
  import torch
  from torch import nn
  model.eval()
  with torch.no_grad():
    logits = torch.cat([model(torch.as_tensor(x[i:i + batch])) for i in range(0, len(x), batch)])
  return float(nn.functional.cross_entropy(logits.reshape(-1, n_classes),
                                           torch.as_tensor(y).reshape(-1)))


def _fit_once(name: str, seed: int, data, max_samples, pretrained=None) -> dict:
  """A fresh model of ``name`` (seeded), its head fitted on ``max_samples`` samples."""
  import torch
  from explicit_softmax.adapters import _fit
  from explicit_softmax.adapters import torch as es_torch
  from explicit_softmax.bench import deep_cnn, deep_lm
  torch.manual_seed(seed)
  if name == "lm":
    train, fit_x, fit_y, val_x, val_y, vocab = data
    model = deep_lm.torch_gpt(vocab)
    es_torch.init_embedding(deep_lm.lm_factors(train, vocab), model.tok, model.head)
    explicit = es_torch.init_head(model, fit_x, fit_y, batch_size=64, calibrate=True,
                                  max_samples=max_samples)
    return {**explicit.info["init"], "loss": _loss(model, val_x, val_y, vocab, 64)}
  xtr, ytr, xval, yval = data
  if name == "transfer":
    model = deep_cnn.torch_cnn("cnn", 5)
    model.load_state_dict(pretrained)
    start = time.perf_counter()
    es_torch.new_head(model, xtr, ytr, n_classes=5, calibrate=True, max_samples=max_samples)
    seconds = time.perf_counter() - start
    n = deep_cnn.head_inputs("cnn")
    budget = _fit.sample_budget(max_samples, n)
    rows = len(xtr) if budget is None else min(len(xtr), budget)
    return {"rows": rows, "samples": rows, "max_samples": budget, "seconds": seconds,
            "loss": _loss(model, xval, yval, 5)}
  model = deep_cnn.torch_cnn(name)
  explicit = es_torch.init_head(model, xtr, ytr, calibrate=True, max_samples=max_samples)
  return {**explicit.info["init"], "loss": _loss(model, xval, yval, 10)}


def run_rows_task(args, log) -> dict:
  """The sweep over every model, seed and budget; seconds and losses per seed."""
  import numpy as np
  from explicit_softmax.adapters import _fit
  from explicit_softmax.bench import deep_cnn, deep_lm
  from explicit_softmax.bench.deep_common import LM_CONTEXT, LM_FIT_WINDOWS, LM_VAL_WINDOWS
  start = time.perf_counter()
  out = {}
  mnist = deep_cnn.mnist_data("torch")
  five = deep_cnn.mnist_data("torch", digits=[5, 6, 7, 8, 9])
  source = deep_cnn.mnist_data("torch", digits=[0, 1, 2, 3, 4])
  train, val, vocab, _ = deep_lm.lm_data()
  for name in ROWS_MODELS:
    if name == "lm":
      n_inputs, n_classes = deep_lm.LM_WIDTH, vocab
    else:
      n_inputs = deep_cnn.head_inputs("cnn" if name == "transfer" else name)
      n_classes = 5 if name == "transfer" else 10
    budgets = ([(m, m * (n_inputs + 1)) for m in ROWS_MULTIPLES]
               + [("auto", _fit.sample_budget("auto", n_inputs))])
    budgets = sorted(budgets, key=lambda mb: (mb[1], mb[0] != "auto")) + [(None, None)]
    points = [{"multiple": m, "max_samples": b, "rows": [], "samples": [], "seconds": [],
               "loss": []} for m, b in budgets]
    total = None
    for seed in range(args.seeds):
      pretrained = None
      if name == "lm":
        rng = np.random.default_rng(3000 + seed)
        fit_x, fit_y = deep_lm.windows(
            train, rng.integers(0, len(train) - LM_CONTEXT - 1, LM_FIT_WINDOWS))
        val_x, val_y = deep_lm.windows(
            val, np.linspace(0, len(val) - LM_CONTEXT - 1, LM_VAL_WINDOWS).astype(int))
        data = (train, fit_x, fit_y, val_x, val_y, vocab)
        total = int(fit_y.size)
      elif name == "transfer":
        pretrained = deep_cnn.torch_pretrain(seed, source[0], source[1])
        data = five[:4]
        total = len(five[0])
      else:
        data = mnist[:4]
        total = len(mnist[0])
      for point in points:
        if point["max_samples"] is not None and point["max_samples"] >= total:
          continue  # the same fit as reading every row
        log(f"rows {name} seed {seed} max_samples {point['max_samples']}")
        got = _fit_once(name, seed, data, point["max_samples"], pretrained)
        for key in ("rows", "samples", "seconds", "loss"):
          point[key].append(got[key])
    points = [p for p in points if p["loss"]]
    out[name] = {"head_inputs": n_inputs, "classes": n_classes, "total_samples": total,
                 "points": points}
  return {"torch": out, "multiples": list(ROWS_MULTIPLES), "validation_rows": CNN_VAL,
          "wall_seconds": time.perf_counter() - start}


def summarise_rows(rows: dict) -> dict:
  """Per model and budget: mean loss, its excess over reading every row, mean seconds."""
  import numpy as np
  out = {}
  for name, entry in rows["torch"].items():
    every = entry["points"][-1]
    base = np.array(every["loss"])
    table = []
    for p in entry["points"]:
      loss = np.array(p["loss"])
      table.append({"multiple": p["multiple"], "max_samples": p["max_samples"],
                    "samples": float(np.mean(p["samples"])),
                    "rows": float(np.mean(p["rows"])),
                    "seconds": float(np.mean(p["seconds"])),
                    "loss": float(loss.mean()), "loss_std": float(loss.std()),
                    "excess": float((loss - base).mean()),
                    "excess_max": float((loss - base).max())})
    out[name] = table
  return out


def plot_rows(rows: dict, path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import FormatStrFormatter
  from explicit_softmax.adapters import _fit
  from explicit_softmax.bench import _harness
  table = rows["summary"]
  fig, axes = plt.subplots(1, 2, figsize=(13, 4))
  for name, points in table.items():
    n = rows["torch"][name]["head_inputs"]
    x = [p["samples"] / (n + 1) for p in points]
    for ax, key in ((axes[0], "excess"), (axes[1], "seconds")):
      line, = ax.plot(x, [p[key] for p in points], marker="o", label=f"{name} (N = {n})")
      ax.plot([p["samples"] / (n + 1) for p in points if p["multiple"] == "auto"],
              [p[key] for p in points if p["multiple"] == "auto"], marker="*", ms=14,
              color=line.get_color(), ls="none")
  axes[0].set(xscale="log", xlabel="samples read / (N + 1)",
              ylabel="held-out loss above reading every row (nats)",
              title="explicit head at initialisation (calibrated)")
  axes[1].set(xscale="log", yscale="log", xlabel="samples read / (N + 1)",
              ylabel="init_head / new_head seconds", title="what reading them costs")
  axes[1].yaxis.set_major_formatter(FormatStrFormatter("%g"))
  for ax in axes:
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.axvline(_fit.SAMPLES_PER_INPUT, color="k", lw=0.8, ls=":",
               label=f"{_fit.SAMPLES_PER_INPUT} (N + 1); stars: the default budget, "
                     f"at least {_fit.MIN_SAMPLES:,}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
  _harness.save_figure(fig, path, dpi=100)
