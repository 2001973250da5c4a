"""Iterative refinement of a softmax model with optax, and temperature calibration.

``refine`` minimises the mean cross-entropy (1) of :mod:`explicit_softmax.model`
plus ``(l2 / 2) ||W||^2`` from any starting model, with jitted optax steps, and
records loss, gradient norm and wall time per step, so that refinement from an
explicit solution and gradient descent from zero run the very same code.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from explicit_softmax import _design
from explicit_softmax import _targets
from explicit_softmax import model as model_lib

METHODS = ("lbfgs", "adam", "sgd")
DEFAULT_LEARNING_RATE = {"adam": 1e-2, "sgd": 0.5}


def _cross_entropy(logits, y, w):
  """``-sum_t w_t sum_j Y_tj log p_tj`` for labels (T,) or soft labels (T, M)."""
  log_p = jax.nn.log_softmax(logits, axis=-1)
  if y.ndim == 1:
    picked = jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]
  else:
    picked = jnp.sum(y * log_p, axis=-1)
  return -jnp.sum(w * picked)


def _device_targets(targets: _targets.Targets):
  if targets.labels is not None:
    return jnp.asarray(targets.labels, jnp.int32)
  return jnp.asarray(targets.probs, jnp.float32)


def refine(model: model_lib.SoftmaxModel, X, y, method: str = "lbfgs", steps: int = 100, *,
           l2: float = 0.0, batch_size: int | None = None,
           learning_rate: float | None = None, sample_weight=None,
           callback: Callable | None = None, seed: int = 0) -> model_lib.SoftmaxModel:
  """Refines ``model`` by iterative optimisation of the training objective.

  Args:
    model: the starting point (an explicit solution, zeros, anything).
    X: (T, N) nonnegative features (dense, sparse or :class:`TokenFeatures`).
    y: (T,) labels or (T, M) soft labels.
    method: ``"lbfgs"`` (full batch, zoom line search; the training loss never
      increases), ``"adam"`` or ``"sgd"``.
    steps: number of optimiser steps.
    l2: L2 penalty ``(l2/2) ||W||^2`` added to the mean cross-entropy.
    batch_size: minibatch size for adam/sgd (None: full batch). Batches are
      drawn without replacement, one permutation per epoch, seeded by ``seed``.
    learning_rate: step size for adam/sgd (defaults: adam 1e-2, sgd 0.5).
    sample_weight: optional (T,) nonnegative weights.
    callback: ``callback(step, model, record) -> bool | None`` after each step;
      ``record`` holds ``loss``, ``grad_norm`` and ``seconds``. Returning True
      stops early. Time spent in the callback is excluded from ``seconds``.
    seed: seed of the minibatch order.

  Returns:
    The refined :class:`SoftmaxModel`, with its per-step :class:`History`.
  """
  if method not in METHODS:
    raise ValueError(f"unknown refine method {method!r}; choose one of {METHODS}.")
  if int(steps) < 0:
    raise ValueError(f"steps must be >= 0; got {steps}.")
  if not l2 >= 0:
    raise ValueError(f"l2 must be >= 0; got {l2}.")
  if method == "lbfgs" and batch_size is not None:
    raise ValueError("L-BFGS is a full-batch method; leave batch_size=None.")
  design = _design.as_design(X, n_features=model.n_features)
  t = design.shape[0]
  targets = _targets.check_targets(y, t, model.n_classes)
  w = _targets.check_sample_weight(sample_weight, t)
  w = w / w.sum()  # the objective is a weighted mean
  if batch_size is not None and not 1 <= int(batch_size):
    raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
  minibatch = batch_size is not None and int(batch_size) < t

  logits_fn = design.jax_logits

  def objective(params, data, y_dev, w_dev):
    weights, bias = params
    logits = logits_fn(data, weights) + bias
    return _cross_entropy(logits, y_dev, w_dev) + 0.5 * l2 * jnp.sum(weights**2)

  params = (jnp.asarray(model.weights), jnp.asarray(model.bias))
  if method == "lbfgs":
    opt = optax.lbfgs()
  else:
    lr = DEFAULT_LEARNING_RATE[method] if learning_rate is None else learning_rate
    opt = optax.adam(lr) if method == "adam" else optax.sgd(lr)
  state = opt.init(params)

  if method == "lbfgs":
    data, y_dev, w_dev = design.jax_data(), _device_targets(targets), jnp.asarray(w, jnp.float32)
    value_fn = lambda p: objective(p, data, y_dev, w_dev)
    value_and_grad = optax.value_and_grad_from_state(value_fn)

    @jax.jit
    def step(params, state):
      value, grad = value_and_grad(params, state=state)
      updates, state = opt.update(grad, state, params, value=value, grad=grad,
                                  value_fn=value_fn)
      params = optax.apply_updates(params, updates)
      new_value = optax.tree_utils.tree_get(state, "value")
      new_grad = optax.tree_utils.tree_get(state, "grad")
      return params, state, value, new_value, optax.tree_utils.tree_norm(new_grad)
  else:
    @jax.jit
    def step(params, state, data, y_dev, w_dev):
      value, grad = jax.value_and_grad(objective)(params, data, y_dev, w_dev)
      updates, state = opt.update(grad, state, params)
      return optax.apply_updates(params, updates), state, value, optax.tree_utils.tree_norm(grad)

    if not minibatch:
      full = (design.jax_data(), _device_targets(targets), jnp.asarray(w, jnp.float32))
    else:
      batch_size = int(batch_size)
      rng = np.random.default_rng(seed)
      per_epoch = t // batch_size
      # Dense and token data are gathered on the device; a sparse matrix is
      # sliced on the host and densified one batch at a time.
      on_device = not (isinstance(design, _design.SparseDesign)
                       and not isinstance(design, _design.TokenDesign))
      if on_device:
        data_all, y_all = design.jax_data(), _device_targets(targets)
        w_all = jnp.asarray(w * t, jnp.float32)  # per-batch mean below
      order = None

  losses, norms, seconds = [], [], []
  elapsed = 0.0
  for k in range(int(steps)):
    start = time.perf_counter()
    if method == "lbfgs":
      new_params, new_state, old_value, value, norm = step(params, state)
      value = float(value)
      if not np.isfinite(value) or value > float(old_value):
        # The zoom line search accepts approximately-Wolfe points that may
        # increase the loss by float32 round-off near the optimum: stop there,
        # so the training loss never increases.
        elapsed += time.perf_counter() - start
        break
      params, state = new_params, new_state
    else:
      if minibatch:
        pos = k % per_epoch
        if pos == 0:
          order = rng.permutation(t)
        idx = order[pos * batch_size:(pos + 1) * batch_size]
        if on_device:
          idx_dev = jnp.asarray(idx)
          batch = (data_all[idx_dev], y_all[idx_dev], w_all[idx_dev] / batch_size)
        else:
          part = design.take(idx)
          batch = (jnp.asarray(part.x.toarray(), jnp.float32),
                   _device_targets(targets.take(idx)),
                   jnp.asarray(w[idx] * t / batch_size, jnp.float32))
      else:
        batch = full
      params, state, value, norm = step(params, state, *batch)
      value = float(value)
    norm = float(norm)
    elapsed += time.perf_counter() - start
    losses.append(value)
    norms.append(norm)
    seconds.append(elapsed)
    if callback is not None:
      current = model.replace(weights=np.asarray(params[0]), bias=np.asarray(params[1]),
                              history=None)
      if callback(k, current, {"loss": value, "grad_norm": norm, "seconds": elapsed}):
        break

  info = dict(model.info)
  info["refine"] = {"method": method, "steps": len(losses), "l2": float(l2),
                    "batch_size": batch_size, "learning_rate": learning_rate}
  history = model_lib.History(np.asarray(losses), np.asarray(norms), np.asarray(seconds))
  return model_lib.SoftmaxModel(np.asarray(params[0]), np.asarray(params[1]), info=info,
                                history=history)


def calibrate(model: model_lib.SoftmaxModel, X, y, *, sample_weight=None,
              steps: int = 50) -> model_lib.SoftmaxModel:
  """Fits a global temperature and class biases to the training cross-entropy.

  The calibrated logits are ``tau (x W + b) + beta``: ``M + 1`` parameters, in
  which the cross-entropy is convex. ``x W + b`` is computed in one pass over
  ``X`` and kept ((T, M) floats); L-BFGS then optimises ``(tau, beta)`` on it.

  Args:
    model: the model to calibrate.
    X: (T, N) training features.
    y: (T,) labels or (T, M) soft labels.
    sample_weight: optional (T,) nonnegative weights.
    steps: maximum L-BFGS iterations.

  Returns:
    A :class:`SoftmaxModel` with weights ``tau W`` and bias ``tau b + beta``.
  """
  design = _design.as_design(X, n_features=model.n_features)
  t = design.shape[0]
  targets = _targets.check_targets(y, t, model.n_classes)
  w = _targets.check_sample_weight(sample_weight, t)
  z = jnp.asarray(design.logits(model.weights) + model.bias)
  y_dev, w_dev = _device_targets(targets), jnp.asarray(w / w.sum(), jnp.float32)

  def value_fn(params):
    tau, beta = params
    return _cross_entropy(tau * z + beta, y_dev, w_dev)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(value_fn)

  @jax.jit
  def step(params, state):
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
    return optax.apply_updates(params, updates), state, value

  params = (jnp.ones(()), jnp.zeros(model.n_classes))
  state = opt.init(params)
  best = (float(value_fn(params)), params)
  for _ in range(int(steps)):
    params, state, _ = step(params, state)
    value = float(optax.tree_utils.tree_get(state, "value"))
    if not value < best[0]:
      break
    converged = best[0] - value < 1e-7 * abs(best[0])
    best = (value, params)
    if converged:
      break
  tau, beta = (np.asarray(p, np.float64) for p in best[1])
  info = dict(model.info)
  info["calibration"] = {"temperature": float(tau)}
  return model.replace(weights=tau * model.weights, bias=tau * model.bias + beta, info=info,
                       history=None)
