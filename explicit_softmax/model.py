"""The single-layer softmax model ``p(y|x) = softmax(x W + b)`` and its objective.

The objective is the (sample-weighted) mean cross-entropy

    L(W, b) = -(1 / T_w) sum_t w_t sum_j Y_tj log p_tj,               (1)

whose gradient is ``dL/dW = X^T diag(w) (P - Y) / T_w`` and
``dL/db = 1^T diag(w) (P - Y) / T_w``                                 (2)

Products with ``X`` run on the host (BLAS / scipy.sparse, chunked) and the
objective is evaluated there in float64 (``objective``), with no
compilation; its JAX form for jitted refinement is
``es._optax_loop.weighted_cross_entropy``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import tempfile
import zipfile
from typing import NamedTuple

import numpy as np
import scipy.special

from explicit_softmax import _design
from explicit_softmax import _objective
from explicit_softmax import _targets
from explicit_softmax import _validation
from explicit_softmax._typing import Features, Labels, PathLike, SampleWeight

_FORMAT = "explicit-softmax"
_FORMAT_VERSION = 1


class History(NamedTuple):
  """Per-step record of an iterative optimisation (see
  [`refine`][explicit_softmax.refinement.refine]).

  Attributes:
    loss: (S,) objective value at each step (training loss plus L2 term; for
      minibatch methods, on that step's batch).
    grad_norm: (S,) Euclidean norm of the gradient in the optimised variables
      (``(W, b)``, or the whitened ones with ``precondition=True``).
    seconds: (S,) wall-clock seconds after each step, counted from the call
      (setup included, callbacks excluded); steps run together in one jitted
      loop share their loop's time evenly.
  """

  loss: np.ndarray
  grad_norm: np.ndarray
  seconds: np.ndarray


def _read_only(*_, **__):
  raise TypeError(
      "model metadata is read-only (models are immutable); make a new model with "
      "model.replace(info={**model.info, key: value}).")


class FrozenDict(dict):
  """A dict that refuses changes: ``SoftmaxModel.info`` and the dicts inside it.

  A dict subclass, so ``json.dumps``, ``==`` with plain dicts and ``dict(info)``
  (a mutable copy) all work as for a dict.
  """

  __setitem__ = __delitem__ = __ior__ = _read_only
  clear = pop = popitem = setdefault = update = _read_only

  def __reduce__(self):  # copy, deepcopy and pickle rebuild it from a plain dict
    return (type(self), (dict(self),))


class FrozenList(list):
  """A list that refuses changes (the lists inside ``SoftmaxModel.info``)."""

  __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
  append = clear = extend = insert = pop = remove = reverse = sort = _read_only

  def __reduce__(self):
    return (type(self), (list(self),))


def freeze_info(value, where: str):
  """``value`` as frozen plain JSON types (numpy scalars and arrays converted); a
  ValueError naming ``where`` for anything JSON cannot hold."""
  if isinstance(value, dict):
    out = {}
    for key, item in value.items():
      if not isinstance(key, str):
        raise ValueError(f"{where} keys must be strings; got {key!r}.")
      out[key] = freeze_info(item, f"{where}[{key!r}]")
    return FrozenDict(out)
  if isinstance(value, (list, tuple)):
    return FrozenList(freeze_info(item, f"{where}[{i}]") for i, item in enumerate(value))
  if isinstance(value, np.ndarray):
    return freeze_info(value.tolist(), where)
  if isinstance(value, (np.bool_, bool)):
    return bool(value)
  if isinstance(value, (np.integer, int)):
    return int(value)
  if isinstance(value, (np.floating, float)):
    value = float(value)
    if not math.isfinite(value):
      return str(value)  # JSON has no NaN/inf; "inf" keeps the information
    return value
  if value is None or isinstance(value, str):
    return value
  raise ValueError(
      f"{where} holds a {type(value).__name__}, which a model file cannot store; keep "
      "info to numbers, strings, lists and dicts.")


@dataclasses.dataclass(frozen=True, eq=False)
class SoftmaxModel:
  """Parameters of ``p(y|x) = softmax(x W + b)`` (immutable).

  Attributes:
    weights: ``W``, (N, M) float32.
    bias: ``b``, (M,) float32.
    info: JSON-serialisable metadata (how the model was obtained), read-only (a
      [`FrozenDict`][explicit_softmax.model.FrozenDict]; ``dict(model.info)`` is a mutable copy). A
      model fitted on named columns (a DataFrame, a CSV header) keeps them in
      ``info["feature_names"]``, and DataFrames given to it later are matched by name.
    history: per-step [`History`][explicit_softmax.model.History] if the model came out of
      [`refine`][explicit_softmax.refinement.refine].
  """

  weights: np.ndarray
  bias: np.ndarray
  info: dict = dataclasses.field(default_factory=dict)
  history: History | None = None

  def __post_init__(self):
    w, b = (_validation.check_parameter(name, value) for name, value in
            (("weights", self.weights), ("bias", self.bias)))
    _validation.check_model_shapes(w, b)
    if not isinstance(self.info, dict):
      raise ValueError(f"info must be a dict of JSON-serialisable metadata; got "
                       f"{type(self.info).__name__}.")
    object.__setattr__(self, "weights", w)
    object.__setattr__(self, "bias", b)
    # A read-only copy in plain JSON types: the model never shares (or saves) the
    # caller's objects, and numpy scalars that refine/calibrate record stay saveable.
    object.__setattr__(self, "info", freeze_info(self.info, "info"))
    _validation.check_feature_names_info(self.info.get("feature_names"), w.shape[0])

  @property
  def n_features(self) -> int:
    return self.weights.shape[0]

  @property
  def n_classes(self) -> int:
    return self.weights.shape[1]

  def replace(self, **changes) -> SoftmaxModel:
    """A copy with some fields changed (the model itself is immutable)."""
    return dataclasses.replace(self, **changes)

  # -- prediction --------------------------------------------------------------
  def decision_function(self, X: Features) -> np.ndarray:
    """Logits ``X W + b``, (T, M): float64 for float64 ``X``, else float32.

    Raises:
      ValueError: for invalid ``X``, or logits beyond the float range (``X``
        of magnitude near 1e38 in float32, 1e308 in float64).
    """
    design = _design.for_model(X, self)
    _validation.check_memory(
        f"the logits of {design.shape[0]:,} samples x {self.n_classes:,} classes",
        [("the logits and probabilities", (design.shape[0], self.n_classes),
          np.dtype(design.result_dtype).itemsize, 3)],
        advice="Predict in batches of fewer rows.")
    with np.errstate(over="ignore", invalid="ignore"):
      logits = design.logits(self.weights, design.result_dtype) + self.bias
    if not np.isfinite(logits).all():
      row = int(np.flatnonzero(~np.isfinite(logits).all(axis=1))[0])
      raise ValueError(
          f"the logits X W + b overflow the {logits.dtype} range (first in row {row}): X "
          "is too large for these weights. Rescale X (and refit), or pass float64 X.")
    return logits

  def predict_log_proba(self, X) -> np.ndarray:
    """``log p(y|x)`` for each sample, (T, M)."""
    return scipy.special.log_softmax(self.decision_function(X), axis=-1)

  def predict_proba(self, X) -> np.ndarray:
    """``p(y|x) = softmax(x W + b)`` for each sample, (T, M)."""
    return scipy.special.softmax(self.decision_function(X), axis=-1)

  def predict(self, X) -> np.ndarray:
    """The most probable class of each sample, (T,) int."""
    return np.argmax(self.decision_function(X), axis=-1)

  # -- objective -------------------------------------------------------------
  def _loss_and_grad(self, X, y, sample_weight, need_grad: bool):
    design = _design.for_model(X, self)
    t = design.shape[0]
    targets = _validation.check_targets(y, t, self.n_classes)
    w = _validation.check_sample_weight(sample_weight, t)
    return _objective.objective(design, targets, w, self.weights, self.bias,
                                need_grad=need_grad)

  def log_loss(self, X: Features, y: Labels, sample_weight: SampleWeight = None) -> float:
    """Mean cross-entropy (1) in nats."""
    return self._loss_and_grad(X, y, sample_weight, need_grad=False)[0]

  def gradient(self, X: Features, y: Labels,
               sample_weight: SampleWeight = None) -> tuple[np.ndarray, np.ndarray]:
    """The gradient (2) of the mean cross-entropy: ``(dL/dW, dL/db)`` in float64."""
    _, g_w, g_b = self._loss_and_grad(X, y, sample_weight, need_grad=True)
    return g_w, g_b

  def grad_norm(self, X: Features, y: Labels, sample_weight: SampleWeight = None) -> float:
    """Euclidean norm of the full gradient (2) in ``(W, b)``; zero at the optimum."""
    g_w, g_b = self.gradient(X, y, sample_weight)
    return float(np.sqrt((g_w**2).sum() + (g_b**2).sum()))

  # -- persistence -------------------------------------------------------------
  def save(self, path: PathLike) -> None:
    """Writes ``weights``, ``bias`` and JSON metadata to an ``.npz`` file (no pickle).

    The file is written to a temporary file in the same folder and renamed
    into place, so a failure never leaves a damaged or truncated file at
    ``path`` (an existing model there stays as it was).
    """
    meta = json.dumps({"format": _FORMAT, "version": _FORMAT_VERSION, "info": self.info})
    if not isinstance(path, (str, os.PathLike)):
      raise ValueError(f"save needs a file path (str or os.PathLike); got {type(path).__name__}.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
      raise ValueError(f"cannot save to {path!r}: the folder {folder!r} does not exist.")
    if os.path.isdir(path):
      raise ValueError(f"cannot save to {path!r}: it is a directory; give a file name such as "
                       f"{os.path.join(path, 'model.npz')!r}.")
    # The temporary file's name is ours: errors name the user's path and folder.
    try:
      fd, tmp = tempfile.mkstemp(prefix=".explicit-softmax-", suffix=".npz.tmp", dir=folder)
    except OSError as err:
      raise ValueError(f"cannot save to {path!r}: cannot write in the folder {folder!r} "
                       f"({err.strerror or err}).") from None
    try:
      with os.fdopen(fd, "wb") as fh:
        np.savez(fh, weights=self.weights, bias=self.bias, meta=np.array(meta))
      os.replace(tmp, path)
    except BaseException as err:
      os.unlink(tmp)
      if isinstance(err, OSError):
        raise ValueError(f"cannot save to {path!r}: {err.strerror or err}.") from None
      raise


def keeps_feature_names(fit_function):
  """Decorates ``fit_function(X, y, ...)``: the model it fits on a DataFrame whose
  column names are strings keeps them in ``info["feature_names"]`` (without the
  label and weight columns of a dask DataFrame named by ``y`` and
  ``sample_weight``), so that files and later DataFrames are matched by name."""

  @functools.wraps(fit_function)
  def fit_keeping_names(*args, **kwargs):
    model = fit_function(*args, **kwargs)
    x = args[0] if args else kwargs.get("X")
    names = _validation.feature_names_of(x)
    if names is None:
      return model
    y = args[1] if len(args) > 1 else kwargs.get("y")
    named = {v for v in (y, kwargs.get("sample_weight")) if isinstance(v, str)}
    names = [n for n in names if n not in named]
    if len(names) != model.n_features:
      return model
    return model.replace(info={**model.info, "feature_names": names})

  return fit_keeping_names


def load(path: PathLike) -> SoftmaxModel:
  """Reads a model written by [`SoftmaxModel.save`][explicit_softmax.model.SoftmaxModel.save].

  Args:
    path: the ``.npz`` file.

  Returns:
    The [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] (``weights``, ``bias``, ``info``; no
    history).

  Raises:
    ValueError: if the file is missing, corrupted or not an explicit-softmax model.
  """
  if not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"load needs a file path (str or os.PathLike); got {type(path).__name__}.")
  _validation.check_file(path, "model file")
  if not zipfile.is_zipfile(path):
    raise ValueError(
        f"{path!r} is not a model file: model.save writes an .npz (zip) archive, and this "
        "file is not one.")
  try:
    with np.load(path, allow_pickle=False) as data:
      missing = sorted({"meta", "weights", "bias"} - set(data.files))
      if not missing:
        meta = json.loads(str(data["meta"]))
        weights, bias = data["weights"], data["bias"]
  except (zipfile.BadZipFile, KeyError, OSError, EOFError, json.JSONDecodeError,
          ValueError, TypeError, AttributeError, IndexError) as err:
    raise ValueError(
        f"{path!r} is not a readable explicit-softmax model file ({type(err).__name__}: "
        f"{err}). Save models with model.save(path).") from None
  if missing:
    raise ValueError(
        f"{path!r} is an .npz archive but not an explicit-softmax model (it has no "
        f"{missing} entries). Save models with model.save(path).")
  if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
    raise ValueError(f"{path!r} is an .npz file but not an explicit-softmax model.")
  version = meta.get("version")
  if isinstance(version, bool) or not isinstance(version, int):
    raise ValueError(
        f"{path!r}: the format version must be an integer; got {version!r}. The file was "
        "not written by model.save.")
  if version > _FORMAT_VERSION:
    raise ValueError(
        f"{path!r} was written by a newer explicit-softmax (format version "
        f"{version}); upgrade the library to read it.")
  info = meta.get("info", {})
  if not isinstance(info, dict):
    raise ValueError(f"{path!r}: 'info' must be a JSON object; got {type(info).__name__}.")
  classes = info.get("classes")
  try:
    model = SoftmaxModel(weights, bias, info=info)
  except ValueError as err:
    raise ValueError(f"{path!r}: {err}") from None
  if classes is not None and (not isinstance(classes, list) or len(classes) != model.n_classes):
    raise ValueError(
        f"{path!r}: info['classes'] must list one label per class ({model.n_classes}); got "
        f"{classes!r:.200}.")
  return model


# -- archives of other model kinds (n-gram models) --------------------------------

def write_archive(path: PathLike, meta: str, arrays: dict) -> None:
  """Writes ``arrays`` and the JSON string ``meta`` to an ``.npz`` file (no pickle).

  As [`SoftmaxModel.save`][explicit_softmax.model.SoftmaxModel.save]: written to a temporary file in
  the same folder and renamed into place, so a failure never leaves a damaged file at ``path``.
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise ValueError(f"cannot save to {path!r}: the folder {folder!r} does not exist.")
  fd, tmp = tempfile.mkstemp(prefix=".explicit-softmax-", suffix=".npz.tmp", dir=folder)
  try:
    with os.fdopen(fd, "wb") as fh:
      np.savez(fh, meta=np.array(meta), **arrays)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


def read_archive(path: PathLike, file_format: str, version: int,
                 kind: str) -> tuple[dict, dict]:
  """Reads an archive written by ``write_archive`` with ``meta["format"] == file_format``.

  Args:
    path: the ``.npz`` file.
    file_format: the expected ``meta["format"]``.
    version: the newest format version this library reads.
    kind: the class that writes such files (for messages).

  Returns:
    ``(meta, arrays)``: the parsed JSON metadata and every other array, loaded.

  Raises:
    ValueError: if the file is missing, damaged, of another format or newer.
  """
  if not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"load needs a file path (str or os.PathLike); got {type(path).__name__}.")
  if not os.path.exists(path):
    raise ValueError(f"model file {str(path)!r} does not exist.")
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{str(path)!r} is not a {kind} file ({kind}.save writes an .npz archive).")
  try:
    with np.load(path, allow_pickle=False) as data:
      meta = json.loads(str(data["meta"])) if "meta" in data.files else None
      arrays = {name: data[name] for name in data.files if name != "meta"}
  except (zipfile.BadZipFile, KeyError, OSError, EOFError, json.JSONDecodeError,
          ValueError, TypeError, AttributeError, IndexError) as err:
    raise ValueError(
        f"{str(path)!r} is not a readable {kind} file ({type(err).__name__}: {err}).") from None
  if not isinstance(meta, dict) or meta.get("format") != file_format:
    raise ValueError(
        f"{str(path)!r} is an .npz archive but not a {kind} file; save one with {kind}.save.")
  found = meta.get("version")
  if isinstance(found, bool) or not isinstance(found, int):
    raise ValueError(f"{str(path)!r}: the format version must be an integer; got {found!r}.")
  if found > version:
    raise ValueError(
        f"{str(path)!r} was written by a newer explicit-softmax (format version {found}); "
        "upgrade the library to read it.")
  return meta, arrays
