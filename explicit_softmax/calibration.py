"""Temperature and class-bias calibration of a softmax model.

A small convex problem in ``M + 1`` parameters, solved by damped Newton steps
on the host (numpy/scipy, no compilation).

References:
  C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern
  Neural Networks", ICML 2017 (temperature scaling).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.special

from explicit_softmax import _design
from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax._typing import Features, Labels, SampleWeight


# (T, M) float64 arrays calibration holds at its peak (an estimate): the logits,
# the dense targets, log-probabilities, probabilities and a Newton step's products.
_CALIBRATION_BLOCKS = 5

def calibrate(model: model_lib.SoftmaxModel, X: Features, y: Labels, *,
              sample_weight: SampleWeight = None, l2: float = 0.0,
              steps: int = 30) -> model_lib.SoftmaxModel:
  """Fits a global temperature and class biases to the cross-entropy on ``(X, y)``.

  The calibrated logits are ``tau z_t + beta`` with ``z_t = x_t W + b``: ``M + 1`` parameters in
  which the cross-entropy is convex. ``Z`` is computed in one pass over ``X`` and kept ((T, M)
  floats); damped Newton steps with a backtracking line search then solve for ``(tau, beta)`` on it,
  at O(T M^2 + M^3) per step and without compilation. With ``u = (tau, beta)`` and
  ``d logits_t / d u = [z_t, I]``, the Hessian is
  ``sum_t w_t [z_t, I]^T (diag p_t - p_t p_t^T) [z_t, I]`` (plus ``l2 I`` on the ``beta`` block).

  Maximum likelihood needs every class in the calibration data: a class with
  no target mass there would get ``beta = -inf`` (the loss falls for ever as
  it drops), so that is an error unless ``l2 > 0``. The fit's own training rows
  make the calibration learn the fit's overconfidence; where the fit can
  overfit (many features per class, as for token contexts), calibrate on rows
  the model was not fitted on.

  Args:
    model: the model to calibrate.
    X: (T, N) calibration features.
    y: (T,) labels or (T, M) soft labels.
    sample_weight: optional (T,) nonnegative weights.
    l2: penalty ``l2/2 ||beta||^2`` added to the weighted mean cross-entropy;
      it shrinks the bias corrections towards zero (the model's own biases).
      ``l2 = 1/T`` is a standard normal prior on each correction.
    steps: maximum Newton steps (it usually converges in 5 to 10).

  Returns:
    A [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] with weights ``tau W`` and bias
    ``tau b + beta``.

  References:
    C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern
    Neural Networks", ICML 2017.
  """
  _validation.check_instance("model", model, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  l2 = _validation.check_number("l2", l2)
  steps = _validation.check_integer("steps", steps, minimum=0)
  design = _design.for_model(X, model)
  t = design.shape[0]
  targets = _validation.check_targets(y, t, model.n_classes)
  m = model.n_classes
  _validation.check_memory(
      f"calibrating a model of {m:,} classes on {t:,} samples",
      [("the logits, targets and probabilities", (t, m), 8, _CALIBRATION_BLOCKS),
       ("the Newton system in (tau, beta)", (m + 1, m + 1), 8, 3)],
      advice="Calibrate on fewer rows, or use es.refine, whose memory is O(N M).")
  w = _validation.check_sample_weight(sample_weight, t)
  w = w / w.sum()
  _check_every_class(targets.class_mass(w), l2)
  z = (design.logits(model.weights) + model.bias).astype(np.float64)
  u = _newton(z, targets.dense(np.float64), w, l2, steps)
  tau, beta = u[0], u[1:]
  info = dict(model.info)
  info["calibration"] = {"temperature": float(tau), "l2": float(l2)}
  return model.replace(weights=tau * model.weights, bias=tau * model.bias + beta, info=info,
                       history=None)


def _check_every_class(class_mass: np.ndarray, l2: float) -> None:
  """A ValueError naming the classes without target mass, unless ``l2 > 0``.

  Such a class's maximum-likelihood bias is minus infinity: the loss falls for
  ever as it drops.
  """
  absent = np.flatnonzero(class_mass <= 0)
  if l2 == 0 and absent.size:
    shown = ", ".join(map(str, absent[:10])) + (", ..." if absent.size > 10 else "")
    raise ValueError(
        f"{absent.size} of {len(class_mass)} classes ({shown}) have no samples in the "
        "calibration data, so their calibrated bias would be minus infinity. Calibrate "
        "on rows that contain every class, or pass l2 > 0 (e.g. l2=1/len(y)) to shrink "
        "the bias corrections towards zero.")


def _loss_and_probs(u: np.ndarray, z: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float):
  """The penalised cross-entropy of the logits ``tau z_t + beta``, ``u = (tau, beta)``,
  and their probabilities (T, M)."""
  log_p = scipy.special.log_softmax(u[0] * z + u[1:], axis=1)
  penalty = 0.5 * l2 * (u[1:] @ u[1:])
  return penalty - (w * (y * log_p).sum(axis=1)).sum(), np.exp(log_p)


def _newton_step(u: np.ndarray, p: np.ndarray, z: np.ndarray, y: np.ndarray, w: np.ndarray,
                 l2: float) -> np.ndarray | None:
  """The Newton step ``-H^{-1} g`` in ``u = (tau, beta)`` (None: a numerically zero ``H``).

  With ``d logits_t / d u = [z_t, I]`` the gradient is ``sum_t w_t [z_t, I]^T (p_t - y_t)`` and the
  Hessian ``sum_t w_t [z_t, I]^T (diag p_t - p_t p_t^T) [z_t, I]``, plus ``l2`` on ``beta``.
  """
  m = z.shape[1]
  r = w[:, None] * (p - y)                     # dL/dlogits
  grad = np.concatenate([[(r * z).sum()], r.sum(axis=0) + l2 * u[1:]])
  wp = w[:, None] * p
  pz = (p * z).sum(axis=1, keepdims=True)      # E_p[z_t]
  h_bb = np.diag(wp.sum(axis=0) + l2) - p.T @ wp
  h_tb = (wp * (z - pz)).sum(axis=0)
  h_tt = (wp * (z - pz) ** 2).sum()
  hess = np.block([[np.array([[h_tt]]), h_tb[None]], [h_tb[:, None], h_bb]])
  # Without l2 the Hessian is singular along a common shift of beta (and along
  # tau too if z_t does not vary). The gradient has no component there, so a
  # tiny relative ridge gives the minimum-norm step and lets a Cholesky solve
  # (M^3/3) replace an SVD, which dominated the cost at M in the thousands.
  hess[np.diag_indices(m + 1)] += 1e-10 * np.trace(hess) / (m + 1)
  try:
    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(hess), -grad)
  except np.linalg.LinAlgError:  # a numerically zero Hessian: nothing left to fit
    return None


def _newton(z: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, steps: int) -> np.ndarray:
  """``u = (tau, beta)`` by damped Newton steps from ``(1, 0)``, halving to descend.

  Stops after ``steps`` steps, when a step gains less than 1e-10 nats, or when
  no step of at least 1e-6 of Newton's lowers the loss.

  References:
    S. Boyd and L. Vandenberghe, "Convex Optimization", Cambridge University
    Press (2004), section 9.5 (Newton's method with backtracking).
  """
  u = np.zeros(z.shape[1] + 1)
  u[0] = 1.0
  loss, p = _loss_and_probs(u, z, y, w, l2)
  for _ in range(steps):
    step = _newton_step(u, p, z, y, w, l2)
    if step is None:
      break
    scale = 1.0
    while scale > 1e-6:
      new_loss, new_p = _loss_and_probs(u + scale * step, z, y, w, l2)
      if new_loss <= loss:
        break
      scale /= 2
    else:
      break
    converged = loss - new_loss < 1e-10
    u, loss, p = u + scale * step, new_loss, new_p
    if converged:
      break
  return u
