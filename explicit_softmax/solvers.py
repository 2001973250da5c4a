"""Explicit (closed-form) solutions of the single-layer softmax model.

Both solvers read the data only through [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats],
so a model can be fitted from statistics that were streamed, merged or computed on shards.

References:
  J. R. Williams and H. Zhao, "Explicit Foundation Model Optimization with
  Self-Attentive Feed-Forward Neural Units" (2023): co-occurrence solutions of
  softmax layers from the stationarity condition ``X^T P = X^T Y``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax import statistics

METHODS = ("cooccurrence", "newton")
DEFAULT_SMOOTHING = 0.1
DEFAULT_RIDGE = 1e-3


def _check_stats(stats) -> None:
  """A ValueError unless ``stats`` are SoftmaxStats that hold samples."""
  if not isinstance(stats, statistics.SoftmaxStats):
    raise ValueError(
        f"the solvers need SoftmaxStats (es.SoftmaxStats.from_data(X, y)); got "
        f"{type(stats).__name__}. To fit data directly, call es.fit(X, y).")
  if not stats.total_weight > 0:
    raise ValueError(
        "the statistics hold no samples (total weight 0); update them with data before "
        "solving.")


def cooccurrence_weights(stats: statistics.SoftmaxStats,
                         smoothing: float = 0.1) -> model_lib.SoftmaxModel:
  """The co-occurrence solution ``W_ij = log((F_ij + s) / (f_i + M s)) / K``, ``b = 0``.

  Derivation. The gradient of the mean cross-entropy vanishes where
  ``X^T P = X^T Y = F`` (stationarity). For one-hot inputs every sample with
  feature ``i`` has the same prediction ``softmax(W_i)``, so the condition reads
  ``f_i softmax(W_i) = F_i``, solved exactly by ``W_ij = log(F_ij / f_i)``: the
  empirical conditional ``p(j | i)``. This is the global optimum (the loss is
  convex) and equals the empirical conditional entropy.

  For general nonnegative features with mass ``m_t = x_t 1``, the same weights
  give logits ``(m_t / K) sum_i (x_ti / m_t) log q_ij``: a weighted geometric
  mean of the features' class distributions ``q_i = F_i / f_i`` (a product of
  experts), tempered by ``m_t / K``. Dividing by the mean mass ``K`` keeps the
  typical sample at temperature one. Stationarity then holds only approximately,
  so this is a one-pass approximation and a warm start for ``refine``.

  Additive smoothing ``s`` (a pseudo-count per feature-class pair) keeps weights
  finite for pairs that never co-occur; features that never occur (``f_i = 0``)
  get an all-zero, uninformative row.

  Args:
    stats: sufficient statistics.
    smoothing: ``s >= 0``. With ``s = 0`` every occurring feature must co-occur
      with every class (the optimum of an unobserved pair is ``-inf``).

  Returns:
    A [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel].

  Raises:
    ValueError: for negative smoothing, or ``s = 0`` with unobserved pairs.
  """
  _check_stats(stats)
  smoothing = _validation.check_number("smoothing", smoothing)
  _validation.check_nonnegative_features(stats.min_feature)
  # The weights and the temporaries of their logarithms, next to the statistics.
  _validation.check_dense_size(stats.n_features, stats.n_classes, copies=4)
  f_mat = stats.cooccurrence
  f = stats.feature_mass
  seen = f > 0
  if smoothing == 0:
    missing = (f_mat[seen] <= 0).sum()
    if missing:
      raise ValueError(
          f"{missing} feature-class pairs never co-occur, so their optimal weight with "
          "smoothing=0 is -inf (e.g. a class that never occurs). Use smoothing > 0.")
  m = stats.n_classes
  weights = np.zeros_like(f_mat)
  with np.errstate(divide="ignore"):
    weights[seen] = np.log(f_mat[seen] + smoothing) - np.log(f[seen] + m * smoothing)[:, None]
  if stats.mean_feature_mass > 0:  # else every sample is a row of zeros: W = 0
    weights /= stats.mean_feature_mass
  return model_lib.SoftmaxModel(
      weights, np.zeros(m),
      info={"method": "cooccurrence", "smoothing": float(smoothing),
            "mean_feature_mass": stats.mean_feature_mass, "n_samples": stats.n_samples})


def newton_weights(stats: statistics.SoftmaxStats,
                   ridge: float = 1e-3) -> model_lib.SoftmaxModel:
  """One exact Newton step from the uniform model ``W = 0, b = 0``.

  At ``W = 0`` every prediction is ``1/M``, so the Hessian of the mean
  cross-entropy is the Kronecker product ``(X1^T X1 / T) (x) (I - 11^T/M) / M``
  with ``X1 = [X, 1]``, and the gradient is ``X1^T (1/M - Y) / T``. Its
  pseudo-inverse step (the Hessian is singular along the softmax shift) is

      [W; b] = M (X1^T X1 / T_w + r I)^{-1} X1^T diag(w) (Y - 1/M) / T_w,

  a ridge regression of the centred one-hot targets, scaled by ``M``. It is
  solved for ``X`` divided by its root-mean-square entry ``c`` (the bias column
  stays 1), with the ridge ``r`` relative to the mean diagonal of that system
  (``r = 0`` is the exact step). Rescaling ``X`` by any factor (1e-30 to 1e30
  are tested) therefore rescales ``W`` inversely and leaves the predictions
  unchanged. Features are real: no sign is needed.

  Args:
    stats: statistics collected with ``gram=True``.
    ridge: ``r >= 0``.

  Returns:
    A [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel].

  Raises:
    ValueError: if the statistics lack the Gram matrix, its diagonal underflowed
      (features near 1e-154 or below: rescale them), or ``ridge < 0``.
  """
  _check_stats(stats)
  if stats.gram is None:
    raise ValueError(
        "method='newton' needs the Gram matrix: build the statistics with "
        "SoftmaxStats.from_data(X, y, gram=True).")
  ridge = _validation.check_number("ridge", ridge)
  n, m, t_w = stats.n_features, stats.n_classes, stats.total_weight
  f = stats.feature_mass
  _validation.check_gram_underflow(stats.gram, f)
  # X1^T diag(w) X1, bordered by the constant feature of the bias.
  gram = np.empty((n + 1, n + 1))
  gram[:n, :n], gram[:n, n], gram[n, :n], gram[n, n] = stats.gram, f, f, t_w
  gram /= t_w
  rhs = np.vstack([stats.cooccurrence - f[:, None] / m,
                   stats.class_mass - t_w / m]) * (m / t_w)
  # Solve for D theta with D = diag(c, ..., c, 1), c the RMS feature value: X / c
  # has the same Gram matrix whatever the magnitude of X, and the bias column
  # stays 1. Without it the ridge below, relative to the mean diagonal of
  # [X, 1], would weigh the bias differently for X and 255 X, and X * 1e-30
  # would collapse to the uniform model.
  c = np.sqrt(np.trace(gram[:n, :n]) / n) if n else 0.0
  d = np.ones(n + 1)
  d[:n] = c if c > 0 else 1.0
  gram = gram / d[:, None] / d[None, :]
  rhs = rhs / d[:, None]
  lam = ridge * np.trace(gram) / (n + 1)
  if lam > 0:
    theta = scipy.linalg.solve(gram + lam * np.eye(n + 1), rhs, assume_a="pos")
  else:
    # The exact step: minimum-norm solution when X1 is rank deficient.
    theta = scipy.linalg.lstsq(gram, rhs)[0]
  theta /= d[:, None]
  return model_lib.SoftmaxModel(
      theta[:n], theta[n],
      info={"method": "newton", "ridge": float(ridge), "n_samples": stats.n_samples})


def solve(stats: statistics.SoftmaxStats, method: str = "cooccurrence", *,
          smoothing: float = 0.1,
          ridge: float = 1e-3) -> model_lib.SoftmaxModel:
  """Explicit weights from sufficient statistics.

  Args:
    stats: [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] of the training data.
    method: ``"cooccurrence"``
      ([`cooccurrence_weights`][explicit_softmax.solvers.cooccurrence_weights]) or ``"newton"``
      ([`newton_weights`][explicit_softmax.solvers.newton_weights]).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.

  Returns:
    A [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel].
  """
  _check_stats(stats)
  _validation.check_choice("method", method, METHODS)
  # Both are checked whichever method applies, so that a wrong value never passes unseen.
  smoothing = _validation.check_number("smoothing", smoothing)
  ridge = _validation.check_number("ridge", ridge)
  if method == "cooccurrence":
    return cooccurrence_weights(stats, smoothing)
  return newton_weights(stats, ridge)
