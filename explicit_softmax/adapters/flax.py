"""Explicit initialisation of Flax models (NNX modules and Linen parameter trees).

Layouts: a Flax dense kernel is (in, out), the same as the explicit weights
``W`` (N, M) of ``x W + b``, so weights are written untransposed, cast to the
kernel's dtype and placed on its device (sharding). NNX variables are updated in
place (``variable[...] = value``): the module keeps its ``Variable`` objects, so
references held elsewhere see the new values. Linen parameter trees are never
mutated: [`init_linen_head`][explicit_softmax.adapters.flax.init_linen_head] returns a new tree.

Precision: the layers keep Flax's default matmul precision, which on recent
NVIDIA GPUs is TF32; a head written here then reproduces the explicit model to
about 1e-3 there (to float32 round-off on CPUs), and exactly to float32 under
``jax.default_matmul_precision("highest")`` or with ``precision="highest"`` on
the layer.

The head of an NNX model is, in order: the model itself if it is an
``nnx.Linear`` (the data are then its features); ``head=``, a layer or the name
of an attribute (by default ``model.head``); the last layer of an
``nnx.Sequential`` (the features: the layers before it). Its inputs are read
during the model's own forward (in eval mode) by swapping the head's class for
one that raises with its input, which also stops the forward there.

Example:

```python
from explicit_softmax.adapters import flax as es_flax
model = nnx.Sequential(nnx.Linear(784, 256, rngs=rngs), nnx.relu,
                       nnx.Linear(256, 10, rngs=rngs))
es_flax.init_head(model, x_train, y_train)       # explicit output layer
es_flax.init_layerwise(model, x_train, y_train)  # or every layer
```

The PyTorch adapter ([`es.adapters.torch`][explicit_softmax.adapters.torch]) offers the head,
layer-wise, transfer and embedding operations under the same names and runs the same
implementation, so both find heads, check inputs, fit and write alike; a paragraph of each
docstring here says what is particular to Flax.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

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
from explicit_softmax._typing import ArrayLike, Labels
from explicit_softmax.adapters import _common
from explicit_softmax.adapters import _fit
from explicit_softmax.adapters import _framework
from explicit_softmax.adapters._fit import Inputs, Source
from explicit_softmax.adapters._tokens import EmbeddingFactors

HINT = _framework.hint("nnx.relu, nnx.softplus, nnx.sigmoid or nnx.softmax")
# Attributes that nnx.Module.eval() switches; saved and restored around feature
# extraction so that the caller's train/eval mode is left as it was.
_MODE_ATTRIBUTES = ("deterministic", "use_running_average")


class ExplicitWeight(nnx.Variable):
  """Explicit weights held fixed: a Variable that is not an ``nnx.Param``.

  ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``nnx.grad`` (whose default
  filter is ``nnx.Param``) leave it unchanged.
  """


def _assign(variable: nnx.Variable, value) -> None:
  """Overwrites an NNX variable in place, keeping its dtype, device and sharding."""
  old = variable[...]
  new = jnp.asarray(np.asarray(value), dtype=old.dtype)
  if isinstance(old, jax.Array):
    new = jax.device_put(new, old.sharding)
  variable[...] = new


class _Flax(_framework.Framework):
  """Reading features (the head's class swapped to one that raises) and writing ``nnx.Linear``."""

  linear, module, sequential, embedding = nnx.Linear, nnx.Module, nnx.Sequential, nnx.Embed
  prefix, bias_flag, relu, hint = "nnx", "use_bias", "nnx.relu", HINT
  linear_args = ", rngs=..."

  @contextlib.contextmanager
  def inference_mode(self, model: nnx.Module) -> Iterator[None]:
    """Eval mode (no dropout, running statistics); restores the modes."""
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

  @contextlib.contextmanager
  def capturing(self, layer: nnx.Module) -> Iterator[None]:
    """Swaps ``layer``'s class for a subclass whose ``__call__`` raises, then restores it,
    so the model graph (and its state) is never touched."""
    original = type(layer)

    def call(self, x, *args, **kwargs):
      raise _framework.Captured(x)

    layer.__class__ = type(f"Capturing{original.__name__}", (original,), {"__call__": call})
    try:
      yield
    finally:
      layer.__class__ = original

  def layers(self, model: nnx.Sequential) -> list:
    return list(getattr(model, "layers", None) or [])

  def to_numpy(self, value) -> np.ndarray:
    return _fit.as_float_array(jax.device_get(value))

  def dense_shape(self, layer: nnx.Linear) -> tuple[int, int]:
    n, m = layer.kernel[...].shape
    return int(n), int(m)

  def has_bias(self, layer: nnx.Linear) -> bool:
    return layer.bias is not None

  def write_dense(self, layer: nnx.Linear, weights, bias) -> None:
    _assign(layer.kernel, weights)
    if bias is not None:
      _assign(layer.bias, bias)

  def new_dense(self, old: nnx.Linear, n_classes: int) -> nnx.Linear:
    kernel = old.kernel[...]
    # The kernel and bias are written later; the initializers only fix shapes and dtypes.
    layer = nnx.Linear(kernel.shape[0], n_classes, use_bias=True, param_dtype=kernel.dtype,
                       dtype=old.dtype, precision=old.precision, rngs=nnx.Rngs(0))
    if isinstance(kernel, jax.Array) and len(kernel.devices()) == 1:
      # The new head lives on the old head's device (a sharded head's layout need not fit
      # the new width, so that case keeps JAX's default placement).
      device = next(iter(kernel.devices()))
      layer.kernel[...] = jax.device_put(layer.kernel[...], device)
      layer.bias[...] = jax.device_put(layer.bias[...], device)
    return layer

  def replace(self, model: nnx.Module, old: nnx.Module, new: nnx.Module) -> bool:
    """Attributes and ``nnx.Sequential`` layers that hold ``old``."""
    found = False
    for _, module in nnx.iter_modules(model):
      layers = getattr(module, "layers", None) if isinstance(module, nnx.Sequential) else None
      for i, layer in enumerate(list(layers or [])):
        if layer is old:
          layers[i] = new
          found = True
      for name, value in list(vars(module).items()):
        if value is old:
          setattr(module, name, new)
          found = True
    return found

  def table_shape(self, embed: nnx.Embed) -> tuple[int, ...]:
    return tuple(embed.embedding[...].shape)

  def write_table(self, embed: nnx.Embed, table) -> None:
    _assign(embed.embedding, table)


_FLAX = _Flax()


# -- writing weights ------------------------------------------------------------
def write_linear(layer: nnx.Linear, weights: ArrayLike, bias: ArrayLike | None = None) -> None:
  """Writes (in, out) ``weights`` and (out,) ``bias`` into an ``nnx.Linear`` in place.

  Everything is checked before anything is written: a refused call leaves the
  layer as it was.

  Flax: the kernel is (in, out), as the weights; they are cast to the kernel's dtype
  and placed on its device (sharding), and the module keeps its ``Variable`` objects.

  Args:
    layer: the dense layer.
    weights: (in, out) array in the ``x @ W`` layout.
    bias: (out,) array, or None to leave the bias as it is.

  Raises:
    ValueError: for mismatched shapes, NaN or inf values, or a nonzero bias for a
      layer without one.
  """
  _common.write_linear(_FLAX, layer, weights, bias)


def write_explicit(layer: nnx.Linear, explicit: model_lib.SoftmaxModel) -> None:
  """Writes a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] into an ``nnx.Linear`` (checked,
  in place).

  As [`write_linear`][explicit_softmax.adapters.flax.write_linear] with the model's weights and
  bias, after checking that they fit the layer.

  Args:
    layer: the dense layer.
    explicit: explicit weights (N, M) and bias (M,) for a layer ``N -> M``.

  Raises:
    ValueError: a layer that is not dense, mismatched shapes, or a nonzero bias for a
      layer without one.
  """
  _common.write_explicit(_FLAX, layer, explicit)


# -- public API -----------------------------------------------------------------
def init_head(model: nnx.Module, x: Inputs, y: Labels | None = None, *,
              head: str | nnx.Linear | None = "head",
              features_fn: Callable | None = None, method: str = "newton",
              smoothing: float = 0.1, ridge: float = 1e-3,
              batch_size: int = 256, calibrate: bool = False,
              max_samples: int | str | None = "auto") -> model_lib.SoftmaxModel:
  """Fits explicit weights for the dense head of an NNX model and writes them in place.

  The features entering the head are computed batch by batch with the model's own forward pass, or
  with ``features_fn``, and accumulated into
  [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats]; the explicit solution
  ([`es.solve`][explicit_softmax.solvers.solve]) is written into the head. The head is, in order:
  the model itself if it is an ``nnx.Linear`` (the data are then the features); ``head``; the last
  layer of an ``nnx.Sequential`` (the features: the layers before it). A head applied at every
  position of a sequence sees features (B, T, N); labels (B, T) make each position one sample.

  Only as many samples are read as the solution needs: by default
  ``max(8 (N + 1), 4096)`` for a head with ``N`` inputs (the head's held-out loss
  against samples read is measured in ``docs/deep_models.md``). From arrays, the
  rows are spread evenly over the data (row ``i T / k`` of ``T`` for ``k`` rows,
  enough rows for the budget); from a loader, its first batches, the last one cut
  at the budget, and no batch after it is drawn.

  Flax: the forward runs in eval mode (the ``deterministic`` and
  ``use_running_average`` attributes that ``nnx.Module.eval`` switches are restored
  afterwards) and is stopped at the head, whose class is swapped for one that raises
  with its input; the solution is written into the head's kernel (in, out) and bias
  as [`write_linear`][explicit_softmax.adapters.flax.write_linear] does.

  Args:
    model: an ``nnx.Sequential`` ending in an ``nnx.Linear``, a module with a
      dense head attribute, or an ``nnx.Linear`` (then the data are the features).
    x: (T, ...) inputs of the model (arrays, batched here); or, with ``y=None``,
      an iterable of ``(x, y)`` batches.
    y: (T,) integer labels or (T, M) soft labels, M the head's output width.
    head: the ``nnx.Linear`` head or its attribute name (default ``"head"``:
      ``model.head`` if the model has one, else the last layer of an
      ``nnx.Sequential``).
    features_fn: optional function from a batch of inputs to the head's inputs.
    method: ``"newton"`` (default: a ridge regression, best for dense activations)
      or ``"cooccurrence"``.
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    batch_size: rows per forward batch when ``x, y`` are arrays (256: the
      activations of a convolutional body stay in cache; 1,024 rows read slower).
    calibrate: then fit a temperature and class biases on cross-fitted logits
      of the same samples (see
      [`es.adapters.fit_explicit`][explicit_softmax.adapters.fit_explicit]); advisable for the
      Newton form with many classes.
    max_samples: the samples to read: ``"auto"`` (``max(8 (N + 1), 4096)``), a
      positive integer, or None to read every row (every batch of a loader).

  Returns:
    The fitted [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] (the model itself is updated in
    place). Its ``info["init"]`` holds ``rows`` (input rows read: a sequence row carries ``T``
    samples), ``samples``, ``max_samples`` (the budget; None: all) and ``seconds`` (reading, fitting
    and writing), and ``info["feature_rms"]`` the root-mean-square of the features read (Newton
    form).

  Raises:
    ValueError: no dense head, non-finite features, negative features with
      ``method="cooccurrence"`` (with advice), mismatched shapes.
  """
  return _common.init_head(
      _FLAX, model, x, y, head=head, features_fn=features_fn, method=method,
      smoothing=smoothing, ridge=ridge, batch_size=batch_size, calibrate=calibrate,
      max_samples=max_samples)


def init_layerwise(model: nnx.Sequential, x: Inputs, y: Labels, *,
                   method: str = "newton", hidden_method: str | None = None,
                   smoothing: float = 0.1, ridge: float = 1e-3, batch_size: int = 256,
                   rms: float = 1.0, n_cluster_samples: int = 10_000, seed: int = 0,
                   max_samples: int | str | None = "auto") -> list[model_lib.SoftmaxModel]:
  """Initialises every ``nnx.Linear`` of an ``nnx.Sequential`` MLP with explicit weights.

  Layer by layer, each dense layer is fitted on the activations the layers before
  it really produce: hidden layers to class-conditional pseudo-classes (k-means
  centres within each class), then row-centred and rescaled; the last layer to
  the labels. See [`es.adapters.layerwise_init`][explicit_softmax.adapters.layerwise_init] for
  the scheme. Each layer reads only the rows its fit needs (``max_samples``),
  spread evenly over the data.

  Flax: the layers run in eval mode (the modes are restored afterwards), and each
  layer's weights are written as [`write_linear`][explicit_softmax.adapters.flax.write_linear]
  does.

  Args:
    model: ``nnx.Sequential`` whose last layer is an ``nnx.Linear``; every
      ``nnx.Linear``'s input must be real (nonnegative with ``method="cooccurrence"``).
    x: (T, ...) inputs (arrays).
    y: (T,) integer labels.
    method: solver of the output layer: ``"newton"`` (default: a ridge regression,
      best for dense activations) or ``"cooccurrence"``.
    hidden_method: solver of the hidden layers (default: ``method``).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    batch_size: rows per forward batch.
    rms: root-mean-square of each hidden layer's pre-activations.
    n_cluster_samples: rows drawn to place the cluster centres of each layer.
    seed: seed of the row sample and of k-means.
    max_samples: rows each layer's fit reads: ``"auto"``
      (``max(8 (N_l + 1), 4096)`` for a layer with ``N_l`` inputs), a positive
      integer, or None (every row).

  Returns:
    The explicit [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] of each dense layer (hidden
    ones before centring and scaling); ``info["init"]`` holds the rows it read, its budget and the
    seconds its layer took.

  Raises:
    ValueError: a model that is not a sequential MLP ending in a dense layer, labels
      that are not (T,) integers in range, a class without a sample among the rows that
      place the cluster centres, non-finite layer inputs (negative ones with
      ``"cooccurrence"``).
  """
  return _common.init_layerwise(
      _FLAX, model, x, y, method=method, hidden_method=hidden_method, smoothing=smoothing,
      ridge=ridge, batch_size=batch_size, rms=rms, n_cluster_samples=n_cluster_samples,
      seed=seed, max_samples=max_samples)


def new_head(model: nnx.Module, x: Inputs, y: Labels | None = None, *, n_classes: int,
             head: str | nnx.Linear | None = "head", features_fn: Callable | None = None,
             method: str = "newton", smoothing: float = 0.1, ridge: float = 1e-3,
             batch_size: int = 256, calibrate: bool = False,
             max_samples: int | str | None = "auto") -> nnx.Linear:
  """Replaces the dense head of a (pretrained) NNX model by an explicit head for new classes.

  The transfer setting: a network trained on some classes gets a new output
  layer for other classes (labels ``0 .. n_classes-1``). The features entering
  the old head are read with the model's own forward pass, a new dense layer
  ``in_features -> n_classes`` receives the explicit solution, and it takes the
  old head's place. No other parameter of the model is written: fine-tuning
  starts from the pretrained features and an explicit head, as in
  linear-probe-then-fine-tune (Kumar et al. 2022), with the probe in closed form.
  The samples read are as in [`init_head`][explicit_softmax.adapters.flax.init_head].

  Flax: the forward runs as in [`init_head`][explicit_softmax.adapters.flax.init_head] (eval
  mode, modes restored); the new ``nnx.Linear(in_features, n_classes)`` has the old kernel's dtype,
  the old head's computation dtype and precision, and its device (for a head on one device), and
  replaces it wherever the model holds it (an attribute or an ``nnx.Sequential`` layer); no other
  variable is written.

  Args:
    model: the pretrained model (see [`init_head`][explicit_softmax.adapters.flax.init_head] for how
      the head is found).
    x: (T, ...) inputs, or with ``y=None`` an iterable of ``(x, y)`` batches.
    y: (T,) integer labels in ``[0, n_classes)`` or (T, n_classes) soft labels.
    n_classes: the new head's output width, the number of new classes.
    head: the old ``nnx.Linear`` head or its attribute name (default: as
      [`init_head`][explicit_softmax.adapters.flax.init_head]).
    features_fn: optional function from a batch of inputs to the head's inputs.
    method: ``"newton"`` (default: a ridge regression, best for dense activations)
      or ``"cooccurrence"``.
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    batch_size: rows per forward batch when ``x, y`` are arrays (256: the
      activations of a convolutional body stay in cache; 1,024 rows read slower).
    calibrate: then fit a temperature and class biases on cross-fitted logits
      of the same samples (see
      [`es.adapters.fit_explicit`][explicit_softmax.adapters.fit_explicit]); advisable for the
      Newton form with many classes.
    max_samples: the samples to read: ``"auto"`` (``max(8 (N + 1), 4096)``), a
      positive integer, or None to read every row (every batch of a loader).

  Returns:
    The new ``nnx.Linear`` head (already placed in ``model``).

  Raises:
    ValueError: a bare ``nnx.Linear`` as the model (it has no place for a new head), a
      head that is not held by the model, ``n_classes`` not a positive integer, or any
      error of [`init_head`][explicit_softmax.adapters.flax.init_head].

  References:
    Kumar, Raghunathan, Jones, Ma and Liang (2022), "Fine-Tuning can Distort
    Pretrained Features and Underperform Out-of-Distribution", ICLR.
  """
  return _common.new_head(
      _FLAX, model, x, y, n_classes=n_classes, head=head, features_fn=features_fn,
      method=method, smoothing=smoothing, ridge=ridge, batch_size=batch_size,
      calibrate=calibrate, max_samples=max_samples)


class ResidualHead(nnx.Module):
  """A dense head ``logits = x W_explicit + x dW + b`` around explicit weights.

  ``W_explicit`` comes from the explicit solver; ``dW`` starts at zero, so the head starts exactly
  at the explicit model, and ``b`` starts at its bias. With ``trainable_explicit=False`` the
  explicit weights are an [`ExplicitWeight`][explicit_softmax.adapters.flax.ExplicitWeight] (not an
  ``nnx.Param``), so optimisers over ``nnx.Param`` only train the correction ``dW`` and ``b``.

  Under plain Adam or SGD (no weight decay), training ``dW`` with ``W_explicit``
  frozen follows exactly the trajectory of training ``W`` itself from
  ``W_explicit``; the split matters with weight decay on ``dW`` (it then pulls
  towards the explicit solution instead of towards zero), with separate learning
  rates, or to keep and inspect the learned correction.

  Attributes:
    explicit_kernel: (N, M) explicit weights (``nnx.Param`` or ``ExplicitWeight``).
    kernel_delta: (N, M) trainable correction, zero at initialisation.
    bias: (M,) trainable bias.
  """

  def __init__(self, explicit: Source, *, trainable_explicit: bool = False,
               param_dtype: Any = jnp.float32, dtype: Any = None,
               method: str | None = None, smoothing: float = 0.1, ridge: float = 1e-3):
    """Builds the head.

    Args:
      explicit: a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel],
        [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] to solve, or a bigram
        [`NgramModel`][explicit_softmax.ngram.NgramModel] (weights ``log p(j | i)``).
      trainable_explicit: whether ``W_explicit`` is an ``nnx.Param``.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the computation (default: promoted from inputs and params).
      method: the solver when ``explicit`` is statistics (default: ``"newton"`` if
        they hold the Gram matrix, else ``"cooccurrence"``).
      smoothing: additive smoothing of the co-occurrence solution.
      ridge: relative ridge of the Newton solution.

    Raises:
      ValueError: ``explicit`` of another type.
    """
    model = _fit.as_explicit_model(explicit, method=method, smoothing=smoothing,
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


def explicit_init(source: Source | EmbeddingFactors, part: str = "kernel", *,
                  method: str | None = None, smoothing: float = 0.1,
                  ridge: float = 1e-3) -> Callable:
  """A Flax initializer ``init(key, shape, dtype)`` that returns explicit weights.

  Lets explicit weights be declared where the model is defined:

  ```python
  nnx.Linear(256, 10, kernel_init=explicit_init(model),
             bias_init=explicit_init(model, "bias"), rngs=rngs)
  nnx.Embed(V, d, embedding_init=explicit_init(factors, "embedding"), rngs=rngs)
  ```

  Args:
    source: a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel],
      [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] (solved with ``method``), a
      bigram [`NgramModel`][explicit_softmax.ngram.NgramModel] (weights ``log p(j | i)``) or
      [`EmbeddingFactors`][explicit_softmax.adapters.EmbeddingFactors].
    part: ``"kernel"`` ((N, M) weights; for factors the (d, V) head) or
      ``"bias"``; for factors also ``"embedding"`` ((K V, d)).
    method: the solver when ``source`` is statistics (default: ``"newton"`` if
      they hold the Gram matrix, else ``"cooccurrence"``).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.

  Returns:
    ``init(key, shape, dtype=jnp.float32) -> jax.Array``; the key is ignored.

  Raises:
    ValueError: a ``source`` of another type or an unknown ``part``; when called, a
      ``shape`` that differs from the explicit array's.
  """
  if isinstance(source, EmbeddingFactors):
    arrays = {"kernel": source.head, "bias": source.bias, "embedding": source.embedding}
  else:
    model = _fit.as_explicit_model(source, method=method, smoothing=smoothing, ridge=ridge)
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


def init_embedding(factors: EmbeddingFactors, embed: nnx.Embed, head: nnx.Linear) -> None:
  """Writes SVD factors ([`svd_factors`][explicit_softmax.adapters.svd_factors]) into an
  ``nnx.Embed`` and ``nnx.Linear``.

  Flax: the table and the head are written in place as
  [`write_linear`][explicit_softmax.adapters.flax.write_linear] does (cast to their dtype, on
  their device).

  Args:
    factors: [`EmbeddingFactors`][explicit_softmax.adapters.EmbeddingFactors] of a token
      model.
    embed: ``nnx.Embed(K V, d)``: the table, (K V, d).
    head: ``nnx.Linear(d, V)`` with a bias: kernel (d, V) and bias (V,).

  Raises:
    ValueError: a layer of the wrong kind, mismatched shapes, or a head without bias.
  """
  _common.init_embedding(_FLAX, factors, embed, head)


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
                    method: str = "newton", smoothing: float = 0.1, ridge: float = 1e-3,
                    batch_size: int = 256,
                    max_samples: int | str | None = "auto") -> Mapping:
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
    max_samples: the samples to read: ``"auto"`` (``max(8 (N + 1), 4096)``), a
      positive integer, or None to read every row (every batch of a loader); rows
      are spread evenly over arrays, as in
      [`init_head`][explicit_softmax.adapters.flax.init_head].

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
  read = features_fn or (lambda xb: xb)
  budget = _fit.sample_budget(max_samples, n)
  batches = _fit.data_batches(x, y, batch_size, max_samples=budget, labels=_FLAX.labels)
  explicit = _fit.fit_explicit(
      ((_FLAX.to_numpy(read(xb)), np.asarray(yb)) for xb, yb in batches),
      n_features=n, n_classes=m, method=method, smoothing=smoothing, ridge=ridge, hint=HINT,
      max_samples=budget)
  _fit.check_head_shape(explicit, n, m, "bias" in entry, "the Dense entry")
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

  Raises:
    ValueError: a forward pass that fails on ``x``, or that never calls a submodule
      at ``path``.
  """
  target = tuple(p for p in _as_path(path) if p != "params")

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and tuple(context.module.scope.path) == target:
      raise _framework.Captured(args[0])
    return next_fun(*args, **kwargs)

  try:
    with flax.linen.intercept_methods(interceptor):
      module.apply(variables, x, **apply_kwargs)
  except _framework.Captured as hit:
    return hit.value
  except Exception as err:  # Flax's own shape errors, say
    raise _validation.forward_error(module, x, err, f"the submodule {target}") from err
  raise ValueError(
      f"the forward pass of {type(module).__name__} never called a submodule at "
      f"{'/'.join(target)!r}; check the path (e.g. 'Dense_1').")
