"""Explicit initialisation of deeper models, then brief fine-tuning (Flax and PyTorch).

One command::

    python benchmarks/bench_init.py           # full run (3 seeds)
    python benchmarks/bench_init.py --quick   # reduced run (1 seed, short budgets)

writes ``benchmarks/results/init.json`` (config, machine facts, per-seed values,
mean and spread, timings) and ``benchmarks/results/init.png`` (``init_quick.*``
with ``--quick``).

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
import pathlib
import platform
import sys
import time

from explicit_softmax.bench._harness import RESULTS  # noqa: E402
from explicit_softmax.bench import _harness  # noqa: E402
ARMS = ("default", "explicit_head", "layerwise", "residual")
LM_ARMS = ("svd", "random")
LR, BATCH = 1e-3, 128
N_HIDDEN = 256


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="reduced run: 1 seed, budgets 100/300, short LM runs")
  parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
  parser.add_argument("--frameworks", default="torch,flax",
                      help="comma-separated subset of torch,flax")
  parser.add_argument("--skip-mnist", action="store_true")
  parser.add_argument("--skip-lm", action="store_true")
  parser.add_argument("--lm-steps", type=int, default=None,
                      help="fine-tuning steps of the LM runs (default 2000, quick 300)")
  parser.add_argument("--threads", type=int, default=None,
                      help="threads for BLAS, XLA and torch (default: all cores)")
  parser.add_argument("--out", default=None,
                      help="JSON output path (default results/init.json; --quick: "
                           "results/init_quick.json, so a quick run never overwrites a full one)")
  args = parser.parse_args(argv)
  args.frameworks = [f for f in args.frameworks.split(",") if f]
  unknown = set(args.frameworks) - {"torch", "flax"}
  if unknown:
    parser.error(f"unknown frameworks {sorted(unknown)}; choose from torch, flax.")
  if args.seeds is None:
    args.seeds = 1 if args.quick else 3
  if args.lm_steps is None:
    args.lm_steps = 300 if args.quick else 2000
  if args.out is None:
    args.out = str(RESULTS / ("init_quick.json" if args.quick else "init.json"))
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


def summary(values) -> dict:
  """Mean, standard deviation (ddof=1; 0 for one seed) and the per-seed values."""
  import numpy as np
  v = np.asarray(values, np.float64)
  std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
  return {"mean": float(v.mean()), "std": std, "values": [float(x) for x in v]}


def batch_order(seed: int, n: int, steps: int):
  """Row indices of each step's batch: epochs of a seeded permutation, full batches."""
  import numpy as np
  rng = np.random.default_rng(seed)
  per_epoch = n // BATCH
  order = []
  while len(order) < steps:
    perm = rng.permutation(n)
    order.extend(perm[i * BATCH:(i + 1) * BATCH] for i in range(per_epoch))
  return order[:steps]


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
  xtr_t, ytr_t = torch.as_tensor(xtr), torch.as_tensor(ytr)
  xte_t, yte_t = torch.as_tensor(xte), torch.as_tensor(yte)

  def evaluate():
    with torch.no_grad():
      logits = model(xte_t)
      return (float((logits.argmax(1) == yte_t).float().mean()),
              float(nn.functional.cross_entropy(logits, yte_t)))

  opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
  order = batch_order(seed, len(xtr), max(budgets))
  results, train_seconds = {0: evaluate()}, 0.0
  for step, idx in enumerate(order, start=1):
    t0 = time.perf_counter()
    idx = torch.as_tensor(idx)
    loss = nn.functional.cross_entropy(model(xtr_t[idx]), ytr_t[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    train_seconds += time.perf_counter() - t0
    if step in budgets:
      results[step] = evaluate()
  return results, init_seconds, train_seconds


# -- MNIST: Flax ----------------------------------------------------------------------
def flax_mnist_run(arm, seed, data, budgets):
  import jax
  import jax.numpy as jnp
  import optax
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

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(LR)
  opt_state = tx.init(params)

  def loss_fn(p, xb, yb):
    logits = nnx.merge(graphdef, p, rest)(xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  @jax.jit
  def step_fn(p, state, x_all, y_all, idx):
    # The batch is gathered inside the compiled step (no eager dispatch per step).
    loss, grads = jax.value_and_grad(loss_fn)(p, x_all[idx], y_all[idx])
    updates, state = tx.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  @jax.jit
  def eval_fn(p, x, y):
    logits = nnx.merge(graphdef, p, rest)(x)
    return ((logits.argmax(-1) == y).mean(),
            optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())

  xtr_d, ytr_d = jnp.asarray(xtr), jnp.asarray(ytr, jnp.int32)
  xte_d, yte_d = jnp.asarray(xte), jnp.asarray(yte, jnp.int32)
  order = batch_order(seed, len(xtr), max(budgets))
  step_c = step_fn.lower(params, opt_state, xtr_d, ytr_d, jnp.arange(BATCH)).compile()

  def evaluate(p):
    acc, ce = eval_fn(p, xte_d, yte_d)
    return float(acc), float(ce)

  results, train_seconds = {0: evaluate(params)}, 0.0
  for step, idx in enumerate(order, start=1):
    t0 = time.perf_counter()
    params, opt_state, loss = step_c(params, opt_state, xtr_d, ytr_d, jnp.asarray(idx))
    loss.block_until_ready()
    train_seconds += time.perf_counter() - t0
    if step in budgets:
      results[step] = evaluate(params)
  return results, init_seconds, train_seconds


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


# -- toy language models ------------------------------------------------------------
def lm_data(name: str, quick: bool):
  from explicit_softmax import data as data_lib
  if name == "markov":
    vocab, n_context = 512, 1
    source = data_lib.MarkovSource(vocab, order=1, zipf_exponent=1.1, seed=0)
    n_train = 50_000 if quick else 200_000
    train, test = source.sample(n_train, seed=1), source.sample(20_000, seed=2)
    extra = {"entropy_rate": float(source.entropy_rate()), "vocab_size": vocab,
             "train_tokens": n_train, "test_tokens": 20_000}
  else:
    path = str(_harness.tiny_shakespeare())
    tokens, vocab_list = data_lib.load_text(path, level="char")
    vocab, n_context = len(vocab_list), 3
    train, test = data_lib.train_test_split_tokens(tokens, 0.1)
    extra = {"vocab_size": vocab, "train_tokens": len(train), "test_tokens": len(test),
             "path": path}
  ftr, ytr = data_lib.context_tokens(train, n_context, vocab)
  fte, yte = data_lib.context_tokens(test, n_context, vocab)
  n_eval = min(len(yte), 50_000)
  extra.update(n_context=n_context, eval_contexts=n_eval)
  return (ftr, ytr, fte[:n_eval], yte[:n_eval], vocab, n_context), extra


def svd_init(ftr, ytr, vocab, n_context, d):
  """The count solution's rank-d factors, the full explicit model and the seconds taken."""
  import explicit_softmax as es
  from explicit_softmax.adapters import svd_factors
  start = time.perf_counter()
  stats = es.SoftmaxStats.from_data(ftr, ytr, n_classes=vocab)
  explicit = es.solve(stats, "cooccurrence")
  factors = svd_factors(explicit, d, n_context=n_context)
  return factors, explicit, time.perf_counter() - start


def torch_lm_run(arm, seed, lm, factors, steps, eval_every, d):
  import numpy as np
  import torch
  from torch import nn
  from explicit_softmax.adapters import torch as es_torch
  ftr, ytr, fte, yte, vocab, k = lm

  class LM(nn.Module):

    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(k * vocab, d)
      self.head = nn.Linear(d, vocab)
      self.register_buffer("offsets", torch.arange(k) * vocab)

    def forward(self, ids):
      return self.head(self.embed(ids + self.offsets).sum(dim=1))

  torch.manual_seed(seed)
  model = LM()
  if arm == "svd":
    es_torch.init_embedding(factors, model.embed, model.head)
  x_tr, y_tr = torch.as_tensor(ftr.ids.astype(np.int64)), torch.as_tensor(ytr)
  x_te, y_te = torch.as_tensor(fte.ids.astype(np.int64)), torch.as_tensor(yte)
  opt = torch.optim.Adam(model.parameters(), lr=LR)
  rng = np.random.default_rng(seed)

  def evaluate():
    with torch.no_grad():
      return float(nn.functional.cross_entropy(model(x_te), y_te))

  curve, seconds, elapsed = [evaluate()], [0.0], 0.0
  for step in range(1, steps + 1):
    t0 = time.perf_counter()
    idx = torch.as_tensor(rng.integers(0, len(y_tr), BATCH))
    loss = nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    elapsed += time.perf_counter() - t0
    if step % eval_every == 0:
      curve.append(evaluate())
      seconds.append(elapsed)
  return curve, seconds


def flax_lm_run(arm, seed, lm, factors, steps, eval_every, d):
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import nnx
  from explicit_softmax.adapters import flax as es_flax
  ftr, ytr, fte, yte, vocab, k = lm

  class LM(nnx.Module):

    def __init__(self, rngs):
      self.embed = nnx.Embed(k * vocab, d, rngs=rngs)
      self.head = nnx.Linear(d, vocab, rngs=rngs)

    def __call__(self, ids):
      return self.head(self.embed(ids + jnp.arange(k) * vocab).sum(axis=1))

  model = LM(nnx.Rngs(seed))
  if arm == "svd":
    es_flax.init_embedding(factors, model.embed, model.head)
  graphdef, params = nnx.split(model)
  tx = optax.adam(LR)
  opt_state = tx.init(params)

  def loss_fn(p, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(
        nnx.merge(graphdef, p)(xb), yb).mean()

  @jax.jit
  def step_fn(p, state, x_all, y_all, idx):
    # The batch is gathered inside the compiled step (no eager dispatch per step).
    loss, grads = jax.value_and_grad(loss_fn)(p, x_all[idx], y_all[idx])
    updates, state = tx.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  eval_fn = jax.jit(loss_fn)
  x_tr, y_tr = jnp.asarray(ftr.ids, jnp.int32), jnp.asarray(ytr, jnp.int32)
  x_te, y_te = jnp.asarray(fte.ids, jnp.int32), jnp.asarray(yte, jnp.int32)
  step_c = step_fn.lower(params, opt_state, x_tr, y_tr, jnp.arange(BATCH)).compile()
  rng = np.random.default_rng(seed)
  curve, seconds, elapsed = [float(eval_fn(params, x_te, y_te))], [0.0], 0.0
  for step in range(1, steps + 1):
    t0 = time.perf_counter()
    idx = jnp.asarray(rng.integers(0, len(ytr), BATCH))
    params, opt_state, loss = step_c(params, opt_state, x_tr, y_tr, idx)
    loss.block_until_ready()
    elapsed += time.perf_counter() - t0
    if step % eval_every == 0:
      curve.append(float(eval_fn(params, x_te, y_te)))
      seconds.append(elapsed)
  return curve, seconds


def first_reach(curve, steps, seconds, target, init_seconds):
  """(step, seconds incl. init) of the first evaluation at or below ``target``, or Nones."""
  for value, step, sec in zip(curve, steps, seconds):
    if value <= target:
      return step, sec + init_seconds
  return None, None


def run_lm(args, progress) -> dict:
  import numpy as np
  d, eval_every = 64, 25 if args.quick else 50
  runners = {"torch": torch_lm_run, "flax": flax_lm_run}
  out = {"d": d, "steps": args.lm_steps, "eval_every": eval_every, "timing_seconds": {}}
  for name in ("markov", "shakespeare"):
    lm, extra = lm_data(name, args.quick)
    ftr, ytr, fte, yte, vocab, k = lm
    factors, explicit, svd_seconds = svd_init(ftr, ytr, vocab, k, d)
    entry = dict(extra)
    entry["explicit_full_rank_ce"] = float(explicit.log_loss(fte, yte))
    entry["svd_init_seconds"] = svd_seconds
    entry["singular_value_energy_kept"] = float(
        (factors.singular_values[:d]**2).sum() / (factors.singular_values**2).sum())
    steps_axis = list(range(0, args.lm_steps + 1, eval_every))
    for fw in args.frameworks:
      fw_start = time.perf_counter()
      runs = {}
      for arm in LM_ARMS:
        runs[arm] = []
        for seed in range(args.seeds):
          progress.set_postfix_str(f"lm {name} {fw} {arm} seed {seed}")
          runs[arm].append(runners[fw](arm, seed, lm, factors, args.lm_steps, eval_every, d))
          progress.update(1)
      targets = {
          "svd_start": float(np.mean([c[0] for c, _ in runs["svd"]])),
          "random_end": float(np.mean([c[-1] for c, _ in runs["random"]])),
      }
      result = {"targets": targets, "step_axis": steps_axis}
      for arm in LM_ARMS:
        init_s = svd_seconds if arm == "svd" else 0.0
        curves = np.array([c for c, _ in runs[arm]])
        reach = {}
        for tname, target in targets.items():
          hits = [first_reach(c, steps_axis, s, target, init_s) for c, s in runs[arm]]
          ok = [h for h in hits if h[0] is not None]
          reach[tname] = {
              "reached": f"{len(ok)}/{len(hits)}",
              "steps": summary([h[0] for h in ok]) if ok else None,
              "seconds": summary([h[1] for h in ok]) if ok else None,
          }
        result[arm] = {
            "init_seconds": init_s,
            "ce_start": summary(curves[:, 0]),
            "ce_end": summary(curves[:, -1]),
            "curve_mean": curves.mean(axis=0).tolist(),
            "curve_std": (curves.std(axis=0, ddof=1) if len(curves) > 1
                          else np.zeros(curves.shape[1])).tolist(),
            "train_seconds": summary([s[-1] for _, s in runs[arm]]),
            "to_target": reach,
        }
      entry[fw] = result
      out["timing_seconds"][f"{name}_{fw}"] = time.perf_counter() - fw_start
    out[name] = entry
  return out


# -- findings, table and plot -------------------------------------------------------
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


def print_tables(result: dict) -> None:
  mnist = result.get("mnist")
  if mnist:
    print("\nMNIST 784-256-10 ReLU, Adam lr 1e-3 batch 128: test accuracy / cross-entropy "
          "(mean ± std over seeds)")
    steps = ["0"] + [str(s) for s in mnist["budgets"]]
    for fw in (f for f in ("torch", "flax") if f in mnist):
      print(f"  [{fw}]  " + " | ".join(f"step {s:>4}" for s in steps) + " | init s")
      for arm in ARMS:
        cells = []
        for s in steps:
          r = mnist[fw][arm]["by_step"][s]
          cells.append(f"{100 * r['accuracy']['mean']:.2f}±{100 * r['accuracy']['std']:.2f}% "
                       f"{r['cross_entropy']['mean']:.3f}±{r['cross_entropy']['std']:.3f}")
        print(f"  {arm:>14}: " + " | ".join(cells)
              + f" | {mnist[fw][arm]['init_seconds']['mean']:.1f}")
  lm = result.get("lm")
  if lm:
    print(f"\nToy LMs (d={lm['d']}, Adam lr 1e-3, batch 128, {lm['steps']} steps): held-out CE"
          " and steps / seconds (init included) to reach the targets")
    for name in ("markov", "shakespeare"):
      entry = lm[name]
      print(f"  [{name}] explicit full-rank CE {entry['explicit_full_rank_ce']:.3f}"
            + (f", entropy rate {entry['entropy_rate']:.3f}" if "entropy_rate" in entry else ""))
      for fw in (f for f in ("torch", "flax") if f in entry):
        r = entry[fw]
        print(f"    {fw}: targets " + ", ".join(f"{k}={v:.3f}" for k, v in r["targets"].items()))
        for arm in LM_ARMS:
          a = r[arm]
          reach = []
          for tname, hit in a["to_target"].items():
            if hit["steps"] is None:
              reach.append(f"{tname}: not reached")
            else:
              reach.append(f"{tname}: {hit['steps']['mean']:.0f} steps "
                           f"{hit['seconds']['mean']:.2f}s ({hit['reached']})")
          print(f"      {arm:>6}: CE {a['ce_start']['mean']:.3f} -> {a['ce_end']['mean']:.3f}"
                f"±{a['ce_end']['std']:.3f}; " + "; ".join(reach))


def plot(result: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, 2, figsize=(12, 9))
  colors = dict(zip(ARMS + LM_ARMS, ["tab:gray", "tab:blue", "tab:green", "tab:orange",
                                     "tab:blue", "tab:gray"]))
  styles = {"torch": "-", "flax": "--"}
  mnist = result.get("mnist")
  if mnist:
    steps = [0] + mnist["budgets"]
    for fw in (f for f in ("torch", "flax") if f in mnist):
      for arm in ARMS:
        for ax, key, scale in ((axes[0, 0], "accuracy", 100), (axes[0, 1], "cross_entropy", 1)):
          rows = [mnist[fw][arm]["by_step"][str(s)][key] for s in steps]
          ax.errorbar(steps, [scale * r["mean"] for r in rows],
                      yerr=[scale * r["std"] for r in rows], color=colors[arm],
                      linestyle=styles[fw], marker="x" if arm == "residual" else "o",
                      ms=6 if arm == "residual" else 3, lw=0.8 if arm == "residual" else 1.5,
                      capsize=2, label=f"{arm} ({fw})")
    axes[0, 0].set(title="MNIST MLP: test accuracy", xlabel="Adam steps",
                   ylabel="accuracy (%)", ylim=(80, 100))
    axes[0, 1].set(title="MNIST MLP: test cross-entropy", xlabel="Adam steps",
                   ylabel="nats", yscale="log")
    axes[0, 0].legend(fontsize=7, ncol=2)
  lm = result.get("lm")
  if lm:
    for ax, name in ((axes[1, 0], "markov"), (axes[1, 1], "shakespeare")):
      entry = lm[name]
      for fw in (f for f in ("torch", "flax") if f in entry):
        r = entry[fw]
        for arm in LM_ARMS:
          ax.plot(r["step_axis"], r[arm]["curve_mean"], color=colors[arm],
                  linestyle=styles[fw], label=f"{arm} ({fw})")
      ax.axhline(entry["explicit_full_rank_ce"], color="k", lw=0.8, ls=":",
                 label="explicit full rank")
      if "entropy_rate" in entry:
        ax.axhline(entry["entropy_rate"], color="tab:red", lw=0.8, ls=":",
                   label="entropy rate")
      ax.set(title=f"LM d={lm['d']} ({name}, K={entry['n_context']}, V={entry['vocab_size']})",
             xlabel="Adam steps", ylabel="held-out cross-entropy (nats)")
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


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
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1))
  plot(result, out.with_suffix(".png"))
  print_tables(result)
  print(f"\nwrote {out} and {out.with_suffix('.png')} in {result['total_seconds']:.0f}s")
  return result


if __name__ == "__main__":
  _harness.run(main)
