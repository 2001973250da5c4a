"""The cross-entropy (1), its gradient (2), the penalised objective (4) and its Hessian.

``objective`` evaluates ``L`` (1) and its gradient (2) on the host; with
them, refinement minimises

    J(W, b) = L(W, b) + (l2 / 2) ||W||^2,                                 (4)

(the bias is not penalised) and measures convergence by the gradient norm
relative to that of the uniform model,

    ||grad J(W, b)|| / ||grad J(0, 0)|| <= tol,                           (5)

the quantity
[`es.diagnostics.optimality_certificate`][explicit_softmax.diagnostics.optimality_certificate]
reports. ``theta = [W; b]`` stacks the (N, M) weights over the (M,) bias.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from explicit_softmax import _design
from explicit_softmax import _targets

# The default ``tol`` of (5).
DEFAULT_TOL = 1e-6

# Rows per chunk when evaluating on many samples: a chunk's (rows, M) float64
# probability block stays near 32 MiB whatever the number of classes.
_EVAL_ELEMENTS = 2**22


def eval_rows(n_classes: int) -> int:
  """Rows per chunk of ``objective``: (rows, M) blocks near ``_EVAL_ELEMENTS``
  floats, and at least one row (not 256: with M in the millions a block of 256
  rows would hold gigabytes)."""
  return max(1, _EVAL_ELEMENTS // n_classes)


def objective(design, targets: _targets.Targets, w: np.ndarray, weights: np.ndarray,
              bias: np.ndarray, *, need_grad: bool = True):
  """The mean cross-entropy (1) and its gradient (2) in float64, on the host.

  No compilation: the products with ``X`` are the design's (BLAS, scipy.sparse,
  gathers), one chunk of rows at a time, so that the (rows, M) probability
  block stays near 32 MiB whatever ``M``.

  Args:
    design: the validated design matrix (see ``_design.as_design``).
    targets: validated targets of its rows.
    w: (T,) nonnegative sample weights (any total).
    weights: (N, M) ``W``.
    bias: (M,) ``b``.
    need_grad: also return the gradient.

  Returns:
    ``(L, dL/dW, dL/db)``: a float and float64 arrays (None, None without
    ``need_grad``).
  """
  t = design.shape[0]
  weights = np.asarray(weights, np.float64)
  bias = np.asarray(bias, np.float64)
  m = weights.shape[1]
  rows = eval_rows(m)
  loss = 0.0
  g_w = np.zeros_like(weights) if need_grad else None
  g_b = np.zeros(m) if need_grad else None
  for start in range(0, t, rows):
    sl = slice(start, min(start + rows, t))
    # One block is the whole design when it is small: no copies of its rows.
    part, part_t = (design, targets) if rows >= t else (design.take(sl), targets.take(sl))
    part_w = w[sl]
    # Logits by class, (M, rows): every reduction over the classes below is
    # then one pass along whole rows (numpy's per-row reductions of a tall,
    # narrow (rows, M) block cost more than the products when M is small).
    # log p = z - logsumexp(z), in place.
    z = _design.logits_by_class(part, weights)
    z += bias[:, None]
    z -= z.max(axis=0)
    p = np.exp(z)
    norm = p.sum(axis=0)
    log_norm = np.log(norm)
    if part_t.labels is not None:
      index = np.arange(z.shape[1])
      picked = z[part_t.labels, index] - log_norm
    else:
      picked = np.einsum("ji,ij->i", part_t.probs, z) - log_norm
    loss -= float(part_w @ picked)
    if need_grad:
      p /= norm                                    # P, by class
      if part_t.labels is not None:
        p[part_t.labels, index] -= 1.0
      else:
        p -= part_t.probs.T
      p *= part_w                                  # (P - Y)^T diag(w)
      g_w += part.rmatmul(p.T)
      g_b += p.sum(axis=1)
  total = float(w.sum())
  if need_grad:
    return loss / total, g_w / total, g_b / total
  return loss / total, None, None




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
  if targets is None:  # a partitioned design: sums over partitions held elsewhere
    loss, g_w, g_b = design.objective(theta[:-1], theta[-1], need_grad=need_grad)
  else:
    loss, g_w, g_b = objective(design, targets, w, theta[:-1], theta[-1], need_grad=need_grad)
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


def hessian(theta: np.ndarray, x1: np.ndarray, w: np.ndarray, l2,
            p: np.ndarray | None = None) -> np.ndarray:
  """The Hessian of ``J`` (4) in ``theta = [W; b]`` (row-major), float64.

  Its blocks are ``X1^T diag(w (delta_jl p_j - p_j p_l)) X1`` for classes
  ``j, l`` (``w`` sums to one), plus the penalty ``l2_i`` on every weight of
  feature ``i``.

  Args:
    theta: (N+1, M) ``[W; b]``.
    x1: (T, N+1) ``X1 = [X, 1]``.
    w: (T,) sample weights summing to one.
    l2: the penalty on ``W``: a number, or (N,) per feature (``l2 s_i^2`` of (6)).
    p: (T, M) the probabilities at ``theta``, if known.
  """
  n1, m = theta.shape
  if p is None:
    p = scipy.special.softmax(x1 @ theta, axis=1)
  blocks = np.zeros((n1, m, n1, m))
  # The weights of row t in block (j, l) sum to zero over l: the diagonal blocks
  # are minus the sums of the off-diagonal ones, M (M - 1) / 2 products in all.
  for j in range(m):
    for k in range(j + 1, m):
      # -X1^T diag(w p_j p_k) X1 as one symmetric product (numpy's syrk for A^T A).
      scaled = x1 * np.sqrt(w * p[:, j] * p[:, k])[:, None]
      block = -(scaled.T @ scaled)
      blocks[:, j, :, k] = block
      blocks[:, k, :, j] = block
      blocks[:, j, :, j] -= block
      blocks[:, k, :, k] -= block
  hess = blocks.reshape(n1 * m, n1 * m)
  per_feature = np.broadcast_to(np.asarray(l2, np.float64), (n1 - 1,))
  hess[np.diag_indices(n1 * m)] += np.concatenate([np.repeat(per_feature, m), np.zeros(m)])
  return hess
