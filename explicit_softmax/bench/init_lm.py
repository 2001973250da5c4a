"""The initialisation benchmark's language-model experiment: embedding plus head models
from the SVD initialiser against random init, on a Markov source and tiny Shakespeare."""

from __future__ import annotations

import time

from explicit_softmax.bench import _harness
from explicit_softmax.bench.training import flax_train, random_batches, summary, torch_train

# The arms: embedding and head from the SVD initialiser, or the framework's default.
LM_ARMS = ("svd", "random")


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


def _eval_steps(steps: int, eval_every: int) -> set[int]:
  return set(range(eval_every, steps + 1, eval_every))


def _curve(points) -> tuple[list[float], list[float]]:
  """The held-out cross-entropy and the training seconds at each evaluation."""
  return [p["loss"] for p in points], [p["seconds"] for p in points]


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

  def evaluate():
    with torch.no_grad():
      return {"loss": float(nn.functional.cross_entropy(model(x_te), y_te))}

  points = torch_train(model, list(model.parameters()), x_tr, y_tr,
                       random_batches(seed, len(ytr), steps), _eval_steps(steps, eval_every),
                       evaluate)
  return _curve(points)


def flax_lm_run(arm, seed, lm, factors, steps, eval_every, d):
  import jax.numpy as jnp
  import numpy as np
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
  points, _ = flax_train(model, ftr.ids.astype(np.int32), ytr,
                         random_batches(seed, len(ytr), steps), _eval_steps(steps, eval_every),
                         fte.ids.astype(np.int32), yte)
  return _curve(points)


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
