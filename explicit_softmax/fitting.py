"""The one-call path: the model a user wants from ``es.fit(X, y)``.

* One-hot inputs (one token per row, or rows with a single 1): the
  co-occurrence (count) solution, the exact optimum there
  ([`es.cooccurrence_weights`][explicit_softmax.solvers.cooccurrence_weights]).
* Any other features (real values, bags of words, several tokens per row): the
  L2-regularised optimum of (6), ``L(W, b) + (l2 / 2) ||S W||^2``, with the
  penalty in the units ``S`` of (7) (so that rescaling or shifting a feature
  changes no prediction), ``l2`` chosen by the evidence (9) (or, given ``cv``,
  on held-out folds), and L-BFGS in the whitened variables (8), all three from
  one pass of column statistics and the features' covariance. It stops once
  the relative gradient norm (5), in the penalty's units, is below ``tol``.

The pipeline, in order ([`fit_optimum`][explicit_softmax.fitting.fit_optimum]): validate and place
the data (in memory, or partitions that a dask cluster or several JAX processes hold), one pass of
column statistics, the units (7) and the whitening (8), ``l2``, the fit, the record.

References:
  D. J. C. MacKay, "The evidence framework applied to classification
  networks", Neural Computation 4 (1992).
  D. Boehning, "Multinomial logistic regression algorithm", Annals of the
  Institute of Statistical Mathematics 44 (1992).
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from explicit_softmax import _curvature
from explicit_softmax import _design
from explicit_softmax import _objective
from explicit_softmax import _optimum
from explicit_softmax import _placement
from explicit_softmax import _progress
from explicit_softmax import _regularisation
from explicit_softmax import _targets
from explicit_softmax import _validation
from explicit_softmax import _convergence
from explicit_softmax import calibration
from explicit_softmax import model as model_lib
from explicit_softmax import refinement
from explicit_softmax import solvers
from explicit_softmax import statistics
from explicit_softmax._typing import Features, Labels, SampleWeight, Splits

METHODS = ("auto",) + solvers.METHODS
STARTS = ("zero", "newton", "cooccurrence")
# The relative gradient norm (5) at which the default fit stops: the held-out
# loss there is close to the converged model's at a fraction of the steps
# (measured in docs/fitting.md, "The stopping tolerance").
DEFAULT_TOL = 1e-3
MAX_STEPS = 1000
# Above this many rows, l2 is chosen on a stratified subset of this size; the
# evidence's alpha = 1 / C is a prior precision, the same for any number of rows.
SEARCH_MAX_ROWS = 4096
# Features with fewer nonzero entries than this (bags of words, token contexts)
# get l2 from held-out loss: there most features are rare, the Gaussian prior of
# the evidence (9) is far from their weights (most near zero, a few large), and
# the evidence chose far too strong a penalty on bags of words (measured in
# docs/fitting.md, "The pipeline").
SPARSE_DENSITY = 0.1
# Held-out loss: CV_FOLDS stratified folds up to SMALL_SAMPLES rows, else one
# 80/20 split of at most HELDOUT_MAX_ROWS (C carries over to all rows).
CV_FOLDS = 5
SMALL_SAMPLES = 2000
HELDOUT_MAX_ROWS = 20_000
# Dense products run in float32 (sums in float64) above this much work per
# evaluation (entries of X times classes) when tol allows it; below it float64
# costs little.
FLOAT32_MIN_WORK = 2**22
FLOAT32_MIN_TOL = 1e-5
# A fit that runs longer than this shows a progress bar (verbose=True).
PROGRESS_DELAY_SECONDS = 2.0


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


def _explicit_start(start, X, y, sample_weight, n_classes: int):
  """The model ``start`` names (None for ``"auto"`` and ``"zero"``: the uniform model)."""
  if isinstance(start, model_lib.SoftmaxModel):
    return start
  if start == "zero":
    return None
  stats = statistics.SoftmaxStats.from_data(X, y, n_classes=n_classes,
                                            sample_weight=sample_weight, gram=start == "newton")
  return solvers.solve(stats, start)


class _Placed:
  """Validated data where it lives, and everything one pass over it gives.

  In memory: a ``HostDesign`` of the columns
  that vary over the rows of positive weight (dense ``X`` centred by its column
  means, in the compute precision), its targets and weights. A constant column
  has weight 0 at the optimum of (6) (the bias absorbs its value, the penalty
  does the rest), so it is left out of the optimisation; on a bag of words
  most of a large vocabulary may be absent. Partitioned (dask, several JAX
  processes): the ``PartitionedDesign``,
  whose targets and weights stay with the partitions.
  """

  def __init__(self, design, targets, w_raw, n_classes: int, *, tol: float,
               workers: int = 1):
    self.targets, self.n_classes = targets, n_classes
    self.partitioned = not design.local
    self.t, self.n_all = design.shape
    if self.partitioned:
      mean, variance, low, high, self.density, self.total_weight = design.column_summary()
      self.columns = np.arange(self.n_all)
      covariance = (design.covariance(mean, self.total_weight)
                    if self.n_all <= _curvature.MAX_EIGEN_FEATURES else None)
      self.design, self.w = design, None
      offset = np.zeros(self.n_all)
    else:
      mean, variance, low, high, self.density = design.column_summary(w_raw)
      self.total_weight = float(w_raw.sum())
      self.columns = np.flatnonzero(high > low)
      work = design.work(n_classes)
      dense = design.dense
      dtype = (np.float32 if dense and work >= FLOAT32_MIN_WORK and tol >= FLOAT32_MIN_TOL
               else np.float64)
      self.design = _design.as_host(
          design, dtype, offset=mean,
          columns=None if len(self.columns) == self.n_all else self.columns, workers=workers)
      self.w = w_raw / self.total_weight
      offset = mean[self.columns] if dense else np.zeros(len(self.columns))
      covariance = None
      if 0 < len(self.columns) <= _curvature.MAX_EIGEN_FEATURES:
        covariance = _covariance(self.design, self.w, mean[self.columns] - offset)
    self.units = _curvature.units_of(mean, variance, low, high)  # of every column: the record
    self.n = len(self.columns)
    self.offset = offset
    # The whitening sees the design's own (kept, possibly centred) columns.
    kept = _curvature.Units(self.units.mean[self.columns] - offset,
                            self.units.scale[self.columns])
    if covariance is not None:
      covariance = covariance / np.outer(kept.scale, kept.scale)
    self.whitening = _curvature.whitening(kept, covariance, variance[self.columns], n_classes)
    self.w_raw = w_raw
    self.seconds: dict[str, float] = {}

  def problem(self, l2: float) -> _optimum.WhitenedProblem:
    """(6) at ``l2`` on all rows."""
    return _optimum.WhitenedProblem(self.design, self.targets, self.w, self.whitening, l2)

  def subset(self, rows: np.ndarray) -> tuple[object, object, np.ndarray, _curvature.Whitening,
                                             np.ndarray]:
    """``(design, targets, w_raw, whitening, index)`` of the in-memory ``rows``.

    With a diagonal whitening (many features) the subset keeps only the
    columns that vary on its rows (``index`` into the kept columns): a sample
    of a bag of words holds a small part of its vocabulary, and the optimiser's
    cost grows with the number of weights.
    """
    design = self.design.take(rows)
    index = np.arange(self.n)
    whitening = self.whitening
    if whitening.basis is None and self.n:
      x = design.x
      varies = (x.getnnz(axis=0) > 0 if hasattr(x, "getnnz")
                else np.ptp(np.asarray(x), axis=0) > 0)
      index = np.flatnonzero(varies)
      design = _design.HostDesign(x[:, index], design.offset[index], design.workers)
      whitening = whitening.restrict(index)
    return design, self.targets.take(rows), self.w_raw[rows], whitening, index

  def expand(self, v: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(8) of all kept columns from that of ``index`` (the others: weight 0)."""
    if len(index) == self.n:
      return v
    out = np.zeros((self.n + 1, self.n_classes))
    out[index], out[-1] = v[:-1], v[-1]
    return out

  def model(self, v: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of ``V`` over every column: the bias of centred columns,
    ``c = b + offset^T W``, undone; constant columns weigh 0."""
    kept, bias = self.whitening.to_theta(v, l2)
    weights = np.zeros((self.n_all, self.n_classes))
    weights[self.columns] = kept
    return weights, bias - self.offset @ kept

  def v_of(self, model: model_lib.SoftmaxModel | None, l2: float) -> np.ndarray:
    """(8) of ``model`` (None: the uniform model, ``V = 0``)."""
    if model is None:
      return np.zeros((self.n + 1, self.n_classes))
    weights = model.weights.astype(np.float64)[self.columns]
    return self.whitening.to_v(weights, model.bias + self.offset @ weights, l2)


def _covariance(design: _design.HostDesign, w: np.ndarray, shift: np.ndarray) -> np.ndarray:
  """The weighted covariance of ``X`` on at most ``COVARIANCE_ROWS`` rows (seeded).

  ``design`` holds ``X - offset`` (dense, or sparse with a zero offset) and
  ``shift`` is the mean minus the offset. It shapes the whitening (8) and the
  evidence's spectrum, neither of which needs more rows; dense and sparse
  storage of the same ``X`` give the same matrix.
  """
  t = design.shape[0]
  if t > _curvature.COVARIANCE_ROWS:
    rows = np.sort(np.random.default_rng(0).choice(t, _curvature.COVARIANCE_ROWS,
                                                   replace=False))
    design, w = design.take(rows), w[rows]
  return design.weighted_gram(w / w.sum(), shift)


@model_lib.keeps_feature_names
def fit_optimum(X: Features, y: Labels, n_classes: int | None = None, *,
                l2: float | str = "auto", start: str | model_lib.SoftmaxModel = "zero",
                tol: float = 1e-3, sample_weight: SampleWeight = None,
                cv: Splits = None, seed: int = 0,
                verbose: bool = True) -> model_lib.SoftmaxModel:
  """The L2-regularised multinomial optimum (6), in the units (7) of each feature.

  Args:
    X: (T, N) real features (dense, sparse or [`TokenFeatures`][explicit_softmax.TokenFeatures]), or
      data held in partitions (a dask array or DataFrame, a multi-process ``jax.Array``).
    y: (T,) labels or (T, M) soft labels (for a dask DataFrame the name of its
      label column).
    n_classes: M; inferred from ``y`` if None.
    l2: ``"auto"`` (the evidence (9), or held-out loss on ``cv``) or a number
      ``>= 0``, the strength of (6) per unit of sample weight (scikit-learn's
      ``C`` is ``1 / (l2 T_w)``).
    start: ``"zero"`` (the uniform model), ``"newton"``, ``"cooccurrence"`` or a
      [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] (``"auto"``, its former name for
      ``"zero"``, is deprecated). Whichever has the lower objective, the start or the uniform model,
      is used.
    tol: the relative gradient norm (5), in the units (7), at which the fit
      stops.
    sample_weight: optional (T,) nonnegative weights.
    cv: None (``l2`` by the evidence), or held-out data for ``l2="auto"``: a
      number of stratified folds or (train, validation) pairs of row indices.
    seed: seed of the subsets and folds.
    verbose: show a progress bar once the fit has run for two seconds.

  Returns:
    The [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel]; ``info["refine"]`` certifies it (its
    ``relative_grad_norm`` is measured in the units ``info["units"]``) and
    ``info["l2_path"]`` records how ``l2`` was chosen.
  """
  if isinstance(start, str) and start == "auto":
    warnings.warn("fit_optimum(start='auto') is deprecated: it always meant 'zero'; pass "
                  "start='zero'.", DeprecationWarning, stacklevel=3)
    start = "zero"
  if not isinstance(start, model_lib.SoftmaxModel):
    _validation.check_choice("start", start, STARTS, otherwise="a SoftmaxModel")
  entry = time.perf_counter()
  design = _placement.place(X, y, sample_weight, n_classes)
  start_model = _explicit_start(start, X, y, sample_weight, n_classes)
  return _fit_placed(design, y, n_classes, l2=l2, tol=tol, sample_weight=sample_weight, cv=cv,
                     seed=seed, verbose=verbose, start=start_model, entry=entry)


def _fit_placed(design, y, n_classes: int | None, *, l2, tol, sample_weight, cv,
                seed: int = 0, verbose: bool = True,
                start: model_lib.SoftmaxModel | None = None,
                entry: float | None = None) -> model_lib.SoftmaxModel:
  """[`fit_optimum`][explicit_softmax.fitting.fit_optimum] on a placed design
  (``_placement.place``): the pipeline's checks, one pass of statistics, ``l2``, the fit and the
  record."""
  entry = time.perf_counter() if entry is None else entry
  seed = _validation.check_integer("seed", seed, minimum=0)
  l2 = _validation.check_l2(l2)
  tol = _validation.check_number("tol", tol)
  verbose = _validation.check_bool("verbose", verbose)
  if design.local:
    targets = _validation.check_targets(y, design.shape[0], n_classes)
    w_raw = _validation.check_sample_weight(sample_weight, design.shape[0])
    m = targets.n_classes
    _validation.check_classes_occur(targets, n_classes)
    if cv is not None:
      cv = _validation.check_cv(cv, design.shape[0])
  else:
    targets, w_raw, m = None, None, design.parts.n_classes
  _validation.check_dense_size(design.shape[1], m)
  _validation.check_optimiser_memory(
      design.shape[1], m, min(design.shape[0] or 1, _objective.eval_rows(m)), on_host=True,
      asked=lambda: _validation.describe_classes(
          n_classes, m, None if targets is None else targets.labels))
  t, n = design.shape
  # A fit by Newton steps makes few, large products (the Gram matrix, the Hessian's
  # blocks), where BLAS's threads cost little; L-BFGS makes many small ones.
  newton = design.local and design.dense and _optimum.newton_applies(t, n, m)
  largest = t * (n + 1) * max(n + 1, m) if newton else None
  with _design.single_threaded_blas(largest) as workers, \
      _progress.progress(desc="es.fit", unit="step", delay=PROGRESS_DELAY_SECONDS,
                         disable=not verbose) as bar:
    placed = _Placed(design, targets, w_raw, m, tol=tol, workers=workers)
    placed.seconds = {"statistics": time.perf_counter() - entry}
    model = _fit(placed, start, l2=l2, tol=tol, cv=cv, seed=seed, bar=bar, entry=entry)
  if design.layout is not None:  # checked against token inputs at predict time
    model = model.replace(info={**model.info, "token_layout": design.layout})
  return model


def _choose_l2(placed: _Placed, v0: np.ndarray, *, cv, seed: int, bar) -> tuple[float, dict,
                                                                                 np.ndarray]:
  """``(l2, record, v)`` for all rows: the evidence (9), or held-out loss where ``cv``
  asks for it or the features are sparse, on a subset of rows when there are many
  (``alpha = l2 T_w`` carries over to all of them)."""
  if placed.partitioned:
    return _choose_l2_on_sample(placed, v0, cv=cv, seed=seed)
  heldout = cv is not None or placed.density < SPARSE_DENSITY
  rows = None
  if cv is None:
    limit = HELDOUT_MAX_ROWS if heldout else SEARCH_MAX_ROWS
    if placed.t > limit:
      rows = _subset(placed.targets, limit, seed)
  if rows is None:
    design, targets, w_raw = placed.design, placed.targets, placed.w_raw
    whitening, index = placed.whitening, np.arange(placed.n)
  else:
    design, targets, w_raw, whitening, index = placed.subset(rows)
  total = float(w_raw.sum())
  # v0 is (8) at the probe l2 = 1 / T_w of all rows; the search starts at 1 / total.
  weights, bias = placed.whitening.to_theta(v0, 1.0 / placed.total_weight)
  v_start = whitening.to_v(weights[index], bias, 1.0 / total)
  bar.set_description("es.fit: choosing l2")
  if heldout:
    folds = cv if cv is not None else (CV_FOLDS if len(targets) <= SMALL_SAMPLES else 1)
    l2, record, v = _regularisation.heldout_l2(design, targets, w_raw, whitening, v_start,
                                               1.0 / total, cv=folds, seed=seed,
                                               report=_advance(bar))
    if cv is None:
      record["why"] = (f"sparse features ({100 * placed.density:.2g}% nonzero): held-out "
                       "loss, not the evidence")
  else:
    l2, record, v = _regularisation.evidence_l2(
        design, targets, w_raw / total, whitening, total, v_start, 1.0 / total,
        report=_advance(bar))
  if rows is not None:
    record["rows"] = int(len(rows))
  final = l2 * total / placed.total_weight  # alpha = l2 T_w, the same for all rows
  weights, bias = whitening.to_theta(v, l2)
  full = np.zeros((placed.n, placed.n_classes))
  full[index] = weights
  return final, record, placed.whitening.to_v(full, bias, final)


def _choose_l2_on_sample(placed: _Placed, v0, *, cv, seed: int):
  """``_choose_l2`` for partitioned data: on a seeded sample of about
  ``SEARCH_MAX_ROWS`` rows brought into memory."""
  parts = placed.design.parts
  if not hasattr(parts, "sample"):
    raise ValueError(
        "l2='auto' needs a sample of rows in one process, which data spread over several "
        "JAX processes does not offer; pass l2 as a number (l2 = 1 / (C * total weight), "
        f"e.g. l2={1.0 / placed.total_weight:.3g} for scikit-learn's C = 1 here).")
  x_s, y_s, w_s = parts.sample(min(1.0, SEARCH_MAX_ROWS / max(placed.t or 1, 1)), seed)
  design_s = _design.as_design(x_s)
  targets_s = _validation.check_targets(y_s, design_s.shape[0], placed.n_classes)
  w_s = _validation.check_sample_weight(w_s, design_s.shape[0])
  sample = _Placed(design_s, targets_s, w_s, placed.n_classes, tol=1.0)
  # The sample's own units and whitening choose alpha; it carries over.
  sample_v0 = np.zeros_like(v0)
  l2, record, _ = _choose_l2(sample, sample_v0, cv=cv, seed=seed, bar=_progress.TextBar())
  record["sample_rows"] = int(sample.t)
  return l2 * sample.total_weight / placed.total_weight, record, v0


def _advance(bar):
  """A solver report that advances ``bar`` by one step (and never stops the run)."""
  def report(step, theta_fn, loss, norm):
    del step, theta_fn, loss, norm
    bar.update(1)
    return False
  return report


def _fit(placed: _Placed, start_model, *, l2, tol: float, cv, seed: int, bar,
         entry: float) -> model_lib.SoftmaxModel:
  """The steps of [`fit_optimum`][explicit_softmax.fitting.fit_optimum] after placement: ``l2``, the
  fit, the record."""
  path = None
  clock = time.perf_counter()
  probe = 1.0 / placed.total_weight if isinstance(l2, str) else float(l2)
  v0 = _better_start(placed, placed.v_of(start_model, probe), probe)
  if isinstance(l2, str):
    if placed.n_classes < 2:
      l2, path = probe, {"method": "none", "C": 1.0,
                         "note": "a single class: nothing to regularise, C = 1"}
    else:
      l2, path, v0 = _choose_l2(placed, v0, cv=cv, seed=seed, bar=bar)
  l2 = float(l2)
  placed.seconds["l2"] = time.perf_counter() - clock
  clock = time.perf_counter()
  initial = placed.model(v0, l2)
  recorder = _convergence.Recorder(
      model_lib.SoftmaxModel(*initial), None, 1, MAX_STEPS, entry)
  bar.set_description("es.fit")

  def report(step, theta_fn, loss, norm):
    bar.update(1)
    return recorder(step, None, loss, norm)

  problem = placed.problem(l2)
  solution = _optimum.solve(problem, v0, tol=tol, steps=MAX_STEPS, report=report)
  weights, bias = placed.model(solution.v, l2)
  # Softmax ignores a common shift of the biases, and (6) does not penalise b:
  # the centred bias is the canonical one (equal data, equal logits).
  bias = bias - bias.mean()
  record = {
      "method": "newton" if solution.steps == 0 and solution.polish_steps else "lbfgs",
      "l2": l2, "tol": tol, "converged": solution.reason == "tol",
      "reason": _convergence.REASONS[solution.reason], "steps": solution.steps,
      "evaluations": solution.evaluations, "newton_polish_steps": solution.polish_steps,
      "relative_grad_norm": solution.relative_grad_norm,
      "precision": "float32" if getattr(placed.design, "dtype", None) == np.float32
      else "float64",
      "whitening": "eigenbasis" if placed.whitening.basis is not None else "diagonal"}
  if placed.partitioned:
    record["passes"] = placed.design.passes
  placed.seconds["fit"] = time.perf_counter() - clock
  placed.seconds["total"] = time.perf_counter() - entry
  info = {"method": "auto", "seconds": placed.seconds,
          "start": "zero" if start_model is None else start_model.info.get("method", "model"),
          "units": {"mean": placed.units.mean, "scale": placed.units.scale}, "refine": record}
  if path is not None:
    info["l2_path"] = path
  return model_lib.SoftmaxModel(weights, bias, info=info, history=recorder.history())


def _better_start(placed: _Placed, v: np.ndarray, l2: float) -> np.ndarray:
  """``v``, or the uniform model where that has the lower objective (6).

  An explicit solution can be far from the penalised optimum (with features of
  magnitude 1e-30 its weights are 1e30, and any penalty pulls them to zero);
  one evaluation of each keeps L-BFGS from starting uphill of the zero model.
  """
  if not v.any():
    return v
  problem = placed.problem(l2)
  zero = np.zeros_like(v)
  return v if problem.value_and_grad(v)[0] <= problem.value_and_grad(zero)[0] else zero


@model_lib.keeps_feature_names
def fit(X: Features, y: Labels, n_classes: int | None = None, method: str = "auto", *,
        smoothing: float = 0.1, ridge: float = 1e-3,
        l2: float | str = "auto", tol: float = 1e-3,
        sample_weight: SampleWeight = None, cv: Splits = None,
        verbose: bool = True) -> model_lib.SoftmaxModel:
  """Fits a softmax model in one call.

  Args:
    X: (T, N) features: dense numpy/JAX array (uint8 images accepted),
      ``scipy.sparse`` matrix, or [`TokenFeatures`][explicit_softmax.TokenFeatures].
    y: (T,) integer labels in ``[0, M)`` or (T, M) soft labels.
    n_classes: M; inferred from ``y`` if None.
    method: ``"auto"`` (default): the count solution on one-hot inputs (one token per row, or rows
      with a single 1: the exact optimum there), else the certified optimum of (6)
      ([`fit_optimum`][explicit_softmax.fitting.fit_optimum]). ``"cooccurrence"`` or ``"newton"``:
      the raw closed forms (see [`es.solve`][explicit_softmax.solvers.solve]), one pass, no
      refinement.
    smoothing: additive smoothing of the co-occurrence solution (checked
      whichever method applies).
    ridge: relative ridge of the Newton solution (checked likewise).
    l2: the strength of (6) for ``method="auto"``: ``"auto"`` (the evidence
      (9), or held-out loss on ``cv``) or a number ``>= 0``.
    tol: relative gradient norm (5) at which ``method="auto"`` stops.
    sample_weight: optional (T,) nonnegative weights.
    cv: held-out folds for ``l2="auto"`` (see
      [`fit_optimum`][explicit_softmax.fitting.fit_optimum]).
    verbose: show a progress bar once a fit has run for two seconds.

  Data that no single process holds: a dask array or DataFrame (``y`` its
  label column's name), or a ``jax.Array`` spanning several JAX processes.
  The closed forms need one pass of statistics, reduced where the rows live;
  ``"auto"`` decides one-hot in one pass and otherwise optimises over all
  partitions (``l2="auto"`` needs a row sample in memory, so several JAX
  processes need a number).

  Returns:
    A [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel]; fitted on a DataFrame with string
    column names, its ``info["feature_names"]`` lists them (and DataFrames given to it later are
    matched by name).
  """
  return run(X, y, n_classes, method, smoothing=smoothing, ridge=ridge, l2=l2, tol=tol,
             sample_weight=sample_weight, cv=cv, verbose=verbose).model


@dataclasses.dataclass(frozen=True)
class Fitted:
  """What ``run`` made: the model, and the statistics of a closed form (else None)."""

  model: model_lib.SoftmaxModel
  stats: statistics.SoftmaxStats | None = None


def run(X: Features, y: Labels, n_classes: int | None = None, method: str = "auto", *,
        smoothing: float = 0.1, ridge: float = 1e-3,
        l2: float | str = "auto", tol: float = 1e-3, sample_weight: SampleWeight = None,
        cv: Splits = None, verbose: bool = True, calibrate: bool = False,
        refine: str | None = None, refine_steps: int = 50,
        batch_size: int | None = None) -> Fitted:
  """The one pipeline behind ``es.fit``, the estimator and the command line.

  Validate and place ``X`` once; then the optimum (``method="auto"`` off
  one-hot data), or one pass of statistics, a closed form and, as asked, the
  calibration and the refinement of the closed form. The front ends parse
  their own inputs (labels of any type, files, DataFrames) and call this.

  Args:
    X, y, n_classes, method, smoothing, ridge, l2, tol, sample_weight, cv,
      verbose: as [`fit`][explicit_softmax.fitting.fit].
    calibrate: after a closed form, fit a temperature and class biases
      ([`es.calibrate`][explicit_softmax.calibration.calibrate]).
    refine: after a closed form (and calibration), None, or the
      [`es.refine`][explicit_softmax.refinement.refine] method (``"lbfgs"``, ``"adam"``, ``"sgd"``)
      for ``refine_steps`` steps at ``tol``; both use ``l2`` (``"auto"``: 1 over
      the total sample weight, scikit-learn's ``C = 1``).
    refine_steps: the steps of that refinement.
    batch_size: its minibatch rows (None: full batch); ``verbose`` shows its
      progress.

  Returns:
    A ``Fitted``.
  """
  _validation.check_choice("method", method, METHODS)
  # Checked whichever path applies, so that a wrong value never passes unseen.
  smoothing = _validation.check_number("smoothing", smoothing)
  ridge = _validation.check_number("ridge", ridge)
  _validation.check_post_process(method, calibrate, refine)
  design = _placement.place(X, y, sample_weight, n_classes)  # where the rows live: once
  if method == "auto":
    if not design.is_one_hot():
      return Fitted(_fit_placed(design, y, n_classes, l2=l2, tol=tol,
                                sample_weight=sample_weight, cv=cv, verbose=verbose))
    method = "cooccurrence"
  stats = statistics.SoftmaxStats.from_design(design, X, y, n_classes=n_classes,
                                              sample_weight=sample_weight,
                                              gram=method == "newton")
  model = solvers.solve(stats, method, smoothing=smoothing, ridge=ridge)
  if design.layout is not None:  # checked against token inputs at predict time
    model = model.replace(info={**model.info, "token_layout": design.layout})
  if calibrate or refine is not None:
    post_l2 = 1.0 / stats.total_weight if isinstance(l2, str) else float(l2)
    if calibrate:
      if not design.local:
        raise ValueError(
            "calibrate=True is not available for data held in partitions (calibration reads "
            "the logits of all rows at once); use refine='lbfgs', which runs over them.")
      model = calibration.calibrate(model, X, y, sample_weight=sample_weight, l2=post_l2)
    if refine is not None:
      model = _refine_with_progress(model, X, y, refine, refine_steps, post_l2, tol,
                                    sample_weight, batch_size, verbose)
  return Fitted(model, stats)


def _refine_with_progress(model, X, y, method: str, steps: int, l2: float, tol: float,
                          sample_weight, batch_size, verbose: bool) -> model_lib.SoftmaxModel:
  """[`es.refine`][explicit_softmax.refinement.refine] with a progress bar (about 100 updates: the
  steps between callbacks run in one jitted loop)."""
  with _progress.progress(total=steps, desc=f"refine ({method})", unit="step",
                          delay=PROGRESS_DELAY_SECONDS, disable=not verbose) as bar:
    def callback(step, current, record):
      del current
      bar.update(step + 1 - bar.n)
      bar.set_postfix_str(f"loss {record['loss']:.4f}")
    return refinement.refine(model, X, y, method=method, steps=steps, l2=l2, tol=tol,
                             sample_weight=sample_weight, batch_size=batch_size,
                             callback=callback, callback_every=max(1, steps // 100))
