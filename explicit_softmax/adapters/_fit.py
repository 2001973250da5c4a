"""Statistics and explicit fit of the inputs a dense layer receives.

Everything here works on numpy arrays:

* ``data_batches`` cuts ``(x, y)`` arrays into batches of rows spread
  evenly over the data, as many as a sample budget needs (or passes the
  caller's iterable of batches through);
* ``fit_explicit`` streams ``(features, labels)`` batches into
  [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] (checking that the features are
  finite), up to the sample budget, and solves for explicit weights ``W`` (N, M), ``b`` (M,) in the
  ``x W + b`` layout (then, optionally, a cross-fitted calibration);
* ``check_head_shape`` and ``checked_bias`` check weights against a
  dense layer before anything is written.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Callable, Iterable, Iterator, Union

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
# Samples a layer fit reads by default (max_samples="auto"): SAMPLES_PER_INPUT per input
# of the layer (its N features and the bias), and at least MIN_SAMPLES. The sampling
# error of the ridge solution falls as N / T, so a budget proportional to N + 1 keeps
# the head's held-out loss near its all-rows value, while the forward passes (and the
# O(T N^2) Gram matrix) cost a fixed share of what reading every row would; the floor
# serves narrow heads, whose rows are cheap. The head's held-out loss and seconds
# against samples read are measured in docs/deep_models.md ("How many rows the head
# needs", explicit-softmax bench deep --tasks rows).
SAMPLES_PER_INPUT = 8
MIN_SAMPLES = 4096
# Folds of the cross-fitted calibration (calibrate=True).
CALIBRATION_FOLDS = 5


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


def sample_budget(max_samples: int | str | None, n_features: int) -> int | None:
  """The samples a fit of a layer with ``n_features`` inputs reads (None: all).

  ``"auto"`` is ``max(SAMPLES_PER_INPUT * (n_features + 1), MIN_SAMPLES)``, i.e.
  ``max(8 (N + 1), 4096)``; an integer is taken as is.
  """
  checked = _validation.check_max_samples(max_samples)
  if checked is None:
    return None
  if checked == "auto":
    return max(SAMPLES_PER_INPUT * (n_features + 1), MIN_SAMPLES)
  return int(checked)


def even_rows(n_rows: int, n_take: int | None) -> np.ndarray | None:
  """``n_take`` row indices spread evenly over ``n_rows`` rows, in order.

  Row ``i * n_rows // n_take`` for ``i < n_take``: distinct, the first row
  included, the gaps differing by at most one. None (read every row, in
  slices) when ``n_take`` is None or at least ``n_rows``.
  """
  if n_take is None or n_take >= n_rows:
    return None
  return np.arange(n_take, dtype=np.int64) * n_rows // n_take


def row_chunks(n_rows: int, rows: np.ndarray | None,
               batch_size: int) -> Iterator[slice | np.ndarray]:
  """Batches of rows: slices of all ``n_rows`` rows, or chunks of the index array ``rows``."""
  if rows is None:
    yield from iterate_rows(n_rows, batch_size)
    return
  for chunk in iterate_rows(len(rows), batch_size):
    yield rows[chunk]


def samples_per_row(y_head: np.ndarray) -> int:
  """Samples one input row yields, from the labels of the first rows (``y[:1]``).

  Integer labels ``(T, ...)`` give one sample per label (a sequence head sees
  ``(B, T)`` labels: ``T`` positions per row); soft labels end in a class axis.
  Whole-number float labels count as soft ones, one sample per row: that reads
  more rows than needed, never fewer (the stream is cut at the budget anyway).
  """
  shape = y_head.shape[1:] if y_head.dtype.kind in "iub" else y_head.shape[1:-1]
  return max(1, int(np.prod(shape, dtype=np.int64)))


def data_batches(x, y, batch_size: int, *, max_samples: int | None = None,
                 take: Callable[[Any, Any], Any] | None = None,
                 labels: Callable[[Any], np.ndarray] = np.asarray) -> Iterable:
  """``(x, y)`` batches from arrays or tensors, or the caller's iterable (``y`` None).

  Args:
    x: (T, ...) inputs, or an iterable of ``(x, y)`` batches (with ``y=None``),
      passed through whole: ``fit_explicit`` stops reading it at the budget.
    y: (T, ...) labels, or None.
    batch_size: rows per batch.
    max_samples: the sample budget (None: every row). Only the rows it needs
      are cut into batches, spread evenly over the data (``even_rows``).
    take: ``take(a, rows)`` selects rows by index array (default ``a[rows]``).
    labels: converts a few labels to numpy (to count samples per row).
  """
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
  rows = None
  if max_samples is not None and n:
    rows = even_rows(n, math.ceil(max_samples / samples_per_row(labels(y[:1]))))
  take = take or (lambda a, r: a[r])
  return ((take(x, r), take(y, r)) for r in row_chunks(n, rows, batch_size))


def accumulate_statistics(batches: Iterable, *, n_features: int, n_classes: int,
                          gram: bool = False,
                          what: str = "the features reaching the head"
                          ) -> statistics.SoftmaxStats:
  """Streams ``(features, labels)`` batches into
  [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats].

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
    ValueError: for bad features (see ``es._validation.check_layer_inputs``) or no batches.
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


def limit_samples(batches: Iterable, n_features: int, max_samples: int | None,
                  what: str = "the features reaching the head"
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """``(features, labels, rows)`` of the batches, flattened, until ``max_samples`` samples.

  ``rows`` gives each sample's input row (counted over all batches), so that the
  positions of one sequence stay together. The last batch is cut at the budget,
  and no batch after it is read (a loader is left where it stands).
  """
  seen = rows_seen = 0
  for i, (features, y) in enumerate(batches):
    features = as_float_array(features)
    n_rows = len(features)
    features, y = flatten_positions(features, np.asarray(y), n_features, i, what)
    rows = rows_seen + (np.arange(len(features)) * max(n_rows, 1)) // max(len(features), 1)
    rows_seen += n_rows
    if max_samples is not None and seen + len(features) >= max_samples:
      keep = max_samples - seen
      yield features[:keep], y[:keep], rows[:keep]
      return
    seen += len(features)
    yield features, y, rows


def fit_explicit(batches: Iterable, *, n_features: int, n_classes: int,
                 method: str = "newton", smoothing: float = 0.1,
                 ridge: float = 1e-3, hint: str = "",
                 what: str = "the features reaching the head",
                 calibrate: bool = False,
                 max_samples: int | None = None) -> model_lib.SoftmaxModel:
  """Explicit weights for a head fed by ``batches`` of ``(features, y)``.

  Args:
    batches: iterable of ``(features, y)`` numpy batches.
    n_features: N, the head's input width.
    n_classes: M, the head's output width.
    method: ``"newton"`` or ``"cooccurrence"`` (see [`es.solve`][explicit_softmax.solvers.solve]).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    hint: advice appended to the error for negative features (cooccurrence).
    what: what the features are, for messages.
    calibrate: then fit a temperature and class biases to the cross-entropy
      (``explicit_softmax.calibrate`` with ``l2 = 1/T``, which keeps classes
      absent from the rows finite) of cross-fitted logits: the rows are split
      into 5 folds (by input row, so the positions of a
      sequence stay in one fold), each fold's logits come from the solution of
      the other folds' statistics, and the temperature and biases fitted on
      those out-of-fold logits are applied to the solution of all rows (as
      scikit-learn's ``CalibratedClassifierCV(ensemble=False)``). Calibrated on
      its own rows, a solution that fits them too well (few rows per feature)
      would learn that overconfidence (a negative temperature, out-of-fold
      logits that anti-correlate with the labels, is clipped to zero: the head
      keeps only the class biases). The one-step Newton solution is a ridge
      regression whose scale grows with the number of classes: on the 128
      LayerNorm features of a character transformer (65 classes) it starts at
      a held-out CE of ~7.5 nats, above the uniform 4.17; calibrated, ~2.8
      (``explicit-softmax bench deep``). The rows are kept in memory for this.
    max_samples: read at most this many samples (None: every batch); the
      batch that reaches it is cut and no later batch is read.

  Returns:
    The fitted [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] (``weights`` (N, M), ``bias``
    (M,)); its ``info`` adds ``"feature_rms"``, the root-mean-square feature value (Newton form),
    which sets the scale of the weights (``W ~ 1 / rms``).
  """
  _validation.check_choice("method", method, solvers.METHODS)
  calibrate = _validation.check_bool("calibrate", calibrate)
  samples = limit_samples(batches, n_features, max_samples, what)
  gram = method == "newton"
  if not calibrate:
    stats = accumulate_statistics(((f, y) for f, y, _ in samples), n_features=n_features,
                                  n_classes=n_classes, gram=gram, what=what)
    return _with_feature_rms(_solve(stats, method, smoothing, ridge, hint, what), stats)
  kept = list(samples)
  if not kept:
    raise ValueError("no data: the batches were empty. Pass at least one (x, y) batch.")
  x = np.concatenate([f for f, _, _ in kept])
  y = np.concatenate([t for _, t, _ in kept])
  rows = np.concatenate([r for _, _, r in kept])
  n_folds = min(CALIBRATION_FOLDS, int(rows[-1]) + 1 if len(rows) else 0)
  folds = rows % max(n_folds, 1)
  parts = [accumulate_statistics([(x[folds == k], y[folds == k])], n_features=n_features,
                                 n_classes=n_classes, gram=gram, what=what)
           for k in range(max(n_folds, 1))]
  stats = functools.reduce(operator.add, parts)
  explicit = _solve(stats, method, smoothing, ridge, hint, what)
  if n_folds < 2:  # a single input row: nothing to hold out, calibrate on it
    z = x @ explicit.weights + explicit.bias
  else:
    z = np.empty((len(x), n_classes), np.float64)
    for k in range(n_folds):
      rest = functools.reduce(operator.add, (p for j, p in enumerate(parts) if j != k))
      held_out = solvers.solve(rest, method, smoothing=smoothing, ridge=ridge)
      z[folds == k] = x[folds == k].astype(np.float64) @ held_out.weights + held_out.bias
  # The temperature and biases of the out-of-fold logits: calibrate the identity map on them.
  scaled = calibration.calibrate(
      model_lib.SoftmaxModel(np.eye(n_classes, dtype=np.float32),
                             np.zeros(n_classes, np.float32)),
      z, y, l2=1.0 / len(x))
  # A negative temperature means out-of-fold logits that anti-correlate with the labels
  # (no signal left once rows are held out): the head then keeps only the class biases.
  tau, beta = max(scaled.info["calibration"]["temperature"], 0.0), scaled.bias
  info = dict(explicit.info)
  info["calibration"] = {"temperature": tau, "l2": 1.0 / len(x), "folds": n_folds}
  return _with_feature_rms(
      explicit.replace(weights=tau * explicit.weights, bias=tau * explicit.bias + beta,
                       info=info), stats)


def _solve(stats: statistics.SoftmaxStats, method: str, smoothing: float, ridge: float,
           hint: str, what: str) -> model_lib.SoftmaxModel:
  if method == "cooccurrence":
    _validation.check_nonnegative_features(
        stats.min_feature, what, f"{hint} Or use method='newton', which takes any real "
        "features.".lstrip())
  return solvers.solve(stats, method, smoothing=smoothing, ridge=ridge)


def _with_feature_rms(explicit: model_lib.SoftmaxModel,
                      stats: statistics.SoftmaxStats) -> model_lib.SoftmaxModel:
  if stats.gram is None or stats.total_weight <= 0 or stats.n_features == 0:
    return explicit
  rms = math.sqrt(max(float(np.trace(stats.gram)), 0.0)
                  / (stats.n_features * stats.total_weight))
  return explicit.replace(info={**explicit.info, "feature_rms": rms})


def with_init_info(explicit: model_lib.SoftmaxModel, **fields) -> model_lib.SoftmaxModel:
  """``explicit`` with ``fields`` merged into ``info["init"]``: what an initialisation
  read (``rows``, ``samples``, the ``max_samples`` budget) and took (``seconds``)."""
  init = {"rows": None, "samples": explicit.info.get("n_samples"), "max_samples": None,
          "seconds": None}
  init.update(explicit.info.get("init", {}))
  init.update(fields)
  return explicit.replace(info={**explicit.info, "init": init})


def as_explicit_model(source, *, method: str | None = None,
                      smoothing: float = solvers.DEFAULT_SMOOTHING,
                      ridge: float = solvers.DEFAULT_RIDGE) -> model_lib.SoftmaxModel:
  """A [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] from a model (returned as is) or from
  statistics (solved).

  With ``method=None`` statistics are solved with ``"newton"`` if they hold the Gram matrix, else
  with ``"cooccurrence"``. A bigram [`NgramModel`][explicit_softmax.ngram.NgramModel] gives its
  explicit weights ``W[i, j] = log p(j | i)``
  ([`NgramModel.to_softmax_model`][explicit_softmax.ngram.NgramModel.to_softmax_model]).
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
