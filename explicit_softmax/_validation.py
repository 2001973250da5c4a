"""Every check of user input, and its message, in one place.

Modelled on scikit-learn's ``sklearn/utils/validation.py``: the core API, the
sharded and streamed passes, the estimator, the adapters and the CLI call these
functions, and none of them words its own refusal of ``X``, ``y``, sample
weights, sizes or numeric parameters. A message names the parameter, the value
it got and what to pass instead.

Checks that need a pass over the data come in two halves: a summary (a
minimum, a maximum, the first bad row) computed where the data lives (numpy
here, a jitted reduction in :mod:`explicit_softmax.sharding`), and a
``check_*_summary`` function here that turns the summary into the error.

References:
  scikit-learn, ``sklearn/utils/validation.py`` (``check_array``,
  ``check_scalar``, ``_check_sample_weight``).
"""

from __future__ import annotations

import math
import operator

import numpy as np
import scipy.sparse as sp

from explicit_softmax._targets import Targets

# Soft-label rows must sum to one within this tolerance (float32 inputs).
ROW_SUM_ATOL = 1e-4
# Above this many inferred classes, labels must look like codes (see check_targets).
MAX_SPARSE_CODES = 2**16
# The largest dense float64 array (an (N, M) sum or an (N+1)^2 Gram matrix) the
# library allocates on a user's behalf: beyond it a mistake (labels that are ids,
# a vocabulary size off by orders of magnitude) would exhaust memory instead of
# raising.
MAX_ARRAY_BYTES = 4 * 2**30
# ml_dtypes' low-precision floats (JAX's bfloat16), read as float32.
_LOW_PRECISION_FLOATS = ("bfloat16", "float8_e4m3fn", "float8_e5m2")


# -- numeric parameters ----------------------------------------------------------

def check_integer(name: str, value, minimum: int = 1) -> int:
  """``value`` as an int; a ValueError naming ``name`` unless an integer >= ``minimum``.

  Integer scalars of numpy or JAX pass (``operator.index``); floats, strings and
  bools do not, so that ``3.5`` is never silently read as 3.
  """
  try:
    if isinstance(value, bool):
      raise TypeError
    out = operator.index(value)
  except TypeError:
    out = None
  if out is None or out < minimum:
    kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
    raise ValueError(f"{name} must be {kind}; got {value!r}.")
  return out


def check_number(name: str, value, *, minimum: float = 0.0, exclusive: bool = False) -> float:
  """``value`` as a float; a ValueError naming ``name`` unless a finite real >= ``minimum``
  (> ``minimum`` if ``exclusive``).

  Strings, booleans and NaN/inf are refused (``"0.1" >= 0`` would otherwise
  surface as a TypeError deep inside a solver, and ``inf`` as NaN weights).
  """
  bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)):
    raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
  out = float(value)
  if not (math.isfinite(out) and (out > minimum if exclusive else out >= minimum)):
    raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
  return out


def check_bool(name: str, value) -> bool:
  """``value`` as a bool; a ValueError naming ``name`` unless True or False."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be True or False; got {value!r}.")
  return bool(value)


def check_choice(name: str, value, choices, *, otherwise: str = ""):
  """``value`` if it is one of ``choices``; else a ValueError listing them (and
  ``otherwise``, what else the parameter takes)."""
  if isinstance(value, str) and value in choices:
    return value
  also = f" or {otherwise}" if otherwise else ""
  raise ValueError(f"{name}={value!r} is unknown; choose one of {tuple(choices)}{also}.")


def check_l2(l2, *, allow_auto: bool = True):
  """The L2 penalty: ``"auto"`` (when allowed) or a finite number >= 0."""
  if allow_auto and isinstance(l2, str) and l2 == "auto":
    return l2
  if isinstance(l2, str):
    raise ValueError(f"l2 must be 'auto' or a finite number >= 0; got {l2!r}.")
  return check_number("l2", l2)


def check_max_samples(max_samples):
  """How many samples a layer fit may read: ``"auto"``, None (all) or a positive integer."""
  if max_samples is None or (isinstance(max_samples, str) and max_samples == "auto"):
    return max_samples
  if isinstance(max_samples, str):
    raise ValueError(f"max_samples must be 'auto', None (read every row) or a positive "
                     f"integer; got {max_samples!r}.")
  return check_integer("max_samples", max_samples)


def check_learning_rate(rate, step: int | None = None) -> float:
  """A step size as a float; a ValueError unless finite and >= 0.

  Args:
    rate: the step size, or a schedule's value.
    step: the schedule step that gave ``rate``; None for a constant.
  """
  try:
    rate = float(rate)
  except (TypeError, ValueError):
    raise ValueError(f"learning_rate must be a number or a schedule step -> number; "
                     f"got {rate!r}.") from None
  if not (math.isfinite(rate) and rate >= 0):
    where = "" if step is None else f" (the schedule's value at step {step})"
    raise ValueError(f"learning_rate must be finite and >= 0; got {rate}{where}.")
  return rate


def check_cv(cv, n_samples: int):
  """Held-out splits: None, a number of folds (an integer >= 2), or a list of
  ``(train, validation)`` pairs of row indices (as scikit-learn's splitters yield)."""
  if cv is None or isinstance(cv, (bool, np.bool_, int, np.integer)):
    return None if cv is None else check_integer("cv", cv, minimum=2)
  expected = (f"cv must be an integer >= 2 or (train, validation) pairs of integer row "
              f"indices in [0, {n_samples}), both non-empty")
  if isinstance(cv, (str, bytes)) or not hasattr(cv, "__iter__"):
    raise ValueError(f"{expected}; got {cv!r:.80}.")
  folds = []
  for pair in cv:
    try:
      train, val = (np.asarray(part) for part in pair)
    except (TypeError, ValueError):
      raise ValueError(f"{expected}; got the entry {pair!r:.80}.") from None
    if not (train.size and val.size and train.ndim == val.ndim == 1
            and train.dtype.kind in "iu" and val.dtype.kind in "iu"
            and min(train.min(), val.min()) >= 0 and max(train.max(), val.max()) < n_samples):
      raise ValueError(f"{expected}; got a pair of shapes {train.shape} and {val.shape}, "
                       f"dtypes {train.dtype} and {val.dtype}.")
    folds.append((train.astype(np.int64), val.astype(np.int64)))
  if not folds:
    raise ValueError(f"{expected}; cv gave no pairs.")
  return folds


def check_instance(name: str, value, cls, make: str):
  """``value`` if it is a ``cls``; else a ValueError saying how to ``make`` one."""
  if not isinstance(value, cls):
    raise ValueError(f"{name} must be a {cls.__name__} ({make}); got {type(value).__name__}.")
  return value


# -- sizes -----------------------------------------------------------------------

def check_dense_size(n_features: int, n_classes: int) -> None:
  """Refuses (N, M) float64 arrays beyond ``MAX_ARRAY_BYTES`` before allocating them.

  A label such as 2 * 10**8 makes ``M = max(y) + 1``, and an (N, M) array of
  that many columns would exhaust memory: such labels are not class codes.
  """
  need = 8 * n_features * n_classes
  if need > MAX_ARRAY_BYTES:
    raise ValueError(
        f"{n_classes:,} classes x {n_features:,} features need an (N, M) float64 array of "
        f"{need / 2**30:,.1f} GiB, more than the {MAX_ARRAY_BYTES / 2**30:.0f} GiB limit. If "
        "the labels are not the codes 0..M-1 (e.g. they go up to a large id), encode them "
        "first with np.unique(y, return_inverse=True), or use "
        "explicit_softmax.sklearn.ExplicitSoftmaxClassifier, which encodes any labels.")


def check_gram_size(n_features: int, gram: bool = True) -> None:
  """Refuses an (N+1)^2 float64 Gram matrix beyond ``MAX_ARRAY_BYTES``."""
  need = 8 * (n_features + 1) ** 2
  if gram and need > MAX_ARRAY_BYTES:
    raise ValueError(
        f"the Newton solution needs the ({n_features + 1})^2 Gram matrix, "
        f"{need / 2**30:.1f} GiB in float64, more than the {MAX_ARRAY_BYTES / 2**30:.0f} GiB "
        "limit. Use method='cooccurrence' (memory O(N M)) or reduce the features.")


def check_gram_finite(gram: np.ndarray) -> None:
  """Refuses a Gram matrix ``X^T diag(w) X`` that overflowed float64.

  Entries of X beyond ~1e154 (or weights to match) square past 1.8e308; the
  Newton solve would then meet inf instead of a matrix.
  """
  if not np.isfinite(gram).all():
    raise ValueError(
        "the Gram matrix X^T diag(w) X overflows float64 (entries of X, or weights, "
        "near 1e154 or beyond square past 1.8e308); rescale X (e.g. X / np.abs(X).max()) "
        "or use method='auto' or 'cooccurrence'.")


def check_sums_finite(total_weight: float, cooccurrence: np.ndarray) -> None:
  """Refuses statistics whose float64 sums overflowed (huge weights or features)."""
  if not (math.isfinite(total_weight) and np.isfinite(cooccurrence).all()):
    raise ValueError(
        "the weighted sums X^T diag(w) Y overflow float64 (total weight "
        f"{total_weight:.3g}); rescale sample_weight (only relative weights matter, e.g. "
        "sample_weight / sample_weight.max()) or X.")


# -- X ---------------------------------------------------------------------------

def check_n_samples(n_samples: int) -> None:
  if n_samples == 0:
    raise ValueError("X has no samples (0 rows); pass at least one sample.")


def check_dense_array(x) -> np.ndarray:
  """A dense ``X`` (numpy, JAX, nested lists) as a 2-D real numpy array (not copied
  when it is one already; bfloat16 and float8 become float32)."""
  try:
    x = np.asarray(x)  # a JAX array: one device-to-host copy; products run on BLAS
  except ValueError as err:  # ragged nested lists
    raise ValueError(
        f"X must be a rectangular (n_samples, n_features) array; numpy could not make "
        f"one ({err}).") from None
  if x.dtype.name in _LOW_PRECISION_FLOATS:
    x = x.astype(np.float32)
  if x.dtype == object or x.dtype.kind not in "biuf":
    raise ValueError(
        f"X must be a numeric array, scipy.sparse matrix or TokenFeatures; got "
        f"dtype {x.dtype}.")
  check_shape_2d(x.shape)
  return x


def check_shape_2d(shape) -> None:
  if len(shape) != 2:
    raise ValueError(
        f"X must be 2-D (n_samples, n_features); got shape {tuple(shape)}. For one "
        "sample use X[None, :]; for images flatten with X.reshape(len(X), -1).")


def check_real_dtype(dtype) -> None:
  if np.dtype(dtype).kind not in "biuf":
    raise ValueError(f"X must hold real numbers; got dtype {dtype}.")


def check_sparse_array(x) -> sp.csr_matrix:
  """A ``scipy.sparse`` ``X`` as a CSR matrix of finite real entries (duplicate
  entries are kept: they add up, so (a + 1, -1) is the valid entry a)."""
  check_shape_2d(x.shape)
  x = x.tocsr()
  check_real_dtype(x.dtype)
  if not x.has_canonical_format:
    # Duplicate entries add up ((a + 1, -1) is the entry a): sum them on a copy,
    # so that signs and the caller's matrix are both right.
    x = x.copy()
    x.sum_duplicates()
  if x.nnz and not np.isfinite(x.data).all():
    raise ValueError("X contains NaN or inf. Remove or impute these values.")
  return x


def check_finite_summary(first_bad_row: int | None, what: str = "X") -> None:
  """Raises for the first row of ``what`` that holds NaN or inf (None: no such row)."""
  if first_bad_row is not None:
    raise ValueError(
        f"{what} contains NaN or inf (first in row {first_bad_row}). Remove or impute "
        "these values first.")


def check_finite_rows(row_sums: np.ndarray, offset: int) -> None:
  """NaN or inf in a block of X, from its float64 row sums (``offset``: the first row).

  A row sum is non-finite whenever an entry is: NaN, +inf and -inf propagate
  into it (+inf - inf is NaN). Only a row whose finite entries overflow float64
  when added (beyond 1e308) is refused without holding a non-finite value. This
  avoids a separate pass over X.
  """
  if not np.isfinite(row_sums).all():
    check_finite_summary(offset + int(np.flatnonzero(~np.isfinite(row_sums))[0]))


def check_same_length(n_samples: int, n_labels: int, where: str = "") -> None:
  if n_samples != n_labels:
    where = f" in {where}" if where else ""
    raise ValueError(
        f"X has {n_samples} samples but y has {n_labels}{where}; they must have the same "
        "length.")


_REAL_FEATURE_METHODS = (
    "Use method='newton' or the default method='auto', which take any real features, "
    "or shift the features to be nonnegative.")


def check_nonnegative_features(min_feature: float, what: str = "X",
                               advice: str = _REAL_FEATURE_METHODS) -> None:
  """The co-occurrence solution needs nonnegative features (it takes logs of sums).

  Args:
    min_feature: the smallest feature value seen.
    what: what the features are, for the message.
    advice: what to do instead.
  """
  if min_feature < 0:
    raise ValueError(
        f"Negative values in data: method='cooccurrence' needs nonnegative features "
        f"(counts, intensities, activations after ReLU/softmax), but there are negative "
        f"entries in {what} (smallest {min_feature:.4g}). {advice}")


def check_n_features(n_features: int, expected: int | None) -> None:
  if expected is not None and n_features != expected:
    raise ValueError(
        f"X has {n_features} features but the model was fitted on {expected}; pass data "
        "with the same columns (and the same vocabulary/context size for tokens).")


def check_token_ids(ids, vocab_size) -> tuple[np.ndarray, int]:
  """TokenFeatures' ids as a read-only (T, K) int64 array, and V as an int."""
  ids = np.asarray(ids)
  if ids.ndim == 1:
    ids = ids[:, None]
  if ids.ndim != 2:
    raise ValueError(
        f"TokenFeatures ids must have shape (n_samples, n_context); got {ids.shape}.")
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"TokenFeatures ids must be integers; got dtype {ids.dtype}.")
  if ids.shape[1] == 0:
    raise ValueError(
        f"TokenFeatures needs at least one context token per sample; got ids of shape "
        f"{ids.shape}.")
  vocab_size = check_integer("vocab_size", vocab_size)
  if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
    raise ValueError(
        f"token ids must lie in [0, vocab_size={vocab_size}); found values in "
        f"[{ids.min()}, {ids.max()}]. Pass the vocabulary size of the corpus.")
  # int64 ids: uint64 ones would turn k V + id into floats (and index errors).
  ids = np.array(ids, np.int64)
  ids.flags.writeable = False
  return ids, vocab_size


def check_token_layout(given, layout) -> None:
  """Token features of ``given = [K, V]`` against the ``layout`` a model was fitted on.

  A model fitted on K = 2 blocks of V = 7 has 14 features, as one of V = 14
  does, but predicts nonsense on it.
  """
  if layout is not None and list(given) != list(layout):
    raise ValueError(
        f"these TokenFeatures have {given[0]} context tokens over a vocabulary of "
        f"{given[1]}, but the model was fitted on {layout[0]} over {layout[1]}; build "
        "the features the same way.")


def check_layer_inputs(features: np.ndarray, n_features: int, batch: int,
                   what: str = "the features reaching the head") -> None:
  """Checks one batch of features that is about to reach a dense layer (the adapters).

  Args:
    features: (rows, N) array of real features.
    n_features: N, the head's input width.
    batch: index of the batch (for the message).
    what: what the features are, for the message.

  Raises:
    ValueError: wrong shape or non-finite entries.
  """
  if features.ndim != 2:
    raise ValueError(
        f"{what} must be 2-D (batch, {n_features}); got shape "
        f"{features.shape} in batch {batch}. Flatten them (x.reshape(len(x), -1)) in the "
        "feature function, before the head.")
  if features.shape[1] != n_features:
    raise ValueError(
        f"the layer takes {n_features} input features but {what} have "
        f"{features.shape[1]} (batch {batch}); the feature function must produce "
        "exactly what the layer consumes.")
  if not np.isfinite(features).all():
    raise ValueError(
        f"{what} contain NaN or inf (batch {batch}); check the layers before it and "
        "the input data.")


# -- y -----------------------------------------------------------------------------

def check_layout(y, n_samples: int, n_classes) -> int | None:
  """The checks of ``y`` that need only its shape and dtype (host or device array).

  Returns:
    ``n_classes`` as an int (None stays None), checked by :func:`check_integer`.
  """
  if y.dtype == object:
    raise ValueError(
        "y must hold integer labels 0..M-1 or soft-label rows; got objects. Encode "
        "string labels first (or use explicit_softmax.sklearn.ExplicitSoftmaxClassifier, "
        "which accepts any label type).")
  if np.dtype(y.dtype).kind not in "biuf":
    raise ValueError(
        f"y must hold integer labels 0..M-1 or real soft labels; got dtype {y.dtype}.")
  if y.ndim == 0 or y.ndim > 2:
    raise ValueError(f"y must have shape (n_samples,) or (n_samples, n_classes); got {y.shape}.")
  check_same_length(n_samples, y.shape[0])
  if y.ndim == 2 and y.shape[1] == 1:
    # A column of labels (a common slip), not soft labels: those need a column per class.
    raise ValueError(
        f"y has shape {y.shape}: pass class labels as a 1-D array (y.ravel()); soft "
        "labels need one column per class.")
  n_classes = None if n_classes is None else check_integer("n_classes", n_classes)
  if y.ndim == 2 and n_classes is not None and y.shape[1] != n_classes:
    raise ValueError(f"soft labels have {y.shape[1]} columns but n_classes={n_classes}.")
  return n_classes


def is_integral(y: np.ndarray) -> bool:
  """True for integer or bool arrays, and for float arrays of finite whole numbers."""
  return y.dtype.kind in "iub" or bool(
      y.dtype.kind == "f" and np.isfinite(y).all() and np.all(y == np.round(y)))


def check_integral_labels(integral: bool) -> None:
  if not integral:
    raise ValueError(
        "y is 1-D but not integral: pass integer class labels 0..M-1, or soft "
        "labels as a (n_samples, n_classes) array.")


def check_label_range(lo: int, hi: int, n_classes: int) -> None:
  if lo < 0 or hi >= n_classes:
    raise ValueError(
        f"labels must lie in [0, n_classes={n_classes}); found values in [{lo}, {hi}]. "
        "Re-encode the labels (e.g. np.unique(y, return_inverse=True)) or raise n_classes.")


def check_soft_label_summary(finite: bool, minimum: float, first_bad_sum_row: int | None,
                             bad_sum: float | None = None) -> None:
  """Soft labels: finite, nonnegative, rows summing to one within ``ROW_SUM_ATOL``."""
  if not finite:
    raise ValueError("soft labels contain NaN or inf.")
  if minimum < 0:
    raise ValueError("soft labels must be nonnegative probabilities.")
  if first_bad_sum_row is not None:
    off = "" if bad_sum is None else f" (it sums to {bad_sum:.6g})"
    raise ValueError(
        f"soft-label rows must sum to 1 within {ROW_SUM_ATOL}; row {first_bad_sum_row} does "
        f"not{off}. Normalise with y / y.sum(axis=1, keepdims=True).")


def check_targets(y, n_samples: int, n_classes: int | None = None) -> Targets:
  """Validates labels or soft labels against ``n_samples`` rows of ``X``.

  Args:
    y: (T,) integer labels in ``[0, n_classes)`` or (T, M) soft labels.
    n_samples: the number of rows of ``X``.
    n_classes: M; inferred as ``max(y) + 1`` (labels) or ``y.shape[1]`` if None.

  Returns:
    A :class:`~explicit_softmax._targets.Targets`.

  Raises:
    ValueError: on any inconsistency, naming the problem and the fix.
  """
  y = np.asarray(y)
  n_classes = check_layout(y, n_samples, n_classes)

  if y.ndim == 1:
    if y.dtype.kind == "f":
      check_integral_labels(is_integral(y))
    y = y.astype(np.int64)  # a copy: the caller's array is never shared
    lo, hi = int(y.min()), int(y.max())
    m = hi + 1 if n_classes is None else n_classes
    # Class codes 0..M-1 mostly occur; ids up to 2e8 among a few labels are not
    # codes, and M = max + 1 columns would exhaust memory.
    distinct = len(np.unique(y)) if n_classes is None and m > MAX_SPARSE_CODES else None
    if distinct is not None and m > 16 * distinct:
      raise ValueError(
          f"the labels go up to {hi:,} but only {distinct:,} distinct values "
          "occur: they look like ids, not the class codes 0..M-1; encode them first "
          "(np.unique(y, return_inverse=True)), pass n_classes explicitly if they are "
          "codes, or use explicit_softmax.sklearn.ExplicitSoftmaxClassifier, which "
          "encodes any labels.")
    check_label_range(lo, hi, m)
    return Targets(m, labels=y)

  finite = bool(np.isfinite(y).all())
  sums = y.sum(axis=1) if finite else None
  bad = None if sums is None else np.flatnonzero(np.abs(sums - 1) > ROW_SUM_ATOL)
  first = None if bad is None or not bad.size else int(bad[0])
  check_soft_label_summary(finite, float(y.min()) if finite else 0.0, first,
                           None if first is None else float(sums[first]))
  return Targets(y.shape[1], probs=y)


# -- sample weights ------------------------------------------------------------

def check_weight_summary(finite_nonnegative: bool, total: float) -> None:
  """Weights: finite and nonnegative, with a positive and finite sum."""
  if not finite_nonnegative:
    raise ValueError("sample_weight must be finite and nonnegative.")
  if not total > 0:
    raise ValueError("sample_weight sums to zero; at least one sample needs positive weight.")
  if not math.isfinite(total):
    raise ValueError(
        f"sample_weight sums past float64's range ({total}); only relative weights "
        "matter, so rescale them (e.g. sample_weight / sample_weight.max()).")


def check_weight_shape(shape, n_samples: int) -> None:
  if tuple(shape) != (n_samples,):
    raise ValueError(
        f"sample_weight must have shape ({n_samples},) to match X; got {tuple(shape)}.")


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
  """Returns (T,) float64 weights: ones if None, else validated nonnegative weights."""
  if sample_weight is None:
    return np.ones(n_samples, np.float64)
  try:
    w = np.array(sample_weight, np.float64)  # a copy: never the caller's array
  except (TypeError, ValueError):
    raise ValueError(
        f"sample_weight must be numbers (a scalar or a ({n_samples},) array); got "
        f"{type(sample_weight).__name__} that is not.") from None
  if w.ndim == 0:
    w = np.full(n_samples, float(w))
  check_weight_shape(w.shape, n_samples)
  finite = bool(np.isfinite(w).all())
  with np.errstate(over="ignore"):
    total = float(w.sum()) if finite else math.nan
  check_weight_summary(finite and bool(w.min() >= 0), total)
  return w


# -- model parameters ----------------------------------------------------------

def check_parameter(name: str, value) -> np.ndarray:
  """A read-only float32 copy of a model parameter; a ValueError unless real and
  finite in float32."""
  array = np.asarray(value)
  if array.dtype.kind not in "biuf":
    raise ValueError(
        f"{name} must hold real numbers; got dtype {array.dtype} (complex parameters "
        "would lose their imaginary part).")
  with np.errstate(over="ignore"):
    array = np.array(array, np.float32)  # always a copy
  if not np.isfinite(array).all():
    raise ValueError(
        f"model parameters contain NaN or inf ({name}), or values beyond float32's range "
        "(3.4e38).")
  array.flags.writeable = False
  return array


def check_finite(name: str, value) -> np.ndarray:
  """``value`` as a numpy array; a ValueError naming ``name`` if it holds NaN or inf."""
  value = np.asarray(value)
  if not np.isfinite(value).all():
    raise ValueError(f"{name} contain NaN or inf; refusing to use them.")
  return value
