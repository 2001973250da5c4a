"""Iterative refinement of a softmax model with optax, and temperature calibration.

``refine`` minimises the mean cross-entropy (1) of :mod:`explicit_softmax.model`
plus ``(l2 / 2) ||W||^2`` from any starting model, with jitted optax steps, and
records loss, gradient norm and wall time per step, so that refinement from an
explicit solution and gradient descent from zero run the very same code.
"""

from __future__ import annotations

import functools
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


def _device_targets(targets: _targets.Targets):
  if targets.labels is not None:
    return jnp.asarray(targets.labels, jnp.int32)
  return jnp.asarray(targets.probs, jnp.float32)


def _objective(params, data, y, w, l2, logits_fn):
  """Weighted mean cross-entropy (1) plus ``(l2/2)||W||^2``; ``w`` sums to one."""
  weights, bias = params
  logits = logits_fn(data, weights) + bias
  return model_lib.weighted_cross_entropy(logits, y, w) + 0.5 * l2 * jnp.sum(weights**2)


# The steps are module-level jitted functions with the data as arguments, so
# their compilation is cached across calls (per input kind and shape).
@functools.partial(jax.jit, static_argnames=("logits_fn",))
def _lbfgs_step(params, state, data, y, w, l2, *, logits_fn):
  value_fn = functools.partial(_objective, data=data, y=y, w=w, l2=l2, logits_fn=logits_fn)
  opt = optax.lbfgs()
  value, grad = optax.value_and_grad_from_state(value_fn)(params, state=state)
  updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
  params = optax.apply_updates(params, updates)
  new_value = optax.tree_utils.tree_get(state, "value")
  new_grad = optax.tree_utils.tree_get(state, "grad")
  return params, state, value, new_value, optax.tree_utils.tree_norm(new_grad)


def _first_order(method, learning_rate):
  return optax.adam(learning_rate) if method == "adam" else optax.sgd(learning_rate)


@functools.partial(jax.jit, static_argnames=("logits_fn", "method"))
def _first_order_step(params, state, data, y, w, idx, l2, learning_rate, *, logits_fn, method):
  """One adam/sgd step on the rows ``idx`` of the data (all rows: ``idx`` is None)."""
  if idx is not None:
    data, y, w = data[idx], y[idx], w[idx] / w[idx].sum()
  value, grad = jax.value_and_grad(_objective)(params, data, y, w, l2, logits_fn)
  updates, state = _first_order(method, learning_rate).update(grad, state, params)
  return optax.apply_updates(params, updates), state, value, optax.tree_utils.tree_norm(grad)


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
      drawn without replacement, one permutation per epoch, seeded by ``seed``;
      a sparse matrix is sliced on the host and densified one batch at a time.
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
  if batch_size is not None and not int(batch_size) >= 1:
    raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
  design = _design.as_design(X, n_features=model.n_features)
  t = design.shape[0]
  targets = _targets.check_targets(y, t, model.n_classes)
  w = _targets.check_sample_weight(sample_weight, t)
  w = w / w.sum()  # the objective is a weighted mean
  minibatch = batch_size is not None and int(batch_size) < t
  # A sparse matrix cannot be row-gathered inside jit: it is sliced on the host.
  host_batches = minibatch and type(design) is _design.SparseDesign
  if not host_batches:
    data = design.jax_data()
    y_dev, w_dev = _device_targets(targets), jnp.asarray(w, jnp.float32)
  logits_fn = type(design).jax_logits
  lr = DEFAULT_LEARNING_RATE.get(method) if learning_rate is None else learning_rate
  l2_dev = jnp.float32(l2)

  params = (jnp.asarray(model.weights), jnp.asarray(model.bias))
  state = (optax.lbfgs() if method == "lbfgs" else _first_order(method, lr)).init(params)
  rng = np.random.default_rng(seed)
  order = None
  losses, norms, seconds = [], [], []
  elapsed = 0.0
  for k in range(int(steps)):
    start = time.perf_counter()
    if method == "lbfgs":
      new_params, new_state, old_value, value, norm = _lbfgs_step(
          params, state, data, y_dev, w_dev, l2_dev, logits_fn=logits_fn)
      value = float(value)
      if not np.isfinite(value) or value > float(old_value):
        # The zoom line search accepts approximately-Wolfe points that may
        # raise the loss by float32 round-off near the optimum: stop before
        # such a step, so the training loss never increases.
        break
      params, state = new_params, new_state
    else:
      idx = None
      if minibatch:
        per_epoch = t // int(batch_size)
        if k % per_epoch == 0:
          order = rng.permutation(t)
        pos = k % per_epoch
        idx = order[pos * int(batch_size):(pos + 1) * int(batch_size)]
      if host_batches:
        part, part_w = design.take(idx), w[idx]
        batch = (jnp.asarray(part.x.toarray(), jnp.float32), _device_targets(targets.take(idx)),
                 jnp.asarray(part_w / part_w.sum(), jnp.float32), None)
      else:
        batch = (data, y_dev, w_dev, None if idx is None else jnp.asarray(idx))
      params, state, value, norm = _first_order_step(
          params, state, *batch, l2_dev, jnp.float32(lr), logits_fn=logits_fn, method=method)
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
                    "batch_size": batch_size, "learning_rate": lr}
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

  params = (jnp.ones(()), jnp.zeros(model.n_classes))
  state = optax.lbfgs().init(params)
  best = (float(_temperature_objective(params, z, y_dev, w_dev)), params)
  for _ in range(int(steps)):
    params, state, value = _calibration_step(params, state, z, y_dev, w_dev)
    value = float(value)
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


def _temperature_objective(params, z, y, w):
  tau, beta = params
  return model_lib.weighted_cross_entropy(tau * z + beta, y, w)


@jax.jit
def _calibration_step(params, state, z, y, w):
  value_fn = functools.partial(_temperature_objective, z=z, y=y, w=w)
  opt = optax.lbfgs()
  value, grad = optax.value_and_grad_from_state(value_fn)(params, state=state)
  updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
  params = optax.apply_updates(params, updates)
  return params, state, optax.tree_utils.tree_get(state, "value")
