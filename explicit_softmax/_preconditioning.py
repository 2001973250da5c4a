"""Changes of variables ``[W; b] = P V`` that leave the optimum of (4) unchanged.

Optimising ``J(P V)`` over ``V`` has the same minimiser ``[W; b] = P V*`` as
optimising ``J`` over ``[W; b]``; only the path, and its speed, change. The
gradient in ``V`` is ``P^T grad J`` (the chain rule). Two choices of ``P``:

* [`Standardizer`][explicit_softmax.refinement.Standardizer]: centred features of unit variance,
  ``O(N M)`` per step at any width, sparse inputs included;
* [`gram_preconditioner`][explicit_softmax.refinement.gram_preconditioner]: whitening by the input
  Gram matrix, the Kronecker factor of the Hessian at the uniform model.

References:
  J. Nocedal and S. J. Wright, "Numerical Optimization", 2nd ed., Springer
  (2006), section 5.1 (preconditioning as a change of variables).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.linalg

from explicit_softmax import _design
from explicit_softmax._typing import Features


# Rows and relative ridge (damping) of the Gram preconditioner. A few thousand
# rows estimate the dominant directions of the (N+1)^2 second-moment matrix at a
# fraction of one pass over large data. The damping, relative to the mean
# diagonal, keeps directions the data hardly spans (always-blank pixels) from
# being amplified: near-full whitening overfits within a few L-BFGS steps. The
# value was tuned on MNIST (docs/fitting.md, "Why these constants").
PRECONDITIONER_ROWS = 4096
PRECONDITIONER_RIDGE = 1.0
_MAX_PRECONDITIONER_FEATURES = 8192


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


@dataclasses.dataclass(frozen=True)
class GramFactor:
  """``[W; b] = P V`` for a dense ``P = L^{-T}``, ``L`` from
  [`gram_preconditioner`][explicit_softmax.refinement.gram_preconditioner]."""

  chol: np.ndarray

  def apply(self, v):
    """``P V``."""
    return scipy.linalg.solve_triangular(self.chol, v, lower=True, trans="T")

  def apply_transpose(self, g):
    """``P^T g``."""
    return scipy.linalg.solve_triangular(self.chol, g, lower=True)

  def inverse(self, theta):
    """``V = L^T [W; b]``."""
    return self.chol.T @ theta

  def matrix(self):
    """``P`` as a dense (N+1, N+1) array (for the jitted path)."""
    return self.apply(np.eye(len(self.chol)))


def gram_preconditioner(X: Features, *, seed: int = 0, rows: int = PRECONDITIONER_ROWS,
                        ridge: float = PRECONDITIONER_RIDGE) -> np.ndarray:
  """Cholesky factor ``L`` of ``X1^T X1 / T + r I`` on a row subsample.

  At the uniform model the Hessian of (1) is ``(X1^T X1 / T) (x) C / M`` with
  ``X1 = [X, 1]`` and ``C`` the centring matrix (the Newton closed form inverts
  it). Optimising ``V = L^T [W; b]`` removes the input factor's conditioning.

  Args:
    X: (T, N) features, as ``es.refine`` takes them.
    seed: seed of the row subsample.
    rows: number of rows used (all rows if fewer).
    ridge: ridge relative to the mean diagonal.

  Returns:
    (N+1, N+1) lower-triangular float64 ``L``.
  """
  # A design already (es.refine's own, or partitions held elsewhere), or user input.
  design: Any = X if hasattr(X, "local") else _design.as_design(X)
  t, n = design.shape
  if n + 1 > _MAX_PRECONDITIONER_FEATURES:
    raise ValueError(
        f"precondition=True needs an ({n + 1})^2 Cholesky factor; above "
        f"{_MAX_PRECONDITIONER_FEATURES} features use precondition='standardize'.")
  if not design.local:
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


def reparametrisation(precondition, design, seed: int, n_classes: int, l2: float):
  """``precondition`` (as ``refine`` takes it) as a ``P``, or None for none.

  Returns:
    None, a [`Standardizer`][explicit_softmax.refinement.Standardizer] or a ``GramFactor``: objects
    with ``apply`` (``P V``), ``apply_transpose`` (``P^T g``), ``inverse`` and ``matrix``.
  """
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
    return GramFactor(gram_preconditioner(design, seed=seed))
  if isinstance(precondition, str):
    raise ValueError(
        f"precondition must be True, False, 'standardize', a Standardizer or a Cholesky "
        f"factor; got {precondition!r}.")
  chol = np.asarray(precondition, np.float64)
  n = design.shape[1] + 1
  if chol.shape != (n, n) or not np.isfinite(chol).all() or np.any(np.diag(chol) <= 0):
    raise ValueError(
        f"precondition must be True, False, 'standardize' or an ({n}, {n}) lower-triangular "
        f"factor with a positive diagonal (from explicit_softmax.refinement.gram_preconditioner); got "
        f"shape {chol.shape}.")
  return GramFactor(np.tril(chol))


def describe(precondition) -> str | bool:
  """A JSON-able name of the preconditioning used."""
  if precondition is None or precondition is False or precondition is True:
    return bool(precondition)
  if isinstance(precondition, str):
    return precondition
  return "standardize" if isinstance(precondition, Standardizer) else "factor"
