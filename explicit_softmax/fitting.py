"""The one-call path: the model a user wants from ``es.fit(X, y)``.

* One-hot or token inputs: the co-occurrence (count) solution, which is the
  exact optimum there (:func:`explicit_softmax.cooccurrence_weights`).
* Any other real features: the L2-regularised multinomial optimum

      min_{W, b}  L(W, b) + (l2 / 2) ||W||^2,                               (4)

  refined by float64 L-BFGS from zero (measured: no explicit start paid on
  this path, see ``_start``; any start can be given) until its relative
  gradient norm is below ``tol`` (a certificate of optimality). The
  strength ``l2 = 1 / (C T_w)`` (scikit-learn's ``C``) is chosen on held-out
  data along a warm-started regularisation path, because the exact optimum at
  a habitual ``C = 1`` can generalise worse than a poorly converged fit.

References:
  J. Friedman, T. Hastie and R. Tibshirani, "Regularization Paths for
  Generalized Linear Models via Coordinate Descent", J. Stat. Software 33
  (2010): warm-started paths over the penalty, chosen by held-out loss.
"""

from __future__ import annotations

import numpy as np

from explicit_softmax import _design
from explicit_softmax import _partition
from explicit_softmax import _partitioned
from explicit_softmax import _targets
from explicit_softmax import _validation
from explicit_softmax import convergence
from explicit_softmax import model as model_lib
from explicit_softmax import objective
from explicit_softmax import refinement
from explicit_softmax import solvers
from explicit_softmax import statistics
from explicit_softmax._typing import Features, Labels, SampleWeight, Splits

METHODS = ("auto",) + solvers.METHODS
STARTS = ("auto", "zero", "newton", "cooccurrence")
# Inverse regularisation strengths C of the path, strongest first (l2 = 1/(C T_w)).
C_GRID = tuple(10.0 ** np.arange(-2.0, 4.01, 0.5))
# The path stops once the held-out loss has risen this many grid points in a row.
PATIENCE = 2
# Held-out rows: 5-fold cross-validation up to SMALL_SAMPLES samples (where one
# split's held-out loss is noisy and fits are cheap; with 3 folds iris's
# held-out log loss after refitting was 0.047, with 5 folds 0.027), above it
# one split of VALIDATION_FRACTION (3 folds tripled the path's cost on 5,000
# MNIST rows).
SMALL_SAMPLES = 2000
CV_FOLDS = 5
VALIDATION_FRACTION = 0.2
# Above this many samples the path runs on a stratified subset of this size
# (C, the inverse strength per sample, carries over to all rows as in
# scikit-learn's convention); the fit on all rows starts from its solution.
PATH_MAX_SAMPLES = 10_000
# Tolerance of the path's fits: they only rank the grid points, but a loose one
# lags behind the path (each fit starts from the previous, more penalised one):
# with 1e-3, digits chose C = 3.2 over C = 1 (held-out log loss 0.124 against
# 0.114 after refitting); on 5,000 MNIST rows 1e-4 cost 10.6 s, 1e-3 7.0 s.
PATH_TOL = 1e-4
MAX_STEPS = 1000
# Every fit runs L-BFGS on centred features of (damped) unit variance: on raw
# features (pixels, areas in the thousands) it needed up to 10x the steps, or
# missed tol within 1,000 (scikit-learn's breast_cancer and digits).
PRECONDITION = "standardize"
# Problems with at most this many parameters (N+1) M end with exact Newton
# steps (objective.newton_polish): the optimum to float64 precision, so that
# equal data in another form (weights for repeated rows, sparse for dense, a
# shuffle) gives the same model, not two points within tol of it.
POLISH_MAX_PARAMETERS = 1024


def is_one_hot(design) -> bool:
  """Whether every row of ``X`` has exactly one nonzero entry, equal to 1."""
  if isinstance(design, _design.TokenDesign):
    return design.tokens.ids.shape[1] == 1
  if isinstance(design, _design.SparseDesign):
    x = design.x
    return bool(x.nnz == x.shape[0] and (x.getnnz(axis=1) == 1).all() and (x.data == 1).all())
  x = design.x
  for start in range(0, x.shape[0], _design.CHUNK_ROWS):
    chunk = x[start:start + _design.CHUNK_ROWS]
    if not (((chunk != 0).sum(axis=1) == 1).all() and (chunk.sum(axis=1) == 1).all()):
      return False
  return True


def _start(start, X, y, sample_weight, n_features: int,
           n_classes: int) -> model_lib.SoftmaxModel:
  """The explicit starting point of the path (``X``: a design, dask data or a
  multi-process array; the statistics of an explicit start come from one pass)."""
  if isinstance(start, model_lib.SoftmaxModel):
    return start
  if start == "auto":
    # Measured (benchmarks/results/real.json, "starts"): at the chosen l2 the
    # Newton start saved 3 to 6 of 27 to 115 L-BFGS steps on scikit-learn's
    # bundled data (at most 2% of the time), cost more steps than zero on MNIST
    # (374 against 350, plus 0.8 s for its Gram matrix), and on a bag of words
    # every explicit start had a higher penalised objective than zero. The
    # path's first, strongest penalty replaced the Newton start by zero on
    # every data set. So the default path starts at zero.
    start = "zero"
  if start == "zero":
    return model_lib.SoftmaxModel(np.zeros((n_features, n_classes)), np.zeros(n_classes),
                                  info={"method": "zero"})
  stats = statistics.SoftmaxStats.from_data(X, y, n_classes=n_classes,
                                            sample_weight=sample_weight, gram=start == "newton")
  return solvers.solve(stats, start)


def better_start(model: model_lib.SoftmaxModel, design, targets: _targets.Targets,
                 w: np.ndarray, l2: float) -> model_lib.SoftmaxModel:
  """``model``, or the uniform model where that has the lower objective (4).

  An explicit solution can be far from the penalised optimum (with features of
  magnitude 1e-30 its weights are 1e30, and any penalty pulls them to zero);
  one evaluation of each keeps L-BFGS from starting uphill of the zero model.
  """
  zero = model_lib.SoftmaxModel(np.zeros_like(model.weights), np.zeros_like(model.bias),
                                info={"method": "zero"})

  def value(m):
    theta = np.vstack([m.weights, m.bias]).astype(np.float64)
    return objective.penalised_objective(design, targets, w, theta, l2, need_grad=False)[0]

  return model if value(model) <= value(zero) else zero


def _polished(model: model_lib.SoftmaxModel, design, targets, w_raw: np.ndarray,
              l2: float) -> model_lib.SoftmaxModel:
  """``model`` after :func:`objective.newton_polish`, its record updated."""
  w = w_raw / w_raw.sum()
  theta = np.vstack([model.weights, model.bias]).astype(np.float64)
  theta, taken = objective.newton_polish(theta, design, targets, w, l2)
  if not taken:
    return model
  record = dict(model.info["refine"])
  norm = np.linalg.norm(objective.penalised_objective(design, targets, w, theta, l2)[1])
  zero_norm = objective.zero_grad_norm(design, targets, w, theta.shape[1])
  record["relative_grad_norm"] = float(norm / zero_norm) if zero_norm > 0 else 0.0
  record["newton_polish_steps"] = taken
  if record["relative_grad_norm"] <= record["tol"]:
    record["converged"], record["reason"] = True, convergence.REASONS["tol"]
  # One rounding to float32, of the centred bias (see fit_optimum).
  return model.replace(weights=theta[:-1], bias=theta[-1] - theta[-1].mean(),
                       info={**model.info, "refine": record})


def _y(targets: _targets.Targets) -> np.ndarray:
  return targets.labels if targets.labels is not None else targets.probs


def _subset(targets: _targets.Targets, size: int, seed: int) -> np.ndarray:
  """``size`` row indices drawn without replacement, stratified by label."""
  rng = np.random.default_rng(seed + 1)
  t = len(targets)
  if targets.labels is None:
    return np.sort(rng.choice(t, size, replace=False))
  rows = []
  for c in range(targets.n_classes):
    members = np.flatnonzero(targets.labels == c)
    take = int(round(len(members) * size / t))
    rows.append(rng.choice(members, min(len(members), max(take, 1 if len(members) else 0)),
                           replace=False))
  return np.sort(np.concatenate(rows))


def _folds(targets: _targets.Targets, cv, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """(train, validation) row indices: ``cv``'s, or stratified by label and seeded."""
  t = len(targets)
  cv = _validation.check_cv(cv, t)
  if isinstance(cv, list):
    return cv
  k = (CV_FOLDS if t <= SMALL_SAMPLES else 1) if cv is None else cv
  rng = np.random.default_rng(seed)
  fold_of = np.empty(t, np.int64)
  if targets.labels is not None:
    groups = [np.flatnonzero(targets.labels == c) for c in range(targets.n_classes)]
  else:
    groups = [np.arange(t)]
  offset = 0
  for rows in groups:
    rows = rng.permutation(rows)
    if k > 1:
      # Consecutive classes continue the round robin, so that no fold is left
      # short by many small classes.
      fold_of[rows] = (offset + np.arange(len(rows))) % k
      offset += len(rows)
    else:  # fold 0 is the validation split
      fold_of[rows] = (np.arange(len(rows)) >= round(VALIDATION_FRACTION * len(rows)))
  return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def choose_l2(design, targets: _targets.Targets, w_raw: np.ndarray, start: model_lib.SoftmaxModel,
              *, cv: Splits = None,
              seed: int = 0) -> tuple[float, dict, model_lib.SoftmaxModel]:
  """``C`` with the lowest held-out log loss along a warm-started path.

  Each fold's path starts at ``start`` with the strongest penalty and ends once
  its held-out loss has risen ``PATIENCE`` grid points in a row; ``C`` is the
  grid point of lowest mean held-out loss among those every fold reached.

  Args:
    design: the validated design matrix.
    targets: validated targets.
    w_raw: (T,) sample weights (``l2 = 1/(C sum(w))`` on each training part).
    start: the path's starting model.
    cv: None (5 folds up to ``SMALL_SAMPLES`` rows, else one 80/20 split of a
      stratified subset of ``PATH_MAX_SAMPLES`` rows), a number of folds, or
      (train, validation) pairs of row indices.
    seed: seed of the default folds.

  Returns:
    ``(C, record, model)``: the grid point of lowest mean held-out loss, a
    JSON-able record of the path (grid, mean held-out loss per grid point,
    folds used, ``C``) and the first fold's fit at ``C`` (a warm start for
    the fit on all rows).
  """
  folds = _folds(targets, cv, seed)
  if cv is None and len(targets) > PATH_MAX_SAMPLES:
    keep = _subset(targets, PATH_MAX_SAMPLES, seed)
    folds = [(np.intersect1d(train, keep), np.intersect1d(val, keep)) for train, val in folds]
  losses: dict[float, list[float]] = {}
  models: dict[float, model_lib.SoftmaxModel] = {}
  for train, val in folds:
    if not (w_raw[train].sum() > 0 and w_raw[val].sum() > 0):
      continue  # a fold whose rows all have zero weight tells nothing
    best, worse = np.inf, 0
    y_train, y_val = targets.take(train), targets.take(val)
    x_train, x_val = design.take(train), design.take(val)
    total = w_raw[train].sum()
    model = better_start(start, x_train, y_train, w_raw[train], 1.0 / (C_GRID[0] * total))
    for c in C_GRID:
      model = refinement.refine(model, x_train, _y(y_train), steps=MAX_STEPS, tol=PATH_TOL,
                                l2=1.0 / (c * total), sample_weight=w_raw[train],
                                precondition=PRECONDITION)
      loss = model.log_loss(x_val, _y(y_val), sample_weight=w_raw[val])
      losses.setdefault(c, []).append(loss)
      models.setdefault(c, model)  # the first fold's fit warm-starts the final one
      worse = worse + 1 if loss > best else 0
      best = min(best, loss)
      if worse >= PATIENCE:
        break
  used = max((len(v) for v in losses.values()), default=0)
  if not used:
    return 1.0, {"C_grid": [1.0], "heldout_loss": [None], "folds": 0, "C": 1.0,
                 "note": "no fold with positive weight on both sides: C = 1"}, start
  complete = {c: float(np.mean(v)) for c, v in losses.items() if len(v) == used}
  chosen = min(complete, key=lambda c: complete[c])
  # A parabola through the best grid point and its neighbours (in log C) was
  # tried and measured: on bench_real's splits it lowered digits' test loss
  # (0.124 -> 0.118) and raised iris', wine's and breast_cancer's; not kept.
  return chosen, {"C_grid": [float(c) for c in complete], "heldout_loss": list(complete.values()),
                  "folds": used, "C": float(chosen)}, models[chosen]


@model_lib.keeps_feature_names
def fit_optimum(X: Features, y: Labels, n_classes: int | None = None, *,
                l2: float | str = "auto", start: str | model_lib.SoftmaxModel = "auto",
                tol: float = objective.DEFAULT_TOL, sample_weight: SampleWeight = None,
                cv: Splits = None,
                seed: int = 0) -> model_lib.SoftmaxModel:
  """The L2-regularised multinomial optimum (4), from zero or a given start.

  Args:
    X: (T, N) real features (dense, sparse or :class:`TokenFeatures`).
    y: (T,) labels or (T, M) soft labels.
    n_classes: M; inferred from ``y`` if None.
    l2: ``"auto"`` (chosen on held-out data, see the module docstring) or a
      number ``>= 0``.
    start: ``"auto"`` (zero: measured, no explicit start paid on the
      default path; see ``_start``), ``"zero"``, ``"newton"``,
      ``"cooccurrence"`` or a :class:`SoftmaxModel`. Whichever has the lower
      penalised objective, the start or zero, is used.
    tol: relative gradient norm at which the final fit stops.
    sample_weight: optional (T,) nonnegative weights.
    cv: the held-out data of ``l2="auto"`` (see :func:`choose_l2`).
    seed: seed of the default folds.

  Returns:
    The refined :class:`SoftmaxModel`; ``info["refine"]`` certifies it and
    ``info["l2_path"]`` records how ``l2`` was chosen.
  """
  if not isinstance(start, model_lib.SoftmaxModel):
    _validation.check_choice("start", start, STARTS, otherwise="a SoftmaxModel")
  seed = _validation.check_integer("seed", seed, minimum=0)
  l2 = _validation.check_l2(l2)
  tol = _validation.check_number("tol", tol)
  parts = _partitioned.partitioned(X, y, sample_weight, n_classes)
  if parts is not None:
    return _fit_optimum_partitioned(parts, X, y, sample_weight, l2=l2, start=start, tol=tol,
                                    cv=cv, seed=seed)
  design = _design.as_design(X)
  t = design.shape[0]
  targets = _validation.check_targets(y, t, n_classes)
  w_raw = _validation.check_sample_weight(sample_weight, t)
  m = targets.n_classes
  _validation.check_dense_size(design.shape[1], m)
  _validation.check_classes_occur(targets, n_classes)
  refinement.check_memory(design, m, lambda: _validation.describe_classes(
      n_classes, m, targets.labels))
  with refinement.blas_threads_for(refinement.work_of(design, m)):
    model = _start(start, design, _y(targets), w_raw, design.shape[1], m)
    if refinement.uses_host("lbfgs", design, m, False):
      design = _design.as_float64(design)  # once for all the path's fits
    return _fit_optimum(design, targets, w_raw, model, l2=l2, tol=tol, cv=cv, seed=seed)


def _fit_optimum(design, targets, w_raw, model, *, l2, tol, cv, seed):
  """:func:`fit_optimum` on validated data from the start ``model``."""
  t, m = len(targets), targets.n_classes
  path = None
  if isinstance(l2, str):
    if cv is None and (m < 2 or t < 30):
      c, path = 1.0, {"C_grid": [1.0], "heldout_loss": [None], "folds": 0, "C": 1.0,
                      "note": "too few samples for held-out data: C = 1"}
    else:
      c, path, model = choose_l2(design, targets, w_raw, model, cv=cv, seed=seed)
    l2 = 1.0 / (c * w_raw.sum())
  model = better_start(model, design, targets, w_raw, float(l2))
  out = refinement.refine(model, design, _y(targets), steps=MAX_STEPS, tol=tol, l2=float(l2),
                          sample_weight=w_raw, precondition=PRECONDITION)
  n1 = design.shape[1] + 1
  if n1 * m <= POLISH_MAX_PARAMETERS and design.shape[0] * n1 <= 2**24:
    out = _polished(out, design, targets, w_raw, float(l2))
  # Softmax ignores a common shift of the biases, and (4) does not penalise b:
  # the centred bias is the canonical one (equal data, equal logits).
  bias = out.bias.astype(np.float64)
  out = out.replace(bias=bias - bias.mean())
  info = dict(out.info)
  info["method"] = "auto"
  info["start"] = model.info.get("method", "model")
  if path is not None:
    info["l2_path"] = path
  return out.replace(info=info)


def _partition_one_hot(part, n_classes: int) -> bool:
  """:func:`is_one_hot` of one partition."""
  return is_one_hot(_partition.checked(part, n_classes)[0])


def _partition_size(part, n_classes: int) -> tuple[float, float]:
  """``(rows, total weight)`` of one partition."""
  w = _partition.checked(part, n_classes)[2]
  return float(len(w)), float(w.sum())


def _fit_optimum_partitioned(design, X, y, sample_weight, *, l2, start, tol, cv, seed):
  """:func:`fit_optimum` on data held in partitions (dask, several JAX processes).

  The final fit is :func:`refinement.refine` over all partitions (one pass per
  evaluation), stopped at ``tol``; there is no Newton polish (it needs the
  rows in one place), so the model agrees with the in-memory one as far as
  ``tol`` implies. ``l2="auto"`` chooses ``C`` as the in-memory path does above
  ``PATH_MAX_SAMPLES`` rows: along the warm-started path on a random sample of
  about that many rows (held in memory), here drawn row by row in every
  partition (seeded) rather than stratified by label; ``C`` carries over to
  all rows as ``l2 = 1 / (C T_w)``.
  """
  parts = design.parts
  m = parts.n_classes
  _validation.check_dense_size(parts.n_features, m)
  model = _start(start, X, y, sample_weight, parts.n_features, m)
  path = None
  if isinstance(l2, str):
    rows, total = parts.map_reduce(_partition_size, (m,), _partitioned.add)
    _validation.check_sample_weight(np.array([total]), 1)  # a positive total weight
    if not hasattr(parts, "sample"):
      raise ValueError(
          "l2='auto' needs a sample of rows in one process, which data spread over several "
          "JAX processes does not offer; pass l2 as a number (l2 = 1 / (C * total weight), "
          f"e.g. l2={1.0 / total:.3g} for scikit-learn's C = 1 here).")
    x_s, y_s, w_s = parts.sample(min(1.0, PATH_MAX_SAMPLES / rows), seed)
    design_s = _design.as_design(x_s)
    targets_s = _validation.check_targets(y_s, design_s.shape[0], m)
    w_s = _validation.check_sample_weight(w_s, design_s.shape[0])
    if cv is None and (m < 2 or len(targets_s) < 30):
      c, path = 1.0, {"C_grid": [1.0], "heldout_loss": [None], "folds": 0, "C": 1.0,
                      "note": "too few samples for held-out data: C = 1"}
    else:
      if refinement.uses_host("lbfgs", design_s, m, False):
        design_s = _design.as_float64(design_s)
      c, path, model = choose_l2(design_s, targets_s, w_s, model, cv=cv, seed=seed)
    path["sample_rows"] = len(targets_s)
    l2 = 1.0 / (c * total)
  model = better_start(model, design, None, None, float(l2))
  out = refinement.refine(model, X, y, steps=MAX_STEPS, tol=tol, l2=float(l2),
                          sample_weight=sample_weight, precondition=PRECONDITION)
  bias = out.bias.astype(np.float64)  # the canonical, centred bias (see _fit_optimum)
  info = dict(out.info, method="auto", start=model.info.get("method", "model"))
  if path is not None:
    info["l2_path"] = path
  return out.replace(bias=bias - bias.mean(), info=info)


@model_lib.keeps_feature_names
def fit(X: Features, y: Labels, n_classes: int | None = None, method: str = "auto", *,
        smoothing: float = solvers.DEFAULT_SMOOTHING, ridge: float = solvers.DEFAULT_RIDGE,
        l2: float | str = "auto", tol: float = objective.DEFAULT_TOL,
        sample_weight: SampleWeight = None,
        cv: Splits = None) -> model_lib.SoftmaxModel:
  """Fits a softmax model in one call.

  Args:
    X: (T, N) real features: dense numpy/JAX array (uint8 images accepted),
      ``scipy.sparse`` matrix, or :class:`TokenFeatures`.
    y: (T,) integer labels in ``[0, M)`` or (T, M) soft labels.
    n_classes: M; inferred from ``y`` if None.
    method: ``"auto"`` (default): the count solution on one-hot or token
      inputs (exact there), else the certified L2-regularised optimum
      (:func:`fit_optimum`). ``"cooccurrence"`` or ``"newton"``: the raw closed
      forms (see :func:`explicit_softmax.solve`), one pass, no refinement.
    smoothing: additive smoothing of the co-occurrence solution (checked
      whichever method applies).
    ridge: relative ridge of the Newton solution (checked likewise).
    l2: the L2 strength of ``method="auto"`` on other inputs: ``"auto"``
      (chosen on held-out data) or a number ``>= 0``.
    tol: relative gradient norm at which ``method="auto"`` stops.
    sample_weight: optional (T,) nonnegative weights.
    cv: held-out data for ``l2="auto"`` (see :func:`choose_l2`).

  Data that no single process holds: a dask array or DataFrame (``y`` its
  label column's name), or a ``jax.Array`` spanning several JAX processes.
  The closed forms need one pass of statistics, reduced where the rows live;
  ``"auto"`` decides one-hot in one pass and otherwise refines over all
  partitions (see :func:`_fit_optimum_partitioned`; ``l2="auto"`` needs a
  row sample in memory, so several JAX processes need a number).

  Returns:
    A :class:`SoftmaxModel`; fitted on a DataFrame with string column names,
    its ``info["feature_names"]`` lists them (and DataFrames given to it later
    are matched by name).
  """
  _validation.check_choice("method", method, METHODS)
  # Checked whichever path applies, so that a wrong value never passes unseen.
  smoothing = _validation.check_number("smoothing", smoothing)
  ridge = _validation.check_number("ridge", ridge)
  if method == "auto":
    parts = _partitioned.partitioned(X, y, sample_weight, n_classes)
    if parts is not None:  # dask or several JAX processes: one pass decides
      n_classes = parts.parts.n_classes
      # min: "all partitions one-hot" (as 0/1, which also crosses processes).
      if parts.parts.map_reduce(_partition_one_hot, (n_classes,), min):
        method = "cooccurrence"
      else:
        return fit_optimum(X, y, n_classes, l2=l2, tol=tol, sample_weight=sample_weight, cv=cv)
  if method == "auto":
    design = _design.as_design(X)
    if isinstance(design, _design.TokenDesign) or is_one_hot(design):
      method = "cooccurrence"
    else:
      return fit_optimum(design, y, n_classes, l2=l2, tol=tol, sample_weight=sample_weight,
                         cv=cv)
  stats = statistics.SoftmaxStats.from_data(
      X, y, n_classes=n_classes, sample_weight=sample_weight, gram=(method == "newton"))
  model = solvers.solve(stats, method, smoothing=smoothing, ridge=ridge)
  if isinstance(X, _design.TokenFeatures):  # checked against token inputs at predict time
    model = model.replace(info={**model.info,
                                "token_layout": [X.ids.shape[1], X.vocab_size]})
  return model
