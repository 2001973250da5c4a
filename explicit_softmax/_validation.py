"""Every check of user input, and its message, in one place.

Modelled on scikit-learn's ``sklearn/utils/validation.py``: the core API, the
sharded and streamed passes, the estimator, the adapters and the CLI call these
functions, and none of them words its own refusal of ``X``, ``y``, sample
weights, sizes or numeric parameters. A message names the parameter, the value
it got and what to pass instead.

Checks that need a pass over the data come in two halves: a summary (a
minimum, a maximum, the first bad row) computed where the data lives (numpy
here, a jitted reduction in [`es.sharding`][explicit_softmax.sharding]), and a
``check_*_summary`` function here that turns the summary into the error.

References:
  scikit-learn, ``sklearn/utils/validation.py`` (``check_array``,
  ``check_scalar``, ``_check_sample_weight``).
"""

from __future__ import annotations

import math
import operator
import os
import pathlib
import resource
from typing import Sequence

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
# Work needing at most this many bytes is never checked against the memory available.
_ALWAYS_AVAILABLE = 2**26
# Float labels are exact integers only up to 2**53; larger ones are not class codes.
MAX_FLOAT_LABEL = 2**53
# Below this, a float64 square underflows (the smallest normal number is 2.2e-308).
_TINY = float(np.finfo(np.float64).tiny)
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


def check_post_process(method: str, calibrate: bool, refine) -> None:
  """Calibration and refinement follow a closed form, not the optimum."""
  if method == "auto" and (calibrate or refine is not None):
    raise ValueError(
        "calibrate and refine apply to the closed forms; method='auto' already returns the "
        "refined optimum. Use method='cooccurrence' or 'newton' with them.")


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


def check_callable(name: str, value, what: str):
  """``value`` if None or callable; else a ValueError saying what it should be.

  Checked at the entry, so that a wrong argument fails before any work (a
  callback would otherwise fail only after the first step).
  """
  if value is not None and not callable(value):
    raise ValueError(f"{name} must be a function {what} (or None); got {value!r:.80}.")
  return value


def check_batch(batch, index: int, what: str = "(X, y) or (X, y, sample_weight)") -> tuple:
  """One element of an iterable of batches as a tuple of 2 or 3 items; a ValueError
  naming the batch otherwise (a fourth item would be ignored, a single one unpacked)."""
  if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
    got = (f"{len(batch)} items" if isinstance(batch, (tuple, list))
           else f"a {type(batch).__name__}")
    raise ValueError(f"batch {index} must be a tuple {what}; got {got}.")
  return tuple(batch)


def check_instance(name: str, value, cls, make: str):
  """``value`` if it is a ``cls``; else a ValueError saying how to ``make`` one."""
  if not isinstance(value, cls):
    raise ValueError(f"{name} must be a {cls.__name__} ({make}); got {type(value).__name__}.")
  return value


# -- files -----------------------------------------------------------------------

def check_file(path, what: str, missing: type[Exception] = ValueError) -> pathlib.Path:
  """``path`` as a ``pathlib.Path`` of an existing regular file.

  Args:
    path: the path given.
    what: what the file is, for the message ("data file", "text corpus").
    missing: the exception for a path that does not exist (``FileNotFoundError``
      where the API documents it).

  Raises:
    ValueError: for a directory or anything else that is not a regular file.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    raise ValueError(f"{what} {str(path)!r} is a directory, not a file; give the path of "
                     "the file inside it.")
  if not path.exists():
    raise missing(f"{what} {str(path)!r} does not exist.")
  if not path.is_file():
    raise ValueError(f"{what} {str(path)!r} is not a regular file.")
  return path


# -- sizes -----------------------------------------------------------------------

_LABEL_ADVICE = (
    "If the labels are not the codes 0..M-1 (e.g. they go up to a large id), encode them "
    "first with np.unique(y, return_inverse=True), or use "
    "explicit_softmax.sklearn.ExplicitSoftmaxClassifier, which encodes any labels.")


def _read_int(path: str) -> int | None:
  try:
    with open(path) as fh:
      text = fh.read().strip()
  except OSError:
    return None
  return int(text) if text.isdigit() else None


def _proc_status_bytes(field: str) -> int | None:
  """A ``kB`` field of ``/proc/self/status`` (Linux) in bytes."""
  try:
    with open("/proc/self/status") as fh:
      for line in fh:
        if line.startswith(field + ":"):
          return 1024 * int(line.split()[1])
  except (OSError, ValueError, IndexError):
    pass
  return None


def available_memory() -> int | None:
  """Bytes this process can still allocate, or None where nothing says.

  The least of: the system's available memory (``MemAvailable`` of
  ``/proc/meminfo``, else ``sysconf``), the cgroup's limit less its usage
  (containers), and the address-space and data-segment limits (``ulimit -v``,
  ``RLIMIT_DATA``) less what the process uses already.
  """
  bounds = []
  try:
    with open("/proc/meminfo") as fh:
      for line in fh:
        if line.startswith("MemAvailable:"):
          bounds.append(1024 * int(line.split()[1]))
  except (OSError, ValueError, IndexError):
    try:
      bounds.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
      pass
  for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                       ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                        "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
    cap, used = _read_int(limit), _read_int(usage)
    if cap is not None and used is not None and cap < 2**60:
      bounds.append(max(cap - used, 0))
  for rlimit, field in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
    soft = resource.getrlimit(rlimit)[0]
    used = _proc_status_bytes(field)
    if soft != resource.RLIM_INFINITY and used is not None:
      bounds.append(max(soft - used, 0))
  return min(bounds) if bounds else None


def format_bytes(n: float) -> str:
  """``n`` bytes in decimal units: ``160 MB``, ``4.3 GB``."""
  for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n >= size:
      return f"{n / size:.3g} {unit}"
  return f"{int(n)} bytes"


def check_memory(asked, arrays: Sequence[tuple[str, tuple, int, int]],
                 advice: str = _LABEL_ADVICE, available: int | None = None) -> None:
  """Refuses work whose arrays would not fit in the memory available, before any exists.

  Args:
    asked: what set the sizes, for the message (``"n_classes=10,000,000"``), or a
      function returning it (called only to word a refusal).
    arrays: ``(purpose, shape, itemsize, count)`` of the arrays the work holds
      at its peak (an estimate of the path's own arrays).
    advice: what to do instead.
    available: the bytes available (default ``available_memory``; a
      device's free memory for device work).

  Raises:
    ValueError: naming every array, its size and the memory available.
  """
  need = sum(count * itemsize * math.prod(shape) for _, shape, itemsize, count in arrays)
  if need <= _ALWAYS_AVAILABLE:
    return  # not worth reading the system's figures
  available = available_memory() if available is None else available
  if available is None or need <= available:
    return
  asked = asked() if callable(asked) else asked
  dtypes = {8: "float64", 4: "float32"}
  parts = []
  for purpose, shape, itemsize, count in arrays:
    size = format_bytes(itemsize * math.prod(shape))
    dims = ", ".join(f"{d:,}" for d in shape)
    kind = dtypes.get(itemsize, f"{itemsize}-byte")
    many = f"{count} arrays" if count > 1 else "an array"
    parts.append(f"{many} of ({dims}) {kind} ({size}{' each' * (count > 1)}) for {purpose}")
  raise ValueError(
      f"{asked} would need {', and '.join(parts)}: {format_bytes(need)} in all, more than "
      f"the {format_bytes(available)} of memory available. {advice}")


def describe_classes(n_classes, m: int, labels: np.ndarray | None = None) -> str:
  """What set the number of classes ``m``, for a message: the argument or the labels."""
  if n_classes is not None:
    asked = f"n_classes={int(n_classes):,}"
  else:
    asked = f"labels up to {m - 1:,} (M = max + 1 = {m:,} classes)"
  if labels is not None and len(labels):
    distinct = np.unique(labels)
    if len(distinct) * 16 < m:
      asked += f", of which only {len(distinct):,} occur (up to {int(distinct[-1]):,}),"
  return asked


def check_dense_size(n_features: int, n_classes: int, *, copies: int = 1,
                     asked=None) -> None:
  """Refuses (N, M) float64 arrays beyond ``MAX_ARRAY_BYTES``, and ``copies`` of them
  beyond the memory available, before allocating any.

  A label such as 2 * 10**8 makes ``M = max(y) + 1``, and an (N, M) array of
  that many columns would exhaust memory: such labels are not class codes.

  Args:
    n_features: N.
    n_classes: M.
    copies: how many (N, M) float64 arrays the work holds at its peak.
    asked: what set M, for the message (default: the number of classes), or a
      function returning it.
  """
  need = 8 * n_features * n_classes
  if need > MAX_ARRAY_BYTES:
    raise ValueError(
        f"{n_classes:,} classes x {n_features:,} features need an (N, M) float64 array of "
        f"{need / 2**30:,.1f} GiB, more than the {MAX_ARRAY_BYTES / 2**30:.0f} GiB limit. "
        + _LABEL_ADVICE)
  check_memory(asked or f"{n_classes:,} classes x {n_features:,} features",
               [("the statistics and their solution", (n_features, n_classes), 8, copies)])


# Arrays of (N + 1, M) parameters that the optimum's paths hold at their peak
# (estimates): scipy's L-BFGS-B keeps 2 x 10 correction pairs plus a workspace
# of about 5 more, the objective ~6 (theta, gradient, best point, the
# preconditioner's copies); optax's lbfgs 2 x 10 pairs and ~8 in the jitted step.
_HOST_OPTIMISER_COPIES = 31
_DEVICE_OPTIMISER_COPIES = 28
# (rows, M) blocks of an evaluation: logits, log-probabilities, residuals (and
# on the device their gradients).
_HOST_BLOCKS = 3
_DEVICE_BLOCKS = 4


def check_optimiser_memory(n_features: int, n_classes: int, rows: int, *, on_host: bool,
                           asked) -> None:
  """Refuses an optimisation of (N + 1, M) parameters that would not fit in memory.

  Args:
    n_features: N.
    n_classes: M.
    rows: rows of one evaluation's (rows, M) blocks (the host objective's
      chunk, or every row of a full-batch jitted step, or a minibatch).
    on_host: float64 host L-BFGS (else the float32 jitted loop).
    asked: what set M, for the message (or a function returning it).
  """
  itemsize = 8 if on_host else 4
  copies = _HOST_OPTIMISER_COPIES if on_host else _DEVICE_OPTIMISER_COPIES
  blocks = _HOST_BLOCKS if on_host else _DEVICE_BLOCKS
  check_memory(asked, [("the parameters and the optimiser's state", (n_features + 1, n_classes),
                        itemsize, copies),
                       ("the probabilities of an evaluation", (rows, n_classes), itemsize,
                        blocks)])


def check_label_codes(hi: int, distinct: int, m: int) -> None:
  """Refuses labels that look like ids rather than the class codes ``0..M-1``.

  Class codes mostly occur; a few labels up to 2e8 are not codes, and ``M = max + 1`` columns would
  exhaust memory. Above ``MAX_SPARSE_CODES`` classes, ``M`` may exceed 16 times the distinct labels
  only if ``n_classes`` says so.

  Args:
    hi: the largest label.
    distinct: how many distinct labels occur.
    m: ``hi + 1``.
  """
  if m > MAX_SPARSE_CODES and m > 16 * distinct:
    raise ValueError(
        f"the labels go up to {hi:,} but only {distinct:,} distinct values occur: they look "
        "like ids, not the class codes "
        "0..M-1; encode them first (np.unique(y, return_inverse=True)), pass n_classes "
        "explicitly if they are codes, or use explicit_softmax.sklearn.ExplicitSoftmaxClassifier, "
        "which encodes any labels.")


def check_classes_occur(targets: Targets, n_classes) -> None:
  """Refuses an explicit ``n_classes`` far beyond the classes that occur, for a fit of
  all the data at once (the optimum).

  A class without samples has no finite optimum (its bias falls for ever), and
  each costs (N + 1) parameters: ``n_classes=10**7`` for three labels is a slip,
  not a model. Above ``MAX_SPARSE_CODES`` classes, at least one in 16 must occur
  (the rule of ``check_label_codes`` for inferred ``M``).
  """
  if n_classes is None or targets.labels is None or targets.n_classes <= MAX_SPARSE_CODES:
    return
  distinct = np.unique(targets.labels)
  if targets.n_classes > 16 * len(distinct):
    raise ValueError(
        f"n_classes={targets.n_classes:,} but only {len(distinct):,} distinct labels occur (up "
        f"to {int(distinct[-1]):,}): {targets.n_classes - len(distinct):,} classes would have "
        "no sample, and the optimum of a class without samples lies at a bias of minus "
        "infinity. Leave n_classes=None (M = max(y) + 1) or encode the labels first "
        "(np.unique(y, return_inverse=True)).")


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


def check_not_masked(name: str, value) -> None:
  """Refuses a numpy masked array with masked entries: ``np.asarray`` would use the
  values under the mask as data."""
  if isinstance(value, np.ma.MaskedArray):
    mask = np.ma.getmaskarray(value)
    if mask.any():
      first = np.unravel_index(int(np.flatnonzero(mask)[0]), mask.shape)
      where = f"row {first[0]}" + (f", column {first[1]}" if len(first) > 1 else "")
      raise ValueError(
          f"{name} is a masked array with {int(mask.sum()):,} masked entries (first at "
          f"{where}); the values under the mask would be used as data. Fill them "
          f"({name}.filled(value)) or drop those rows first.")


def feature_names_of(x) -> list[str] | None:
  """The column names of a DataFrame (pandas, dask) whose names are all strings, else None
  (as scikit-learn's ``feature_names_in_``: integer column labels are positions)."""
  columns = getattr(x, "columns", None)
  if columns is None or isinstance(x, np.ndarray):
    return None
  names = list(columns)
  return [str(n) for n in names] if names and all(isinstance(n, str) for n in names) else None


def check_numeric_columns(x) -> None:
  """Refuses features that are not numbers, naming the column (DataFrames) or the first
  cell (arrays of strings or objects) instead of a conversion error from numpy."""
  dtypes = getattr(x, "dtypes", None)
  if dtypes is not None and getattr(x, "columns", None) is not None:
    for name, dtype in zip(x.columns, dtypes):
      if getattr(dtype, "kind", "O") not in "biuf":
        raise ValueError(
            f"X column {name!r} holds {dtype} values, not numbers; encode it (e.g. "
            "sklearn.preprocessing.OneHotEncoder) or drop it.")
    return
  if sp.issparse(x) or not isinstance(x, (np.ndarray, list, tuple)):
    return
  try:
    array = np.asarray(x)
  except ValueError:
    return  # ragged: check_dense_array says so
  if array.dtype.kind not in "USO":
    return
  # Strings are refused here (numpy would parse "0.5" and fail on "a" in its own
  # words); other objects fail numpy's conversion with a TypeError naming their type.
  for index, cell in np.ndenumerate(array):
    if isinstance(cell, (str, bytes)):
      raise ValueError(
          f"X must be a numeric array; got dtype {array.dtype} with the value {str(cell)!r:.40} at "
          f"{index}. Convert the features to numbers (e.g. np.asarray(X, float)) or encode "
          "categorical ones.")


def check_feature_names(given: Sequence[str], fitted: Sequence[str],
                        where: str = "X", advice: str = "") -> np.ndarray:
  """The positions in ``given`` of the ``fitted`` feature names, in the fitted order.

  Args:
    given: the column names of the data.
    fitted: the names the model was fitted on.
    where: the data, for the message.
    advice: a sentence to add to a refusal of unexpected columns.

  Returns:
    (N,) int indices: ``X[:, order]`` has the fitted columns in the fitted order.

  Raises:
    ValueError: naming the missing, unexpected or repeated columns.
  """
  given, fitted = [str(g) for g in given], [str(f) for f in fitted]
  repeated = sorted({g for g in given if given.count(g) > 1})
  if repeated:
    raise ValueError(f"{where} has repeated column names {repeated[:5]}; names must be unique.")
  missing = [f for f in fitted if f not in given]
  extra = [g for g in given if g not in fitted]
  if missing or extra:
    said = []
    if missing:
      said.append(f"lacks the model's feature column{'s' * (len(missing) > 1)} "
                  f"{', '.join(map(repr, missing[:10]))}")
    if extra:
      said.append(f"has the column{'s' * (len(extra) > 1)} {', '.join(map(repr, extra[:10]))} "
                  "that the model was not fitted on")
    raise ValueError(
        f"{where} {' and '.join(said)}; the model's features are {fitted[:20]}"
        f"{' ...' if len(fitted) > 20 else ''}. Pass the same columns (in any order)."
        + (f" {advice}" if advice and extra else ""))
  index = {g: i for i, g in enumerate(given)}
  return np.array([index[f] for f in fitted], np.int64)


def check_feature_names_info(names, n_features: int) -> None:
  """``info["feature_names"]``: None, or one distinct string per feature."""
  if names is None:
    return
  if (not isinstance(names, list) or len(names) != n_features
      or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names)):
    raise ValueError(
        f"info['feature_names'] must list one distinct string per feature ({n_features}); "
        f"got {names!r:.200}.")


def check_dense_array(x) -> np.ndarray:
  """A dense ``X`` (numpy, JAX, nested lists, DataFrames) as a 2-D real numpy array (not
  copied when it is one already; bfloat16 and float8 become float32)."""
  check_not_masked("X", x)
  check_numeric_columns(x)
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


def forward_error(model, inputs, err: Exception, reached: str = "its head") -> ValueError:
  """The error of a deep model's forward pass that failed on ``inputs`` before it
  reached the layer being read (a framework's shape error, named in our words)."""
  shape = tuple(getattr(inputs, "shape", ())) or type(inputs).__name__
  text = " ".join(str(err).split())[:300]
  return ValueError(
      f"the forward pass of {type(model).__name__} failed on inputs of shape {shape} before "
      f"reaching {reached} ({type(err).__name__}: {text}). Pass inputs the model takes "
      "(the width its first layer expects), or features_fn=<a function from inputs to the "
      "head's inputs>.")


# -- y -----------------------------------------------------------------------------

def check_layout(y, n_samples: int, n_classes) -> int | None:
  """The checks of ``y`` that need only its shape and dtype (host or device array).

  Returns:
    ``n_classes`` as an int (None stays None), checked by ``check_integer``.
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
  if y.ndim == 2 and y.shape[1] == 0:
    raise ValueError(
        f"soft labels need one column per class (at least one); got shape {y.shape}.")
  if y.ndim == 2 and y.shape[1] == 1:
    # A column of labels (a common slip), not soft labels: those need a column per class.
    raise ValueError(
        f"y has shape {y.shape}: pass class labels as a 1-D array (y.ravel()); soft "
        "labels need one column per class.")
  n_classes = None if n_classes is None else check_integer("n_classes", n_classes)
  if n_classes is not None and n_classes > MAX_FLOAT_LABEL:
    raise ValueError(
        f"n_classes={n_classes:,} is beyond 2**53 classes, more than any model can hold; "
        "pass the number of classes, or encode the labels first (np.unique(y, "
        "return_inverse=True)).")
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
    A ``Targets``.

  Raises:
    ValueError: on any inconsistency, naming the problem and the fix.
  """
  check_not_masked("y", y)
  y = np.asarray(y)
  n_classes = check_layout(y, n_samples, n_classes)

  if y.ndim == 1:
    if y.dtype.kind == "f":
      check_integral_labels(is_integral(y))
    # The range as Python integers, before any cast: 1e20 or uint64 2**64 - 1 in
    # int64 would wrap around (to -2**63 and -1) and be reported as such.
    lo, hi = int(y.min()), int(y.max())
    if y.dtype.kind == "f" and max(-lo, hi) > MAX_FLOAT_LABEL:
      raise ValueError(
          f"labels must be the class codes 0..M-1; found values in [{lo:,}, {hi:,}], beyond "
          f"2**53, where float labels are no longer exact integers. " + _LABEL_ADVICE)
    m = hi + 1 if n_classes is None else n_classes
    # Class codes 0..M-1 mostly occur; ids up to 2e8 among a few labels are not
    # codes, and M = max + 1 columns would exhaust memory.
    if n_classes is None and m > MAX_SPARSE_CODES:
      check_label_codes(hi, len(np.unique(y)), m)
    check_label_range(lo, hi, m)
    return Targets(m, labels=y.astype(np.int64))  # a copy: the caller's array is never shared

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


def check_weight_dtype(dtype, n_samples: int) -> None:
  """Weights must be real numbers: complex ones would lose their imaginary part, strings
  would be parsed and dates read as integers."""
  if dtype is None or np.dtype(dtype).kind not in "biuf":
    got = "something numpy cannot read as an array" if dtype is None else f"dtype {dtype}"
    raise ValueError(
        f"sample_weight must be numbers, real ones (a scalar or a ({n_samples},) array); "
        f"got {got}.")


def check_weight_shape(shape, n_samples: int) -> None:
  if tuple(shape) != (n_samples,):
    raise ValueError(
        f"sample_weight must have shape ({n_samples},) to match X; got {tuple(shape)}.")


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
  """Returns (T,) float64 weights: ones if None, else validated nonnegative weights."""
  if sample_weight is None:
    return np.ones(n_samples, np.float64)
  check_not_masked("sample_weight", sample_weight)
  try:
    given = np.asarray(sample_weight)
  except (TypeError, ValueError):
    given = None
  if given is None or given.dtype.kind not in "biuf":
    check_weight_dtype(None if given is None else given.dtype, n_samples)
  w = np.array(given, np.float64)  # a copy: never the caller's array
  if w.ndim == 0:
    w = np.full(n_samples, float(w))
  check_weight_shape(w.shape, n_samples)
  finite = bool(np.isfinite(w).all())
  with np.errstate(over="ignore"):
    total = float(w.sum()) if finite else math.nan
  check_weight_summary(finite and bool(w.min() >= 0), total)
  return w


def check_units(units, n_features: int) -> tuple[np.ndarray, np.ndarray]:
  """``(mean, scale)`` (N,) float64 arrays of ``units``: None (zeros and ones), a mapping
  with ``"mean"`` and ``"scale"`` (``es.fit``'s ``info["units"]``) or a pair."""
  if units is None:
    return np.zeros(n_features), np.ones(n_features)
  try:
    mean, scale = (units["mean"], units["scale"]) if hasattr(units, "keys") else units
    mean, scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
  except (KeyError, TypeError, ValueError):
    raise ValueError(
        "units must be None, a (mean, scale) pair or a mapping with 'mean' and 'scale' "
        f"(a model's info['units']); got {type(units).__name__}.") from None
  if mean.shape != (n_features,) or scale.shape != (n_features,):
    raise ValueError(
        f"units must have a mean and a scale of shape ({n_features},) for this model; got "
        f"{mean.shape} and {scale.shape}.")
  if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
    raise ValueError("units must have a finite mean and a finite, positive scale.")
  return mean, scale


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


# -- n-gram language models ------------------------------------------------------

def check_token_sequences(tokens, vocab_size) -> tuple[list[np.ndarray], int]:
  """The training text of an n-gram model as int64 sequences, and V.

  Args:
    tokens: a 1-D sequence of token ids, a list (or tuple) of such sequences, or
      a 2-D array whose rows are sequences of equal length.
    vocab_size: V, or None for ``max(tokens) + 1``.

  Returns:
    ``(sequences, V)``: a list of read-only 1-D int64 arrays (empty ones dropped)
    and V as an int.

  Raises:
    ValueError: for non-integer or negative ids, ids ``>= vocab_size``, nested
      lists that are not sequences of ids, or no token at all.
  """
  if isinstance(tokens, (list, tuple)) and tokens and all(
      np.ndim(part) == 1 for part in tokens):
    parts = [np.asarray(part) for part in tokens]
  else:
    array = np.asarray(tokens) if not isinstance(tokens, (str, bytes)) else np.asarray([tokens])
    if array.ndim not in (1, 2) or array.dtype == object:
      raise ValueError(
          f"tokens must be a 1-D sequence of integer token ids or a list of such sequences; "
          f"got {type(tokens).__name__} of shape {np.shape(array)}.")
    parts = list(array) if array.ndim == 2 else [array]
  sequences = []
  for i, part in enumerate(parts):
    if part.size and part.dtype.kind not in "iu":
      if part.dtype.kind != "f" or not is_integral(part):
        raise ValueError(
            f"tokens must be integer token ids; sequence {i} has dtype {part.dtype}. Map "
            "words or characters to ids first (e.g. explicit_softmax.data.load_text).")
    if part.size:
      sequences.append(part.astype(np.int64))
  if not sequences:
    raise ValueError("tokens hold no token; pass at least one non-empty sequence of ids.")
  lo = min(int(s.min()) for s in sequences)
  hi = max(int(s.max()) for s in sequences)
  v = hi + 1 if vocab_size is None else check_integer("vocab_size", vocab_size)
  if lo < 0 or hi >= v:
    raise ValueError(
        f"token ids must lie in [0, vocab_size={v}); found values in [{lo}, {hi}]. Pass "
        "the vocabulary size of the corpus (len(vocab)).")
  for s in sequences:
    s.flags.writeable = False
  return sequences, v


def check_ngram_order(order) -> int:
  """An n-gram order: an integer >= 1 (1: unigram, 2: bigram, ...)."""
  return check_integer("order", order)


def check_ngram_queries(contexts, targets, order: int, vocab_size: int,
                        need_targets: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
  """Contexts (T, order - 1), previous token last, and targets (T,) of an n-gram model.

  Args:
    contexts: (T, order - 1) integer ids, oldest first; (T,) for a bigram model.
    targets: (T,) integer ids (ignored unless ``need_targets``).
    order: n.
    vocab_size: V.
    need_targets: whether targets are checked and returned.

  Returns:
    ``(contexts, targets)`` as int64 copies (targets None unless ``need_targets``).
  """
  ctx = np.asarray(contexts)
  if ctx.ndim == 1 and order == 2:
    ctx = ctx[:, None]
  if ctx.ndim != 2 or ctx.shape[1] != order - 1:
    raise ValueError(
        f"contexts of an order-{order} model must have shape (n_samples, {order - 1}), the "
        f"previous {order - 1} tokens oldest first (previous token last); got shape "
        f"{ctx.shape}.")
  if ctx.size and ctx.dtype.kind not in "iu":
    raise ValueError(f"contexts must be integer token ids; got dtype {ctx.dtype}.")
  _check_id_range("contexts", ctx, vocab_size)
  if not need_targets:
    check_n_samples(len(ctx))
    return ctx.astype(np.int64), None
  tgt = np.asarray(targets)
  if tgt.ndim != 1 or (tgt.size and tgt.dtype.kind not in "iu"):
    raise ValueError(
        f"targets must be a 1-D array of integer token ids; got shape {tgt.shape} and dtype "
        f"{tgt.dtype}.")
  check_same_length(len(ctx), len(tgt), where="contexts and targets")
  check_n_samples(len(tgt))
  _check_id_range("targets", tgt, vocab_size)
  return ctx.astype(np.int64), tgt.astype(np.int64)


def check_ngram_counts(keys, counts, continuation, order: int, vocab_size: int):
  """The count arrays of an n-gram model as int64 copies, checked for consistency.

  Args:
    keys: per order k = 1..n, the sorted keys ``id(h) V + w`` of the k-grams,
      ``id(h)`` below the number of (k-1)-grams (1 for k = 1).
    counts: per order, the nonnegative counts, one per key.
    continuation: per order k = 1..n-1, nonnegative counts, one per key.
    order: n.
    vocab_size: V.

  Returns:
    ``(keys, counts, continuation)`` as tuples of int64 arrays.
  """
  keys = tuple(np.array(k, np.int64) for k in keys)
  counts = tuple(np.array(c, np.int64) for c in counts)
  cont = tuple(np.array(c, np.int64) for c in continuation)
  n_types = [1] + [len(k) for k in keys]
  if (len(keys), len(counts), len(cont)) != (order, order, order - 1) or any(
      len(c) != len(k) for c, k in zip(counts, keys)) or any(
      len(c) != len(k) for c, k in zip(cont, keys)) or any(
      k.size and (np.any(np.diff(k) <= 0) or k[0] < 0 or k[-1] >= n_types[i] * vocab_size)
      for i, k in enumerate(keys)) or any(c.size and c.min() < 0 for c in counts + cont):
    raise ValueError(
        f"the counts of an order-{order} model need {order} sorted key arrays with matching "
        f"counts and {order - 1} continuation arrays, keys id(h) * vocab_size + w within the "
        "observed contexts; build the model with NgramModel.fit.")
  return keys, counts, cont


def check_ngram_history(name: str, n_tokens: int, order: int) -> None:
  """``n_tokens`` (context plus the token to score or draw) must reach the order.

  ``tokens`` of ``perplexity``: the longest sequence; ``context`` of ``sample``:
  the context's length plus one.
  """
  if n_tokens < order:
    if name == "context":
      raise ValueError(
          f"context must hold at least {order - 1} tokens (oldest first) for an order-{order} "
          f"model; got {n_tokens - 1}.")
    raise ValueError(
        f"perplexity scores tokens with {order - 1} tokens of context; pass a sequence of at "
        f"least {order} tokens.")


def check_ngram_dense_output(n_rows: int, vocab_size: int, limit: int) -> None:
  """Refuses a dense (rows, V) output of an n-gram model beyond ``limit`` entries."""
  if n_rows * vocab_size > limit:
    raise ValueError(
        f"predict_log_proba would return a dense {n_rows} x {vocab_size} array; pass at most "
        f"{limit // vocab_size} contexts at a time, or use log_prob / perplexity, which never "
        "densify.")


def _check_id_range(name: str, ids: np.ndarray, vocab_size: int) -> None:
  if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
    raise ValueError(
        f"{name} must be token ids in [0, vocab_size={vocab_size}); found values in "
        f"[{ids.min()}, {ids.max()}].")


# Discount ranges of Kneser-Ney smoothing: D_r <= r keeps every discounted count
# nonnegative (an n-gram counted r times loses at most r).
def check_discounts(smoothing: str, discount, order: int) -> np.ndarray | None:
  """The discounts of an n-gram model as an (order, 3) array ``(D1, D2, D3+)`` per order.

  Args:
    smoothing: ``"kneser-ney"`` (``discount`` None: estimated from the counts of
      counts; or an (order, 3) array, row ``k - 1`` for order ``k``, with
      ``0 <= D_r <= r``), ``"kneser-ney-fixed"`` (one number in ``[0, 1]`` or
      one per order) or ``"additive"`` (``discount`` must be None).
    discount: as above.
    order: n.

  Returns:
    The (order, 3) float64 discounts, or None (to be estimated, or additive).
  """
  if discount is None:
    return np.full((order, 3), 0.75) if smoothing == "kneser-ney-fixed" else None
  if smoothing == "additive":
    raise ValueError(
        "discount applies to Kneser-Ney smoothing; additive smoothing takes pseudo_count. "
        "Drop discount or pass smoothing='kneser-ney' / 'kneser-ney-fixed'.")
  try:
    d = np.array(discount, np.float64)
  except (TypeError, ValueError):
    d = np.array([np.nan])
  if smoothing == "kneser-ney-fixed":
    if d.shape == (order, 3) and (d == d[:, :1]).all():
      d = d[:, 0]  # the (order, 3) form this function returns
    if d.ndim == 0:
      d = np.full(order, float(d))
    if d.shape != (order,) or not (np.isfinite(d).all() and (d >= 0).all() and (d <= 1).all()):
      raise ValueError(
          f"discount of smoothing='kneser-ney-fixed' must be one number in [0, 1] or "
          f"{order} of them (one per order, unigram first); got {discount!r}.")
    return np.repeat(d[:, None], 3, axis=1)
  if d.shape != (order, 3) or not (np.isfinite(d).all() and (d >= 0).all()
                                    and (d <= np.array([1.0, 2.0, 3.0])).all()):
    raise ValueError(
        f"discount of smoothing='kneser-ney' must be None (estimated from the counts of "
        f"counts) or an ({order}, 3) array of (D1, D2, D3+) per order, unigram first, "
        f"with 0 <= D1 <= 1, 0 <= D2 <= 2, 0 <= D3+ <= 3; got {discount!r}.")
  return d


def check_model_shapes(weights: np.ndarray, bias: np.ndarray) -> None:
  """``W`` (N, M) and ``b`` (M,) with at least one class."""
  if weights.ndim != 2 or bias.shape != (weights.shape[1],):
    raise ValueError(
        f"weights must be (N, M) and bias (M,); got {weights.shape} and {bias.shape}.")
  if weights.shape[1] == 0:
    raise ValueError(
        f"a model needs at least one class; got weights of shape {weights.shape} (N, M = 0).")


# -- statistics -----------------------------------------------------------------

def check_statistics(cooccurrence: np.ndarray, class_mass: np.ndarray, total_weight,
                     mass_sq, n_samples, gram: np.ndarray | None, min_feature) -> None:
  """The fields of ``SoftmaxStats`` (computed or made by hand): shapes and the signs the
  definitions imply.

  ``F = X^T diag(w) Y`` (N, M), ``c = Y^T w`` (M,), ``G = X^T diag(w) X`` (N, N);
  weights and targets are nonnegative, so ``c``, ``T_w`` and ``sum w m^2`` are,
  and so is ``F`` whenever the features are (``min_feature >= 0``; its default,
  ``inf``, means "no data seen").
  """
  if cooccurrence.ndim != 2:
    raise ValueError(
        f"cooccurrence must be the (N, M) matrix F = X^T diag(w) Y; got shape "
        f"{cooccurrence.shape}.")
  n, m = cooccurrence.shape
  if class_mass.shape != (m,):
    raise ValueError(
        f"class_mass must have shape ({m},), one entry per class of cooccurrence {(n, m)}; "
        f"got {class_mass.shape}.")
  if gram is not None and gram.shape != (n, n):
    raise ValueError(
        f"gram must be the ({n}, {n}) matrix X^T diag(w) X of the {n} features of "
        f"cooccurrence; got shape {gram.shape}.")
  check_integer("n_samples", n_samples, minimum=0)
  for name, value in (("total_weight", total_weight), ("mass_sq", mass_sq)):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)) or not value >= 0:
      raise ValueError(f"{name} must be a number >= 0 (a sum of nonnegative weights); got "
                       f"{value!r}.")
  if isinstance(min_feature, (bool, np.bool_)) or not isinstance(
      min_feature, (int, float, np.integer, np.floating)) or math.isnan(min_feature):
    raise ValueError(f"min_feature must be a number (the smallest entry of X); got "
                     f"{min_feature!r}.")
  if class_mass.size and np.nanmin(class_mass) < 0:
    raise ValueError(
        f"class_mass must be nonnegative (c = Y^T w of nonnegative targets and weights); "
        f"its smallest entry is {np.nanmin(class_mass):.4g}.")
  if min_feature >= 0 and cooccurrence.size and np.nanmin(cooccurrence) < 0:
    i, j = np.unravel_index(int(np.nanargmin(cooccurrence)), cooccurrence.shape)
    raise ValueError(
        f"cooccurrence has negative entries (smallest {cooccurrence[i, j]:.4g}, at feature "
        f"{i}, class {j}) but min_feature={min_feature} says the features are nonnegative, "
        "and F = X^T diag(w) Y of nonnegative features, targets and weights cannot be "
        "negative. Pass the smallest feature value as min_feature if features can be "
        "negative.")
  if gram is not None and gram.size and np.nanmin(np.diag(gram)) < 0:
    raise ValueError(
        "gram has negative diagonal entries; X^T diag(w) X of nonnegative weights has a "
        "nonnegative diagonal (sums of squares).")


def check_gram_underflow(gram: np.ndarray, feature_mass: np.ndarray) -> None:
  """Refuses a Gram matrix that underflowed float64 as a whole while features occur.

  ``trace(G) = sum_t w_t |x_t|^2`` is zero only if every feature is zero in
  every sample; features near 1e-154 or below square below float64's smallest
  normal number (2.2e-308), and the Newton solution would collapse to the
  uniform model. Their weights (near 1e154 or beyond) would be past float32's
  range in any case. (A single feature that small among normal ones is
  negligible next to them, as the ridge would make it.)
  """
  trace = float(np.trace(gram))
  if trace < _TINY and np.any(feature_mass != 0):
    raise ValueError(
        f"the Gram matrix X^T diag(w) X underflows float64: the features occur (largest "
        f"feature mass {np.abs(feature_mass).max():.3g}) but the sum of their squares is "
        f"{trace:.3g}, below {_TINY:.3g} (features near 1e-154 or smaller). Weights for "
        "such features would be beyond float32's range too: rescale X (e.g. "
        "X / np.abs(X).max()).")


def check_token_sequence(name: str, tokens, vocab_size: int, min_length: int = 1) -> np.ndarray:
  """A 1-D sequence of integer token ids in ``[0, vocab_size)`` with at least
  ``min_length`` tokens, as int64 (floats are refused, never truncated)."""
  check_not_masked(name, tokens)
  array = np.asarray(tokens)
  if array.ndim > 1 and array.size == max(array.shape):
    array = array.reshape(-1)
  if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
    raise ValueError(
        f"{name} must be a 1-D sequence of integer token ids; got shape {array.shape} and "
        f"dtype {array.dtype}{' (float ids would be truncated)' * (array.dtype.kind == 'f')}.")
  if len(array) < min_length or (array.size and (int(array.min()) < 0
                                                or int(array.max()) >= vocab_size)):
    short = len(array) < min_length
    raise ValueError(
        f"{name} must hold at least {min_length} tokens in [0, {vocab_size}), oldest first; "
        f"got {len(array)} tokens{' with values out of range' if not short else ''}.")
  return array.astype(np.int64)
