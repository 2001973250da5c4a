"""Full-batch L-BFGS on the host in float64 (scipy's L-BFGS-B), no compilation.

Minimises ``J`` (4) of ``es._objective`` in optimised variables
``V`` with ``[W; b] = P V`` (the identity, a preconditioner of
``es._preconditioning``, or the whitening of
``es._curvature``), until the relative gradient norm (5),
measured by the problem's own norm, falls to ``tol``.

References:
  D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large
  scale optimization", Mathematical Programming 45 (1989).
  C. Zhu, R. H. Byrd, P. Lu and J. Nocedal, "Algorithm 778: L-BFGS-B", ACM
  Transactions on Mathematical Software 23 (1997).
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import scipy.optimize

from explicit_softmax import _objective

# Correction pairs L-BFGS keeps (scipy's maxcor): its cost per step grows with it.
MEMORY = 10


class Problem(Protocol):
  """What ``minimise`` needs of an objective in the variables ``V``."""

  def value_and_grad(self, v: np.ndarray) -> tuple[float, np.ndarray]:
    """``J`` and ``grad_V J`` at the (N+1, M) variables ``v``."""

  def theta(self, v: np.ndarray) -> np.ndarray:
    """``[W; b]`` of ``v``."""

  def norm(self, grad_v: np.ndarray) -> float:
    """The gradient norm that (5) compares with ``tol``."""


class PenalisedProblem:
  """``J`` (4) with a scalar ``l2`` in the variables of a linear ``[W; b] = P V``.

  The convergence test and the reported norms use the gradient in ``(W, b)``
  (that of the optimality certificate) also when optimising ``V``.
  """

  def __init__(self, design, targets, w, l2: float, precond):
    self.design, self.targets, self.w, self.l2, self.precond = design, targets, w, l2, precond
    self._grad_theta: np.ndarray | None = None

  def theta(self, v: np.ndarray) -> np.ndarray:
    return v if self.precond is None else self.precond.apply(v)

  def value_and_grad(self, v: np.ndarray) -> tuple[float, np.ndarray]:
    loss, grad = _objective.penalised_objective(self.design, self.targets, self.w,
                                               self.theta(v), self.l2)
    self._grad_theta = grad
    if self.precond is not None:
      grad = self.precond.apply_transpose(grad)  # the chain rule through [W; b] = P V
    return loss, grad

  def norm(self, grad_v: np.ndarray) -> float:
    del grad_v  # measured in (W, b): the gradient of the last evaluation
    return float(np.linalg.norm(self._grad_theta))


class _Evaluations:
  """``problem`` flat for scipy; the last evaluation and its norm kept."""

  def __init__(self, problem: Problem, shape: tuple[int, ...]):
    self.problem, self.shape = problem, shape
    self.count = 0
    self.v = np.empty(0)
    self.loss = self.norm = np.nan

  def __call__(self, v: np.ndarray) -> tuple[float, np.ndarray]:
    loss, grad = self.problem.value_and_grad(v.reshape(self.shape))
    self.v, self.loss, self.norm = v.copy(), loss, self.problem.norm(grad)
    self.count += 1
    return loss, grad.ravel()


def minimise(problem: Problem, v0: np.ndarray, steps: int, threshold: float,
             report: Callable) -> tuple[np.ndarray, str, int, float]:
  """L-BFGS from ``v0`` until ``problem.norm(grad) <= threshold`` or ``steps`` iterations.

  Args:
    problem: the objective in the variables ``V`` (see ``Problem``).
    v0: (N+1, M) start.
    steps: the maximum number of iterations.
    threshold: ``tol`` times the reference norm of (5).
    report: ``report(step, theta_fn, loss, grad_norm) -> bool``, called after
      each iteration (``theta_fn()`` gives ``[W; b]``); True stops the run.

  Returns:
    ``(v, reason, evaluations, norm)``: the final variables, a key of
    ``es._convergence.REASONS``, the number of
    loss-and-gradient evaluations (passes over the data) and the problem's
    gradient norm at ``v``.
  """
  fun = _Evaluations(problem, v0.shape)
  fun(v0.ravel())
  if fun.norm <= threshold or steps == 0:
    return (fun.v.reshape(v0.shape), ("tol" if fun.norm <= threshold else "steps"), fun.count,
            fun.norm)
  taken, reason = 0, "steps"

  def callback(intermediate_result):
    nonlocal taken, reason
    v = intermediate_result.x
    if not np.array_equal(v, fun.v):  # re-evaluate at the accepted point
      fun(v)
    taken += 1
    if report(taken - 1, lambda: problem.theta(v.reshape(v0.shape)), fun.loss, fun.norm):
      reason = "callback"
    elif fun.norm <= threshold:
      reason = "tol"
    if reason != "steps":
      raise StopIteration

  # ftol = gtol = 0: only the relative gradient norm above (or maxiter, or a
  # line search that cannot progress in float64) ends the run.
  result = scipy.optimize.minimize(
      fun, v0.ravel(), jac=True, method="L-BFGS-B", callback=callback,
      options={"maxiter": steps, "ftol": 0.0, "gtol": 0.0, "maxcor": MEMORY,
               "maxfun": 20 * steps + 20})
  if reason == "steps" and taken < steps:
    reason = "stalled"
  # A callback's stop leaves scipy's x at its last iterate; the callback saw fun.v.
  v = fun.v if reason == "callback" else result.x
  if not np.array_equal(v, fun.v):
    fun(v)
  return v.reshape(v0.shape), reason, fun.count, fun.norm
