"""One fit of the penalised objective (6) at a given ``l2``, in the whitened variables (8).

``WhitenedProblem`` evaluates ``J`` (6) and its gradient in ``V`` on the
host (float64 sums; float32 or float64 products, see
``_design.HostDesign``); ``solve`` takes exact Newton steps (``DenseNewton``)
where the parameters are few, else runs host L-BFGS on it until the relative
gradient norm (5), measured in the units of the penalty, falls to ``tol``. The choice of ``l2`` (``es._regularisation``) and the
one-call fit (``es.fitting``) call ``solve`` at every
``l2`` they try.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import scipy.linalg
import scipy.special

from explicit_softmax import _curvature
from explicit_softmax import _design
from explicit_softmax import _lbfgs
from explicit_softmax import model as model_lib
from explicit_softmax import _objective

# Problems with at most this many parameters (N+1) M, whose Hessian costs at most
# POLISH_MAX_WORK multiply-adds (T (N+1)^2 M^2), are solved by exact Newton steps
# (DenseNewton): the optimum to float64 precision, for a few milliseconds.
POLISH_MAX_PARAMETERS = 256
POLISH_MAX_WORK = 2**24
# Newton steps a solve takes before L-BFGS takes over (warm starts need 2 to 6).
NEWTON_STEPS = 30
# The relative gradient norm at which the polish stops: float64 rounding of the
# sums over rows is about this large.
ROUNDING_FLOOR = 1e-13


class WhitenedProblem:
  """``J`` (6) at ``l2`` as a function of ``V`` (8) (a ``_lbfgs.Problem``).

  Args:
    design: a validated in-memory design (a ``HostDesign``, or a partitioned one).
    targets: its targets (None for a partitioned design).
    w: (T,) sample weights summing to one.
    whitening: the change of variables (8).
    l2: the penalty of (6).
  """

  def __init__(self, design, targets, w, whitening: _curvature.Whitening, l2: float):
    self.design, self.targets, self.w = design, targets, w
    self.whitening, self.l2 = whitening, float(l2)

  def loss_and_grad(self, weights, bias, need_grad: bool = True):
    """``L`` (1) and its gradient (2) at ``(W, b)`` (float64)."""
    if self.targets is None:  # sums over partitions held elsewhere
      return self.design.objective(weights, bias, need_grad=need_grad)
    return _objective.objective(self.design, self.targets, self.w, weights, bias,
                               need_grad=need_grad)

  def theta(self, v: np.ndarray) -> np.ndarray:
    return np.vstack(self.whitening.to_theta(v, self.l2))

  def value_and_grad(self, v: np.ndarray) -> tuple[float, np.ndarray]:
    weights, bias = self.whitening.to_theta(v, self.l2)
    loss, g_w, g_b = self.loss_and_grad(weights, bias)
    penalty, g_penalty = self.whitening.penalty(v, self.l2)
    return loss + penalty, self.whitening.pull_back(g_w, g_b, self.l2) + g_penalty

  def norm(self, grad_v: np.ndarray) -> float:
    return self.whitening.units_norm(grad_v, self.l2)

  def reference_norm(self) -> float:
    """The norm at the uniform model ``V = 0``, the reference of (5) (``l2`` plays no
    part: the penalty's gradient vanishes there)."""
    m = self.whitening.n_classes
    _, g_w, g_b = self.loss_and_grad(np.zeros((self.whitening.n_features, m)), np.zeros(m))
    return self.norm(self.whitening.pull_back(g_w, g_b, self.l2))


@dataclasses.dataclass(frozen=True)
class Solution:
  """A fit of (6): where it ended and why.

  Attributes:
    v: (N+1, M) the final variables ``V``.
    reason: a key of ``_convergence.REASONS``.
    steps: L-BFGS iterations taken (0 where Newton alone solved it).
    evaluations: loss-and-gradient evaluations (passes over the data).
    relative_grad_norm: the left side of (5) at ``v``, in the penalty's units.
    polish_steps: exact Newton steps taken (``DenseNewton``).
  """

  v: np.ndarray
  reason: str
  steps: int
  evaluations: int
  relative_grad_norm: float
  polish_steps: int = 0


def solve(problem: WhitenedProblem, v0: np.ndarray, *, tol: float, steps: int,
          reference: float | None = None, report: Callable | None = None,
          newton_tol: float = 0.0) -> Solution:
  """The optimum of ``problem`` from ``v0``: exact Newton steps where the parameters are few
  (``POLISH_MAX_PARAMETERS``), else L-BFGS until (5) holds at ``tol`` or ``steps`` iterations.

  Newton runs to float64's rounding floor, or until (5) holds at ``newton_tol``;
  where it does not get there within ``NEWTON_STEPS`` (a nearly separable
  problem whose weights grow step after step), L-BFGS takes over from where it
  stopped and Newton finishes.

  Args:
    problem: the objective at one ``l2``.
    v0: (N+1, M) start.
    tol: the relative gradient norm (5) to reach.
    steps: the maximum number of iterations.
    reference: the reference norm of (5), if known (it does not depend on ``l2``).
    report: ``report(step, theta_fn, loss, grad_norm) -> bool`` after each
      iteration (True stops), or None.
    newton_tol: where Newton applies, the relative gradient norm (5) it stops at;
      0 (the default): float64's rounding floor, where equal data in another
      form gives the same model.

  Returns:
    The ``Solution``.
  """
  taken = [0]

  def counting(step, theta_fn, loss, norm):
    taken[0] = step + 1
    return bool(report(step, theta_fn, loss, norm)) if report is not None else False

  newton = DenseNewton(problem) if _polishable(problem) else None
  polished = 0
  if newton is not None:
    reference = newton.reference if reference is None else reference
    threshold = newton_tol * reference
    v0, polished, reason = newton.run(v0, NEWTON_STEPS, counting, threshold=threshold)
    if reason in ("floor", "tol", "callback"):
      norm = newton.units_norm
      # At the floor float64 can do no better: short of a tol below it, stalled.
      reason = "tol" if norm <= tol * reference else (
          "callback" if reason == "callback" else "stalled")
      return Solution(v0, reason, 0, newton.evaluations,
                      float(_objective.relative_grad_norm(norm, reference)), polished)
  reference = problem.reference_norm() if reference is None else reference
  v, reason, evaluations, norm = _lbfgs.minimise(problem, v0, steps, tol * reference,
                                                     counting)
  if newton is not None:
    v, more, _ = newton.run(v, NEWTON_STEPS, threshold=threshold)
    polished += more
    norm = newton.units_norm
    reason = "tol" if norm <= tol * reference else reason
    evaluations += newton.evaluations
  return Solution(v, reason, taken[0], evaluations,
                  float(_objective.relative_grad_norm(norm, reference)), polished)


def newton_applies(t: int, n: int, m: int) -> bool:
  """Whether ``DenseNewton`` is cheap for ``t`` rows, ``n`` features and ``m`` classes."""
  parameters = (n + 1) * m
  return parameters <= POLISH_MAX_PARAMETERS and t * parameters**2 <= POLISH_MAX_WORK


def _polishable(problem: WhitenedProblem) -> bool:
  """Whether ``DenseNewton`` is cheap for ``problem`` (in memory, few parameters)."""
  if problem.targets is None:
    return False  # partitioned: no rows in one place
  t, n = problem.design.shape
  return newton_applies(t, n, problem.whitening.n_classes)


def softmax_curvature(design, w: np.ndarray, weights: np.ndarray,
                      bias: np.ndarray) -> np.ndarray:
  """``A = sum_t w_t (diag(p_t) - p_t p_t^T)``, the (M, M) mean Hessian of (1) in the logits.

  ``w`` sums to one; ``p_t = softmax(x_t W + b)``. With the covariance of the
  features it gives the Kronecker approximation ``A (x) C`` of the Hessian of (1)
  that the evidence of ``es._regularisation`` uses.
  """
  m = weights.shape[1]
  out = np.zeros((m, m))
  rows = _objective.eval_rows(m)
  for start in range(0, design.shape[0], rows):
    part = slice(start, start + rows)
    block = design if rows >= design.shape[0] else design.take(part)
    p = scipy.special.softmax(_design.logits_by_class(block, weights) + bias[:, None], axis=0)
    pw = p * w[part]
    out += np.diag(pw.sum(axis=1)) - pw @ p.T
  return out


class DenseNewton:
  """Exact Newton steps on (6) for a problem with few parameters, in ``theta = [W; b]``.

  Near the optimum Newton converges quadratically, to the limit of float64,
  where L-BFGS stops at ``tol``: equal data in another form (weights for
  repeated rows, sparse for dense, a shuffle) then gives the same model, not
  two points within ``tol`` of it; and from a warm start a handful of steps
  reach it, each one product with ``X1 = [X, 1]`` for the objective and
  ``M (M - 1) / 2`` for the Hessian, with no per-step overhead of an optimiser.
  The Hessian (``_objective.hessian``, with the penalty ``l2 s_i^2`` of (6)) is
  singular along a common shift of the biases, which neither the objective nor
  its gradient sees: adding that direction's outer product makes it positive
  definite without changing the step.

  Args:
    problem: the objective at one ``l2`` on an in-memory design.

  Attributes:
    reference: the norm of (5) at the uniform model, in the units (7).
    units_norm: that norm at the last point evaluated.
    evaluations: evaluations of the objective and its gradient (each Newton step
      adds one Hessian).

  References:
    J. Nocedal and S. J. Wright, "Numerical Optimization", 2nd ed., Springer
    (2006), chapter 3 (Newton's method and its local quadratic convergence).
  """

  def __init__(self, problem: WhitenedProblem):
    self.problem = problem
    x = problem.design.x
    x = x.toarray() if hasattr(x, "toarray") else x
    self.x1 = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
    self.w = problem.w
    m = problem.whitening.n_classes
    targets = problem.targets
    if targets.labels is not None:
      self.y_by_class = np.zeros((m, len(self.w)))
      self.y_by_class[targets.labels, np.arange(len(self.w))] = 1.0
    else:
      self.y_by_class = np.ascontiguousarray(np.asarray(targets.probs, np.float64).T)
    units = problem.whitening.units
    self.per_feature = np.append(problem.l2 * units.scale**2, 0.0)[:, None]
    self.evaluations = 0
    zero = np.zeros((self.x1.shape[1], m))
    _, grad, _ = self._evaluate(zero)
    # Below ROUNDING_FLOOR times the uniform model's gradient norm, what is left
    # is float64 rounding of the sums over rows.
    self.floor = ROUNDING_FLOOR * float(np.linalg.norm(grad))
    self.reference = self._units(grad)
    self.units_norm = np.nan

  def _evaluate(self, theta: np.ndarray):
    """``(J, grad J, P)`` at ``theta``: (6) in ``(W, b)``, one product with ``X1``; ``P``
    is (T, M), a view of the (M, T) probabilities (laid out by class, as in
    ``_objective.objective``, so that the reductions over classes run along rows)."""
    self.evaluations += 1
    z = theta.T @ self.x1.T
    z -= z.max(axis=0)
    p = np.exp(z)
    norm = p.sum(axis=0)
    picked = (self.y_by_class * z).sum(axis=0) - np.log(norm)
    value = -float(self.w @ picked) + 0.5 * float((self.per_feature * theta**2).sum())
    p /= norm
    grad = ((p - self.y_by_class) * self.w) @ self.x1
    return value, grad.T + self.per_feature * theta, p.T

  def _units(self, grad: np.ndarray) -> float:
    """The norm of (5) in the units' coordinates ``(S W, b + m^T W)`` (as
    ``_curvature.Whitening.units_norm``), from the gradient in ``(W, b)``."""
    units = self.problem.whitening.units
    g_u = (grad[:-1] - np.outer(units.mean, grad[-1])) / units.scale[:, None]
    return float(np.sqrt((g_u**2).sum() + (grad[-1] ** 2).sum()))

  def _step(self, theta: np.ndarray, grad: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``-H^-1 grad``, the Newton step, with the bias shift made definite."""
    n1, m = theta.shape
    hess = _objective.hessian(theta, self.x1, self.w, self.per_feature[:-1, 0], p=p)
    shift = np.zeros(n1 * m)
    shift[-m:] = 1.0 / np.sqrt(m)  # the biases, last in row-major order
    hess += np.outer(shift, shift) * (np.trace(hess) / hess.shape[0])
    try:
      return scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess), -grad.ravel()).reshape(n1, m)
    except np.linalg.LinAlgError:
      # Nearly singular (a nearly separable problem with a tiny penalty): the
      # pseudo-inverse step.
      spectrum, basis = np.linalg.eigh(hess)
      keep = spectrum > 1e-12 * spectrum[-1]
      step = basis[:, keep] @ ((basis[:, keep].T @ -grad.ravel()) / spectrum[keep])
      return step.reshape(n1, m)

  def run(self, v: np.ndarray, steps: int, report: Callable | None = None, *,
          threshold: float = 0.0) -> tuple[np.ndarray, int, str]:
    """Newton steps from ``v`` (8), each with a backtracking line search.

    Args:
      v: (N+1, M) start.
      steps: the most steps.
      report: as for ``solve``, after each step, or None.
      threshold: stop once the units' norm of the gradient is at most this
        (0: only at the rounding floor).

    Returns:
      ``(v, steps taken, reason)``: ``"floor"`` (the gradient is float64
      rounding), ``"tol"`` (below ``threshold``), ``"callback"``, ``"stalled"``
      (no step lowers the objective) or ``"steps"``.
    """
    whitening, l2 = self.problem.whitening, self.problem.l2
    theta = self.problem.theta(v)
    value, grad, p = self._evaluate(theta)
    taken, reason = 0, "steps"
    for _ in range(steps):
      if np.linalg.norm(grad) <= self.floor:
        reason = "floor"
        break
      if self._units(grad) <= threshold:
        reason = "tol"
        break
      step = self._step(theta, grad, p)
      # Backtracking (Armijo): far from the optimum of a nearly separable problem
      # the full step overshoots. Near the optimum the objective's decrease drowns
      # in its rounding: a step that leaves it level within that and shrinks the
      # gradient is a good one.
      slope = float((grad * step).sum())
      level = 1e-15 * abs(value)
      for _ in range(30):
        candidate = theta + step
        new_value, new_grad, new_p = self._evaluate(candidate)
        if new_value <= value + 1e-4 * slope or (
            new_value <= value + level and np.linalg.norm(new_grad) < np.linalg.norm(grad)):
          break
        step = step / 2
        slope /= 2
      else:
        reason = "stalled"
        break
      theta, value, grad, p, taken = candidate, new_value, new_grad, new_p, taken + 1
      if report is not None and report(taken - 1, lambda: theta, value, self._units(grad)):
        reason = "callback"
        break
    else:
      if np.linalg.norm(grad) <= self.floor:
        reason = "floor"
      elif self._units(grad) <= threshold:
        reason = "tol"
    self.units_norm = self._units(grad)
    return whitening.to_v(theta[:-1], theta[-1], l2), taken, reason
