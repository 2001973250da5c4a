"""Choosing ``l2`` of (6) from the training data alone: the Laplace evidence.

With the penalty read as a Gaussian prior ``U = S W ~ N(0, I / alpha)`` on the
weights in the units of ``es._curvature``, and the likelihood
of the weighted training data, ``alpha = l2 T_w`` (``T_w`` the total sample
weight; scikit-learn's ``C = 1 / alpha``) is chosen where the Laplace
approximation of the marginal likelihood (the evidence),

    log p(D | alpha) ~ -T_w L(U*) - (alpha / 2) ||U*||^2 + (P / 2) log alpha
                       - (1 / 2) sum_k log(h_k + alpha),                        (9)

is largest: ``U*`` the optimum of (6), ``P = N M`` and ``h_k`` the eigenvalues
of the Hessian of the summed cross-entropy at ``U*`` (MacKay 1992). The
Hessian is taken in its Kronecker form ``T_w A (x) C``: ``A`` the (M, M) mean
softmax curvature at ``U*`` and ``C`` the covariance of the standardised
features, whose eigenvalues the whitening (8) already has, so (9) costs one
pass over the rows beyond the fit. The curvature ``A`` changes with ``alpha``
(weaker penalties give more confident predictions), so (9) is maximised as a
function, not through MacKay's fixed point ``alpha ||U*||^2 = gamma``, which
ignores that change; it serves as the first guess. ``evidence_l2`` fits at
``alpha = 1``, jumps to the half-decade grid point nearest that fixed point,
then walks ``log10 alpha`` in half-decade steps in the direction in which (9)
rises, each fit warm-started from the last, until it falls, and takes the
vertex of the parabola through the best point and its neighbours.

References:
  D. J. C. MacKay, "The evidence framework applied to classification
  networks", Neural Computation 4 (1992).
  J. Martens and R. Grosse, "Optimizing neural networks with
  Kronecker-factored approximate curvature", ICML 2015 (the Kronecker form).
"""

from __future__ import annotations

import numpy as np

from explicit_softmax import _curvature
from explicit_softmax import _optimum

# Steps of the walk in log10(alpha), and its limits (alpha = 1 / C).
STEP = 0.5
LOG10_ALPHA_RANGE = (-4.0, 6.0)
# The largest first jump, in log alpha (three decades).
MAX_JUMP = 3 * np.log(10)
# The relative gradient norm (5) of the search's fits: (9) needs ``L``, ``U*``
# and ``A`` to a few digits, not the optimum to the final tol.
SEARCH_TOL = 1e-3
# Where the search's fits are exact Newton steps (few parameters), they stop at this
# relative gradient norm instead: one step past SEARCH_TOL at quadratic convergence,
# and (9) then no longer moves with it (docs/fitting.md, "Why these constants").
NEWTON_SEARCH_TOL = 1e-6


def log_evidence(problem: _optimum.WhitenedProblem, v: np.ndarray, total_weight: float,
                 loss: float) -> tuple[float, float]:
  """(9) at the optimum ``V = v`` of ``problem`` (up to a constant), ``loss`` its ``L``,
  and MacKay's ``log(gamma / (alpha ||U||^2))``, ``gamma = sum_k h_k / (h_k + alpha)``:
  the sign of (9)'s slope in ``alpha`` at fixed curvature, and about how far (in
  ``log alpha``) its maximum is."""
  whitening, l2 = problem.whitening, problem.l2
  weights, bias = whitening.to_theta(v, l2)
  a = np.linalg.eigvalsh(_optimum.softmax_curvature(problem.design, problem.w, weights, bias))
  h = total_weight * np.outer(np.clip(a, 0.0, None), whitening.spectrum)
  alpha = l2 * total_weight
  u2 = float(((weights * whitening.units.scale[:, None]) ** 2).sum())
  value = float(-total_weight * loss - 0.5 * alpha * u2 + 0.5 * h.size * np.log(alpha)
                - 0.5 * np.log(h + alpha).sum())
  gamma = float((h / (h + alpha)).sum())
  gap = float(np.log(gamma / (alpha * u2))) if gamma > 0 and u2 > 0 else np.inf
  return value, gap


def evidence_l2(design, targets, w: np.ndarray, whitening: _curvature.Whitening,
                total_weight: float, v0: np.ndarray, l2_start: float, *,
                report=None) -> tuple[float, dict, np.ndarray]:
  """The ``l2`` of largest evidence (9): a warm-started walk, then a parabola.

  Args:
    design: the (host) design of the rows the search uses.
    targets: their targets.
    w: (T,) their weights, summing to one.
    whitening: the change of variables (8).
    total_weight: ``T_w``, the total raw weight of these rows.
    v0: the start of the first fit, (8) at ``l2_start``.
    l2_start: the first ``l2`` tried (rounded to the half-decade grid of alpha).
    report: passed to every fit's ``_optimum.solve``.

  Returns:
    ``(l2, record, v)``: the chosen ``l2`` (for these rows: ``alpha / T_w``),
    a JSON-able record (``C`` tried, (9) at each, fits, steps) and the fit
    closest to it, in (8) at the chosen ``l2``.
  """
  lo, hi = LOG10_ALPHA_RANGE
  fits: dict[float, tuple[float, np.ndarray]] = {}  # log10 alpha -> ((9), v)
  steps = 0
  last_v, last_l2 = v0, l2_start  # the warm start of the next fit

  def evaluate(la: float) -> float:
    nonlocal steps, last_v, last_l2
    if la not in fits:
      l2 = 10.0**la / total_weight
      problem = _optimum.WhitenedProblem(design, targets, w, whitening, l2)
      start = whitening.to_v(*whitening.to_theta(last_v, last_l2), l2)
      solution = _optimum.solve(problem, start, tol=SEARCH_TOL, steps=1000, report=report,
                                newton_tol=NEWTON_SEARCH_TOL)
      steps += solution.steps
      weights, bias = whitening.to_theta(solution.v, l2)
      loss = problem.loss_and_grad(weights, bias, need_grad=False)[0]
      value, gaps[la] = log_evidence(problem, solution.v, total_weight, loss)
      fits[la] = (value, solution.v)
      last_v, last_l2 = solution.v, l2
    return fits[la][0]

  def on_grid(la: float) -> float:
    return float(np.clip(np.round(la / STEP) * STEP, lo, hi))

  gaps: dict[float, float] = {}
  la = on_grid(np.log10(l2_start * total_weight))
  evaluate(la)
  # MacKay's fixed point alpha <- gamma / ||U||^2 says about where the maximum
  # is (it ignores how the curvature changes with alpha): jump there first.
  jump = on_grid(la + float(np.clip(gaps[la], -MAX_JUMP, MAX_JUMP)) / np.log(10))
  if jump != la and evaluate(jump) > fits[la][0]:
    la = jump
  here = fits[la][0]
  # The direction in which (9) rises: try the weaker penalty first (its fit,
  # warm-started from a stronger one, is the cheaper to reach), then the other.
  direction = -1.0
  if la - STEP < lo or evaluate(la - STEP) < here:
    direction = 1.0
  while lo <= la + direction * STEP <= hi and evaluate(la + direction * STEP) > fits[la][0]:
    la += direction * STEP
  best = max(fits, key=lambda k: fits[k][0])
  chosen = _vertex(best, fits)
  l2 = 10.0**chosen / total_weight
  record = {"method": "evidence", "C": float(10.0**-chosen),
            "C_tried": [float(10.0**-k) for k in sorted(fits, reverse=True)],
            "log_evidence": [fits[k][0] for k in sorted(fits, reverse=True)],
            "fits": len(fits), "steps": steps}
  v = fits[best][1]
  return l2, record, whitening.to_v(*whitening.to_theta(v, 10.0**best / total_weight), l2)


def _vertex(best: float, fits: dict) -> float:
  """``log10 alpha`` of the vertex of the parabola through ``best`` and its two grid
  neighbours (``best`` itself where a neighbour is missing or the parabola opens up)."""
  left, right = best - STEP, best + STEP
  if left not in fits or right not in fits:
    return best
  y0, y1, y2 = fits[left][0], fits[best][0], fits[right][0]
  curvature = y0 - 2 * y1 + y2
  if not curvature < 0:
    return best
  return best + STEP * float(np.clip(0.5 * (y0 - y2) / curvature, -0.5, 0.5))


# -- held-out folds ------------------------------------------------------------------

# Inverse strengths C = 1 / alpha of the held-out path, strongest first.
C_EXPONENTS = tuple(np.arange(-3.0, 4.01, STEP))
C_GRID = tuple(10.0**e for e in C_EXPONENTS)
# The path stops once the mean held-out loss has risen this many grid points in a row
# (a mean over folds on a half-decade grid: one rise is a trend, not noise).
PATIENCE = 1


def folds(targets, cv, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """(train, validation) row indices: ``cv``'s pairs, or ``cv`` folds stratified by label."""
  if not isinstance(cv, (int, np.integer)):
    return list(cv)
  t = len(targets)
  rng = np.random.default_rng(seed)
  fold_of = np.empty(t, np.int64)
  groups = ([np.flatnonzero(targets.labels == c) for c in range(targets.n_classes)]
            if targets.labels is not None else [np.arange(t)])
  offset = 0
  for rows in groups:
    # Consecutive classes continue the round robin, so that no fold is left
    # short by many small classes.
    fold_of[rng.permutation(rows)] = (offset + np.arange(len(rows))) % cv
    offset += len(rows)
  return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(cv)]


def heldout_l2(design, targets, w_raw: np.ndarray, whitening: _curvature.Whitening,
               v0: np.ndarray, l2_v0: float, *, cv, seed: int,
               report=None) -> tuple[float, dict, np.ndarray]:
  """``l2`` of lowest mean held-out log loss along a warm-started path over ``C_GRID``.

  Every fold's path starts at ``v0`` with the strongest penalty; the path ends
  once the mean held-out loss (weighted by the validation rows' weights) has
  risen ``PATIENCE`` grid points in a row.

  Args:
    design: the host design of the rows.
    targets: their targets.
    w_raw: (T,) their raw weights.
    whitening: the change of variables (8).
    v0: the start, (8) at ``l2_v0``.
    l2_v0: the ``l2`` of ``v0``.
    cv: the number of stratified folds (1: one 80/20 split), or (train,
      validation) index pairs.
    seed: seed of the folds.
    report: passed to every fit's ``_optimum.solve``.

  Returns:
    ``(l2, record, v)`` as ``evidence_l2`` returns them, for these rows.
  """
  # One fold of a k-fold split is an 80/20 split for k = 5: cv=1 asks for that one.
  splits = folds(targets, 5, seed)[:1] if isinstance(cv, (int, np.integer)) and cv == 1 \
      else folds(targets, cv, seed)
  splits = [(tr, va) for tr, va in splits if w_raw[tr].sum() > 0 and w_raw[va].sum() > 0]
  total = float(w_raw.sum())
  if not splits:
    return 1.0 / total, {"method": "heldout", "C": 1.0, "folds": 0,
                         "note": "no fold with positive weight on both sides: C = 1"}, v0
  # Each fold's rows, once: (training design, targets, weights; validation ditto).
  parts = [(design.take(tr), targets.take(tr), w_raw[tr], design.take(va), targets.take(va),
            w_raw[va]) for tr, va in splits]
  states = [(v0, l2_v0)] * len(parts)
  means, best, worse, steps, first = [], np.inf, 0, 0, []
  for c in C_GRID:
    loss, weight = 0.0, 0.0
    for f, (x_tr, y_tr, w_tr, x_va, y_va, w_va) in enumerate(parts):
      l2 = 1.0 / (c * w_tr.sum())
      v, l2_v = states[f]
      problem = _optimum.WhitenedProblem(x_tr, y_tr, w_tr / w_tr.sum(), whitening, l2)
      solution = _optimum.solve(problem, whitening.to_v(*whitening.to_theta(v, l2_v), l2),
                                tol=SEARCH_TOL, steps=1000, report=report,
                                newton_tol=NEWTON_SEARCH_TOL)
      states[f] = (solution.v, l2)
      steps += solution.steps
      weights, bias = whitening.to_theta(solution.v, l2)
      held = _optimum.WhitenedProblem(x_va, y_va, w_va / w_va.sum(), whitening, l2)
      loss += float(w_va.sum()) * held.loss_and_grad(weights, bias, need_grad=False)[0]
      weight += float(w_va.sum())
    first.append(states[0])
    means.append(loss / weight)
    worse = worse + 1 if means[-1] > best else 0
    best = min(best, means[-1])
    if worse >= PATIENCE:
      break
  k = int(np.argmin(means))
  # The vertex of the parabola through the best grid point and its neighbours,
  # in log10 alpha = -log10 C (as for the evidence, with the loss negated).
  grid = {-C_EXPONENTS[i]: (-means[i], None) for i in range(len(means))}
  c = 10.0 ** -_vertex(-C_EXPONENTS[k], grid)
  record = {"method": "heldout", "C": float(c), "C_grid": [float(x) for x in C_GRID[:len(means)]],
            "heldout_loss": [float(x) for x in means], "folds": len(splits), "steps": steps}
  l2 = 1.0 / (c * total)
  v, l2_v = first[k]  # the first fold's fit at the best grid point: a warm start
  return l2, record, whitening.to_v(*whitening.to_theta(v, l2_v), l2)
