"""Explicit initialisation of Flax models (NNX modules and Linen parameter trees).

Layouts: a Flax dense kernel is (in, out), the same as the explicit weights
``W`` (N, M) of ``x W + b``, so weights are written untransposed, cast to the
kernel's dtype and placed on its device (sharding). NNX variables are updated in
place (``variable[...] = value``): the module keeps its ``Variable`` objects, so
references held elsewhere see the new values. Linen parameter trees are never
mutated: :func:`init_linen_head` returns a new tree.

Precision: the layers keep Flax's default matmul precision, which on recent
NVIDIA GPUs is TF32; a head written here then reproduces the explicit model to
about 1e-3 there (to float32 round-off on CPUs), and exactly to float32 under
``jax.default_matmul_precision("highest")`` or with ``precision="highest"`` on
the layer.

Conventions for finding the head of an NNX model (:func:`init_head`):

* an ``nnx.Sequential`` whose last layer is an ``nnx.Linear``: the features are
  the outputs of all layers before it;
* a module with a dense head attribute (``head="head"`` by default, or the
  ``nnx.Linear`` itself): the features are the head's inputs during the model's
  own forward pass (captured, and the forward is stopped there);
* an explicit ``features_fn`` plus ``head``;
* an ``nnx.Linear`` alone: the data are the features.

Example::

    from explicit_softmax.adapters import flax as es_flax
    model = nnx.Sequential(nnx.Linear(784, 256, rngs=rngs), nnx.relu,
                           nnx.Linear(256, 10, rngs=rngs))
    es_flax.init_head(model, x_train, y_train)       # explicit output layer
    es_flax.init_layerwise(model, x_train, y_train)  # or every layer
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping, Sequence

try:
  import flax
except ImportError as err:
  raise ImportError(
      "explicit_softmax.adapters.flax needs Flax, an optional dependency: pip install "
      "'explicit-softmax[flax]'") from err
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax import solvers
from explicit_softmax._typing import ArrayLike, Labels
from explicit_softmax.adapters import _common
from explicit_softmax.adapters._common import Inputs

HINT = (
    "End the feature extractor with a nonnegative activation (nnx.relu, nnx.softplus, "
    "nnx.sigmoid or nnx.softmax) right before the head, or pass a features_fn that "
    "returns nonnegative features; raw inputs must be nonnegative too (e.g. pixels "
    "scaled to [0, 1], not standardised).")
# Attributes that nnx.Module.eval() switches; saved and restored around feature
# extraction so that the caller's train/eval mode is left as it was.
_MODE_ATTRIBUTES = ("deterministic", "use_running_average")


class ExplicitWeight(nnx.Variable):
  """Explicit weights held fixed: a Variable that is not an ``nnx.Param``.

  ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``nnx.grad`` (whose default
  filter is ``nnx.Param``) leave it unchanged.
  """


# -- reading features -----------------------------------------------------------
class _Captured(Exception):
  """Raised by a head in capture mode, carrying the head's input."""

  def __init__(self, value):
    super().__init__("head input captured")
    self.value = value


@contextlib.contextmanager
def _capturing(head: nnx.Module):
  """Makes ``head`` raise :class:`_Captured` with its input instead of running.

  The head's class is swapped for a subclass whose ``__call__`` raises, and
  restored afterwards, so the model graph (and its state) is never touched.
  """
  original = type(head)

  def call(self, x, *args, **kwargs):
    raise _Captured(x)

  head.__class__ = type(f"Capturing{original.__name__}", (original,), {"__call__": call})
  try:
    yield
  finally:
    head.__class__ = original


@contextlib.contextmanager
def _inference_mode(model: nnx.Module):
  """Runs ``model`` in eval mode (no dropout, running statistics), then restores."""
  saved = []
  for _, module in nnx.iter_modules(model):
    for attr in _MODE_ATTRIBUTES:
      if hasattr(module, attr):
        saved.append((module, attr, getattr(module, attr)))
  if saved:
    model.eval()
  try:
    yield
  finally:
    for module, attr, value in saved:
      setattr(module, attr, value)


def _to_numpy(x) -> np.ndarray:
  return _common.as_float_array(jax.device_get(x))


def _resolve_head(model, head) -> tuple[nnx.Linear, Callable | None]:
  """The dense head of ``model`` and, for Sequential models, the feature function."""
  layers = getattr(model, "layers", None)
  if isinstance(model, nnx.Linear) and (head is None or head is model or head == "head"):
    return model, (lambda x: x)
  if isinstance(head, nnx.Module):
    return _check_linear(head, "head"), None
  if isinstance(model, nnx.Sequential) and (head is None or not hasattr(model, str(head))):
    if not layers:
      raise ValueError("the nnx.Sequential model has no layers.")
    body = list(layers)[:-1]

    def features(x):
      for layer in body:
        x = layer(x)
      return x
    return _check_linear(layers[-1], "the last layer of the nnx.Sequential"), features
  if isinstance(head, str) and hasattr(model, head):
    return _check_linear(getattr(model, head), f"model.{head}"), None
  raise ValueError(
      f"cannot find the dense head of {type(model).__name__}: it is neither an "
      f"nnx.Sequential nor has a {head!r} attribute. Pass head=<the nnx.Linear> (and "
      "optionally features_fn=<a function from inputs to the head's inputs>).")


def _check_linear(layer, what: str) -> nnx.Linear:
  if not isinstance(layer, nnx.Linear):
    raise ValueError(
        f"{what} is a {type(layer).__name__}, not a dense nnx.Linear; explicit weights "
        "can only be written into a dense (Linear) output layer. Put an nnx.Linear last "
        "or pass head=<the nnx.Linear>.")
  return layer


def _head_features(model, head, features_fn) -> Callable:
  """A function from a batch of inputs to the (numpy) features entering ``head``."""
  if features_fn is not None:
    return lambda xb: _to_numpy(features_fn(xb))

  def captured(xb):
    with _capturing(head):
      try:
        model(xb)
      except _Captured as hit:
        return _to_numpy(hit.value)
    raise ValueError(
        f"the forward pass of {type(model).__name__} never called its head "
        f"({type(head).__name__}); pass features_fn=<a function from inputs to the "
        "head's inputs>.")
  return captured


# -- writing weights ------------------------------------------------------------
def _assign(variable: nnx.Variable, value) -> None:
  """Overwrites an NNX variable in place, keeping its dtype, device and sharding."""
  old = variable[...]
  new = jnp.asarray(np.asarray(value), dtype=old.dtype)
  if isinstance(old, jax.Array):
    new = jax.device_put(new, old.sharding)
  variable[...] = new


def write_linear(layer: nnx.Linear, weights: ArrayLike, bias: ArrayLike | None = None) -> None:
  """Writes (in, out) ``weights`` and (out,) ``bias`` into an ``nnx.Linear`` in place.

  Args:
    layer: the dense layer.
    weights: (in, out) array in the ``x @ W`` layout.
    bias: (out,) array, or None to leave the bias as it is.

  Raises:
    ValueError: for mismatched shapes, NaN or inf values, or a nonzero bias for a
      layer without one.
  """
  layer = _check_linear(layer, "the layer")
  weights = _validation.check_finite("the weights", weights)
  kernel_shape = tuple(layer.kernel[...].shape)
  if weights.shape != kernel_shape:
    raise ValueError(
        f"weights of shape {weights.shape} do not fit the nnx.Linear kernel "
        f"{kernel_shape} (in_features, out_features).")
  bias = _common.checked_bias(bias, kernel_shape[1], layer.bias is not None, "use_bias")
  # Checked before anything is written: a refused call leaves the layer as it was.
  _assign(layer.kernel, weights)
  if bias is not None:
    _assign(layer.bias, bias)


def write_explicit(layer: nnx.Linear, explicit: model_lib.SoftmaxModel) -> None:
  """Writes a :class:`SoftmaxModel` into an ``nnx.Linear`` (checked, in place)."""
  layer = _check_linear(layer, "the layer")
  n, m = layer.kernel[...].shape
  _common.check_head_shape(explicit, n, m, layer.bias is not None, "the nnx.Linear")
  write_linear(layer, explicit.weights, explicit.bias)


# -- public API -----------------------------------------------------------------
def init_head(model: nnx.Module, x: Inputs, y: Labels | None = None, *,
              head: str | nnx.Linear | None = "head",
              features_fn: Callable | None = None, method: str = _common.DEFAULT_METHOD,
              smoothing: float = solvers.DEFAULT_SMOOTHING,
              ridge: float = solvers.DEFAULT_RIDGE,
              batch_size: int = 1024, calibrate: bool = False) -> model_lib.SoftmaxModel:
  """Fits explicit weights for the dense head of an NNX model and writes them in place.

  The features entering the head are computed batch by batch with the model's
  own forward pass (in eval mode; the mode is restored afterwards), or with
  ``features_fn``, and accumulated into :class:`SoftmaxStats`; the explicit
  solution (``explicit_softmax.solve``) of those statistics is written into the
  head's kernel (in, out) and bias.

  Args:
    model: an ``nnx.Sequential`` ending in an ``nnx.Linear``, a module with a
      dense head attribute, or an ``nnx.Linear``.
    x: (T, ...) inputs of the model; or, with ``y=None``, an iterable of
      ``(x, y)`` batches.
    y: (T,) integer labels or (T, M) soft labels, M the head's output width.
    head: the head's attribute name, or the ``nnx.Linear`` itself.
    features_fn: optional function from a batch of inputs to the head's inputs.
    method: ``"newton"`` (default: a ridge regression, best for dense activations)
      or ``"cooccurrence"``.
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    batch_size: rows per forward batch when ``x, y`` are arrays.
    calibrate: then fit a temperature and class biases on the same features
      (see :func:`explicit_softmax.adapters._common.fit_explicit`); advisable for
      the Newton form with many classes.

  Returns:
    The fitted :class:`SoftmaxModel` (the model itself is updated in place).

  Raises:
    ValueError: no dense head, non-finite features, negative features with
      ``method="cooccurrence"`` (with advice), mismatched shapes.
  """
  linear, seq_features = _resolve_head(model, head)
  explicit = _fit_on_head_inputs(
      model, linear, features_fn or seq_features, x, y, linear.kernel[...].shape[1],
      method=method, smoothing=smoothing, ridge=ridge, batch_size=batch_size,
      calibrate=calibrate)
  write_explicit(linear, explicit)
  return explicit


def _fit_on_head_inputs(model, linear: nnx.Linear, features_fn, x, y, n_classes: int, *,
                        method, smoothing, ridge, batch_size, calibrate):
  """The explicit model of the features entering ``linear`` (in eval mode)."""
  get_features = _head_features(model, linear, features_fn)
  with _inference_mode(model):
    return _common.fit_explicit(
        ((get_features(xb), np.asarray(yb)) for xb, yb in _common.data_batches(x, y, batch_size)),
        n_features=linear.kernel[...].shape[0], n_classes=n_classes, method=method,
        smoothing=smoothing, ridge=ridge, hint=HINT, calibrate=calibrate)


def init_layerwise(model: nnx.Sequential, x: Inputs, y: Labels, *, method: str = _common.DEFAULT_METHOD,
                   hidden_method: str | None = None,
                   smoothing: float = solvers.DEFAULT_SMOOTHING,
                   ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 1024,
                   rms: float = _common.DEFAULT_HIDDEN_RMS,
                   n_cluster_samples: int = _common.DEFAULT_CLUSTER_SAMPLES,
                   seed: int = 0) -> list[model_lib.SoftmaxModel]:
  """Initialises every ``nnx.Linear`` of an ``nnx.Sequential`` MLP with explicit weights.

  Layer by layer, each dense layer is fitted on the activations the layers
  before it really produce (in eval mode): hidden layers to class-conditional
  pseudo-classes, the last to the labels. See
  :func:`explicit_softmax.adapters.layerwise_init` for the scheme.

  Args:
    model: ``nnx.Sequential`` whose last layer is an ``nnx.Linear``; every
      dense layer's input must be real (nonnegative with ``method="cooccurrence"``).
    x: (T, ...) inputs.
    y: (T,) integer labels.
    method: solver of the output layer.
    hidden_method: solver of the hidden layers (default: ``method``).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    batch_size: rows per forward batch.
    rms: root-mean-square of each hidden layer's pre-activations.
    n_cluster_samples: rows used to place each layer's cluster centres.
    seed: seed of the row sample and k-means.

  Returns:
    The explicit :class:`SoftmaxModel` of each dense layer.
  """
  if not isinstance(model, nnx.Sequential):
    raise ValueError(
        f"init_layerwise needs an nnx.Sequential MLP; got {type(model).__name__}. Build "
        "the model as nnx.Sequential(nnx.Linear(...), nnx.relu, ..., nnx.Linear(...)).")
  layers = list(model.layers)
  if not layers:
    raise ValueError("the nnx.Sequential model has no layers.")
  _check_linear(layers[-1], "the last layer of the nnx.Sequential")
  dense = [i for i, layer in enumerate(layers) if isinstance(layer, nnx.Linear)]
  widths = [tuple(np.shape(getattr(layers[i], "kernel")[...])) for i in dense]

  def features_of(layer, rows):
    h = x[rows]
    for module in layers[:dense[layer]]:
      h = module(h)
    return _to_numpy(h)

  def write(layer, w, b):
    write_linear(layers[dense[layer]], w, b)

  with _inference_mode(model):
    return _common.layerwise_init(
        features_of, np.asarray(y), widths, write, method=method,
        hidden_method=hidden_method, smoothing=smoothing, ridge=ridge,
        batch_size=batch_size, rms=rms, n_cluster_samples=n_cluster_samples, seed=seed,
        hint=HINT)


def _replace_layer(model, old: nnx.Module, new: nnx.Module) -> None:
  """Puts ``new`` where ``old`` is held in ``model`` (attributes and Sequential layers)."""
  found = False
  for _, module in nnx.iter_modules(model):
    layers = getattr(module, "layers", None) if isinstance(module, nnx.Sequential) else None
    if layers is not None:
      for i, layer in enumerate(list(layers)):
        if layer is old:
          layers[i] = new
          found = True
    for name, value in list(vars(module).items()):
      if value is old:
        setattr(module, name, new)
        found = True
  if not found:
    raise ValueError(
        f"the head {type(old).__name__} is not held by {type(model).__name__}; pass "
        "head=<an nnx.Linear inside the model> or its attribute name.")


def new_head(model: nnx.Module, x: Inputs, y: Labels | None = None, *, n_classes: int,
             head: str | nnx.Linear | None = "head", features_fn: Callable | None = None,
             method: str = _common.DEFAULT_METHOD,
             smoothing: float = solvers.DEFAULT_SMOOTHING,
             ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 1024,
             calibrate: bool = False) -> nnx.Linear:
  """Replaces the dense head of a (pretrained) NNX model by an explicit head for new classes.

  The transfer setting: the features entering the old head are read with the
  model's own forward pass (eval mode, restored afterwards), a new
  ``nnx.Linear(in_features, n_classes)`` with the old kernel's dtype receives
  the explicit solution, and it takes the old head's place (attribute or
  ``nnx.Sequential`` layer). No other variable of the model is written.

  Args:
    model: the pretrained model (see :func:`init_head` for how the head is found).
    x: (T, ...) inputs, or with ``y=None`` an iterable of ``(x, y)`` batches.
    y: (T,) labels in ``[0, n_classes)`` or (T, n_classes) soft labels.
    n_classes: the new head's output width.
    head: the old head's attribute name, or the ``nnx.Linear`` itself.
    features_fn: optional function from inputs to the head's inputs.
    method: as :func:`init_head`.
    smoothing: as :func:`init_head`.
    ridge: as :func:`init_head`.
    batch_size: as :func:`init_head`.
    calibrate: as :func:`init_head`.

  Returns:
    The new ``nnx.Linear`` head (already placed in ``model``).

  References:
    Kumar, Raghunathan, Jones, Ma and Liang (2022), "Fine-Tuning can Distort
    Pretrained Features and Underperform Out-of-Distribution", ICLR.
  """
  n_classes = _common.check_new_classes(n_classes)
  old, seq_features = _resolve_head(model, head)
  if old is model:
    raise ValueError(
        "the model is a bare nnx.Linear, which has no place to put a new head; fit one with "
        "init_head(nnx.Linear(in_features, n_classes, rngs=...), features, y) instead.")
  n = old.kernel[...].shape[0]
  explicit = _fit_on_head_inputs(
      model, old, features_fn or seq_features, x, y, n_classes, method=method,
      smoothing=smoothing, ridge=ridge, batch_size=batch_size, calibrate=calibrate)
  kernel = old.kernel[...]
  # The kernel and bias are written below; the initializers only fix shapes and dtypes.
  layer = nnx.Linear(n, n_classes, use_bias=True, param_dtype=kernel.dtype, dtype=old.dtype,
                     precision=old.precision, rngs=nnx.Rngs(0))
  write_explicit(layer, explicit)
  if isinstance(kernel, jax.Array) and len(kernel.devices()) == 1:
    # The new head lives on the old head's device (a sharded head's layout need not fit
    # the new width, so that case keeps JAX's default placement).
    device = next(iter(kernel.devices()))
    layer.kernel[...] = jax.device_put(layer.kernel[...], device)
    layer.bias[...] = jax.device_put(layer.bias[...], device)
  _replace_layer(model, old, layer)
  return layer


class ResidualHead(nnx.Module):
  """A dense head ``logits = x W_explicit + x dW + b`` around explicit weights.

  ``W_explicit`` comes from the explicit solver; ``dW`` starts at zero, so the
  head starts exactly at the explicit model, and ``b`` starts at its bias. With
  ``trainable_explicit=False`` the explicit weights are an
  :class:`ExplicitWeight` (not an ``nnx.Param``), so optimisers over
  ``nnx.Param`` only train the correction ``dW`` and ``b``.

  Note: under plain Adam or SGD (no weight decay), training ``dW`` with
  ``W_explicit`` frozen follows exactly the trajectory of training ``W`` itself
  from ``W_explicit`` (the updates depend only on the gradient, which is the
  same). The split matters with weight decay on ``dW`` (it then pulls towards
  the explicit solution instead of towards zero), with separate learning rates,
  or to keep and inspect the learned correction.

  Attributes:
    explicit_kernel: (N, M) explicit weights (``nnx.Param`` or ``ExplicitWeight``).
    kernel_delta: (N, M) trainable correction, zero at initialisation.
    bias: (M,) trainable bias.
  """

  def __init__(self, explicit: _common.Source, *, trainable_explicit: bool = False,
               param_dtype: Any = jnp.float32, dtype: Any = None,
               method: str | None = None,
               smoothing: float = solvers.DEFAULT_SMOOTHING,
               ridge: float = solvers.DEFAULT_RIDGE):
    """Builds the head.

    Args:
      explicit: a :class:`SoftmaxModel`, or :class:`SoftmaxStats` to solve.
      trainable_explicit: whether ``W_explicit`` is an ``nnx.Param``.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the computation (default: promoted from inputs and params).
      method: the solver when ``explicit`` is statistics (None: Newton if they
        hold the Gram matrix, else co-occurrence).
      smoothing: the co-occurrence smoothing, when ``explicit`` is statistics.
      ridge: the Newton ridge, when ``explicit`` is statistics.
    """
    model = _common.as_explicit_model(explicit, method=method, smoothing=smoothing,
                                      ridge=ridge)
    kind = nnx.Param if trainable_explicit else ExplicitWeight
    self.in_features, self.out_features = model.n_features, model.n_classes
    self.dtype = dtype
    self.trainable_explicit = trainable_explicit
    self.explicit_kernel = kind(jnp.asarray(model.weights, param_dtype))
    self.kernel_delta = nnx.Param(jnp.zeros(model.weights.shape, param_dtype))
    self.bias = nnx.Param(jnp.asarray(model.bias, param_dtype))

  def __call__(self, x):
    kernel = self.explicit_kernel[...] + self.kernel_delta[...]
    x, kernel, bias = nnx.nn.dtypes.promote_dtype(
        (x, kernel, self.bias[...]), dtype=self.dtype)
    return x @ kernel + bias


def explicit_init(source: _common.Source | _common.EmbeddingFactors, part: str = "kernel", *, method: str | None = None,
                  smoothing: float = solvers.DEFAULT_SMOOTHING,
                  ridge: float = solvers.DEFAULT_RIDGE) -> Callable:
  """A Flax initializer ``init(key, shape, dtype)`` that returns explicit weights.

  Lets explicit weights be declared where the model is defined::

      nnx.Linear(256, 10, kernel_init=explicit_init(model),
                 bias_init=explicit_init(model, "bias"), rngs=rngs)
      nnx.Embed(V, d, embedding_init=explicit_init(factors, "embedding"), rngs=rngs)

  Args:
    source: a :class:`SoftmaxModel`, :class:`SoftmaxStats` (solved with
      ``method``) or :class:`EmbeddingFactors`.
    part: ``"kernel"`` ((N, M) weights; for factors the (d, V) head) or
      ``"bias"``; for factors also ``"embedding"`` ((K V, d)).
    method: the solver when ``source`` is statistics (None: Newton if they hold
      the Gram matrix, else co-occurrence).
    smoothing: the co-occurrence smoothing, when ``source`` is statistics.
    ridge: the Newton ridge, when ``source`` is statistics.

  Returns:
    ``init(key, shape, dtype=jnp.float32) -> jax.Array``; the key is ignored.

  Raises:
    ValueError: (when called) if ``shape`` differs from the explicit array's.
  """
  if isinstance(source, _common.EmbeddingFactors):
    arrays = {"kernel": source.head, "bias": source.bias, "embedding": source.embedding}
  else:
    model = _common.as_explicit_model(source, method=method, smoothing=smoothing, ridge=ridge)
    arrays = {"kernel": model.weights, "bias": model.bias}
  _validation.check_choice("part", part, tuple(arrays))
  value = np.asarray(arrays[part])

  def init(key, shape: Sequence[int], dtype: Any = jnp.float32):
    del key  # explicit weights are deterministic
    if tuple(shape) != value.shape:
      layout = {"kernel": "(in_features, out_features)", "bias": "(out_features,)",
                "embedding": "(num_embeddings, features)"}[part]
      raise ValueError(
          f"explicit_init({part!r}) was asked for shape {tuple(shape)} but the explicit "
          f"{part} has shape {value.shape} {layout}; declare the layer with matching "
          "sizes.")
    return jnp.asarray(value, dtype)
  return init


def init_embedding(factors: _common.EmbeddingFactors, embed: nnx.Embed,
                   head: nnx.Linear) -> None:
  """Writes SVD factors (:func:`svd_factors`) into an ``nnx.Embed`` and ``nnx.Linear``.

  Args:
    factors: :class:`EmbeddingFactors` of a token model.
    embed: ``nnx.Embed(K V, d)``: the table, (K V, d).
    head: ``nnx.Linear(d, V)``: kernel (d, V) and bias (V,).

  Raises:
    ValueError: mismatched shapes, or a head without bias.
  """
  if not isinstance(embed, nnx.Embed):
    raise ValueError(f"embed must be an nnx.Embed; got {type(embed).__name__}.")
  table = tuple(embed.embedding[...].shape)
  if table != factors.embedding.shape:
    raise ValueError(
        f"the nnx.Embed table is {table} but the factors' embedding is "
        f"{factors.embedding.shape} (K V, d); create nnx.Embed({factors.embedding.shape[0]}, "
        f"{factors.embedding.shape[1]}).")
  head = _check_linear(head, "head")
  if head.bias is None:
    raise ValueError(
        "the head has no bias but the factors carry one; create it with use_bias=True.")
  write_linear(head, factors.head, factors.bias)
  _assign(embed.embedding, factors.embedding)


# -- Linen ----------------------------------------------------------------------
def _as_path(path) -> tuple:
  if isinstance(path, str):
    return tuple(p for p in path.split("/") if p)
  return tuple(path)


def _find_entry(params: Mapping, path: tuple) -> tuple[tuple, Mapping]:
  """The full path and the Dense entry; a leading ``"params"`` is added if needed."""
  for full in (path, ("params",) + path):
    node = params
    try:
      for key in full:
        node = node[key]
    except (KeyError, TypeError):
      continue
    return full, node
  raise ValueError(
      f"no entry {'/'.join(map(str, path))!r} in the parameter tree (top-level keys: "
      f"{list(params)}); pass the path of the Dense layer, e.g. ('params', 'Dense_1').")


def _replace(node: Mapping, path: tuple, value) -> Mapping:
  """A copy of ``node`` with ``value`` at ``path`` (only dicts on the path are copied)."""
  new = dict(node)
  new[path[0]] = value if len(path) == 1 else _replace(node[path[0]], path[1:], value)
  if isinstance(node, flax.core.FrozenDict):
    return flax.core.FrozenDict(new)
  return new


def _like(old, value):
  if isinstance(old, jax.Array):
    return jax.device_put(jnp.asarray(np.asarray(value), old.dtype), old.sharding)
  return np.asarray(value, np.asarray(old).dtype)


def init_linen_head(params: Mapping, path: str | Sequence[str], x: Inputs,
                    y: Labels | None = None, *, features_fn: Callable | None = None,
                    method: str = _common.DEFAULT_METHOD,
                    smoothing: float = solvers.DEFAULT_SMOOTHING,
                    ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 1024) -> Mapping:
  """A new Linen parameter tree whose Dense entry at ``path`` holds explicit weights.

  The input tree is not modified; dictionaries on the path are copied and every
  other leaf is shared.

  Args:
    params: Linen parameters (``{"params": {...}}`` or the inner tree; dict or
      ``FrozenDict``).
    path: path of the Dense entry, e.g. ``("params", "Dense_1")`` or
      ``"Dense_1"``; it must hold a 2-D ``kernel`` (in, out) and may hold ``bias``.
    x: (T, N) features entering that layer (or inputs, with ``features_fn``);
      or, with ``y=None``, an iterable of ``(x, y)`` batches.
    y: (T,) labels or (T, M) soft labels.
    features_fn: optional function from a batch of ``x`` to the layer's inputs,
      e.g. ``lambda xb: linen_head_inputs(module, variables, xb, path)``.
    method: ``"newton"`` (default: a ridge regression, best for dense activations)
      or ``"cooccurrence"``.
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    batch_size: rows per batch when ``x, y`` are arrays.

  Returns:
    The new parameter tree (same container types as ``params``).

  Raises:
    ValueError: missing or non-dense entry, non-finite features (negative ones
      with ``method="cooccurrence"``), mismatched shapes.
  """
  full, entry = _find_entry(params, _as_path(path))
  kernel = entry.get("kernel") if isinstance(entry, Mapping) else None
  if kernel is None or np.ndim(kernel) != 2:
    raise ValueError(
        f"the entry {'/'.join(map(str, full))!r} is not a Dense layer (it needs a 2-D "
        f"'kernel'; found {list(entry) if isinstance(entry, Mapping) else type(entry).__name__}"
        "). Point the path at the Dense output layer.")
  n, m = np.shape(kernel)
  get = (lambda xb: _to_numpy(features_fn(xb))) if features_fn else _to_numpy
  explicit = _common.fit_explicit(
      ((get(xb), np.asarray(yb)) for xb, yb in _common.data_batches(x, y, batch_size)),
      n_features=n, n_classes=m, method=method, smoothing=smoothing, ridge=ridge, hint=HINT)
  _common.check_head_shape(explicit, n, m, "bias" in entry, "the Dense entry")
  new_entry = dict(entry)
  new_entry["kernel"] = _like(kernel, explicit.weights)
  if "bias" in entry:
    new_entry["bias"] = _like(entry["bias"], explicit.bias)
  if isinstance(entry, flax.core.FrozenDict):
    return _replace(params, full, flax.core.FrozenDict(new_entry))
  return _replace(params, full, new_entry)


def linen_head_inputs(module: Any, variables: Mapping, x: Inputs, path: str | Sequence[str],
                      **apply_kwargs: Any) -> np.ndarray:
  """The inputs that a Linen module's forward pass feeds to the submodule at ``path``.

  The forward pass is intercepted when it calls that submodule and stopped
  there, so nothing after it runs.

  Args:
    module: the Linen module.
    variables: its variables (``{"params": ...}``).
    x: a batch of inputs.
    path: the submodule's path, e.g. ``("params", "Dense_1")`` or ``"Dense_1"``.
    **apply_kwargs: passed to ``module.apply`` (e.g. ``train=False``).

  Returns:
    The submodule's first positional input, as an array.
  """
  target = tuple(p for p in _as_path(path) if p != "params")

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and tuple(context.module.scope.path) == target:
      raise _Captured(args[0])
    return next_fun(*args, **kwargs)

  try:
    with flax.linen.intercept_methods(interceptor):
      module.apply(variables, x, **apply_kwargs)
  except _Captured as hit:
    return hit.value
  raise ValueError(
      f"the forward pass of {type(module).__name__} never called a submodule at "
      f"{'/'.join(target)!r}; check the path (e.g. 'Dense_1').")
