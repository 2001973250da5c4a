"""Iterative refinement of a softmax model to the optimum of the penalised objective.

``refine`` minimises ``J`` (4) of ``es._objective`` (the mean
cross-entropy (1) of ``es.model`` plus ``(l2 / 2) ||W||^2``)
from any starting model and records loss, gradient norm and wall time per step
(``es._convergence``), so that refinement from an explicit
solution and gradient descent from zero run the very same code. Small
full-batch L-BFGS runs on the host in float64 (``es._lbfgs``);
everything else, any ``optax.GradientTransformation`` included, runs the jitted
float32 loop of ``es._optax_loop``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from explicit_softmax import _design
from explicit_softmax import _placement
from explicit_softmax import _validation
from explicit_softmax import _convergence
from explicit_softmax import _lbfgs
from explicit_softmax import model as model_lib
from explicit_softmax import _objective
from explicit_softmax import _preconditioning
from explicit_softmax._preconditioning import Standardizer, gram_preconditioner
from explicit_softmax._typing import Features, Labels, SampleWeight

if TYPE_CHECKING:  # optax (and JAX under it) load only when a device loop runs
  import optax

# The named methods: host or jitted L-BFGS, and shortcuts for optax.adam and optax.sgd.
METHODS = ("lbfgs", "adam", "sgd")

# Full-batch L-BFGS runs on the host in float64 (scipy) when one evaluation of
# the objective costs at most this many multiply-adds (stored entries of X
# times classes): no compilation, and float64 reaches tolerances at which a
# float32 line search stalls (docs/fitting.md, "Why these constants"). MNIST,
# 60,000 x 784 x 10, is below. Above it the jitted float32 JAX path is faster
# per step.
HOST_MAX_WORK = 2**29

def work_of(design, n_classes: int) -> int:
  """Multiply-adds of one product ``X W``: stored entries of ``X`` times classes."""
  return design.work(n_classes)


def uses_host(method, design, n_classes: int, minibatch: bool) -> bool:
  """Whether ``method`` on ``design`` runs host float64 L-BFGS (else the jitted loop)."""
  if not (isinstance(method, str) and method == "lbfgs") or minibatch:
    return False
  if not design.local:
    return True  # float64 scipy L-BFGS, one distributed pass per evaluation
  return design.work(n_classes) <= HOST_MAX_WORK


def check_memory(design, n_classes: int, asked, *, method="lbfgs",
                 batch_size: int | None = None) -> None:
  """Refuses a run whose parameters, optimiser state and evaluation blocks would not
  fit in memory (see ``es._validation.check_optimiser_memory``)."""
  t = design.shape[0] or 1  # partitioned data: per-partition blocks
  minibatch = batch_size is not None and batch_size < t
  on_host = uses_host(method, design, n_classes, minibatch)
  rows = (min(t, _objective.eval_rows(n_classes)) if on_host
          else batch_size if minibatch else t)
  _validation.check_optimiser_memory(design.shape[1], n_classes, rows, on_host=on_host,
                                     asked=asked)


def _name(method) -> str:
  """A JSON-able name of ``method``."""
  return method if isinstance(method, str) else "optax.GradientTransformation"


def _rate_schedule(learning_rate) -> Callable[[int], float]:
  """``step -> step size``, checked: a constant once, here; a schedule at each step.

  A negative rate would ascend the loss and a NaN one would poison every
  parameter, both silently; they are refused where the rate is first seen.
  """
  if callable(learning_rate):
    return lambda step: _validation.check_learning_rate(learning_rate(step), step)
  rate = _validation.check_learning_rate(learning_rate, None)
  return lambda step: rate


def _optimiser(method, learning_rate, batch_size):
  """``(tx, rate_at, rate)``: what the loop runs, a shortcut's checked rates, the rate used.

  ``tx`` is ``"lbfgs"`` or an ``optax.GradientTransformation``; ``rate_at`` is
  None where ``tx`` carries its own step sizes.
  """
  if not isinstance(method, str) and _is_transformation(method):
    if learning_rate is not None:
      raise ValueError(
          f"learning_rate={learning_rate!r} is for method='adam' or 'sgd'; an "
          "optax.GradientTransformation carries its own step sizes (e.g. optax.adam(0.01) or "
          "optax.adam(optax.linear_schedule(...))). Leave learning_rate=None.")
    return method, None, None
  _validation.check_choice("method", method, METHODS,
                           otherwise="an optax.GradientTransformation such as optax.adam(1e-3)")
  if method == "lbfgs":
    if batch_size is not None:
      raise ValueError("L-BFGS is a full-batch method; leave batch_size=None.")
    if learning_rate is not None:
      raise ValueError(
          "L-BFGS takes its step sizes from a line search; leave learning_rate=None.")
    return method, None, None
  from explicit_softmax import _optax_loop  # JAX, for the jitted loop only
  rate = _optax_loop.DEFAULT_LEARNING_RATE[method] if learning_rate is None else learning_rate
  return _optax_loop.shortcut(method), _rate_schedule(rate), rate


def _is_transformation(method) -> bool:
  """Whether ``method`` is an ``optax.GradientTransformation`` (optax imported only to ask)."""
  import optax
  return isinstance(method, optax.GradientTransformation)


def _data(model: model_lib.SoftmaxModel, X, y, sample_weight, method):
  """``(design, targets, w)``: validated, ``w`` summing to one; partitioned data as it is.

  Data no single process holds is checked in its first pass; its targets and
  weights stay with the partitions (None here).
  """
  design = _placement.partitioned(X, y, sample_weight, model.n_classes)
  if design is None:
    design = _design.for_model(X, model)
    t = design.shape[0]
    targets = _validation.check_targets(y, t, model.n_classes)
    w = _validation.check_sample_weight(sample_weight, t)
    return design, targets, w / w.sum()  # the objective is a weighted mean
  if method != "lbfgs":
    raise ValueError(
        f"refine on data held in partitions (dask, several JAX processes) runs full-batch "
        f"L-BFGS, one distributed pass per evaluation; got method={_name(method)!r}. Use "
        "method='lbfgs'.")
  if design.shape[1] != model.n_features:
    _design.as_design(np.zeros((1, design.shape[1])), n_features=model.n_features)
  return design, None, None


def refine(model: model_lib.SoftmaxModel, X: Features, y: Labels,
           method: str | optax.GradientTransformation = "lbfgs", steps: int = 100, *,
           tol: float = 1e-6, l2: float = 0.0, batch_size: int | None = None,
           learning_rate: float | Callable[[int], float] | None = None,
           sample_weight: SampleWeight = None,
           callback: Callable | None = None, callback_every: int = 1,
           precondition: bool | str | Standardizer | np.ndarray = False,
           seed: int = 0) -> model_lib.SoftmaxModel:
  """Refines ``model`` by minimising ``J`` (4), mean cross-entropy plus ``(l2/2) ||W||^2``.

  Full-batch runs stop once the relative gradient norm (5) falls to ``tol`` (the model is then
  certified, see
  [`es.diagnostics.optimality_certificate`][explicit_softmax.diagnostics.optimality_certificate]),
  or after ``steps`` steps. L-BFGS up to ``HOST_MAX_WORK`` multiply-adds per evaluation runs on the
  host in float64 (scipy, no compilation, tight tolerances); everything else runs jitted float32
  optax steps, where a line search may stall near ``1e-4``, and the record then says so.

  Args:
    model: the starting point (an explicit solution, zeros, anything).
    X: (T, N) real features (dense, sparse or [`TokenFeatures`][explicit_softmax.TokenFeatures]).
      Data no single process holds (a dask array or DataFrame, a ``jax.Array`` whose rows span
      several JAX processes) takes the float64 L-BFGS, each evaluation one pass summing every
      partition's loss and gradient where it lives (``method="lbfgs"`` only).
    y: (T,) labels or (T, M) soft labels (for a dask DataFrame the name of
      its label column).
    method: ``"lbfgs"`` (full batch; the training loss never increases),
      ``"adam"`` or ``"sgd"`` (shortcuts for ``optax.adam`` and ``optax.sgd``
      at ``learning_rate``), or any ``optax.GradientTransformation`` such as
      ``optax.adamw(1e-3)`` or ``optax.chain(optax.clip(1.0), optax.sgd(0.1))``,
      run by the same jitted loop (its ``update`` also receives ``value``,
      ``grad`` and ``value_fn``, so ``optax.lbfgs()`` works too).
    steps: the maximum number of optimiser steps.
    tol: stop (converged) once ``||grad|| <= tol * ||grad at W = 0, b = 0||``
      (full batch only; minibatch runs take all ``steps``). ``0`` runs all steps.
    l2: the penalty. Without it the optimum of linearly separable data lies at
      infinity; ``l2 = 1 / T`` is scikit-learn's ``LogisticRegression(C=1)``.
    batch_size: rows per step for adam, sgd or a transformation (None: full
      batch), drawn without replacement, one permutation per epoch, seeded by
      ``seed``; a sparse matrix is densified on the host one batch at a time.
    learning_rate: step size for adam/sgd (defaults: adam 1e-2, sgd 0.5), or a
      schedule ``step -> step size`` (evaluated on the host each step; no
      recompilation). None for ``"lbfgs"`` and for a transformation, which
      carries its own.
    sample_weight: optional (T,) nonnegative weights.
    callback: ``callback(step, model, record) -> bool | None`` after every
      ``callback_every``-th step and after the last; ``record`` holds that
      step's ``loss``, ``grad_norm`` and ``seconds`` (callback time excluded).
      Returning True stops early.
    callback_every: steps between callbacks. Minibatch steps on a dense or
      token input between callbacks (within an epoch) run in one jitted loop,
      their ``seconds`` spread evenly: callbacks far apart run fastest and
      time closest to an unobserved run.
    precondition: optimise ``V`` with ``[W; b] = P V`` (same optimum, another
      path). ``True``: whitened by the input Gram matrix (see
      [`es.refinement.gram_preconditioner`][explicit_softmax.refinement.gram_preconditioner], whose
      factor may be passed instead). ``"standardize"`` (or a
      [`Standardizer`][explicit_softmax.refinement.Standardizer]): centred
      features of unit variance, O(N M) per step, sparse inputs included.
    seed: nonnegative integer seed of the minibatch order and of the
      preconditioner's rows.

  Returns:
    The refined [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel], with its per-step
    [`History`][explicit_softmax.model.History] and ``info["refine"]``: ``converged``, ``reason``,
    ``steps``, ``relative_grad_norm``, ``tol``, ``precision``, ``evaluations`` (of host L-BFGS; None
    when jitted), the arguments (``method`` is ``"optax.GradientTransformation"`` for one) and, on
    partitioned data, ``passes``.

  Raises:
    ValueError: for invalid arguments or data (naming the problem), a negative
      or non-finite learning rate (a schedule's is checked at each step), and
      a run that diverged (the message names the step): never a NaN model.

  References:
    D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large
    scale optimization", Mathematical Programming 45 (1989).
    D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization",
    ICLR 2015.
  """
  _validation.check_instance("model", model, model_lib.SoftmaxModel, "fit one with es.fit(X, y)")
  tx, rate_at, rate = _optimiser(method, learning_rate, batch_size)
  steps = _validation.check_integer("steps", steps, minimum=0)
  l2 = _validation.check_number("l2", l2)
  tol = _validation.check_number("tol", tol)
  if batch_size is not None:
    batch_size = _validation.check_integer("batch_size", batch_size)
  every = _validation.check_integer("callback_every", callback_every)
  seed = _validation.check_integer("seed", seed, minimum=0)
  _validation.check_callable("callback", callback, "(step, model, record) -> bool | None")
  entry = time.perf_counter()  # setup (validation, transfers, preconditioner) is timed too
  design, targets, w = _data(model, X, y, sample_weight, method)
  check_memory(design, model.n_classes, f"refining a model of {model.n_classes:,} classes",
               method=method, batch_size=batch_size)
  minibatch = batch_size is not None and batch_size < design.shape[0]
  precond = _preconditioning.reparametrisation(precondition, design, seed, model.n_classes, l2)
  on_host = uses_host(method, design, model.n_classes, minibatch)
  if on_host and design.local:
    design = _design.as_host(design)
  record = _convergence.Recorder(model, callback, every, steps, entry)
  theta, reason, evaluations, relative = _minimise(
      model, design, targets, w, l2, tol, precond, on_host=on_host, tx=tx, rate_at=rate_at,
      batch_size=batch_size if minibatch else None, seed=seed, record=record)
  said = _convergence.REASONS[reason]
  if reason == "stalled" and not record.losses:  # no step at all: say why
    said = _convergence.explain_stall(model, design, targets, w, l2)
  info = dict(model.info)
  info["refine"] = {
      "method": _name(method), "l2": float(l2), "batch_size": batch_size,
      "learning_rate": "schedule" if callable(rate) else rate,
      "precondition": _preconditioning.describe(precondition), "converged": reason == "tol",
      "reason": said, "steps": len(record.losses),
      "relative_grad_norm": relative, "tol": tol,
      "precision": "float64" if on_host else "float32", "evaluations": evaluations}
  if not design.local:
    # Every pass over the partitions: evaluations, the reference norm, moments.
    info["refine"]["passes"] = design.passes
  return _convergence.refined(model, theta, len(record.losses) - 1, info=info,
                             history=record.history())


def _minimise(model, design, targets, w, l2: float, tol: float, precond, *, on_host: bool,
              tx, rate_at, batch_size: int | None, seed: int, record: _convergence.Recorder):
  """Runs the host or the jitted loop from ``model`` until (5) holds or it stops.

  Returns:
    ``(theta, reason, evaluations, relative)``: ``[W; b]``, the key of
    ``REASONS``, host L-BFGS's evaluations
    (None on the jitted path) and the final relative gradient norm (5) (None
    for minibatches, whose gradients say nothing about the full objective).
  """
  theta0 = np.vstack([model.weights, model.bias]).astype(np.float64)
  if precond is not None:
    theta0 = precond.inverse(theta0)
  minibatch = batch_size is not None
  # Minibatch runs have no convergence test, so they need no reference norm.
  # The host path measures gradients in (W, b), as the certificate does.
  norm_precond = None if on_host else precond
  zero_norm = np.inf if minibatch else _objective.zero_grad_norm(
      design, targets, w, model.n_classes, norm_precond)
  threshold = -np.inf if minibatch else tol * zero_norm
  evaluations = None  # optax's line search evaluates inside the jitted step
  if on_host:
    with _design.blas_threads_for(work_of(design, model.n_classes)):
      problem = _lbfgs.PenalisedProblem(design, targets, w, float(l2), precond)
      v, reason, evaluations, _ = _lbfgs.minimise(problem, theta0, record.steps,
                                                      threshold, record)
      theta = problem.theta(v)
  else:
    design.check_finite()  # every row, also those no minibatch has drawn yet
    from explicit_softmax import _optax_loop  # JAX, for the jitted loop only
    theta, reason = _optax_loop.run(
        theta0, precond, design, targets, w, l2, tx=tx, rate_at=rate_at, batch_size=batch_size,
        steps=record.steps, threshold=threshold, seed=seed, record=record)
  if minibatch:
    return theta, reason, evaluations, None
  norm = record.norms[-1] if record.norms else _objective.grad_norm(
      design, targets, w, theta, l2, norm_precond)
  return theta, reason, evaluations, float(_objective.relative_grad_norm(norm, zero_norm))
