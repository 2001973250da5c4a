"""Iterative refinement of a softmax model: float64 L-BFGS (scipy) and optax steps.

``refine`` minimises the mean cross-entropy (1) of :mod:`explicit_softmax.model`
plus ``(l2 / 2) ||W||^2`` from any starting model, with jitted optax steps, and
records loss, gradient norm and wall time per step, so that refinement from an
explicit solution and gradient descent from zero run the very same code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg
import scipy.optimize
import scipy.sparse
import scipy.special

from explicit_softmax import _dask
from explicit_softmax import _design
from explicit_softmax import _partition
from explicit_softmax import _targets
from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax._typing import Features, Labels, SampleWeight

METHODS = ("lbfgs", "adam", "sgd")
DEFAULT_LEARNING_RATE = {"adam": 1e-2, "sgd": 0.5}


def _device_targets(targets: _targets.Targets):
  if targets.labels is not None:
    return jnp.asarray(targets.labels, jnp.int32)
  return jnp.asarray(targets.probs, jnp.float32)


def _rate_schedule(learning_rate) -> Callable[[int], float]:
  """``step -> step size``, checked: a constant once, here; a schedule at each step.

  A negative rate would ascend the loss and a NaN one would poison every
  parameter, both silently; they are refused where the rate is first seen.
  """
  if callable(learning_rate):
    return lambda step: _validation.check_learning_rate(learning_rate(step), step)
  rate = _validation.check_learning_rate(learning_rate, None)
  return lambda step: rate


def _diverged(what: str, step: int) -> ValueError:
  return ValueError(
      f"refinement diverged: {what} NaN or inf at step {step}. Lower the learning rate "
      "(or use method='lbfgs', whose line search never increases the loss).")


def _refined(model, theta, step: int, **fields) -> model_lib.SoftmaxModel:
  """``model`` with parameters ``theta = [W; b]``; a clear error if they diverged."""
  if not np.isfinite(theta).all():
    raise _diverged("the parameters are", step)
  return model.replace(weights=theta[:-1], bias=theta[-1], **fields)


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


# Full-batch L-BFGS runs on the host in float64 (scipy) when one evaluation of
# the objective costs at most this many multiply-adds (stored entries of X
# times classes): no compilation, and float64 reaches tolerances at which a
# float32 line search stalls (MNIST on 20,000 rows in float32: 125 steps,
# stalled at a relative gradient norm above 1e-6). MNIST, 60,000 x 784 x 10,
# is below. Above it the jitted float32 JAX path is faster per step.
HOST_MAX_WORK = 2**29

# Host L-BFGS on problems up to this much work per evaluation (stored entries
# of X times classes) runs with one BLAS thread. OpenBLAS's threads cost more
# than they save on such products: on 2 cores, es.fit on scikit-learn's digits
# took 8.6 s with two threads and 0.49 s with one (5,000 MNIST rows: 18.7 s and
# 9.8 s); LogisticRegression() showed the same (0.32 s and 0.016 s).
SINGLE_THREAD_MAX_WORK = 2**26


@functools.cache
def _blas_controller():
  """threadpoolctl's view of the loaded BLAS libraries, found once per process
  (finding them reads the process's memory map: 2.5 ms a call, which the 60
  fits of a regularisation path on iris would pay 60 times); None without
  threadpoolctl."""
  try:
    from threadpoolctl import ThreadpoolController
  except ImportError:
    return None
  return ThreadpoolController()


def blas_threads_for(work: int):
  """A context that limits BLAS to one thread for small ``work`` (see above).

  Uses threadpoolctl (installed with scikit-learn); without it, a no-op.
  """
  controller = _blas_controller() if work <= SINGLE_THREAD_MAX_WORK else None
  if controller is None:
    return contextlib.nullcontext()
  return controller.limit(limits=1, user_api="blas")


def work_of(design, n_classes: int) -> int:
  """Multiply-adds of one product ``X W``: stored entries of ``X`` times classes."""
  t, n = design.shape
  if isinstance(design, PartitionedDesign):
    return (t or 0) * n * n_classes  # dense bound; its rows are elsewhere anyway
  if isinstance(design, _design.TokenDesign):
    stored = design.tokens.ids.size
  else:
    stored = design.x.nnz if scipy.sparse.issparse(design.x) else t * n
  return stored * n_classes


# Convergence test: the gradient norm of the objective relative to that of the
# uniform model (W = 0, b = 0), as in diagnostics.optimality_certificate.
DEFAULT_TOL = 1e-6

REASONS = {
    "tol": "converged: relative gradient norm <= tol",
    "steps": "reached the maximum number of steps",
    "stochastic": "ran the requested steps (minibatch steps have no convergence test)",
    "callback": "stopped by the callback",
    "stalled": "stopped: the line search could not decrease the loss further at this precision",
}


def uses_host(method: str, design, n_classes: int, minibatch: bool) -> bool:
  if method != "lbfgs" or minibatch:
    return False
  if isinstance(design, PartitionedDesign):
    return True  # float64 scipy L-BFGS, one distributed pass per evaluation
  return work_of(design, n_classes) <= HOST_MAX_WORK


def _add(a, b):
  """Element-wise sum of two tuples of per-partition sums."""
  return tuple(u + v for u, v in zip(a, b))


def _partition_objective(part: _partition.Partition, n_classes: int, weights: np.ndarray,
                         bias: np.ndarray, need_grad: bool):
  """Sums of one partition: ``(sum_t w_t l_t, X^T diag(w)(P - Y), 1^T diag(w)(P - Y), sum w)``.

  The in-memory objective (1)-(2) in float64 gives weighted means; times the
  partition's weight they are sums, which add over partitions.
  """
  design, targets, w = _partition.checked(part, n_classes)
  total = float(w.sum())
  if total == 0:  # all weights zero: nothing to add (its rows were checked above)
    if isinstance(design, _design.DenseDesign):
      design.check_finite()
    return 0.0, 0.0, 0.0, 0.0
  loss, g_w, g_b = model_lib.objective(design, targets, w, weights, bias, need_grad=need_grad)
  if not need_grad:
    return loss * total, 0.0, 0.0, total
  return loss * total, g_w * total, g_b * total, total


def _partition_moments(part: _partition.Partition, n_classes: int, second: bool):
  """``(sum_t x_t, sum_t x_t^2, rows)``, or with ``second`` ``(X1^T X1, rows)``, X1 = [X, 1]."""
  design = _partition.checked(part, n_classes)[0]
  t = design.shape[0]
  if second:
    x = design.x.toarray() if hasattr(design.x, "toarray") else np.asarray(design.x)
    if isinstance(design, _design.DenseDesign):
      design.check_finite()
    x1 = np.hstack([x.astype(np.float64), np.ones((t, 1))])
    return x1.T @ x1, float(t)
  mean, mean_sq = design.column_moments()  # checks every row of dense X
  return mean * t, mean_sq * t, float(t)


class PartitionedDesign:
  """``X`` (with its labels and weights) in partitions that this process does not hold.

  A dask collection (:class:`explicit_softmax._dask.DaskParts`) or the rows of a
  multi-process ``jax.Array`` (:class:`explicit_softmax.sharding.ProcessLocalParts`).
  The loss (1) and its gradient (2) are sums over samples: each evaluation is one
  pass in which every partition adds its own float64 terms, and only the (N+1, M)
  gradient travels. ``passes`` counts those passes.

  Args:
    parts: an object with ``n_samples``, ``n_features``, ``n_classes`` and
      ``map_reduce(fn, args, combine)``.
  """

  def __init__(self, parts):
    self.parts = parts
    self.passes = 0

  @property
  def shape(self):
    return (self.parts.n_samples, self.parts.n_features)

  def _reduce(self, fn, *args, combine=_add):
    self.passes += 1
    out = self.parts.map_reduce(fn, (self.parts.n_classes,) + args, combine)
    if out is None:
      raise ValueError("X has no samples (every partition is empty); pass at least one sample.")
    return out

  def objective(self, weights, bias, need_grad: bool = True):
    """``(L, dL/dW, dL/db)`` as :func:`model.objective`, summed over the partitions."""
    loss, g_w, g_b, total = self._reduce(
        _partition_objective, np.asarray(weights, np.float64), np.asarray(bias, np.float64),
        need_grad)
    # Weights are checked per partition; their total only here (the in-memory
    # check raises its message for a total that is not positive).
    _validation.check_sample_weight(np.array([total]), 1)
    if not need_grad:
      return loss / total, None, None
    return loss / total, g_w / total, g_b / total

  def column_moments(self) -> tuple[np.ndarray, np.ndarray]:
    """Column means of ``X`` and of ``X**2`` over all rows (one pass)."""
    total, total_sq, t = self._reduce(_partition_moments, False)
    return total / t, total_sq / t

  def input_second_moment(self) -> np.ndarray:
    """``X1^T X1 / T`` with ``X1 = [X, 1]``, over all rows (one pass)."""
    gram, t = self._reduce(_partition_moments, True)
    return gram / t


def partitioned(X, y, sample_weight=None, n_classes: int | None = None):
  """``X`` as a :class:`PartitionedDesign` if no single process holds it, else None.

  That is a dask collection, or a ``jax.Array`` whose rows span several
  processes (multi-controller JAX).
  """
  if _dask.is_dask(X):
    return PartitionedDesign(_dask.DaskParts(X, y, sample_weight, n_classes))
  from explicit_softmax import sharding  # lazy: jax's multi-process helpers
  if sharding.spans_processes(X):
    return PartitionedDesign(sharding.ProcessLocalParts(X, y, sample_weight, n_classes))
  return None


def penalised_objective(design, targets, w, theta: np.ndarray, l2: float, *,
                        need_grad: bool = True):
  """``J = L + (l2/2) ||W||^2`` and its gradient (N+1, M) at ``theta = [W; b]`` (float64).

  ``w`` are the sample weights (``L`` is their weighted mean, (1)); ``l2`` does
  not penalise the bias. Without ``need_grad`` the gradient is None.
  """
  if isinstance(design, PartitionedDesign):  # sums over partitions held elsewhere
    loss, g_w, g_b = design.objective(theta[:-1], theta[-1], need_grad=need_grad)
  else:
    loss, g_w, g_b = model_lib.objective(design, targets, w, theta[:-1], theta[-1],
                                         need_grad=need_grad)
  value = loss + 0.5 * l2 * float((theta[:-1] ** 2).sum())
  return value, (np.vstack([g_w + l2 * theta[:-1], g_b]) if need_grad else None)


def _grad_norm(design, targets, w, theta, l2, precond) -> float:
  """``||grad J(theta)||`` (float64) in the optimised variables, ``theta = [W; b]``."""
  grad = penalised_objective(design, targets, w, theta, l2)[1]
  if precond is not None:
    grad = precond.apply_transpose(grad)
  return float(np.linalg.norm(grad))


def zero_grad_norm(design, targets, w, n_classes: int, precond=None) -> float:
  """``||grad J(0)||``, the uniform model's gradient norm: the reference of ``tol``."""
  return _grad_norm(design, targets, w, np.zeros((design.shape[1] + 1, n_classes)), 0.0,
                    precond)


@dataclasses.dataclass(frozen=True)
class Standardizer:
  """The reparametrisation ``[W; b] = P V`` that optimises on standardised features.

  With ``P = [[diag(1/s), 0], [-(m/s)^T, 1]]`` the logits are
  ``x W + b = ((x - m) / s) V_w + V_b``: optimising ``V`` is optimising on
  centred, unit-variance features, without forming them (a sparse ``X`` stays
  sparse), and the optimum in ``(W, b)`` is unchanged. Centring removes the
  near-collinearity of uncentred features with the bias column, which made
  L-BFGS on raw features (pixels, areas in the thousands) need 10x the steps.

  Attributes:
    mean: (N,) column means ``m``.
    scale: (N,) column standard deviations ``s`` (1 for constant columns).
  """

  mean: np.ndarray
  scale: np.ndarray

  @classmethod
  def from_design(cls, design, damping: float = 0.0) -> "Standardizer":
    """Means and scales ``s = sqrt(var + damping)`` of the columns of ``X``.

    ``damping = M l2`` balances the penalty: at the uniform model the Hessian's
    diagonal for a weight of feature ``i`` is about ``var_i / M + l2``, so
    dividing by ``s_i`` makes it near ``1/M`` for every feature, also those of
    tiny variance (rare pixels, X * 1e-30) whose weights the penalty dominates.
    """
    mean, mean_sq = design.column_moments()
    variance = np.maximum(mean_sq - mean**2, 0.0)
    # Relative to the column's magnitude, a spread below 1e-12 is rounding.
    variance[variance <= (1e-12 * mean) ** 2] = 0.0
    scale = np.sqrt(variance + damping)
    scale[scale == 0] = 1.0  # a constant column, unpenalised: nothing to scale
    return cls(mean, scale)

  def apply(self, v: np.ndarray) -> np.ndarray:
    """``P V``."""
    v_w = v[:-1] / self.scale[:, None]
    return np.vstack([v_w, v[-1] - self.mean @ v_w])

  def apply_transpose(self, g: np.ndarray) -> np.ndarray:
    """``P^T g``: the gradient in ``V`` from the gradient ``g`` in ``(W, b)``."""
    return np.vstack([(g[:-1] - self.mean[:, None] * g[-1]) / self.scale[:, None], g[-1]])

  def inverse(self, theta: np.ndarray) -> np.ndarray:
    """``V = P^{-1} [W; b]``."""
    return np.vstack([theta[:-1] * self.scale[:, None], theta[-1] + self.mean @ theta[:-1]])

  def matrix(self) -> np.ndarray:
    """``P`` as a dense (N+1, N+1) array (for the jitted path)."""
    n = len(self.mean)
    return self.apply(np.eye(n + 1))


class _Clock:
  """Seconds since the call began, less the time spent in callbacks."""

  def __init__(self, entry: float):
    self._entry, self._paused = entry, 0.0

  def now(self) -> float:
    return time.perf_counter() - self._entry - self._paused

  def pause(self, seconds: float) -> None:
    self._paused += seconds


def _host_lbfgs(theta0, design, targets, w, l2, steps, tol, zero_norm, precond, report):
  """Full-batch L-BFGS in float64 with scipy (no compilation).

  The convergence test and the reported norms use the gradient in ``(W, b)``
  (that of the optimality certificate) also when optimising ``V``.

  Args:
    theta0: (N+1, M) start ``[W; b]`` (or ``V`` with ``[W; b] = P V``).
    precond: ``P`` or None.
    report: ``report(step, theta_fn, loss, grad_norm) -> bool``, called after
      each iteration (``theta_fn()`` gives ``[W; b]``); True stops the run.

  Returns:
    ``(theta, reason, evaluations)`` with ``theta = [W; b]`` and the number of
    loss-and-gradient evaluations (passes over the data).
  """
  shape = theta0.shape
  unpack = (lambda v: v) if precond is None else precond.apply
  last = {"evaluations": 0}

  def fun(v):
    loss, grad = penalised_objective(design, targets, w, unpack(v.reshape(shape)), l2)
    last.update(v=v.copy(), loss=loss, norm=float(np.linalg.norm(grad)),
                evaluations=last["evaluations"] + 1)
    if precond is not None:
      grad = precond.apply_transpose(grad)  # the chain rule through [W; b] = P V
    return loss, grad.ravel()

  state = {"reason": "steps", "step": 0}

  def callback(intermediate_result):
    v = intermediate_result.x
    if not np.array_equal(v, last["v"]):  # re-evaluate at the accepted point
      fun(v)
    step = state["step"]
    state["step"] += 1
    if report(step, lambda: unpack(v.reshape(shape)), last["loss"], last["norm"]):
      state["reason"] = "callback"
      raise StopIteration
    if last["norm"] <= tol * zero_norm:
      state["reason"] = "tol"
      raise StopIteration

  v0 = theta0.ravel()
  fun(v0)
  if last["norm"] <= tol * zero_norm or steps == 0:
    return (unpack(theta0), ("tol" if last["norm"] <= tol * zero_norm else "steps"),
            last["evaluations"])
  # ftol = gtol = 0: only the relative gradient norm above (or maxiter, or a
  # line search that cannot progress in float64) ends the run.
  result = scipy.optimize.minimize(
      fun, v0, jac=True, method="L-BFGS-B", callback=callback,
      options={"maxiter": steps, "ftol": 0.0, "gtol": 0.0, "maxcor": 10,
               "maxfun": 20 * steps + 20})
  reason = state["reason"]
  if reason == "steps" and state["step"] < steps:
    reason = "stalled"
  return (unpack(result.x.reshape(shape) if reason != "callback" else last["v"].reshape(shape)),
          reason, last["evaluations"])


def newton_polish(theta: np.ndarray, design, targets, w: np.ndarray, l2: float, *,
                  steps: int = 5) -> tuple[np.ndarray, int]:
  """Exact Newton steps on a small problem, from a point near its optimum.

  The Hessian of (1) plus ``(l2/2)||W||^2`` in ``theta = [W; b]`` (row-major)
  has the blocks ``X1^T diag(w (delta_jl p_j - p_j p_l)) X1 / T_w`` for classes
  ``j, l`` (plus ``l2 I`` on ``W``). Near the optimum Newton converges
  quadratically, to the limit of float64, where L-BFGS's line search stalls
  a few orders of magnitude earlier. The Hessian is singular along a common
  shift of the biases (and, with ``l2 = 0``, of the weights); the gradient has
  no component there, and a tiny relative ridge gives the minimum-norm step.

  Args:
    theta: (N+1, M) float64 ``[W; b]``.
    design, targets, w: the validated data (``w`` sums to one).
    l2: the penalty on ``W``.
    steps: maximum number of steps; a step that does not lower the objective
      ends the polish (that point is kept).

  Returns:
    ``(theta, steps taken)``.
  """
  n1, m = theta.shape
  x = design.x.toarray() if hasattr(design.x, "toarray") else np.asarray(design.x)
  x1 = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])

  def value_grad(th):
    return penalised_objective(design, targets, w, th, l2)

  value, grad = value_grad(theta)
  taken = 0
  for _ in range(steps):
    p = scipy.special.softmax(x1 @ theta, axis=1)
    blocks = np.empty((n1, m, n1, m))
    for j in range(m):
      for k in range(j, m):
        c = w * ((j == k) * p[:, j] - p[:, j] * p[:, k])
        block = (x1 * c[:, None]).T @ x1
        blocks[:, j, :, k] = block
        blocks[:, k, :, j] = block
    hess = blocks.reshape(n1 * m, n1 * m)
    hess[np.diag_indices(n1 * m)] += np.concatenate([np.full((n1 - 1) * m, l2), np.zeros(m)])
    hess[np.diag_indices(n1 * m)] += 1e-12 * np.trace(hess) / (n1 * m)
    try:
      step = scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess), -grad.ravel())
    except np.linalg.LinAlgError:
      break
    candidate = theta + step.reshape(n1, m)
    new_value, new_grad = value_grad(candidate)
    if not (new_value <= value and np.linalg.norm(new_grad) < np.linalg.norm(grad)):
      break
    theta, value, grad, taken = candidate, new_value, new_grad, taken + 1
  return theta, taken


def refine(model: model_lib.SoftmaxModel, X: Features, y: Labels, method: str = "lbfgs",
           steps: int = 100, *,
           tol: float = DEFAULT_TOL, l2: float = 0.0, batch_size: int | None = None,
           learning_rate: float | Callable[[int], float] | None = None,
           sample_weight: SampleWeight = None,
           callback: Callable | None = None, callback_every: int = 1,
           precondition: bool | str | Standardizer | np.ndarray = False,
           seed: int = 0) -> model_lib.SoftmaxModel:
  """Refines ``model`` by iterative optimisation of the training objective.

  The objective is the weighted mean cross-entropy (1) plus ``(l2/2) ||W||^2``.
  Full-batch runs stop when the gradient norm, relative to that of the uniform
  model, falls to ``tol`` (the model is then certified, see
  :func:`explicit_softmax.diagnostics.optimality_certificate`), or after
  ``steps`` steps; ``model.info["refine"]`` records whether the run converged,
  after how many steps and why it stopped (as scipy's ``OptimizeResult``).

  Precision. L-BFGS on problems up to ``HOST_MAX_WORK`` multiply-adds per
  evaluation runs on the host in float64 (scipy's L-BFGS-B): no compilation,
  and tight tolerances are reachable. Larger problems and adam/sgd run jitted
  float32 optax steps, where a line search may stall near ``1e-4`` relative
  gradient norm; the record then says so.

  Args:
    model: the starting point (an explicit solution, zeros, anything).
    X: (T, N) real features (dense, sparse or :class:`TokenFeatures`). Data
      that no single process holds (a dask array or DataFrame, or a
      ``jax.Array`` whose rows span several JAX processes) is refined by the
      same float64 L-BFGS, each evaluation one pass in which every partition
      adds its loss and gradient where it lives (``method="lbfgs"`` only).
    y: (T,) labels or (T, M) soft labels (for a dask DataFrame the name of
      its label column).
    method: ``"lbfgs"`` (full batch; the training loss never increases),
      ``"adam"`` or ``"sgd"``.
    steps: the maximum number of optimiser steps.
    tol: stop (converged) once ``||grad|| <= tol * ||grad at W = 0, b = 0||``
      (full batch only; minibatch runs take all ``steps``). ``0`` runs all steps.
    l2: L2 penalty ``(l2/2) ||W||^2`` added to the mean cross-entropy. Without
      it (``l2 = 0``) the optimum of linearly separable data lies at infinity
      and held-out loss can grow as training loss falls; ``l2 = 1 / T`` is
      scikit-learn's ``LogisticRegression(C=1)``.
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
    precondition: optimise in other coordinates ``V`` with ``[W; b] = P V``
      (the optimum is the same; only the path and its speed change).
      ``True``: whitened by the input Gram matrix, the Kronecker factor
      ``X1^T X1 / T`` of the Hessian that the Newton closed form inverts (see
      :func:`gram_preconditioner`; a factor it returned may be passed
      instead, to share it between calls). ``"standardize"`` (or a
      :class:`Standardizer`): on centred features of unit variance (damped
      by ``M l2``, see :meth:`Standardizer.from_design`), O(N M) per step at
      any width, sparse inputs included.
    seed: nonnegative integer seed of the minibatch order and of the
      preconditioner's rows.

  Returns:
    The refined :class:`SoftmaxModel`, with its per-step :class:`History` and
    ``info["refine"]``: ``converged``, ``reason``, ``steps``,
    ``relative_grad_norm``, ``tol``, ``precision``, ``evaluations`` (the
    loss-and-gradient evaluations of host L-BFGS, None on the jitted path)
    and the arguments; on partitioned data also ``passes`` (every pass over
    the partitions, the reference norm and preconditioner included).

  Raises:
    ValueError: for invalid arguments or data (naming the problem), a negative
      or non-finite learning rate (a schedule's is checked at each step), and
      a run that diverged (its loss or parameters became NaN or inf; the
      message names the step): never a model that predicts NaN.

  References:
    D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large
    scale optimization", Mathematical Programming 45 (1989).
  """
  _validation.check_instance("model", model, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  _validation.check_choice("method", method, METHODS)
  steps = _validation.check_integer("steps", steps, minimum=0)
  l2 = _validation.check_number("l2", l2)
  tol = _validation.check_number("tol", tol)
  if method == "lbfgs" and batch_size is not None:
    raise ValueError("L-BFGS is a full-batch method; leave batch_size=None.")
  if batch_size is not None:
    batch_size = _validation.check_integer("batch_size", batch_size)
  every = _validation.check_integer("callback_every", callback_every)
  seed = _validation.check_integer("seed", seed, minimum=0)
  if learning_rate is not None and method == "lbfgs":
    raise ValueError("L-BFGS takes its step sizes from a line search; leave learning_rate=None.")
  entry = time.perf_counter()  # setup (validation, transfers, preconditioner) is timed too
  design = partitioned(X, y, sample_weight, model.n_classes)
  if design is not None:  # dask or multi-process data: checked in the first pass
    if method != "lbfgs":
      raise ValueError(
          f"refine on data held in partitions (dask, several JAX processes) runs full-batch "
          f"L-BFGS, one distributed pass per evaluation; got method={method!r}. Use "
          "method='lbfgs'.")
    if design.shape[1] != model.n_features:
      _design.as_design(np.zeros((1, design.shape[1])), n_features=model.n_features)
    targets = w = None  # held with the partitions
    t = design.shape[0]
  else:
    design = _design.as_design(X, n_features=model.n_features,
                               layout=model.info.get("token_layout"))
    t = design.shape[0]
    targets = _validation.check_targets(y, t, model.n_classes)
    w = _validation.check_sample_weight(sample_weight, t)
    w = w / w.sum()  # the objective is a weighted mean
  minibatch = batch_size is not None and batch_size < t
  lr = DEFAULT_LEARNING_RATE.get(method) if learning_rate is None else learning_rate
  rate_at = None if method == "lbfgs" else _rate_schedule(lr)

  theta0 = np.vstack([model.weights, model.bias]).astype(np.float64)
  precond = _reparametrisation(precondition, design, seed, model.n_classes, l2)
  if precond is not None:
    theta0 = precond.inverse(theta0)
  on_host = uses_host(method, design, model.n_classes, minibatch)
  if on_host and not isinstance(design, PartitionedDesign):
    design = _design.as_float64(design)
  # Minibatch runs have no convergence test, so they need no reference norm.
  # The host path measures gradients in (W, b), as the certificate does.
  zero_norm = np.inf if minibatch else zero_grad_norm(
      design, targets, w, model.n_classes, None if on_host else precond)
  losses, norms, seconds = [], [], []
  clock = _Clock(entry)

  def report(step, theta_fn, loss, norm, at=None):
    """Records step ``step``; runs the user's callback on ``theta_fn()``; True stops."""
    if not np.isfinite(loss):
      # Finite parameters can still overflow the logits: the loss is the first to show it.
      raise _diverged("the training loss is", step)
    losses.append(float(loss))
    norms.append(float(norm))
    seconds.append(clock.now() if at is None else at)
    if callback is None or ((step + 1) % every and step + 1 != steps):
      return False
    paused = time.perf_counter()
    current = _refined(model, theta_fn(), step, history=None)
    record = {"loss": losses[-1], "grad_norm": norms[-1], "seconds": seconds[-1]}
    stop = bool(callback(step, current, record))
    clock.pause(time.perf_counter() - paused)
    return stop

  if on_host:
    with blas_threads_for(work_of(design, model.n_classes)):
      theta, reason, evaluations = _host_lbfgs(theta0, design, targets, w, float(l2), steps,
                                               tol, zero_norm, precond, report)
  else:
    evaluations = None  # optax's line search evaluates inside the jitted step
    if isinstance(design, _design.DenseDesign):
      design.check_finite()  # every row, also those no minibatch has drawn yet
    theta, reason = _device_loop(
        theta0, precond, design, targets, w, method, steps, tol, zero_norm, l2, batch_size,
        minibatch, lr, rate_at, every if callback is not None else None, seed, clock, report)

  if minibatch:
    relative = None  # a batch's gradient says nothing about the full objective
  else:
    norm = norms[-1] if norms else _grad_norm(design, targets, w, theta, l2,
                                              None if on_host else precond)
    relative = norm / zero_norm if zero_norm > 0 else (0.0 if norm == 0 else np.inf)
  info = dict(model.info)
  info["refine"] = {"method": method, "l2": float(l2), "batch_size": batch_size,
                    "learning_rate": "schedule" if callable(lr) else lr,
                    "precondition": _describe(precondition), "converged": reason == "tol",
                    "reason": REASONS[reason], "steps": len(losses),
                    "relative_grad_norm": None if relative is None else float(relative),
                    "tol": tol, "precision": "float64" if on_host else "float32",
                    "evaluations": evaluations}
  if isinstance(design, PartitionedDesign):
    # Every pass over the partitions: evaluations, the reference norm, moments.
    info["refine"]["passes"] = design.passes
  history = model_lib.History(np.asarray(losses), np.asarray(norms), np.asarray(seconds))
  return _refined(model, theta, len(losses) - 1, info=info, history=history)


def _device_loop(theta0, precond, design, targets, w, method, steps, tol, zero_norm, l2,
                 batch_size, minibatch, lr, rate_at, every, seed, clock, report):
  """The jitted float32 optax loop (L-BFGS on large data, adam, sgd).

  ``every``: steps between callbacks (None without a callback), which bound
  the segments run in one jitted loop. ``report`` is as in :func:`_host_lbfgs`,
  with the time of the step as a fifth argument.

  Returns:
    ``(theta, reason)`` with ``theta = [W; b]`` (float64 host array).
  """
  t = design.shape[0]
  # A sparse matrix cannot be row-gathered inside jit: it is sliced on the host.
  host_batches = minibatch and type(design) is _design.SparseDesign
  if not host_batches:
    data = design.jax_data()
    y_dev, w_dev = _device_targets(targets), jnp.asarray(w, jnp.float32)
  logits_fn = type(design).jax_logits
  l2_dev = jnp.float32(l2)
  precond_dev = None if precond is None else jnp.asarray(precond.matrix(), jnp.float32)
  params = (jnp.asarray(theta0, jnp.float32) if precond is not None else
            (jnp.asarray(theta0[:-1], jnp.float32), jnp.asarray(theta0[-1], jnp.float32)))
  state = (optax.lbfgs() if method == "lbfgs" else _first_order(method, lr)).init(params)
  rng = np.random.default_rng(seed)
  # Device-resident minibatches: whole segments (up to the next callback or the
  # epoch's end) run in one jitted loop.
  fused = method != "lbfgs" and minibatch and not host_batches
  reason = "stochastic" if minibatch else "steps"
  k = 0

  def theta_of(params):
    weights, bias = (np.asarray(p, np.float64) for p in _unpack(params, precond_dev))
    return np.vstack([weights, bias])

  while k < steps:
    begun = clock.now()
    n = 1  # steps taken in this pass of the loop
    if method == "lbfgs":
      new_params, new_state, old_value, value, norm = _lbfgs_step(
          params, state, data, y_dev, w_dev, l2_dev, precond_dev, logits_fn=logits_fn)
      value = float(value)
      if not np.isfinite(value) or value > float(old_value):
        # The zoom line search accepts approximately-Wolfe points that may
        # raise the loss by float32 round-off near the optimum: stop before
        # such a step, so the training loss never increases.
        reason = "stalled"
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
        if every is not None:
          n = min(n, every - k % every)
        params, state, epoch_losses, epoch_norms = _first_order_epoch(
            params, state, data, y_dev, w_dev, perm, rates, pos, pos + n, l2_dev, precond_dev,
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
            params, state, *batch, l2_dev, precond_dev,
            jnp.float32(rate_at(k)), logits_fn=logits_fn, method=method)
        step_losses, step_norms = [float(value)], [float(norm)]
    done = clock.now()
    # Steps fused into one jitted loop share its time evenly.
    for i in range(n - 1):
      report(k + i, None, step_losses[i], step_norms[i], begun + (done - begun) * (i + 1) / n)
    k += n
    if report(k - 1, lambda: theta_of(params), step_losses[-1], step_norms[-1], done):
      reason = "callback"
      break
    if not minibatch and step_norms[-1] <= tol * zero_norm:
      reason = "tol"
      break
  return theta_of(params), reason


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


@dataclasses.dataclass(frozen=True)
class _Linear:
  """``[W; b] = P V`` for a dense ``P = L^{-T}`` (the Gram preconditioner)."""

  chol: np.ndarray

  def apply(self, v):
    return scipy.linalg.solve_triangular(self.chol, v, lower=True, trans="T")

  def apply_transpose(self, g):
    return scipy.linalg.solve_triangular(self.chol, g, lower=True)

  def inverse(self, theta):
    return self.chol.T @ theta

  def matrix(self):
    return self.apply(np.eye(len(self.chol)))


def _reparametrisation(precondition, design, seed: int, n_classes: int, l2: float):
  """``precondition`` as an object with ``apply``/``apply_transpose``/``inverse``/``matrix``."""
  if precondition is None or precondition is False:
    return None
  if isinstance(precondition, Standardizer):
    if precondition.mean.shape != (design.shape[1],):
      raise ValueError(
          f"the Standardizer has {precondition.mean.shape[0]} features; X has "
          f"{design.shape[1]}.")
    return precondition
  if isinstance(precondition, str) and precondition == "standardize":
    return Standardizer.from_design(design, damping=n_classes * l2)
  if precondition is True:
    return _Linear(gram_preconditioner(design, seed=seed))
  if isinstance(precondition, str):
    raise ValueError(
        f"precondition must be True, False, 'standardize', a Standardizer or a Cholesky "
        f"factor; got {precondition!r}.")
  chol = np.asarray(precondition, np.float64)
  n = design.shape[1] + 1
  if chol.shape != (n, n) or not np.isfinite(chol).all() or np.any(np.diag(chol) <= 0):
    raise ValueError(
        f"precondition must be True, False, 'standardize' or an ({n}, {n}) lower-triangular "
        f"factor with a positive diagonal (from refinement.gram_preconditioner); got shape "
        f"{chol.shape}.")
  return _Linear(np.tril(chol))


def _describe(precondition) -> str | bool:
  """A JSON-able name of the preconditioning used."""
  if precondition is None or precondition is False or precondition is True:
    return bool(precondition)
  if isinstance(precondition, str):
    return precondition
  return "standardize" if isinstance(precondition, Standardizer) else "factor"


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
        f"{_MAX_PRECONDITIONER_FEATURES} features use precondition='standardize'.")
  if isinstance(design, PartitionedDesign):
    # Rows held elsewhere: a subsample would cost a pass anyway, so all rows.
    gram = design.input_second_moment()
  else:
    idx = np.sort(np.random.default_rng(seed).choice(t, min(rows, t), replace=False))
    part = design.take(idx)
    sample = part.x.toarray() if hasattr(part.x, "toarray") else np.asarray(part.x, np.float32)
    sample = np.hstack([sample.astype(np.float32), np.ones((len(idx), 1), np.float32)])
    gram = (sample.T @ sample).astype(np.float64) / len(idx)
  gram += ridge * np.trace(gram) / (n + 1) * np.eye(n + 1)
  return np.linalg.cholesky(gram)
