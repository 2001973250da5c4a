"""Statistics and explicit fit of the inputs a dense layer receives.

Everything here works on numpy arrays:

* :func:`data_batches` cuts ``(x, y)`` arrays into batches (or passes the
  caller's iterable of batches through);
* :func:`fit_explicit` streams ``(features, labels)`` batches into
  :class:`SoftmaxStats` (checking that the features are finite) and solves for
  explicit weights ``W`` (N, M), ``b`` (M,) in the ``x W + b`` layout;
* :func:`check_head_shape` and :func:`checked_bias` check weights against a
  dense layer before anything is written.
"""

from __future__ import annotations

from typing import Iterable, Union

import numpy as np

from explicit_softmax import _validation
from explicit_softmax import calibration
from explicit_softmax import model as model_lib
from explicit_softmax import ngram
from explicit_softmax import solvers
from explicit_softmax import statistics
from explicit_softmax._typing import ArrayLike

# Solver used when fitting a layer from features. The one-step Newton solution
# (a ridge regression of the centred targets) suits dense activations: on the
# ReLU features of a random 784-256 MNIST layer it starts at ~89% test accuracy
# and CE ~0.37, where the co-occurrence solution, a tempered product of experts,
# starts nearly flat (CE ~2.06) and fine-tunes no better than default init
# (benchmarks/bench_init.py). Token (one-hot) models use "cooccurrence", exact there.
DEFAULT_METHOD = "newton"


# -- features -----------------------------------------------------------------
# Model inputs: an array or tensor (with labels y), or an iterable of (x, y)
# batches such as a DataLoader (with y=None).
Inputs = Union[ArrayLike, Iterable]
# What explicit weights come from: a fitted model, statistics to solve, or a bigram
# language model (its weights log p(j | i), see NgramModel.to_softmax_model).
Source = Union[model_lib.SoftmaxModel, statistics.SoftmaxStats, ngram.NgramModel]


def as_float_array(x) -> np.ndarray:
  """``x`` as a numpy array, low-precision floats (bfloat16, float16) as float32."""
  x = np.asarray(x)
  if x.dtype.kind not in "biuf" or (x.dtype.kind == "f" and x.dtype.itemsize < 4):
    x = x.astype(np.float32)
  return x


def checked_bias(bias, out_features: int, layer_has_bias: bool,
                 flag: str) -> np.ndarray | None:
  """The bias to write into a dense layer, checked before anything is written.

  Args:
    bias: (out,) array, or None to leave the layer's bias as it is.
    out_features: the layer's output width.
    layer_has_bias: whether the layer has a bias parameter.
    flag: the framework's constructor argument for it (``bias`` / ``use_bias``).

  Returns:
    The checked array, or None when there is nothing to write (no bias given,
    or a zero bias for a layer without one).
  """
  if bias is None:
    return None
  bias = _validation.check_finite("the bias", bias)
  if not layer_has_bias:
    if np.any(bias != 0):
      raise ValueError(
          f"the layer has no bias ({flag}=False) but the explicit bias is nonzero; "
          f"create it with {flag}=True or use method='cooccurrence'.")
    return None
  if bias.shape != (out_features,):
    raise ValueError(f"bias of shape {bias.shape} does not fit ({out_features},).")
  return bias


def flatten_positions(features: np.ndarray, labels: np.ndarray, n_features: int, batch: int,
                      what: str = "the features reaching the head"
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Sequence features (batch, time, ..., N) and labels (batch, time, ...) as rows.

  A sequence model (a transformer) applies its head to every position, so each
  position is one sample: features (B, T, N) with labels (B, T) become (B T, N)
  and (B T,). Two-dimensional features pass unchanged.

  Raises:
    ValueError: labels whose shape is not the features' leading shape.
  """
  if features.ndim <= 2:
    return features, labels
  if features.shape[-1] != n_features or labels.shape[:features.ndim - 1] != features.shape[:-1]:
    raise ValueError(
        f"{what} have shape {features.shape} (batch {batch}) but the labels have shape "
        f"{labels.shape}; a head applied at every position needs features (..., "
        f"{n_features}) and labels of the features' leading shape {features.shape[:-1]} "
        "(e.g. the next token at each position).")
  rows = int(np.prod(features.shape[:-1]))
  return (features.reshape(rows, n_features),
          labels.reshape((rows,) + labels.shape[features.ndim - 1:]))


def iterate_rows(n_rows: int, batch_size: int) -> Iterable[slice]:
  """Consecutive row slices of at most ``batch_size`` rows."""
  batch_size = _validation.check_integer("batch_size", batch_size)
  for start in range(0, n_rows, batch_size):
    yield slice(start, min(start + batch_size, n_rows))


def data_batches(x, y, batch_size: int) -> Iterable:
  """``(x, y)`` batches from arrays or tensors, or the caller's iterable (``y`` None)."""
  if y is None:
    if hasattr(x, "shape"):  # an array or tensor, not an iterable of batches
      raise ValueError(
          "y is missing: pass labels (init_head(model, x, y)), or an iterable of (x, y) "
          "batches (such as a DataLoader) as x with y=None.")
    return x
  if isinstance(x, (list, np.ndarray)):  # tensors keep their own type checks
    x = np.asarray(x)
    _validation.check_real_dtype(x.dtype)
  n = len(x)
  _validation.check_same_length(n, len(y))
  return ((x[rows], y[rows]) for rows in iterate_rows(n, batch_size))


def accumulate_statistics(batches: Iterable, *, n_features: int, n_classes: int,
                          gram: bool = False,
                          what: str = "the features reaching the head"
                          ) -> statistics.SoftmaxStats:
  """Streams ``(features, labels)`` batches into :class:`SoftmaxStats`.

  Samples whose features are all zero (e.g. every ReLU unit off) are ordinary
  samples: they inform the bias.

  Args:
    batches: iterable of ``(features, y)``: (rows, N) arrays and (rows,) labels
      or (rows, M) soft labels.
    n_features: N, the head's input width.
    n_classes: M, the head's output width.
    gram: also collect the Gram matrix (for ``method="newton"``).
    what: what the features are, for messages.

  Returns:
    The statistics of all batches.

  Raises:
    ValueError: for bad features (see :func:`explicit_softmax._validation.check_layer_inputs`) or no batches.
  """
  stats = statistics.SoftmaxStats.empty(n_features, n_classes, gram=gram)
  for i, (features, y) in enumerate(batches):
    features, y = flatten_positions(as_float_array(features), np.asarray(y), n_features, i, what)
    _validation.check_layer_inputs(features, n_features, i, what)
    _validation.check_same_length(len(features), len(y), where=f"batch {i}")
    stats = stats.update(features, y)
  if stats.n_samples == 0:
    raise ValueError("no data: the batches were empty. Pass at least one (x, y) batch.")
  return stats


def fit_explicit(batches: Iterable, *, n_features: int, n_classes: int,
                 method: str = DEFAULT_METHOD, smoothing: float = solvers.DEFAULT_SMOOTHING,
                 ridge: float = solvers.DEFAULT_RIDGE, hint: str = "",
                 what: str = "the features reaching the head",
                 calibrate: bool = False) -> model_lib.SoftmaxModel:
  """Explicit weights for a head fed by ``batches`` of ``(features, y)``.

  Args:
    batches: iterable of ``(features, y)`` numpy batches.
    n_features: N, the head's input width.
    n_classes: M, the head's output width.
    method: ``"newton"`` or ``"cooccurrence"`` (see :func:`explicit_softmax.solve`).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    hint: advice appended to the error for negative features (cooccurrence).
    what: what the features are, for messages.
    calibrate: then fit a temperature and class biases to the cross-entropy on
      the same rows (``explicit_softmax.calibrate`` with ``l2 = 1/T``, which
      keeps classes absent from the rows finite). The one-step Newton solution
      is a ridge regression whose scale grows with the number of classes: on the
      128 LayerNorm features of a character transformer (65 classes) it starts
      at a held-out CE of ~7.5 nats, above the uniform 4.17; calibrated, ~2.8
      (benchmarks/bench_deep.py). The rows are kept in memory for this.

  Returns:
    The fitted :class:`SoftmaxModel` (``weights`` (N, M), ``bias`` (M,)).
  """
  _validation.check_choice("method", method, solvers.METHODS)
  calibrate = _validation.check_bool("calibrate", calibrate)
  kept = []
  if calibrate:
    batches = list(batches)
    for i, (features, y) in enumerate(batches):
      kept.append(flatten_positions(as_float_array(features), np.asarray(y), n_features, i,
                                    what))
    batches = kept
  stats = accumulate_statistics(batches, n_features=n_features, n_classes=n_classes,
                                gram=(method == "newton"), what=what)
  if method == "cooccurrence":
    _validation.check_nonnegative_features(
        stats.min_feature, what, f"{hint} Or use method='newton', which takes any real "
        "features.".lstrip())
  explicit = solvers.solve(stats, method, smoothing=smoothing, ridge=ridge)
  if calibrate:
    x = np.concatenate([f for f, _ in kept])
    y = np.concatenate([t for _, t in kept])
    explicit = calibration.calibrate(explicit, x, y, l2=1.0 / len(x))
  return explicit


def as_explicit_model(source, *, method: str | None = None,
                      smoothing: float = solvers.DEFAULT_SMOOTHING,
                      ridge: float = solvers.DEFAULT_RIDGE) -> model_lib.SoftmaxModel:
  """A :class:`SoftmaxModel` from a model (returned as is) or from statistics (solved).

  With ``method=None`` statistics are solved with ``"newton"`` if they hold the
  Gram matrix, else with ``"cooccurrence"``. A bigram :class:`NgramModel` gives its
  explicit weights ``W[i, j] = log p(j | i)`` (:meth:`NgramModel.to_softmax_model`).
  """
  if isinstance(source, model_lib.SoftmaxModel):
    return source
  if isinstance(source, ngram.NgramModel):
    return source.to_softmax_model()
  if isinstance(source, statistics.SoftmaxStats):
    if method is None:
      method = "newton" if source.gram is not None else "cooccurrence"
    return solvers.solve(source, method, smoothing=smoothing, ridge=ridge)
  raise ValueError(
      f"expected a SoftmaxModel, SoftmaxStats or bigram NgramModel; got "
      f"{type(source).__name__}. Fit one with explicit_softmax.fit(X, y), "
      "SoftmaxStats.from_data(X, y) or NgramModel.fit(tokens, order=2).")


def check_head_shape(explicit: model_lib.SoftmaxModel, in_features: int,
                     out_features: int, has_bias: bool, what: str) -> None:
  """Checks that explicit weights fit a dense layer ``in_features -> out_features``.

  Raises:
    ValueError: mismatched shapes, or a nonzero explicit bias for a layer
      without bias.
  """
  if (explicit.n_features, explicit.n_classes) != (in_features, out_features):
    raise ValueError(
        f"the explicit weights map {explicit.n_features} features to "
        f"{explicit.n_classes} classes, but {what} maps {in_features} -> {out_features}. "
        "Fit the explicit model on the features that reach this layer, with "
        "n_classes equal to its output width.")
  if not has_bias and np.any(explicit.bias != 0):
    raise ValueError(
        f"the explicit model has a nonzero bias but {what} has no bias. Give the layer "
        "a bias (use_bias=True / bias=True) or use method='cooccurrence', whose bias "
        "is zero.")


def check_new_classes(n_classes) -> int:
  """The number of classes of a new head: a positive integer, with advice otherwise."""
  # The new head's output width: the number of new classes, labels 0..n_classes-1.
  return _validation.check_integer("n_classes", n_classes)
