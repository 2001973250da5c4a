"""The penalised objective, its gradient, the convergence measure and Newton's polish.

With the weighted mean cross-entropy ``L`` (1) and its gradient (2) of
:mod:`explicit_softmax.model`, refinement minimises

    J(W, b) = L(W, b) + (l2 / 2) ||W||^2,                                 (4)

(the bias is not penalised) and measures convergence by the gradient norm
relative to that of the uniform model,

    ||grad J(W, b)|| / ||grad J(0, 0)|| <= tol,                           (5)

the quantity :func:`explicit_softmax.diagnostics.optimality_certificate` reports.
``theta = [W; b]`` stacks the (N, M) weights over the (M,) bias.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from explicit_softmax import _partitioned
from explicit_softmax import model as model_lib

# The default ``tol`` of (5).
DEFAULT_TOL = 1e-6


def penalised_objective(design, targets, w, theta: np.ndarray, l2: float, *,
                        need_grad: bool = True):
  """``J`` (4) and its gradient (N+1, M) at ``theta = [W; b]`` (float64).

  Args:
    design: the validated design matrix (in memory or partitioned).
    targets: its validated targets (None for a partitioned design).
    w: the sample weights, summing to one (``L`` is their weighted mean (1)).
    theta: (N+1, M) ``[W; b]``.
    l2: the penalty on ``W``.
    need_grad: without it the gradient is None.

  Returns:
    ``(J, grad J)``.
  """
  if isinstance(design, _partitioned.PartitionedDesign):  # sums over partitions held elsewhere
    loss, g_w, g_b = design.objective(theta[:-1], theta[-1], need_grad=need_grad)
  else:
    loss, g_w, g_b = model_lib.objective(design, targets, w, theta[:-1], theta[-1],
                                         need_grad=need_grad)
  value = loss + 0.5 * l2 * float((theta[:-1] ** 2).sum())
  return value, (np.vstack([g_w + l2 * theta[:-1], g_b]) if need_grad else None)


def grad_norm(design, targets, w, theta: np.ndarray, l2: float, precond=None) -> float:
  """``||grad J(theta)||`` (float64); in ``V`` (``P^T grad J``) when ``[W; b] = P V``."""
  grad = penalised_objective(design, targets, w, theta, l2)[1]
  if precond is not None:
    grad = precond.apply_transpose(grad)  # the chain rule through [W; b] = P V
  return float(np.linalg.norm(grad))


def zero_grad_norm(design, targets, w, n_classes: int, precond=None) -> float:
  """``||grad J(0)||``, the uniform model's gradient norm: the reference of ``tol`` (5)."""
  return grad_norm(design, targets, w, np.zeros((design.shape[1] + 1, n_classes)), 0.0,
                   precond)


def relative_grad_norm(norm: float, zero_norm: float) -> float:
  """The left side of (5); where the reference is zero, 0 at a zero gradient, else inf."""
  if zero_norm > 0:
    return norm / zero_norm
  return 0.0 if norm == 0 else np.inf


def hessian(theta: np.ndarray, x1: np.ndarray, w: np.ndarray, l2) -> np.ndarray:
  """The Hessian of ``J`` (4) in ``theta = [W; b]`` (row-major), float64.

  Its blocks are ``X1^T diag(w (delta_jl p_j - p_j p_l)) X1`` for classes
  ``j, l`` (``w`` sums to one), plus the penalty ``l2_i`` on every weight of
  feature ``i``.

  Args:
    theta: (N+1, M) ``[W; b]``.
    x1: (T, N+1) ``X1 = [X, 1]``.
    w: (T,) sample weights summing to one.
    l2: the penalty on ``W``: a number, or (N,) per feature (``l2 s_i^2`` of (6)).
  """
  n1, m = theta.shape
  p = scipy.special.softmax(x1 @ theta, axis=1)
  blocks = np.empty((n1, m, n1, m))
  for j in range(m):
    for k in range(j, m):
      c = w * ((j == k) * p[:, j] - p[:, j] * p[:, k])
      block = (x1 * c[:, None]).T @ x1
      blocks[:, j, :, k] = block
      blocks[:, k, :, j] = block
  hess = blocks.reshape(n1 * m, n1 * m)
  per_feature = np.broadcast_to(np.asarray(l2, np.float64), (n1 - 1,))
  hess[np.diag_indices(n1 * m)] += np.concatenate([np.repeat(per_feature, m), np.zeros(m)])
  return hess
