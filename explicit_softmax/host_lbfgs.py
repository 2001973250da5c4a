"""Full-batch L-BFGS on the host in float64 (scipy's L-BFGS-B), no compilation.

Minimises ``J`` (4) of :mod:`explicit_softmax.objective`, optionally in the
variables ``V`` of a change of variables ``[W; b] = P V``
(:mod:`explicit_softmax.preconditioning`), until the relative gradient norm (5)
in ``(W, b)`` (that of the optimality certificate) falls to ``tol``.

References:
  D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large
  scale optimization", Mathematical Programming 45 (1989).
  C. Zhu, R. H. Byrd, P. Lu and J. Nocedal, "Algorithm 778: L-BFGS-B", ACM
  Transactions on Mathematical Software 23 (1997).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.optimize

from explicit_softmax import objective


class _Evaluations:
  """``J`` and its gradient in the optimised variables, flat for scipy; the last kept.

  The convergence test and the reported norms use the gradient in ``(W, b)``
  (that of the optimality certificate) also when optimising ``V``.
  """

  def __init__(self, design, targets, w, l2: float, precond, shape: tuple[int, ...]):
    self.design, self.targets, self.w, self.l2 = design, targets, w, l2
    self.precond, self.shape = precond, shape
    self.count = 0
    self.v = np.empty(0)
    self.loss = self.norm = np.nan

  def theta(self, v: np.ndarray) -> np.ndarray:
    """``[W; b]`` of the flat variables ``v``."""
    v = v.reshape(self.shape)
    return v if self.precond is None else self.precond.apply(v)

  def __call__(self, v: np.ndarray) -> tuple[float, np.ndarray]:
    loss, grad = objective.penalised_objective(self.design, self.targets, self.w,
                                               self.theta(v), self.l2)
    self.v, self.loss, self.norm = v.copy(), loss, float(np.linalg.norm(grad))
    self.count += 1
    if self.precond is not None:
      grad = self.precond.apply_transpose(grad)  # the chain rule through [W; b] = P V
    return loss, grad.ravel()


def minimise(theta0: np.ndarray, design, targets, w, l2: float, steps: int, threshold: float,
             precond, report: Callable) -> tuple[np.ndarray, str, int]:
  """L-BFGS from ``theta0`` until ``||grad J|| <= threshold`` or ``steps`` iterations.

  Args:
    theta0: (N+1, M) start ``[W; b]`` (or ``V`` with ``[W; b] = P V``).
    design: the validated float64 design (in memory or partitioned).
    targets: its targets (None for a partitioned design).
    w: the sample weights, summing to one.
    l2: the penalty on ``W``.
    steps: the maximum number of iterations.
    threshold: ``tol`` times the reference norm of (5).
    precond: ``P`` or None.
    report: ``report(step, theta_fn, loss, grad_norm) -> bool``, called after
      each iteration (``theta_fn()`` gives ``[W; b]``); True stops the run.

  Returns:
    ``(theta, reason, evaluations)`` with ``theta = [W; b]``, a key of
    :data:`explicit_softmax.convergence.REASONS`, and the number of
    loss-and-gradient evaluations (passes over the data).
  """
  fun = _Evaluations(design, targets, w, l2, precond, theta0.shape)
  fun(theta0.ravel())
  if fun.norm <= threshold or steps == 0:
    return fun.theta(fun.v), ("tol" if fun.norm <= threshold else "steps"), fun.count
  taken, reason = 0, "steps"

  def callback(intermediate_result):
    nonlocal taken, reason
    v = intermediate_result.x
    if not np.array_equal(v, fun.v):  # re-evaluate at the accepted point
      fun(v)
    taken += 1
    if report(taken - 1, lambda: fun.theta(v), fun.loss, fun.norm):
      reason = "callback"
    elif fun.norm <= threshold:
      reason = "tol"
    if reason != "steps":
      raise StopIteration

  # ftol = gtol = 0: only the relative gradient norm above (or maxiter, or a
  # line search that cannot progress in float64) ends the run.
  result = scipy.optimize.minimize(
      fun, theta0.ravel(), jac=True, method="L-BFGS-B", callback=callback,
      options={"maxiter": steps, "ftol": 0.0, "gtol": 0.0, "maxcor": 10,
               "maxfun": 20 * steps + 20})
  if reason == "steps" and taken < steps:
    reason = "stalled"
  # A callback's stop leaves scipy's x at its last iterate; the callback saw fun.v.
  return fun.theta(fun.v if reason == "callback" else result.x), reason, fun.count
