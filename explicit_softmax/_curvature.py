"""Curvature from one pass of statistics: the units of the penalty and the whitening.

The iterative optimum (the default of [`es.fit`][explicit_softmax.fitting.fit]) minimises

    J(W, b) = L(W, b) + (l2 / 2) ||S W||^2,   S = diag(s),                 (6)

the cross-entropy (1) plus a penalty on the weights measured in the units
``s_i`` of each feature (``docs/theory.md``, equation (6)). Everything here is
computed from column sums and the weighted covariance of the features, one pass
over ``X``:

* ``units_of`` chooses ``s`` (the rule of (7)): the standard deviation of a
  feature, floored for features that are almost constant, so that rescaling or
  shifting any feature changes nothing the fitted model predicts;
* ``Whitening`` is the change of variables ``[W; b] = P(V)`` in which the
  Hessian of (6) at the uniform model is the identity. In the coordinates
  ``X~ = (X - m) / s`` the Hessian of ``L`` at ``W = 0`` is
  ``(I - 11^T/M)/M (x) [[C, 0], [0, 1]]`` with ``C`` the covariance of ``X~``
  (the Boehning bound replaces ``1/M`` by ``1/2`` everywhere else, Boehning
  1992), so with ``C = Q diag(lambda) Q^T`` the variables

      V_w = diag(sqrt(lambda / M + l2)) Q^T S W,   V_b = (b + m^T W) / sqrt(M)    (8)

  have unit curvature in every direction the penalty or the data determines.
  L-BFGS then needs no steps to learn the feature scales and correlations.
  Above ``MAX_EIGEN_FEATURES`` features (and for sparse or token inputs) the
  basis ``Q`` is the identity and ``lambda`` the variances: the diagonal of (8).

References:
  D. Boehning, "Multinomial logistic regression algorithm", Annals of the
  Institute of Statistical Mathematics 44 (1992): the bound
  ``H <= 1/2 (I - 11^T/M) (x) X1^T X1`` on the Hessian.
  J. Nocedal and S. J. Wright, "Numerical Optimization", 2nd ed., Springer
  (2006), section 5.1 (preconditioning as a change of variables).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Features whose spread is below this fraction of their range are scaled by the
# fraction instead (the floor of (7)): a pixel that is blank in all but a few
# images has a tiny standard deviation, and dividing by it would make its weight
# almost free of penalty.
RANGE_FLOOR = 1 / 6
# Up to this many features the whitening uses the eigenbasis of the covariance
# (an (N, N) eigendecomposition, O(N^3)); above it, the diagonal.
MAX_EIGEN_FEATURES = 1024
# Rows of the covariance estimate of the eigenbasis: it only shapes the path of
# the optimiser (and the evidence's spectrum), not the optimum.
COVARIANCE_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class Units:
  """The coordinates ``X~ = (X - mean) / scale`` in which (6) penalises ``W``.

  Attributes:
    mean: (N,) weighted column means ``m``.
    scale: (N,) the units ``s`` (positive).
  """

  mean: np.ndarray
  scale: np.ndarray

  @classmethod
  def identity(cls, n_features: int) -> "Units":
    """Raw units: ``m = 0``, ``s = 1`` (the penalty ``(l2 / 2) ||W||^2`` of ``refine``)."""
    return cls(np.zeros(n_features), np.ones(n_features))


def units_of(mean: np.ndarray, variance: np.ndarray, low: np.ndarray,
             high: np.ndarray) -> Units:
  """The units of (7): ``s_i = max(sd_i, RANGE_FLOOR * (max_i - min_i))``.

  Both terms are in the units of feature ``i``, so multiplying a feature by
  ``a`` multiplies ``s_i`` by ``|a|`` and adding a constant changes neither:
  the penalty, and hence the fitted predictions, do not depend on how the
  features were scaled or shifted. For spread-out features ``s`` is the
  standard deviation (what ``StandardScaler`` divides by); a feature that is
  almost always at one value (a rare pixel, a rare word) has a spread far below
  its range and is floored at a fraction of the range, as if it were present
  in a fair share of the rows. A constant feature gets ``s = 1`` (its weight
  cannot change a prediction).

  Args:
    mean: (N,) weighted column means.
    variance: (N,) weighted column variances.
    low: (N,) column minima (over rows of positive weight).
    high: (N,) column maxima.

  Returns:
    The ``Units``.
  """
  spread = np.sqrt(np.maximum(variance, 0.0))
  scale = np.maximum(spread, RANGE_FLOOR * (high - low))
  scale[~(scale > 0)] = 1.0
  return Units(np.asarray(mean, np.float64), scale)


@dataclasses.dataclass(frozen=True)
class Whitening:
  """The change of variables (8) between ``V`` and ``(W, b)`` for a given ``l2``.

  Attributes:
    units: the ``Units`` of the penalty.
    basis: (N, N) orthonormal eigenvectors ``Q`` of the covariance of ``X~``,
      or None (the identity: the diagonal whitening).
    spectrum: (N,) the eigenvalues ``lambda`` (or the variances of ``X~``).
    n_classes: M.
  """

  units: Units
  basis: np.ndarray | None
  spectrum: np.ndarray
  n_classes: int

  @property
  def n_features(self) -> int:
    return len(self.spectrum)

  def curvature(self, l2: float) -> np.ndarray:
    """(N,) ``sqrt(lambda / M + l2)``: the square root of (8)'s curvature.

    A direction the data does not span has curvature ``l2`` alone; with
    ``l2 = 0`` a floor of ``1e-12`` times the mean curvature keeps (8) defined
    there (the gradient has no component along it). The last ``l2``'s is
    kept: an optimiser asks for it at every evaluation.
    """
    cached = self.__dict__.get("_curvature")
    if cached is not None and cached[0] == l2:
      return cached[1]
    c = self.spectrum / self.n_classes
    floor = 1e-12 * max(float(c.mean()), 1e-300) if len(c) else 0.0
    root = np.sqrt(c + l2 + floor)
    object.__setattr__(self, "_curvature", (l2, root))
    return root

  def to_theta(self, v: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of the (N+1, M) variables ``V`` (the inverse of (8))."""
    u = self._u(v, l2)
    weights = u / self.units.scale[:, None]
    bias = v[-1] * np.sqrt(self.n_classes) - self.units.mean @ weights
    return weights, bias

  def to_v(self, weights: np.ndarray, bias: np.ndarray, l2: float) -> np.ndarray:
    """(N+1, M) ``V`` of ``(W, b)``: (8)."""
    weights = np.asarray(weights, np.float64)
    u = weights * self.units.scale[:, None]
    r = u if self.basis is None else self.basis.T @ u
    v_b = (np.asarray(bias, np.float64) + self.units.mean @ weights) / np.sqrt(self.n_classes)
    return np.vstack([r * self.curvature(l2)[:, None], v_b])

  def _u(self, v: np.ndarray, l2: float) -> np.ndarray:
    """``U = S W = Q diag(1 / curvature) V_w``."""
    r = v[:-1] / self.curvature(l2)[:, None]
    return r if self.basis is None else self.basis @ r

  def restrict(self, columns: np.ndarray) -> "Whitening":
    """The diagonal whitening of ``columns`` only (a subproblem on fewer features)."""
    if self.basis is not None:
      raise ValueError("only a diagonal whitening restricts to columns")
    units = Units(self.units.mean[columns], self.units.scale[columns])
    return Whitening(units, None, self.spectrum[columns], self.n_classes)

  def penalty(self, v: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """``(l2 / 2) ||S W||^2`` and its gradient in ``V`` (N+1, M)."""
    d2 = self.curvature(l2) ** 2
    v_w = v[:-1]
    value = 0.5 * l2 * float((v_w**2 / d2[:, None]).sum())
    grad = np.zeros_like(v)
    grad[:-1] = l2 * v_w / d2[:, None]
    return value, grad

  def pull_back(self, g_w: np.ndarray, g_b: np.ndarray, l2: float) -> np.ndarray:
    """The gradient in ``V`` of a function of ``(W, b)`` with gradient ``(g_w, g_b)``.

    The chain rule through the inverse of (8): ``b`` depends on ``V_b`` and,
    through ``m^T W``, on ``V_w``.
    """
    g_u = (g_w - np.outer(self.units.mean, g_b)) / self.units.scale[:, None]
    g_r = g_u if self.basis is None else self.basis.T @ g_u
    return np.vstack([g_r / self.curvature(l2)[:, None], g_b * np.sqrt(self.n_classes)])

  def units_norm(self, g_v: np.ndarray, l2: float) -> float:
    """``||grad J||`` in the units' coordinates ``(S^-1 W, b + m^T W)`` from ``grad_V J``.

    ``Q`` is orthonormal, so the norm needs no rotation: ``grad_U = Q diag(d) grad_V_w`` and
    ``grad_c = sqrt(M) grad_V_b``, where ``U = S W`` and ``c = b + m^T W``. This is the relative
    gradient norm's numerator (5) in the coordinates where every feature has unit scale.
    """
    g_u = g_v[:-1] * self.curvature(l2)[:, None]
    g_c = g_v[-1] / np.sqrt(self.n_classes)
    return float(np.sqrt((g_u**2).sum() + (g_c**2).sum()))


def whitening(units: Units, covariance: np.ndarray | None, variance: np.ndarray,
              n_classes: int) -> Whitening:
  """The ``Whitening`` of (8) from the covariance of ``X~`` (or its diagonal).

  Args:
    units: the penalty's units.
    covariance: (N, N) weighted covariance of ``X~ = (X - m) / s``, or None for
      the diagonal whitening.
    variance: (N,) weighted variances of ``X`` (used without ``covariance``).
    n_classes: M.
  """
  if covariance is None:
    return Whitening(units, None, np.maximum(variance, 0.0) / units.scale**2, n_classes)
  spectrum, basis = np.linalg.eigh(covariance)
  return Whitening(units, basis, np.maximum(spectrum, 0.0), n_classes)
