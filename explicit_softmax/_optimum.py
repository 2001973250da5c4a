"""One fit of the penalised objective (6) at a given ``l2``, in the whitened variables (8).

``WhitenedProblem`` evaluates ``J`` (6) and its gradient in ``V`` on the
host (float64 sums; float32 or float64 products, see
``_design.HostDesign``); ``solve`` runs host L-BFGS on it until the
relative gradient norm (5), measured in the units of the penalty, falls to
``tol``. The choice of ``l2`` (``es._regularisation``) and the
one-call fit (``es.fitting``) call ``solve`` at every
``l2`` they try.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import scipy.special

from explicit_softmax import _curvature
from explicit_softmax import _design
from explicit_softmax import _lbfgs
from explicit_softmax import model as model_lib
from explicit_softmax import _objective

# Problems with at most this many parameters (N+1) M, whose Hessian costs at most
# POLISH_MAX_WORK multiply-adds (T (N+1)^2 M^2), end with exact Newton steps
# (newton_polish): the optimum to float64 precision, for a few milliseconds.
POLISH_MAX_PARAMETERS = 256
POLISH_MAX_WORK = 2**24
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
    steps: L-BFGS iterations taken.
    evaluations: loss-and-gradient evaluations (passes over the data).
    relative_grad_norm: the left side of (5) at ``v``, in the penalty's units.
    polish_steps: exact Newton steps taken after L-BFGS (``newton_polish``).
  """

  v: np.ndarray
  reason: str
  steps: int
  evaluations: int
  relative_grad_norm: float
  polish_steps: int = 0


def solve(problem: WhitenedProblem, v0: np.ndarray, *, tol: float, steps: int,
          reference: float | None = None, report: Callable | None = None) -> Solution:
  """L-BFGS on ``problem`` from ``v0`` until (5) holds at ``tol`` or ``steps`` iterations,
  then, where the parameters are few (``POLISH_MAX_PARAMETERS``), exact Newton steps.

  Args:
    problem: the objective at one ``l2``.
    v0: (N+1, M) start.
    tol: the relative gradient norm (5) to reach.
    steps: the maximum number of iterations.
    reference: the reference norm of (5), if known (it does not depend on ``l2``).
    report: ``report(step, theta_fn, loss, grad_norm) -> bool`` after each
      iteration (True stops), or None.

  Returns:
    The ``Solution``.
  """
  reference = problem.reference_norm() if reference is None else reference
  taken = [0]

  def counting(step, theta_fn, loss, norm):
    taken[0] = step + 1
    return bool(report(step, theta_fn, loss, norm)) if report is not None else False

  v, reason, evaluations, norm = _lbfgs.minimise(problem, v0, steps, tol * reference,
                                                     counting)
  polished = 0
  if _polishable(problem):
    v, polished = newton_polish(problem, v)
    if polished:
      norm = problem.norm(problem.value_and_grad(v)[1])
      reason = "tol" if norm <= tol * reference else reason
  return Solution(v, reason, taken[0], evaluations,
                  float(_objective.relative_grad_norm(norm, reference)), polished)


def _polishable(problem: WhitenedProblem) -> bool:
  """Whether ``newton_polish`` is cheap for ``problem`` (in memory, few parameters)."""
  if problem.targets is None:
    return False  # partitioned: no rows in one place
  t, n = problem.design.shape
  parameters = (n + 1) * problem.whitening.n_classes
  return parameters <= POLISH_MAX_PARAMETERS and t * parameters**2 <= POLISH_MAX_WORK


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


def newton_polish(problem: WhitenedProblem, v: np.ndarray, *,
                  steps: int = 20) -> tuple[np.ndarray, int]:
  """Exact Newton steps on (6) for a problem with few parameters, from near its optimum.

  Near the optimum Newton converges quadratically, to the limit of float64,
  where L-BFGS stops at ``tol``: equal data in another form (weights for
  repeated rows, sparse for dense, a shuffle) then gives the same model, not
  two points within ``tol`` of it. The Hessian (``_objective.hessian``, in
  ``(W, c)`` with the penalty ``l2 s_i^2`` of (6)) is singular along a common
  shift of the biases; the gradient has no component there, and the
  pseudo-inverse gives the minimum-norm step.

  Args:
    problem: the objective at one ``l2`` on an in-memory design.
    v: (N+1, M) variables (8) near the optimum.
    steps: the maximum number of steps, each with a backtracking line search;
      a step that cannot lower the objective ends the polish.

  Returns:
    ``(v, steps taken)``.

  References:
    J. Nocedal and S. J. Wright, "Numerical Optimization", 2nd ed., Springer
    (2006), chapter 3 (Newton's method and its local quadratic convergence).
  """
  whitening, l2 = problem.whitening, problem.l2
  x = problem.design.x
  x = x.toarray() if hasattr(x, "toarray") else np.asarray(x, np.float64)
  x1 = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
  per_feature = l2 * whitening.units.scale**2

  def value_and_grad(theta):
    weights, bias = theta[:-1], theta[-1]
    loss, g_w, g_b = problem.loss_and_grad(weights, bias)
    value = loss + 0.5 * float((per_feature[:, None] * weights**2).sum())
    return value, np.vstack([g_w + per_feature[:, None] * weights, g_b])

  theta = problem.theta(v)
  value, grad = value_and_grad(theta)
  floor_reference = float(np.linalg.norm(value_and_grad(np.zeros_like(theta))[1]))
  floor = ROUNDING_FLOOR * floor_reference  # below it, what is left is float64 rounding
  taken = 0
  for _ in range(steps):
    if np.linalg.norm(grad) <= floor:
      break
    hess = _objective.hessian(theta, x1, problem.w, per_feature)
    # The pseudo-inverse step: the Hessian is singular along the bias shift, and
    # nearly so along any direction a nearly separable problem barely penalises.
    spectrum, basis = np.linalg.eigh(hess)
    keep = spectrum > 1e-12 * spectrum[-1]
    step = basis[:, keep] @ ((basis[:, keep].T @ -grad.ravel()) / spectrum[keep])
    # Backtracking (Armijo): far from the optimum of a nearly separable problem
    # the full step overshoots.
    # Near the optimum the objective's decrease drowns in its rounding: a step
    # that leaves it level within that and shrinks the gradient is a good one.
    slope = float(grad.ravel() @ step)
    level = 1e-15 * abs(value)
    for _ in range(30):
      candidate = theta + step.reshape(theta.shape)
      new_value, new_grad = value_and_grad(candidate)
      if new_value <= value + 1e-4 * slope or (
          new_value <= value + level and np.linalg.norm(new_grad) < np.linalg.norm(grad)):
        break
      step = step / 2
      slope /= 2
    else:
      break
    theta, value, grad, taken = candidate, new_value, new_grad, taken + 1
  return whitening.to_v(theta[:-1], theta[-1], l2), taken
