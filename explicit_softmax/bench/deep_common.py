"""What the deep-model benchmark's tasks share: the configuration, evaluation steps, the
rows each initialiser reads, the probe's fit and orthonormal weights (``es.bench.deep``
runs them; ``es.bench.training`` trains them)."""

from __future__ import annotations


TASKS = ("cnn", "cnn_dense", "transfer", "lm")
# The head-rows sweep: the explicit head's held-out loss against the samples it reads.
ROWS_TASK = "rows"
CNN_ARMS = ("default", "lsuv", "probe", "explicit", "explicit_lsuv")
TRANSFER_ARMS = ("default", "lsuv", "probe", "explicit")
LM_ARMS = ("default", "lsuv", "probe", "explicit", "explicit_blocks")
EXPLICIT_ARMS = ("explicit", "explicit_lsuv", "explicit_blocks")
PEERS = ("default", "lsuv", "probe")
# Added to a task's seed for its batch order (``training.batch_order``).
ORDER_SEED = 1000
CNN_VAL = 2000          # validation rows evaluated along the curve (the rest of test at the end)
# Samples read by the head-rows sweep, as multiples of the head's inputs N + 1 (and all).
ROWS_MULTIPLES = (2, 4, 8, 16, 32, 64)
LSUV_BATCH, LSUV_TOL, LSUV_ROUNDS = 256, 0.1, 10
# Language model.
LM_WIDTH, LM_LAYERS, LM_HEADS, LM_CONTEXT, LM_BATCH = 128, 4, 4, 64, 4
LM_LR, LM_MIN_LR, LM_WARMUP, LM_DECAY, LM_CLIP = 1e-3, 1e-4, 100, 0.1, 1.0
LM_FIT_WINDOWS, LM_VAL_WINDOWS = 256, 64


def eval_steps(budget: int) -> list[int]:
  """Evaluation points: dense early (geometric) and even (linear) up to the budget."""
  import numpy as np
  geo = np.geomspace(4, budget, 12).round().astype(int)
  lin = np.linspace(0, budget, 21).round().astype(int)
  return sorted(set(geo.tolist()) | set(lin.tolist()) | {0, budget})


def fit_rows(seed: int, n: int, rows: int):
  """``rows`` random rows of ``n`` (sorted), the seed's draw (LSUV's batch)."""
  import numpy as np
  return np.sort(np.random.default_rng(2000 + seed).choice(n, size=min(n, rows), replace=False))


def explicit_rows(n: int, n_features: int, per_row: int = 1):
  """The rows ``init_head``'s default budget reads from ``n`` rows of ``per_row`` samples
  each (a sequence row carries one per position); the probe is fitted on them too."""
  import numpy as np
  from explicit_softmax.adapters import _fit
  rows = _fit.even_rows(n, -(-_fit.sample_budget("auto", n_features) // per_row))
  return np.arange(n) if rows is None else rows


def probe_weights(features, labels, seed: int, n_classes: int):
  """scikit-learn's LogisticRegression() on frozen features: (N, M) weights, (M,) bias.

  A class absent from the fitted rows (rare characters) gets zero weights and the
  lowest fitted intercept: finite, as rare as the rarest class seen.
  """
  import warnings
  import numpy as np
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.linear_model import LogisticRegression
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # the default max_iter, as users run it
    clf = LogisticRegression(random_state=seed).fit(features, labels)
  w = np.zeros((features.shape[1], n_classes), np.float32)
  b = np.full(n_classes, clf.intercept_.min(), np.float32)
  w[:, clf.classes_], b[clf.classes_] = clf.coef_.T, clf.intercept_
  return w, b


def orthonormal(rng, rows: int, cols: int):
  """A (rows, cols) matrix with orthonormal rows or columns (SVD of a Gaussian)."""
  import numpy as np
  u, _, vt = np.linalg.svd(rng.standard_normal((rows, cols)), full_matrices=False)
  return (u @ vt).astype(np.float32)
