"""What the initialisation benchmark's experiments share (and the deep-model benchmark
reuses): the arms, the training settings, per-seed summaries and batch orders."""

from __future__ import annotations

ARMS = ("default", "explicit_head", "layerwise", "residual")
LM_ARMS = ("svd", "random")
LR, BATCH = 1e-3, 128
N_HIDDEN = 256


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
