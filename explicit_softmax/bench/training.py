"""How the initialisation and deep-model benchmarks train: the Adam settings, seeded
batch orders, the timed training loops in PyTorch and Flax NNX, and per-seed summaries
(``es.bench.init`` and ``es.bench.deep`` both use them)."""

from __future__ import annotations

import time

LR, BATCH = 1e-3, 128


def summary(values) -> dict:
  """Mean, standard deviation (ddof=1; 0 for one seed) and the per-seed values."""
  import numpy as np
  v = np.asarray(values, np.float64)
  std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
  return {"mean": float(v.mean()), "std": std, "values": [float(x) for x in v]}


def batch_order(seed: int, n: int, steps: int, batch: int = BATCH):
  """Row indices of each step's batch: epochs of a seeded permutation, full batches.

  Args:
    seed: seeds the permutations (every arm of a seed reads the same batches).
    n: rows of the training set.
    steps: batches wanted.
    batch: rows per batch.

  Returns:
    ``steps`` arrays of ``batch`` row indices.
  """
  import numpy as np
  rng = np.random.default_rng(seed)
  order = []
  while len(order) < steps:
    perm = rng.permutation(n)
    order.extend(perm[i * batch:(i + 1) * batch] for i in range(n // batch))
  return order[:steps]


def random_batches(seed: int, n: int, steps: int, batch: int = BATCH):
  """Row indices of each step's batch, drawn uniformly with replacement (seeded)."""
  import numpy as np
  rng = np.random.default_rng(seed)
  return [rng.integers(0, n, batch) for _ in range(steps)]


def torch_train(model, params, x_tr, y_tr, order, steps_to_eval, evaluate, *, opt=None,
                schedule=None, clip=None, loss_fn=None) -> list[dict]:
  """Trains a PyTorch model on the given batch order, timing the steps only.

  Args:
    model: the ``nn.Module``, in training mode.
    params: the parameters to train (Adam at ``LR`` unless ``opt`` is given).
    x_tr, y_tr: training tensors; ``order`` indexes their rows.
    order: each step's row indices (``batch_order``).
    steps_to_eval: the steps after which ``evaluate()`` runs, in eval mode, clock stopped.
    evaluate: returns a dict of measurements (merged into the step's point).
    opt: the optimiser (default ``torch.optim.Adam(params, lr=LR)``).
    schedule: learning rate of each step (0-based), if any.
    clip: the gradient norm to clip at, if any.
    loss_fn: ``loss_fn(output, targets)`` (default: cross-entropy).

  Returns:
    Points ``{"step", "seconds", "cpu_seconds", **evaluate()}``, starting with step 0.
  """
  import torch
  from torch import nn
  loss_fn = loss_fn or (lambda out, yb: nn.functional.cross_entropy(out, yb))
  opt = opt or torch.optim.Adam(params, lr=LR)
  points = [{"step": 0, "seconds": 0.0, "cpu_seconds": 0.0, **evaluate()}]
  elapsed = cpu = 0.0
  for step, idx in enumerate(order, start=1):
    t0, c0 = time.perf_counter(), time.process_time()
    if schedule is not None:
      for group in opt.param_groups:
        group["lr"] = schedule(step - 1)
    idx = torch.as_tensor(idx)
    loss = loss_fn(model(x_tr[idx]), y_tr[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
      torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    elapsed += time.perf_counter() - t0
    cpu += time.process_time() - c0
    if step in steps_to_eval:
      model.eval()
      points.append({"step": step, "seconds": elapsed, "cpu_seconds": cpu, **evaluate()})
      model.train()
  return points


def flax_train(model, x_tr, y_tr, order, steps_to_eval, x_val, y_val):
  """Trains a Flax NNX classifier with Adam at ``LR`` on the given batch order, timing
  the steps only; the model is updated in place at the end.

  Each step is one compiled call that gathers its batch inside (no eager dispatch per
  step), compiled before the clock starts.

  Args:
    model: the ``nnx.Module`` (its ``nnx.Param`` variables train).
    x_tr, y_tr: training arrays; ``order`` indexes their rows.
    order: each step's row indices (``batch_order``).
    steps_to_eval: the steps after which the validation loss and accuracy are measured.
    x_val, y_val: the validation arrays.

  Returns:
    The points ``{"step", "seconds", "cpu_seconds", "loss", "acc"}`` (starting with
    step 0) and ``evaluate(x, y)``, the trained model's ``{"loss", "acc"}`` on other data.
  """
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(LR)
  opt_state = tx.init(params)

  def loss_fn(p, xb, yb):
    logits = nnx.merge(graphdef, p, rest)(xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  @jax.jit
  def step_fn(p, state, x_all, y_all, idx):
    loss, grads = jax.value_and_grad(loss_fn)(p, x_all[idx], y_all[idx])
    updates, state = tx.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  @jax.jit
  def eval_fn(p, x, y):
    logits = nnx.merge(graphdef, p, rest)(x)
    return ((logits.argmax(-1) == y).mean(),
            optax.softmax_cross_entropy_with_integer_labels(logits, y).mean())

  def evaluate(p, x, y):
    acc, loss = eval_fn(p, x, y)
    return {"loss": float(loss), "acc": float(acc)}

  x_d, y_d = jnp.asarray(x_tr), jnp.asarray(y_tr, jnp.int32)
  xv, yv = jnp.asarray(x_val), jnp.asarray(y_val, jnp.int32)
  step_c = step_fn.lower(params, opt_state, x_d, y_d, jnp.arange(BATCH)).compile()
  points = [{"step": 0, "seconds": 0.0, "cpu_seconds": 0.0, **evaluate(params, xv, yv)}]
  elapsed = cpu = 0.0
  for step, idx in enumerate(order, start=1):
    t0, c0 = time.perf_counter(), time.process_time()
    params, opt_state, loss = step_c(params, opt_state, x_d, y_d, jnp.asarray(idx))
    loss.block_until_ready()
    elapsed += time.perf_counter() - t0
    cpu += time.process_time() - c0
    if step in steps_to_eval:
      points.append({"step": step, "seconds": elapsed, "cpu_seconds": cpu,
                     **evaluate(params, xv, yv)})
  nnx.update(model, params)
  return points, lambda x, y: evaluate(params, jnp.asarray(x), jnp.asarray(y, jnp.int32))
