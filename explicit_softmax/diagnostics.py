"""Looking inside a fitted model: optimality, loss-gradient width, agreement.

* [`optimality_certificate`][explicit_softmax.diagnostics.optimality_certificate]: how far a model
  is from stationarity of the training objective, and what that implies for its distance to the
  optimum where a bound exists.
* [`loss_gradient_width`][explicit_softmax.diagnostics.loss_gradient_width] /
  [`gradient_set_width`][explicit_softmax.diagnostics.gradient_set_width]: a Monte-Carlo estimate of
  the Gaussian width of the set of per-sample loss gradients.
* [`agreement`][explicit_softmax.diagnostics.agreement],
  [`mean_kl`][explicit_softmax.diagnostics.mean_kl],
  [`weight_cosine`][explicit_softmax.diagnostics.weight_cosine]: how close two models are, in their
  predictions and in their (shift-free) parameters.

The objective is that of ``es.model``, the weighted mean
cross-entropy ``L(W, b)`` (1) with gradient (2), plus an optional L2 term

    J(W, b) = L(W, b) + (l2 / 2) ||W||^2 [+ (l2 / 2) ||b||^2].            (3)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.special

from explicit_softmax import _design
from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax._typing import ArrayLike, Features, Labels, SampleWeight

# Floats per block of an intermediate (rows x classes x draws) product.
_BLOCK_ELEMENTS = 2**22


# -- optimality certificate ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Certificate:
  """How close a model is to a stationary point of the objective (3).

  Attributes:
    objective: ``J(theta)``, the mean cross-entropy (nats) plus the L2 term.
    grad_norm: ``||grad J(theta)||`` over all of ``(W, b)``.
    zero_grad_norm: ``||grad J(0)||``, the gradient norm of the uniform model.
    relative_grad_norm: ``grad_norm / zero_grad_norm``: 1 at the zero model, 0
      at a stationary point (``inf`` if the zero model is already stationary
      and this one is not, 0 if both are).
    l2: the L2 coefficient of (3).
    penalize_bias: whether (3) penalises the bias as well.
    distance_bound: an upper bound on ``||theta - theta*||`` (Euclidean, over W
      and b), or None where the objective gives none (see
      [`optimality_certificate`][explicit_softmax.diagnostics.optimality_certificate]).
    suboptimality_bound: an upper bound on ``J(theta) - J*``, or None.
  """

  objective: float
  grad_norm: float
  zero_grad_norm: float
  relative_grad_norm: float
  l2: float
  penalize_bias: bool
  distance_bound: float | None
  suboptimality_bound: float | None

  @property
  def objective_lower_bound(self) -> float | None:
    """A lower bound on the optimal objective ``J*`` (None without a bound)."""
    if self.suboptimality_bound is None:
      return None
    return self.objective - self.suboptimality_bound


def optimality_certificate(model: model_lib.SoftmaxModel, X: Features, y: Labels,
                           sample_weight: SampleWeight = None, *,
                           l2: float = 0.0, penalize_bias: bool = False,
                           units: dict | tuple | None = None) -> Certificate:
  """The relative gradient norm of the objective (3), and bounds it implies.

  The gradient is that of [`SoftmaxModel.gradient`][explicit_softmax.model.SoftmaxModel.gradient],
  (2), plus ``l2 W`` (and ``l2 b`` with ``penalize_bias``), over all parameters; it is divided by
  the gradient norm of the zero (uniform) model, so that the certificate is 1 at the uniform model
  and 0 at a stationary point, whatever the scale of ``X``.

  Bounds. With ``l2 > 0`` and ``penalize_bias=True`` the objective (3) is
  ``l2``-strongly convex (``L`` is convex), so for its unique minimiser
  ``theta*`` and any ``theta``

      ||theta - theta*|| <= ||grad J(theta)|| / l2,
      J(theta) - J*      <= ||grad J(theta)||^2 / (2 l2),

  and these are reported. Otherwise no bound is reported (None), honestly:

  * ``l2 = 0``: the cross-entropy is convex but not strongly convex: it is flat
    along the softmax shift (adding a constant to every class), its curvature
    elsewhere depends on the data and the current predictions, and on
    separable data there is no finite minimiser at all. A small gradient then
    says nothing global about the distance to the optimum. (Near a minimiser
    the distance is about ``||H^+ grad||``, which needs the Hessian ``H``.)
  * ``l2 > 0`` without ``penalize_bias`` (what ``es.refine(l2=...)``
    optimises): strongly convex in ``W`` only; the bias directions have
    data-dependent curvature, so the bound above does not hold in general.

  Units. ``es.fit`` penalises ``W`` in the units ``s`` of each feature,
  ``(l2 / 2) ||diag(s) W||^2`` (its equation (6)), and measures its gradient in
  the coordinates of the standardised features ``(X - m) / s``, where ``W``
  becomes ``diag(s) W`` and ``b`` becomes ``b + m^T W``. Pass ``units`` (the
  model's ``info["units"]``, or a ``(mean, scale)`` pair) to certify in those
  terms; the bounds then hold in those coordinates.

  The gradient is evaluated with float32 logits, so a certificate around
  1e-7 is as close to zero as this computation can tell.

  Args:
    model: the model to certify.
    X: (T, N) training features (dense, sparse or
      [`TokenFeatures`][explicit_softmax.TokenFeatures]).
    y: (T,) labels or (T, M) soft labels.
    sample_weight: optional (T,) nonnegative weights of the objective.
    l2: ``l2 >= 0`` of (3).
    penalize_bias: include ``(l2/2) ||b||^2`` in (3).
    units: None (raw units), or the ``{"mean": m, "scale": s}`` of ``es.fit``'s
      ``info["units"]`` (or a ``(m, s)`` pair) of (N,) arrays, ``s > 0``.

  Returns:
    A [`Certificate`][explicit_softmax.diagnostics.Certificate].

  Raises:
    ValueError: for ``l2 < 0`` or invalid data.
  """
  _validation.check_instance("model", model, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  l2 = _validation.check_number("l2", l2)
  mean, scale = _validation.check_units(units, model.n_features)
  g_w, g_b = model.gradient(X, y, sample_weight)
  loss = model.log_loss(X, y, sample_weight)
  w64, b64 = model.weights.astype(np.float64), model.bias.astype(np.float64)
  g_w = g_w + l2 * scale[:, None] ** 2 * w64
  penalty = 0.5 * l2 * float(((scale[:, None] * w64) ** 2).sum())
  if penalize_bias:
    g_b = g_b + l2 * b64
    penalty += 0.5 * l2 * float((b64**2).sum())

  def norm_in_units(grad_w, grad_b):
    # The chain rule to U = diag(s) W and c = b + m^T W.
    grad_u = (grad_w - np.outer(mean, grad_b)) / scale[:, None]
    return float(np.sqrt((grad_u**2).sum() + (grad_b**2).sum()))

  norm = norm_in_units(g_w, g_b)
  zero = model_lib.SoftmaxModel(np.zeros_like(model.weights), np.zeros_like(model.bias))
  zero_norm = norm_in_units(*zero.gradient(X, y, sample_weight))  # penalty's gradient: 0
  if zero_norm > 0:
    relative = norm / zero_norm
  else:
    relative = 0.0 if norm == 0 else math.inf
  bounded = l2 > 0 and penalize_bias
  return Certificate(
      objective=loss + penalty, grad_norm=norm, zero_grad_norm=zero_norm,
      relative_grad_norm=relative, l2=float(l2), penalize_bias=bool(penalize_bias),
      distance_bound=norm / l2 if bounded else None,
      suboptimality_bound=norm**2 / (2 * l2) if bounded else None)


# -- Gaussian width of the loss-gradient set -------------------------------------------

@dataclasses.dataclass(frozen=True)
class GaussianWidth:
  """A Monte-Carlo estimate of ``w(S) = E_G sup_{s in S} <G, s>``.

  Attributes:
    width: the mean over draws of ``sup_t <G, grad l_t>``.
    std_error: the standard error of that mean (std over draws / sqrt(draws)).
    n_draws: the number of Gaussian draws.
    n_samples: ``T``, the size of the set (one gradient per sample).
    include_bias: whether the bias block of the gradients is included.
    sups: (n_draws,) the supremum of each draw.
  """

  width: float
  std_error: float
  n_draws: int
  n_samples: int
  include_bias: bool
  sups: np.ndarray = dataclasses.field(repr=False)


def _draw_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
  weight_seq, bias_seq = np.random.SeedSequence(seed).spawn(2)
  return np.random.default_rng(weight_seq), np.random.default_rng(bias_seq)


def gaussian_draws(seed: int, n_draws: int, n_features: int,
                   n_classes: int) -> tuple[np.ndarray, np.ndarray]:
  """The draws [`gradient_set_width`][explicit_softmax.diagnostics.gradient_set_width] uses:
  ``(G, g_b)``, (n, N, M) and (n, M).

  Standard normal float64 from two independent streams spawned from
  ``np.random.SeedSequence(seed)``; the widths draw them block by block in the
  same order, which reproduces these arrays exactly (for checks by brute force).

  Args:
    seed: the seed of both streams.
    n_draws: n, the number of Monte-Carlo draws.
    n_features: N.
    n_classes: M.

  Returns:
    ``(G, g_b)``: weight-part draws (n, N, M) and bias-part draws (n, M).
  """
  rng_w, rng_b = _draw_streams(seed)
  return (rng_w.standard_normal((n_draws, n_features, n_classes)),
          rng_b.standard_normal((n_draws, n_classes)))


def gradient_set_width(X: Features, residuals: ArrayLike, *, n_draws: int = 64, seed: int = 0,
                       include_bias: bool = False) -> GaussianWidth:
  """The Gaussian width of ``{x_t r_t^T}`` (and ``r_t`` for the bias), by Monte Carlo.

  For a set ``S`` the Gaussian width is ``w(S) = E sup_{s in S} <G, s>`` with
  ``G`` a standard Gaussian of the same shape. Here ``S`` holds one matrix per
  sample, ``s_t = x_t r_t^T`` (N, M), and (with ``include_bias``) its bias block
  ``r_t``. Per-sample gradients are never formed:

      <G, x_t r_t^T> = x_t^T G r_t = ((X G) o R).sum(axis=1)[t],

  so each draw costs one product ``X G`` (T x N x M), done for blocks of draws
  and rows at once. ``E sup >= sup E = 0``, but a Monte-Carlo estimate of a
  set of few samples may come out slightly negative; see ``std_error``.

  Args:
    X: (T, N) features (dense, sparse or [`TokenFeatures`][explicit_softmax.TokenFeatures]).
    residuals: (T, M) ``R``, e.g. ``P - Y`` at a model.
    n_draws: the number of Gaussian draws.
    seed: the seed of the draws (see
      [`gaussian_draws`][explicit_softmax.diagnostics.gaussian_draws]).
    include_bias: also include the bias block ``<g_b, r_t>``.

  Returns:
    A [`GaussianWidth`][explicit_softmax.diagnostics.GaussianWidth].

  Raises:
    ValueError: for mismatched shapes, non-finite residuals or ``n_draws < 1``.
  """
  design = _design.as_design(X)
  r = np.asarray(residuals, np.float64)
  t, n = design.shape
  if r.ndim != 2 or r.shape[0] != t:
    raise ValueError(f"residuals must have shape ({t}, n_classes) to match X; got {r.shape}.")
  _validation.check_finite("residuals", r)
  return _width(design, lambda rows: r[rows], r.shape[1], n_draws, seed, include_bias)


def loss_gradient_width(model: model_lib.SoftmaxModel, X: Features, y: Labels, *, n_draws: int = 64,
                        seed: int = 0, include_bias: bool = False) -> GaussianWidth:
  """The Gaussian width of the per-sample cross-entropy gradients at ``model``.

  The gradient of sample ``t``'s loss ``-log p(y_t | x_t)`` is
  ``x_t (p_t - y_t)^T`` in ``W`` and ``p_t - y_t`` in ``b``; this is
  [`gradient_set_width`][explicit_softmax.diagnostics.gradient_set_width] with ``R = P - Y``.

  Why it is of interest: generalization bounds for gradient-trained models can
  be stated through the Gaussian (or Rademacher) complexity of the set of
  per-sample loss gradients rather than of the parameter set; a smaller width
  of the loss-gradient set means such bounds are tighter. The Gaussian width
  itself is the standard quantity of high-dimensional probability (see e.g.
  R. Vershynin, "High-Dimensional Probability", Cambridge University Press,
  2018, Section 7.5). The value here is ``E sup_t <G, g_t>`` for the ``T``
  gradients of the training set, not normalised by ``T``; divide by ``T`` for
  the empirical Gaussian complexity of their average. Which exact bound it
  enters, and with which constants, depends on the result one uses: treat it as
  a diagnostic to compare models (e.g. explicit vs refined) on the same data.

  Args:
    model: the model at which gradients are taken.
    X: (T, N) features.
    y: (T,) labels or (T, M) soft labels.
    n_draws: the number of Gaussian draws.
    seed: the seed of the draws.
    include_bias: also include the bias block.

  Returns:
    A [`GaussianWidth`][explicit_softmax.diagnostics.GaussianWidth].
  """
  _validation.check_instance("model", model, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  design = _design.for_model(X, model)
  t = design.shape[0]
  targets = _validation.check_targets(y, t, model.n_classes)

  def residuals(rows):
    logits = design.take(rows).logits(model.weights).astype(np.float64) + model.bias
    return scipy.special.softmax(logits, axis=1) - targets.take(rows).dense(np.float64)

  return _width(design, residuals, model.n_classes, n_draws, seed, include_bias)


def _width(design, residual_rows, m: int, n_draws: int, seed: int,
           include_bias: bool) -> GaussianWidth:
  """Running maxima of ``((X G) o R).sum(1) [+ R g_b]`` over row chunks, per draw."""
  n_draws = _validation.check_integer("n_draws", n_draws)
  seed = _validation.check_integer("seed", seed, minimum=0)
  t, n = design.shape
  draws_per_block = max(1, min(n_draws, _BLOCK_ELEMENTS // max(n * m, 1)))
  rows_per_chunk = max(1, _BLOCK_ELEMENTS // (m * draws_per_block))
  sups = np.empty(n_draws)
  rng_w, rng_b = _draw_streams(seed)
  for start in range(0, n_draws, draws_per_block):
    b = min(draws_per_block, n_draws - start)
    g_w, g_b = rng_w.standard_normal((b, n, m)), rng_b.standard_normal((b, m))
    # (N, b M): each draw's G side by side, so one product serves b draws.
    g_flat = g_w.transpose(1, 0, 2).reshape(n, b * m)
    best = np.full(b, -np.inf)
    for lo in range(0, t, rows_per_chunk):
      rows = slice(lo, min(lo + rows_per_chunk, t))
      r = residual_rows(rows)
      xg = design.take(rows).logits(g_flat).astype(np.float64).reshape(-1, b, m)
      values = np.einsum("tbm,tm->tb", xg, r)
      if include_bias:
        values += r @ g_b.T
      best = np.maximum(best, values.max(axis=0))
    sups[start:start + b] = best
  std = float(sups.std(ddof=1) / math.sqrt(n_draws)) if n_draws > 1 else math.inf
  return GaussianWidth(float(sups.mean()), std, n_draws, t, bool(include_bias), sups)


# -- agreement between two models ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Agreement:
  """How close two models are.

  Attributes:
    mean_kl: weighted mean over samples of ``KL(p_a(.|x) || p_b(.|x))`` in nats.
    top1_agreement: weighted fraction of samples with the same predicted class.
    weight_cosine: cosine of the shift-free parameters (see
      [`weight_cosine`][explicit_softmax.diagnostics.weight_cosine]).
  """

  mean_kl: float
  top1_agreement: float
  weight_cosine: float


def _check_pair(model_a, model_b) -> None:
  if model_a.weights.shape != model_b.weights.shape:
    raise ValueError(
        f"the models have weights of shape {model_a.weights.shape} and "
        f"{model_b.weights.shape}; compare models of the same features and classes.")


def _kl_and_agreement(model_a, model_b, X, sample_weight) -> tuple[float, float]:
  _check_pair(model_a, model_b)
  design = _design.as_design(X, n_features=model_a.n_features)
  t = design.shape[0]
  w = _validation.check_sample_weight(sample_weight, t)
  rows_per_chunk = max(256, _BLOCK_ELEMENTS // model_a.n_classes)
  kl_sum = same = 0.0
  for lo in range(0, t, rows_per_chunk):
    rows = slice(lo, min(lo + rows_per_chunk, t))
    part = design.take(rows)
    log_a = scipy.special.log_softmax(
        part.logits(model_a.weights).astype(np.float64) + model_a.bias, axis=1)
    log_b = scipy.special.log_softmax(
        part.logits(model_b.weights).astype(np.float64) + model_b.bias, axis=1)
    kl = np.maximum((np.exp(log_a) * (log_a - log_b)).sum(axis=1), 0.0)  # >= 0 up to round-off
    kl_sum += float(w[rows] @ kl)
    same += float(w[rows] @ (log_a.argmax(axis=1) == log_b.argmax(axis=1)))
  return kl_sum / w.sum(), same / w.sum()


def mean_kl(model_a: model_lib.SoftmaxModel, model_b: model_lib.SoftmaxModel, X: Features,
            sample_weight: SampleWeight = None) -> float:
  """``sum_t w_t KL(p_a(.|x_t) || p_b(.|x_t)) / sum_t w_t`` in nats (>= 0, 0 iff equal).

  Args:
    model_a: the reference model.
    model_b: the compared model (same N and M).
    X: (T, N) features on which the predictions are compared.
    sample_weight: optional (T,) nonnegative weights.

  Returns:
    The weighted mean KL divergence in nats.
  """
  _validation.check_instance("model_a", model_a, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  _validation.check_instance("model_b", model_b, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  return _kl_and_agreement(model_a, model_b, X, sample_weight)[0]


def weight_cosine(model_a: model_lib.SoftmaxModel, model_b: model_lib.SoftmaxModel) -> float:
  """The cosine of two models' parameters after removing the softmax shift.

  Adding a constant to every class of a row of ``W`` (or to every entry of
  ``b``) leaves every prediction unchanged, so each row of ``W`` and the bias
  are centred over classes first; the cosine of the concatenated centred
  ``(W, b)`` is then invariant to those shifts and to positive rescaling.

  Args:
    model_a: a model.
    model_b: a model of the same shape.

  Returns:
    A cosine in ``[-1, 1]``, or NaN if a model's centred parameters are all zero
    (a uniform model has no direction).
  """
  _validation.check_instance("model_a", model_a, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  _validation.check_instance("model_b", model_b, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  _check_pair(model_a, model_b)

  def centred(model):
    w = model.weights.astype(np.float64)
    b = model.bias.astype(np.float64)
    return np.concatenate([(w - w.mean(axis=1, keepdims=True)).ravel(), b - b.mean()])

  a, b = centred(model_a), centred(model_b)
  norm = float(np.linalg.norm(a) * np.linalg.norm(b))
  if norm == 0:
    return math.nan
  return float(np.clip(a @ b / norm, -1.0, 1.0))


def agreement(model_a: model_lib.SoftmaxModel, model_b: model_lib.SoftmaxModel, X: Features,
              sample_weight: SampleWeight = None) -> Agreement:
  """Mean KL divergence, top-1 agreement and shift-free weight cosine of two models.

  Args:
    model_a: the reference model (KL is taken from ``p_a`` to ``p_b``).
    model_b: the other model, with the same features and classes.
    X: (T, N) features on which predictions are compared.
    sample_weight: optional (T,) nonnegative weights of the samples.

  Returns:
    An [`Agreement`][explicit_softmax.diagnostics.Agreement].
  """
  _validation.check_instance("model_a", model_a, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  _validation.check_instance("model_b", model_b, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  kl, top1 = _kl_and_agreement(model_a, model_b, X, sample_weight)
  return Agreement(kl, top1, weight_cosine(model_a, model_b))

