"""The language-model benchmark's scoring and training curves: held-out CE in chunks,
the training-set probe (loss and KL to the explicit fit), checkpoints and one run."""

from __future__ import annotations

import numpy as np
import scipy.special

import explicit_softmax as es

from explicit_softmax.bench.lm_data import EVAL_ELEMENTS, PROBE_ELEMENTS

try:
  from tqdm.auto import tqdm
except ImportError:  # progress bars are optional
  tqdm = None


def _log_softmax_rows(logits) -> np.ndarray:
  return scipy.special.log_softmax(np.asarray(logits, np.float64), axis=1)


def _gather_logits(weights, bias, ids, vocab_size) -> np.ndarray:
  cols = ids + vocab_size * np.arange(ids.shape[1])
  out = weights[cols[:, 0]] + bias
  for k in range(1, ids.shape[1]):
    out += weights[cols[:, k]]
  return out


def score(model, feats: es.TokenFeatures, targets) -> dict:
  """Held-out cross-entropy (nats) and accuracy, exactly, in chunks.

  With K = 1 every sample's prediction is a row of ``log_softmax(W + b)``, so
  the (V, M) table is computed once and gathered.
  """
  ids, v = feats.ids, feats.vocab_size
  if ids.shape[1] == 1:
    table = _log_softmax_rows(model.weights + model.bias)
    rows = ids[:, 0]
    return {"ce": float(-table[rows, targets].mean()),
            "acc": float(np.mean(table.argmax(axis=1)[rows] == targets))}
  chunk = max(256, EVAL_ELEMENTS // model.n_classes)
  total, correct = 0.0, 0
  for start in range(0, len(targets), chunk):
    sl = slice(start, start + chunk)
    log_p = _log_softmax_rows(_gather_logits(model.weights, model.bias, ids[sl], v))
    total -= log_p[np.arange(log_p.shape[0]), targets[sl]].sum()
    correct += int(np.sum(log_p.argmax(axis=1) == targets[sl]))
  return {"ce": float(total / len(targets)), "acc": float(correct / len(targets))}


def score_log_proba(log_proba_fn, x_csr, targets, n_classes) -> dict:
  """Cross-entropy and accuracy of a scikit-learn style ``predict_log_proba``, chunked."""
  chunk = max(256, EVAL_ELEMENTS // n_classes)
  total, correct = 0.0, 0
  for start in range(0, len(targets), chunk):
    sl = slice(start, start + chunk)
    log_p = log_proba_fn(x_csr[sl])
    total -= log_p[np.arange(log_p.shape[0]), targets[sl]].sum()
    correct += int(np.sum(log_p.argmax(axis=1) == targets[sl]))
  return {"ce": float(total / len(targets)), "acc": float(correct / len(targets))}


class TrainProbe:
  """Training loss and mean KL(explicit || model) over the training positions.

  Exact for K = 1: with one-hot contexts both are sums over the co-occurrence
  counts ``F`` (the training loss is ``-sum_ij F_ij log p_ij / T``, and the mean
  KL is ``sum_i (f_i / T) KL(q_i || p_i)``). For K = 1 the KL to the training
  optimum ``mle`` (the unsmoothed co-occurrence solution) is measured too: it
  equals the training-loss gap. For K > 1 they are averages over a fixed seeded
  subsample of training positions.
  """

  def __init__(self, explicit, feats: es.TokenFeatures, targets, stats, seed: int,
               max_rows: int, mle=None):
    self.v = feats.vocab_size
    if feats.ids.shape[1] == 1:
      self.counts = stats.cooccurrence
      self.freq = stats.feature_mass / stats.total_weight
      self.total = stats.total_weight
      self.rows = None
      self.ref = _log_softmax_rows(explicit.weights + explicit.bias)
      self.mle = None if mle is None else _log_softmax_rows(mle.weights + mle.bias)
      self.exact = True
    else:
      n = min(len(targets), max_rows, max(1000, PROBE_ELEMENTS // explicit.n_classes))
      rng = np.random.default_rng([seed, 3])
      pick = np.sort(rng.choice(len(targets), n, replace=False))
      self.ids, self.targets = feats.ids[pick], targets[pick]
      self.rows = n
      self.ref = _log_softmax_rows(
          _gather_logits(explicit.weights, explicit.bias, self.ids, self.v))
      self.exact = False

  def __call__(self, model) -> dict:
    if self.exact:
      log_p = _log_softmax_rows(model.weights + model.bias)
      loss = float(-(self.counts * log_p).sum() / self.total)
      row_kl = (np.exp(self.ref) * (self.ref - log_p)).sum(axis=1)
      kl = float(self.freq @ row_kl)
      if self.mle is not None:
        row_kl = (np.exp(self.mle) * (self.mle - log_p)).sum(axis=1)
        return {"train_loss": loss, "kl_to_explicit": kl,
                "kl_to_mle": float(self.freq @ row_kl)}
    else:
      log_p = _log_softmax_rows(_gather_logits(model.weights, model.bias, self.ids, self.v))
      loss = float(-log_p[np.arange(self.rows), self.targets].mean())
      kl = float(np.mean((np.exp(self.ref) * (self.ref - log_p)).sum(axis=1)))
    return {"train_loss": loss, "kl_to_explicit": kl}


def checkpoint_base(steps_per_epoch: int) -> int:
  """Steps between callbacks: about 1/32 epoch (the steps between run jitted)."""
  return max(1, steps_per_epoch // 32)


def checkpoint_steps(steps_per_epoch: int, max_steps: int) -> set[int]:
  """Multiples of the base ``b`` (about 1/32 epoch): ``b, 2b, 4b``, then every
  ``8b`` (about a quarter epoch) up to two epochs, then every ``32b`` (about an
  epoch); the last step is added by the caller. Full-batch runs
  (``steps_per_epoch == 1``): every step."""
  if steps_per_epoch == 1:
    return set(range(1, max_steps + 1))
  base = checkpoint_base(steps_per_epoch)
  points = {base, 2 * base, 4 * base}
  points |= set(range(8 * base, 2 * steps_per_epoch + 1, 8 * base))
  points |= set(range(32 * base, max_steps + 1, 32 * base))
  return {p for p in points if p <= max_steps}


def run_curve(start, data, *, family: str, init: str, method: str, learning_rate,
              max_steps: int, budget: float, batch_size, offset: float, steps_per_epoch: int,
              probe: TrainProbe, seed: int, position: int = 1) -> dict:
  """One ``es.refine`` run with held-out and training checkpoints (evaluation off the clock).

  Stops after ``max_steps`` steps or once its compile-free clock passes ``budget``
  seconds; a run that ``es.refine`` stops as diverged (loss or parameters
  non-finite) is marked so and keeps the points before.
  """
  x, y, x_test, y_test = data
  marks = checkpoint_steps(steps_per_epoch, max_steps)
  points = [{"step": 0, "seconds": offset, **score(start, x_test, y_test), **probe(start),
             "batch_loss": None}]
  state = {"diverged": False, "steps": 0}
  bar = None
  if tqdm is not None:
    bar = tqdm(total=max_steps, desc=f"  {family} {init} {method} {_lr(learning_rate)}",
               leave=False, position=position, unit="step")

  def callback(step, model, record):
    done = step + 1
    state["steps"] = done
    if bar is not None:
      bar.update(done - bar.n)
    over = record["seconds"] >= budget
    if done in marks or over or done == max_steps:
      points.append({"step": done, "seconds": offset + record["seconds"],
                     **score(model, x_test, y_test), **probe(model),
                     "batch_loss": record["loss"]})
    return over

  try:
    es.refine(start, x, y, method=method, steps=max_steps, batch_size=batch_size,
              learning_rate=learning_rate, callback=callback,
              callback_every=checkpoint_base(steps_per_epoch), seed=seed)
  except ValueError as err:
    if "diverged" not in str(err):
      raise
    state["diverged"] = True
  finally:
    if bar is not None:
      bar.close()
  last = points[-1]
  return {"family": family, "init": init, "method": method,
          "setting": {"method": method, "init": init, "learning_rate": learning_rate},
          "batch_size": batch_size, "steps": state["steps"],
          "epochs": state["steps"] / steps_per_epoch if batch_size else state["steps"],
          "stopped_by": ("divergence" if state["diverged"] else
                         "budget" if last["seconds"] - offset >= budget else "steps"),
          "diverged": state["diverged"], "points": points}


def _lr(learning_rate) -> str:
  return "" if learning_rate is None else f"lr={learning_rate:.3g}"


def _best_point(run: dict) -> dict:
  return min(run["points"], key=lambda p: p["ce"])
