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
import scipy.linalg

from explicit_softmax import _design
from explicit_softmax import _targets
from explicit_softmax import model as model_lib

METHODS = ("lbfgs", "adam", "sgd")
DEFAULT_LEARNING_RATE = {"adam": 1e-2, "sgd": 0.5}


def _device_targets(targets: _targets.Targets):
  if targets.labels is not None:
    return jnp.asarray(targets.labels, jnp.int32)
  return jnp.asarray(targets.probs, jnp.float32)


def _checked_rate(rate, step: int | None) -> float:
  """``rate`` as a float; a ValueError unless finite and >= 0 (``step``: the
  schedule step that gave it, None for a constant)."""
  try:
    rate = float(rate)
  except (TypeError, ValueError):
    raise ValueError(f"learning_rate must be a number or a schedule step -> number; "
                     f"got {rate!r}.") from None
  if not (np.isfinite(rate) and rate >= 0):
    where = "" if step is None else f" (the schedule's value at step {step})"
    raise ValueError(f"learning_rate must be finite and >= 0; got {rate}{where}.")
  return rate


def _rate_schedule(learning_rate) -> Callable[[int], float]:
  """``step -> step size``, checked: a constant once, here; a schedule at each step.

  A negative rate would ascend the loss and a NaN one would poison every
  parameter, both silently; they are refused where the rate is first seen.
  """
  if callable(learning_rate):
    return lambda step: _checked_rate(learning_rate(step), step)
  rate = _checked_rate(learning_rate, None)
  return lambda step: rate


def _diverged(what: str, step: int) -> ValueError:
  return ValueError(
      f"refinement diverged: {what} NaN or inf at step {step}. Lower the learning rate "
      "(or use method='lbfgs', whose line search never increases the loss).")


def _refined(model, params, precond, step: int, **fields) -> model_lib.SoftmaxModel:
  """``model`` with the optimiser's parameters; a clear error if they diverged."""
  weights, bias = (np.asarray(p) for p in _unpack(params, precond))
  if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
    raise _diverged("the parameters are", step)
  return model.replace(weights=weights, bias=bias, **fields)


def _unpack(params, precond):
  """``(W, b)`` from the optimised variables: themselves, or ``[W; b] = P V``."""
  if precond is None:
    return params
  theta = jnp.matmul(precond, params, precision=jax.lax.Precision.HIGHEST)  # not TF32 on GPUs
  return theta[:-1], theta[-1]


def _objective(params, data, y, w, l2, precond, logits_fn):
  """Weighted mean cross-entropy (1) plus ``(l2/2)||W||^2``; ``w`` sums to one."""
  weights, bias = _unpack(params, precond)
  logits = logits_fn(data, weights) + bias
  return model_lib.weighted_cross_entropy(logits, y, w) + 0.5 * l2 * jnp.sum(weights**2)


# The steps are module-level jitted functions with the data as arguments, so
# their compilation is cached across calls (per input kind and shape).
@functools.partial(jax.jit, static_argnames=("logits_fn",))
def _lbfgs_step(params, state, data, y, w, l2, precond, *, logits_fn):
  value_fn = functools.partial(_objective, data=data, y=y, w=w, l2=l2, precond=precond,
                               logits_fn=logits_fn)
  opt = optax.lbfgs()
  value, grad = optax.value_and_grad_from_state(value_fn)(params, state=state)
  updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=value_fn)
  params = optax.apply_updates(params, updates)
  new_value = optax.tree_utils.tree_get(state, "value")
  new_grad = optax.tree_utils.tree_get(state, "grad")
  return params, state, value, new_value, optax.tree_utils.tree_norm(new_grad)


def _first_order(method, learning_rate):
  return optax.adam(learning_rate) if method == "adam" else optax.sgd(learning_rate)


def _first_order_update(params, state, data, y, w, idx, l2, precond, learning_rate, logits_fn,
                        method):
  """One adam/sgd step on the rows ``idx`` of the data (all rows: ``idx`` is None)."""
  if idx is not None:
    data, y, w = data[idx], y[idx], w[idx] / w[idx].sum()
  value, grad = jax.value_and_grad(_objective)(params, data, y, w, l2, precond, logits_fn)
  updates, state = _first_order(method, learning_rate).update(grad, state, params)
  return optax.apply_updates(params, updates), state, value, optax.tree_utils.tree_norm(grad)


_first_order_step = jax.jit(_first_order_update, static_argnames=("logits_fn", "method"))


@functools.partial(jax.jit, static_argnames=("logits_fn", "method", "batch_size"))
def _first_order_epoch(params, state, data, y, w, perm, learning_rates, begin, end, l2, precond,
                       *, logits_fn, method, batch_size):
  """Steps ``begin..end-1`` of one epoch in a single jitted loop.

  Step ``i`` trains on the rows ``perm[i B:(i + 1) B]`` at ``learning_rates[i]``.
  ``begin`` and ``end`` are traced, so every segment of an epoch reuses one
  compilation; one Python call per segment instead of per step removes the
  per-step dispatch and host synchronisation (about 2/3 of a batch-128 MNIST
  step on the CPU).

  Returns:
    ``(params, state, losses, grad_norms)``; the last two are epoch-long arrays
    filled at ``begin..end-1``.
  """
  def body(i, carry):
    params, state, losses, norms = carry
    idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
    params, state, value, norm = _first_order_update(
        params, state, data, y, w, idx, l2, precond, learning_rates[i], logits_fn, method)
    return params, state, losses.at[i].set(value), norms.at[i].set(norm)

  empty = jnp.zeros(learning_rates.shape, jnp.float32)
  return jax.lax.fori_loop(begin, end, body, (params, state, empty, empty))


def _check_l2(l2) -> None:
  if not (l2 >= 0 and np.isfinite(l2)):
    raise ValueError(f"l2 must be a finite number >= 0; got {l2}.")


def refine(model: model_lib.SoftmaxModel, X, y, method: str = "lbfgs", steps: int = 100, *,
           l2: float = 0.0, batch_size: int | None = None,
           learning_rate: float | Callable[[int], float] | None = None, sample_weight=None,
           callback: Callable | None = None, callback_every: int = 1,
           precondition: bool = False, seed: int = 0) -> model_lib.SoftmaxModel:
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
    learning_rate: step size for adam/sgd (defaults: adam 1e-2, sgd 0.5), or a
      schedule ``step -> step size`` such as an ``optax`` schedule (evaluated
      on the host each step; no recompilation).
    sample_weight: optional (T,) nonnegative weights.
    callback: ``callback(step, model, record) -> bool | None`` after every
      ``callback_every``-th step and after the last; ``record`` holds that
      step's ``loss``, ``grad_norm`` and ``seconds``. Returning True stops
      early. Time spent in the callback is excluded from ``seconds``.
    callback_every: steps between callbacks. Minibatch adam/sgd on a dense or
      token input runs the steps between callbacks (within an epoch) in one
      jitted loop, so a larger value is faster; the per-step ``seconds`` of
      such a run are its segments' times spread evenly over their steps.
      Frequent callbacks slow a run beyond their own (unclocked) time: each
      segment is a separate call, and a callback's work (say, a held-out
      evaluation) can slow the steps after it. ``seconds`` includes both, so
      callbacks far apart give timings closest to an unobserved run.
    precondition: optimise in coordinates whitened by the input Gram matrix,
      the Kronecker factor ``X1^T X1 / T`` of the Hessian that the Newton
      closed form inverts (see :func:`gram_preconditioner`). It makes the
      iteration insensitive to the scale and correlation of the features.
    seed: nonnegative integer seed of the minibatch order and of the
      preconditioner's rows.

  Returns:
    The refined :class:`SoftmaxModel`, with its per-step :class:`History`.

  Raises:
    ValueError: for invalid arguments or data (naming the problem), a negative
      or non-finite learning rate (a schedule's is checked at each step), and
      a run that diverged (its loss or parameters became NaN or inf; the
      message names the step): never a model that predicts NaN.
  """
  if method not in METHODS:
    raise ValueError(f"unknown refine method {method!r}; choose one of {METHODS}.")
  steps = _targets.check_integer("steps", steps, minimum=0)
  _check_l2(l2)
  if method == "lbfgs" and batch_size is not None:
    raise ValueError("L-BFGS is a full-batch method; leave batch_size=None.")
  if batch_size is not None:
    batch_size = _targets.check_integer("batch_size", batch_size)
  every = _targets.check_integer("callback_every", callback_every)
  seed = _targets.check_integer("seed", seed, minimum=0)
  if learning_rate is not None and method == "lbfgs":
    raise ValueError("L-BFGS takes its step sizes from a line search; leave learning_rate=None.")
  entry = time.perf_counter()  # setup (validation, transfers, preconditioner) is timed too
  design = _design.as_design(X, n_features=model.n_features)
  t = design.shape[0]
  targets = _targets.check_targets(y, t, model.n_classes)
  w = _targets.check_sample_weight(sample_weight, t)
  w = w / w.sum()  # the objective is a weighted mean
  minibatch = batch_size is not None and batch_size < t
  # A sparse matrix cannot be row-gathered inside jit: it is sliced on the host.
  host_batches = minibatch and type(design) is _design.SparseDesign
  if not host_batches:
    data = design.jax_data()
    y_dev, w_dev = _device_targets(targets), jnp.asarray(w, jnp.float32)
  logits_fn = type(design).jax_logits
  lr = DEFAULT_LEARNING_RATE.get(method) if learning_rate is None else learning_rate
  rate_at = None if method == "lbfgs" else _rate_schedule(lr)
  l2_dev = jnp.float32(l2)

  params = (jnp.asarray(model.weights), jnp.asarray(model.bias))
  precond = None
  if precondition:
    chol = gram_preconditioner(design, seed=seed)
    # [W; b] = L^{-T} V, so the optimiser starts from V = L^T [W; b].
    precond = jnp.asarray(scipy.linalg.solve_triangular(chol, np.eye(len(chol)), lower=True).T,
                          jnp.float32)
    params = jnp.asarray(chol.T @ np.vstack([model.weights, model.bias]), jnp.float32)
  state = (optax.lbfgs() if method == "lbfgs" else _first_order(method, lr)).init(params)
  rng = np.random.default_rng(seed)
  order = None
  losses, norms, seconds = [], [], []
  # Device-resident minibatches: whole segments (up to the next callback or the
  # epoch's end) run in one jitted loop.
  fused = method != "lbfgs" and minibatch and not host_batches
  elapsed = time.perf_counter() - entry
  k = 0
  while k < steps:
    start = time.perf_counter()
    n = 1  # steps taken in this pass of the loop
    if method == "lbfgs":
      new_params, new_state, old_value, value, norm = _lbfgs_step(
          params, state, data, y_dev, w_dev, l2_dev, precond, logits_fn=logits_fn)
      value = float(value)
      if not np.isfinite(value) or value > float(old_value):
        # The zoom line search accepts approximately-Wolfe points that may
        # raise the loss by float32 round-off near the optimum: stop before
        # such a step, so the training loss never increases.
        break
      params, state = new_params, new_state
      step_losses, step_norms = [value], [float(norm)]
    else:
      if minibatch:
        per_epoch = t // batch_size
        pos = k % per_epoch
        if pos == 0:
          order = rng.permutation(t)
          if fused:
            perm = jnp.asarray(order[:per_epoch * batch_size], jnp.int32)
            todo = min(per_epoch, steps - k)
            rates = np.zeros(per_epoch, np.float32)
            rates[:todo] = [rate_at(k + i) for i in range(todo)]
            rates = jnp.asarray(rates)
      if fused:
        n = min(per_epoch - pos, steps - k)
        if callback is not None:
          n = min(n, every - k % every)
        params, state, epoch_losses, epoch_norms = _first_order_epoch(
            params, state, data, y_dev, w_dev, perm, rates, pos, pos + n, l2_dev, precond,
            logits_fn=logits_fn, method=method, batch_size=batch_size)
        step_losses = np.asarray(epoch_losses)[pos:pos + n].tolist()
        step_norms = np.asarray(epoch_norms)[pos:pos + n].tolist()
      else:
        idx = order[pos * batch_size:(pos + 1) * batch_size] if minibatch else None
        if host_batches:
          part, part_w = design.take(idx), w[idx]
          batch = (jnp.asarray(part.x.toarray(), jnp.float32),
                   _device_targets(targets.take(idx)),
                   jnp.asarray(part_w / part_w.sum(), jnp.float32), None)
        else:
          batch = (data, y_dev, w_dev, None if idx is None else jnp.asarray(idx))
        params, state, value, norm = _first_order_step(
            params, state, *batch, l2_dev, precond,
            jnp.float32(rate_at(k)), logits_fn=logits_fn, method=method)
        step_losses, step_norms = [float(value)], [float(norm)]
    took = time.perf_counter() - start
    if not np.isfinite(step_losses).all():
      # Finite parameters can still overflow the logits: the loss is the first to show it.
      raise _diverged("the training loss is", k + int(np.argmin(np.isfinite(step_losses))))
    losses += step_losses
    norms += step_norms
    seconds += [elapsed + took * (i + 1) / n for i in range(n)]
    elapsed += took
    k += n
    if callback is not None and (k % every == 0 or k == steps):
      current = _refined(model, params, precond, k - 1, history=None)
      record = {"loss": losses[-1], "grad_norm": norms[-1], "seconds": elapsed}
      if callback(k - 1, current, record):
        break

  info = dict(model.info)
  info["refine"] = {"method": method, "steps": len(losses), "l2": float(l2),
                    "batch_size": batch_size,
                    "learning_rate": "schedule" if callable(lr) else lr,
                    "precondition": bool(precondition)}
  history = model_lib.History(np.asarray(losses), np.asarray(norms), np.asarray(seconds))
  return _refined(model, params, precond, len(losses) - 1, info=info, history=history)


# Rows and relative ridge (damping) of the Gram preconditioner. A few thousand
# rows estimate the dominant directions of the (N+1)^2 second-moment matrix at a
# fraction of one pass over large data. The damping, relative to the mean
# diagonal, keeps directions the data hardly spans (always-blank pixels) from
# being amplified: in a sweep over {1e-2, 0.1, 1, 10} on MNIST, near-full
# whitening overfit within about 10 L-BFGS steps and 1.0 reached the lowest
# held-out loss (0.2714 nats in benchmarks/results/mnist.json); treat the value
# as tuned on that data.
PRECONDITIONER_ROWS = 4096
PRECONDITIONER_RIDGE = 1.0
_MAX_PRECONDITIONER_FEATURES = 8192


def gram_preconditioner(design, *, seed: int = 0, rows: int = PRECONDITIONER_ROWS,
                        ridge: float = PRECONDITIONER_RIDGE) -> np.ndarray:
  """Cholesky factor ``L`` of ``X1^T X1 / T + r I`` on a row subsample.

  At the uniform model the Hessian of (1) is ``(X1^T X1 / T) (x) C / M`` with
  ``X1 = [X, 1]`` and ``C`` the centring matrix (the Newton closed form inverts
  it). Optimising ``V = L^T [W; b]`` removes the input factor's conditioning.

  Args:
    design: the validated design matrix.
    seed: seed of the row subsample.
    rows: number of rows used (all rows if fewer).
    ridge: ridge relative to the mean diagonal.

  Returns:
    (N+1, N+1) lower-triangular float64 ``L``.
  """
  t, n = design.shape
  if n + 1 > _MAX_PRECONDITIONER_FEATURES:
    raise ValueError(
        f"precondition=True needs an ({n + 1})^2 Cholesky factor; above "
        f"{_MAX_PRECONDITIONER_FEATURES} features use precondition=False.")
  idx = np.sort(np.random.default_rng(seed).choice(t, min(rows, t), replace=False))
  part = design.take(idx)
  sample = part.x.toarray() if hasattr(part.x, "toarray") else np.asarray(part.x, np.float32)
  sample = np.hstack([sample.astype(np.float32), np.ones((len(idx), 1), np.float32)])
  gram = (sample.T @ sample).astype(np.float64) / len(idx)
  gram += ridge * np.trace(gram) / (n + 1) * np.eye(n + 1)
  return np.linalg.cholesky(gram)


def calibrate(model: model_lib.SoftmaxModel, X, y, *, sample_weight=None, l2: float = 0.0,
              steps: int = 30) -> model_lib.SoftmaxModel:
  """Fits a global temperature and class biases to the cross-entropy on ``(X, y)``.

  The calibrated logits are ``tau z_t + beta`` with ``z_t = x_t W + b``: ``M + 1``
  parameters in which the cross-entropy is convex. ``Z`` is computed in one pass
  over ``X`` and kept ((T, M) floats); damped Newton steps with a backtracking
  line search then solve for ``(tau, beta)`` on it, at O(T M^2 + M^3) per step
  and without compilation. With ``u = (tau, beta)`` and ``d logits_t / d u =
  [z_t, I]``, the Hessian is ``sum_t w_t [z_t, I]^T (diag p_t - p_t p_t^T) [z_t, I]``
  (plus ``l2 I`` on the ``beta`` block).

  Maximum likelihood needs every class in the calibration data: a class with
  no target mass there would get ``beta = -inf`` (the loss falls for ever as
  it drops), so that is an error unless ``l2 > 0``. The fit's own training rows
  make the calibration learn the fit's overconfidence; where the fit can
  overfit (many features per class, as for token contexts), calibrate on rows
  the model was not fitted on.

  Args:
    model: the model to calibrate.
    X: (T, N) calibration features.
    y: (T,) labels or (T, M) soft labels.
    sample_weight: optional (T,) nonnegative weights.
    l2: penalty ``l2/2 ||beta||^2`` added to the weighted mean cross-entropy;
      it shrinks the bias corrections towards zero (the model's own biases).
      ``l2 = 1/T`` is a standard normal prior on each correction.
    steps: maximum Newton steps (it usually converges in 5 to 10).

  Returns:
    A :class:`SoftmaxModel` with weights ``tau W`` and bias ``tau b + beta``.
  """
  _check_l2(l2)
  steps = _targets.check_integer("steps", steps, minimum=0)
  design = _design.as_design(X, n_features=model.n_features)
  t = design.shape[0]
  targets = _targets.check_targets(y, t, model.n_classes)
  w = _targets.check_sample_weight(sample_weight, t)
  w = w / w.sum()
  absent = np.flatnonzero(targets.class_mass(w) <= 0)
  if l2 == 0 and absent.size:
    shown = ", ".join(map(str, absent[:10])) + (", ..." if absent.size > 10 else "")
    raise ValueError(
        f"{absent.size} of {model.n_classes} classes ({shown}) have no samples in the "
        "calibration data, so their calibrated bias would be minus infinity. Calibrate "
        "on rows that contain every class, or pass l2 > 0 (e.g. l2=1/len(y)) to shrink "
        "the bias corrections towards zero.")
  z = (design.logits(model.weights) + model.bias).astype(np.float64)
  y_mat = targets.dense(np.float64)
  m = model.n_classes

  def loss_and_probs(u):
    logits = u[0] * z + u[1:]
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    penalty = 0.5 * l2 * (u[1:] @ u[1:])
    return penalty - (w * (y_mat * log_p).sum(axis=1)).sum(), np.exp(log_p)

  u = np.zeros(m + 1)
  u[0] = 1.0
  loss, p = loss_and_probs(u)
  for _ in range(steps):
    r = w[:, None] * (p - y_mat)                 # dL/dlogits
    grad = np.concatenate([[(r * z).sum()], r.sum(axis=0) + l2 * u[1:]])
    wp = w[:, None] * p
    pz = (p * z).sum(axis=1, keepdims=True)      # E_p[z_t]
    h_bb = np.diag(wp.sum(axis=0) + l2) - p.T @ wp
    h_tb = (wp * (z - pz)).sum(axis=0)
    h_tt = (wp * (z - pz) ** 2).sum()
    hess = np.block([[np.array([[h_tt]]), h_tb[None]], [h_tb[:, None], h_bb]])
    # Without l2 the Hessian is singular along a common shift of beta (and along
    # tau too if z_t does not vary). The gradient has no component there, so a
    # tiny relative ridge gives the minimum-norm step and lets a Cholesky solve
    # (M^3/3) replace an SVD, which dominated the cost at M in the thousands.
    hess[np.diag_indices(m + 1)] += 1e-10 * np.trace(hess) / (m + 1)
    try:
      step = scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess), -grad)
    except np.linalg.LinAlgError:  # a numerically zero Hessian: nothing left to fit
      break
    scale = 1.0
    while scale > 1e-6:
      new_loss, new_p = loss_and_probs(u + scale * step)
      if new_loss <= loss:
        break
      scale /= 2
    else:
      break
    converged = loss - new_loss < 1e-10
    u, loss, p = u + scale * step, new_loss, new_p
    if converged:
      break
  tau, beta = u[0], u[1:]
  info = dict(model.info)
  info["calibration"] = {"temperature": float(tau), "l2": float(l2)}
  return model.replace(weights=tau * model.weights, bias=tau * model.bias + beta, info=info,
                       history=None)
