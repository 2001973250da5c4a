"""Explicit initialisation of PyTorch models.

Layout: ``torch.nn.Linear`` stores its weight as (out, in), the transpose of the
explicit weights ``W`` (N, M) of ``x W + b``; weights are written transposed,
with ``Tensor.copy_`` inside ``torch.no_grad()``, so the parameter keeps its
identity, dtype, device and ``requires_grad`` flag, stays a leaf
(``grad_fn is None``) and gets no ``.grad``.

The head of a model is, in order: the model itself if it is an ``nn.Linear``
(the data are then its features); ``head=``, a layer or the name of an attribute;
the last module of an ``nn.Sequential`` (the features: the modules before it);
``model.head``. Its inputs are read during the model's own forward (in eval mode,
under ``torch.no_grad``) with a forward pre-hook, which also stops the forward there.

A head applied at every position of a sequence (a transformer's output layer)
sees features (B, T, N); labels (B, T) (the next token at each position) make
each position one sample.

Example:

```python
from explicit_softmax.adapters import torch as es_torch
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
es_torch.init_head(model, x_train, y_train)       # explicit output layer
es_torch.init_layerwise(model, x_train, y_train)  # or every layer

cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
es_torch.init_head(cnn, images, labels, calibrate=True)  # real-valued conv features
es_torch.new_head(pretrained, x_new, y_new, n_classes=5)  # transfer: a new head
```

See ``docs/deep_models.md`` for a transformer (embedding, head, value/output
projections).

The Flax adapter ([`es.adapters.flax`][explicit_softmax.adapters.flax]) offers the head,
layer-wise, transfer and embedding operations under the same names and runs the same
implementation, so both find heads, check inputs, fit and write alike; a paragraph of each
docstring here says what is particular to PyTorch.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import numpy as np

try:
  import torch
except ImportError as err:
  raise ImportError(
      "explicit_softmax.adapters.torch needs PyTorch, an optional dependency: pip install "
      "'explicit-softmax[torch]'") from err
from torch import nn
from torch.nn import functional as F

from explicit_softmax import model as model_lib
from explicit_softmax._typing import ArrayLike, Labels
from explicit_softmax.adapters import _common
from explicit_softmax.adapters import _fit
from explicit_softmax.adapters import _framework
from explicit_softmax.adapters._fit import Inputs, Source
from explicit_softmax.adapters._tokens import EmbeddingFactors

HINT = _framework.hint("nn.ReLU, nn.Softplus, nn.Sigmoid or nn.Softmax")


def _copy(param: torch.Tensor, value: np.ndarray) -> None:
  """In-place copy keeping dtype, device, identity and ``requires_grad``; no graph."""
  with torch.no_grad():
    param.copy_(torch.from_numpy(np.array(value, order="C")))  # a writable copy


class _Torch(_framework.Framework):
  """Reading features (forward pre-hooks, ``torch.no_grad``) and writing ``nn.Linear``."""

  linear, module, sequential, embedding = nn.Linear, nn.Module, nn.Sequential, nn.Embedding
  prefix, bias_flag, relu, hint = "nn", "bias", "nn.ReLU()", HINT
  kernel_layout = "its weight is stored transposed, (out, in)"

  @contextlib.contextmanager
  def inference_mode(self, model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, running statistics) and no autograd; restores the modes."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
      with torch.no_grad():
        yield
    finally:
      for module, training in modes:
        module.training = training

  @contextlib.contextmanager
  def capturing(self, layer: nn.Module) -> Iterator[None]:
    def hook(module, args):
      raise _framework.Captured(args[0])
    handle = layer.register_forward_pre_hook(hook)
    try:
      yield
    finally:
      handle.remove()

  def layers(self, model: nn.Sequential) -> list:
    return list(model)

  def to_input(self, x, model: nn.Module) -> torch.Tensor:
    """A batch as a tensor on the model's device; floats in the model's dtype."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    ref = next((p for p in list(model.parameters()) + list(model.buffers())
                if p.is_floating_point()), None)
    if ref is None:
      return t
    if t.is_floating_point() and t.dtype != ref.dtype:
      t = t.to(ref.dtype)
    return t.to(ref.device)

  def call(self, fn: Callable, xb, model: nn.Module):
    """``fn`` on the batch; torch's shape errors ("mat1 and mat2 ...") as ValueErrors."""
    try:
      return fn(self.to_input(xb, model))
    except RuntimeError as err:
      raise ValueError(
          f"the forward pass of {type(model).__name__} failed on inputs of shape "
          f"{tuple(np.shape(xb))}: {err}. Pass inputs of the shape the model takes.") from None

  def to_numpy(self, value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
      value = value.detach().to("cpu")
      if value.is_floating_point() and value.dtype not in (torch.float32, torch.float64):
        value = value.float()
      value = value.numpy()
    return _fit.as_float_array(value)

  def labels(self, y) -> np.ndarray:
    return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)

  def take(self, x, rows):
    if isinstance(x, torch.Tensor) and isinstance(rows, np.ndarray):
      return x[torch.as_tensor(rows, device=x.device)]
    return x[rows]

  def dense_shape(self, layer: nn.Linear) -> tuple[int, int]:
    return layer.in_features, layer.out_features

  def has_bias(self, layer: nn.Linear) -> bool:
    return layer.bias is not None

  def write_dense(self, layer: nn.Linear, weights, bias) -> None:
    _copy(layer.weight, weights.T)
    if bias is not None:
      _copy(layer.bias, bias)

  def new_dense(self, old: nn.Linear, n_classes: int) -> nn.Linear:
    layer = nn.Linear(old.in_features, n_classes, bias=True, dtype=old.weight.dtype,
                      device=old.weight.device)
    layer.train(old.training)
    return layer

  def replace(self, model: nn.Module, old: nn.Module, new: nn.Module) -> bool:
    found = False
    for parent in model.modules():
      for name, child in list(parent.named_children()):
        if child is old:
          setattr(parent, name, new)  # Sequential and ModuleList accept their index names
          found = True
    return found

  def table_shape(self, embed: nn.Embedding) -> tuple[int, ...]:
    return tuple(embed.weight.shape)

  def write_table(self, embed: nn.Embedding, table) -> None:
    _copy(embed.weight, table)


_TORCH = _Torch()


# -- writing weights ------------------------------------------------------------
def write_linear(layer: nn.Linear, weights: ArrayLike, bias: ArrayLike | None = None) -> None:
  """Writes (in, out) ``weights`` and (out,) ``bias`` into an ``nn.Linear`` in place.

  Everything is checked before anything is written: a refused call leaves the
  layer as it was.

  PyTorch: ``nn.Linear.weight`` is (out, in), so the weights are stored
  transposed; they are copied inside ``torch.no_grad()``, so the parameter keeps its
  identity, dtype, device and ``requires_grad`` flag, stays a leaf and gets no ``.grad``.

  Args:
    layer: the dense layer.
    weights: (in, out) array in the ``x @ W`` layout.
    bias: (out,) array, or None to leave the bias as it is.

  Raises:
    ValueError: for mismatched shapes, NaN or inf values, or a nonzero bias for a
      layer without one.
  """
  _common.write_linear(_TORCH, layer, weights, bias)


def write_explicit(layer: nn.Linear, explicit: model_lib.SoftmaxModel) -> None:
  """Writes a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] into an ``nn.Linear`` (checked,
  in place).

  As [`write_linear`][explicit_softmax.adapters.torch.write_linear] with the model's weights and
  bias, after checking that they fit the layer.

  Args:
    layer: the dense layer.
    explicit: explicit weights (N, M) and bias (M,) for a layer ``N -> M``.

  Raises:
    ValueError: a layer that is not dense, mismatched shapes, or a nonzero bias for a
      layer without one.
  """
  _common.write_explicit(_TORCH, layer, explicit)


# -- public API -----------------------------------------------------------------
def init_head(model: nn.Module, x: Inputs, y: Labels | None = None, *,
              head: str | nn.Linear | None = None,
              features_fn: Callable | None = None, method: str = "newton",
              smoothing: float = 0.1, ridge: float = 1e-3,
              batch_size: int = 256, calibrate: bool = False,
              max_samples: int | str | None = "auto") -> model_lib.SoftmaxModel:
  """Fits explicit weights for the dense head of a PyTorch model and writes them in place.

  The features entering the head are computed batch by batch with the model's own forward pass, or
  with ``features_fn``, and accumulated into
  [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats]; the explicit solution
  ([`es.solve`][explicit_softmax.solvers.solve]) is written into the head. The head is, in order:
  the model itself if it is an ``nn.Linear`` (the data are then the features); ``head``; the last
  module of an ``nn.Sequential`` (the features: the modules before it); ``model.head``. A head
  applied at every position of a sequence sees features (B, T, N); labels (B, T) make each position
  one sample.

  Only as many samples are read as the solution needs: by default
  ``max(8 (N + 1), 4096)`` for a head with ``N`` inputs (the head's held-out loss
  against samples read is measured in ``docs/deep_models.md``). From arrays, the
  rows are spread evenly over the data (row ``i T / k`` of ``T`` for ``k`` rows,
  enough rows for the budget); from a loader, its first batches, the last one cut
  at the budget, and no batch after it is drawn.

  PyTorch: the forward runs in eval mode under ``torch.no_grad`` (every module's
  training flag is restored afterwards) and is stopped at the head by a forward
  pre-hook; each batch moves to the device of the model's parameters, floats to
  their dtype; the solution is written into the head's weight (transposed to
  (out, in)) and bias as [`write_linear`][explicit_softmax.adapters.torch.write_linear] does.

  Args:
    model: an ``nn.Sequential`` ending in an ``nn.Linear``, a module with a
      dense head, or an ``nn.Linear`` (then the data are the features).
    x: (T, ...) inputs of the model (numpy arrays or tensors, batched here); or,
      with ``y=None``, an iterable of ``(x, y)`` batches such as a ``DataLoader``.
    y: (T,) integer labels or (T, M) soft labels, M the head's output width.
    head: the ``nn.Linear`` head or its attribute name (default: the last
      module of an ``nn.Sequential``, else ``model.head``).
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
    ValueError: no dense head, a forward pass that fails on the inputs, non-finite
      features, negative features with ``method="cooccurrence"`` (with advice),
      mismatched shapes.
  """
  return _common.init_head(
      _TORCH, model, x, y, head=head, features_fn=features_fn, method=method,
      smoothing=smoothing, ridge=ridge, batch_size=batch_size, calibrate=calibrate,
      max_samples=max_samples)


def init_layerwise(model: nn.Sequential, x: Inputs, y: Labels, *,
                   method: str = "newton", hidden_method: str | None = None,
                   smoothing: float = 0.1, ridge: float = 1e-3, batch_size: int = 256,
                   rms: float = 1.0, n_cluster_samples: int = 10_000, seed: int = 0,
                   max_samples: int | str | None = "auto") -> list[model_lib.SoftmaxModel]:
  """Initialises every ``nn.Linear`` of an ``nn.Sequential`` MLP with explicit weights.

  Layer by layer, each dense layer is fitted on the activations the layers before
  it really produce: hidden layers to class-conditional pseudo-classes (k-means
  centres within each class), then row-centred and rescaled; the last layer to
  the labels. See [`es.adapters.layerwise_init`][explicit_softmax.adapters.layerwise_init] for
  the scheme. Each layer reads only the rows its fit needs (``max_samples``),
  spread evenly over the data.

  PyTorch: the layers run in eval mode under ``torch.no_grad`` (the training flags
  are restored afterwards), and each layer's weights are written as
  [`write_linear`][explicit_softmax.adapters.torch.write_linear] does.

  Args:
    model: ``nn.Sequential`` whose last module is an ``nn.Linear``; every
      ``nn.Linear``'s input must be real (nonnegative with ``method="cooccurrence"``).
    x: (T, ...) inputs (numpy arrays or tensors).
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
      _TORCH, model, x, y, method=method, hidden_method=hidden_method, smoothing=smoothing,
      ridge=ridge, batch_size=batch_size, rms=rms, n_cluster_samples=n_cluster_samples,
      seed=seed, max_samples=max_samples)


def new_head(model: nn.Module, x: Inputs, y: Labels | None = None, *, n_classes: int,
             head: str | nn.Linear | None = None, features_fn: Callable | None = None,
             method: str = "newton", smoothing: float = 0.1, ridge: float = 1e-3,
             batch_size: int = 256, calibrate: bool = False,
             max_samples: int | str | None = "auto") -> nn.Linear:
  """Replaces the dense head of a (pretrained) model by an explicit head for new classes.

  The transfer setting: a network trained on some classes gets a new output
  layer for other classes (labels ``0 .. n_classes-1``). The features entering
  the old head are read with the model's own forward pass, a new dense layer
  ``in_features -> n_classes`` receives the explicit solution, and it takes the
  old head's place. No other parameter of the model is written: fine-tuning
  starts from the pretrained features and an explicit head, as in
  linear-probe-then-fine-tune (Kumar et al. 2022), with the probe in closed form.
  The samples read are as in [`init_head`][explicit_softmax.adapters.torch.init_head].

  PyTorch: the forward runs as in [`init_head`][explicit_softmax.adapters.torch.init_head] (eval
  mode, ``torch.no_grad``, modes restored); the new ``nn.Linear(in_features, n_classes)`` has the
  old head's dtype, device and training mode and replaces it wherever the model holds it (an
  attribute, or an entry of an ``nn.Sequential`` or ``nn.ModuleList``); no other parameter or
  buffer of the model is written.

  Args:
    model: the pretrained model (see [`init_head`][explicit_softmax.adapters.torch.init_head] for
      how the head is found).
    x: (T, ...) inputs, or with ``y=None`` an iterable of ``(x, y)`` batches.
    y: (T,) integer labels in ``[0, n_classes)`` or (T, n_classes) soft labels.
    n_classes: the new head's output width, the number of new classes.
    head: the old ``nn.Linear`` head or its attribute name (default: as
      [`init_head`][explicit_softmax.adapters.torch.init_head]).
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
    The new ``nn.Linear`` head (already placed in ``model``).

  Raises:
    ValueError: a bare ``nn.Linear`` as the model (it has no place for a new head), a
      head that is not a submodule of the model, ``n_classes`` not a positive integer,
      or any error of [`init_head`][explicit_softmax.adapters.torch.init_head].

  References:
    Kumar, Raghunathan, Jones, Ma and Liang (2022), "Fine-Tuning can Distort
    Pretrained Features and Underperform Out-of-Distribution", ICLR.
  """
  return _common.new_head(
      _TORCH, model, x, y, n_classes=n_classes, head=head, features_fn=features_fn,
      method=method, smoothing=smoothing, ridge=ridge, batch_size=batch_size,
      calibrate=calibrate, max_samples=max_samples)


def layer_inputs(model: nn.Module, layer: nn.Module, x: np.ndarray | torch.Tensor, *,
                 batch_size: int = 1024) -> np.ndarray:
  """The inputs that ``model``'s forward feeds to ``layer``, as one numpy array.

  The forward runs batch by batch and is stopped at ``layer``, so nothing after
  it runs.

  PyTorch: in eval mode under ``torch.no_grad`` (the training flags are restored
  afterwards), the forward stopped by a forward pre-hook on ``layer``.

  Args:
    model: the model.
    layer: a submodule of it (e.g. a block's value projection).
    x: (T, ...) inputs of the model (numpy array or tensor).
    batch_size: rows per forward batch.

  Returns:
    (T, ..., N) array: ``layer``'s first positional input for every row (a
    sequence model's layer sees every position).

  Raises:
    ValueError: ``layer`` not a module, an empty ``x``, or a forward that never calls
      ``layer``.
  """
  return _common.layer_inputs(_TORCH, model, layer, x, batch_size=batch_size)


def init_value_output(model: nn.Module, x: np.ndarray | torch.Tensor,
                      pairs: Sequence[tuple[nn.Linear, nn.Linear]], targets: ArrayLike, *,
                      ridge: float = 1e-3, batch_size: int = 256
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
  """Fits the value and output projections of attention layers to carry given targets.

  For each ``(value, output)`` pair in order (earlier blocks first), the inputs
  the value projection really sees on ``x`` are read with the model's forward
  (after the pairs before it were written), and ``value`` / ``output`` receive
  the balanced factors of the ridge map from those inputs to ``targets``
  ([`es.adapters.value_output_weights`][explicit_softmax.adapters.value_output_weights]); their
  biases are set to zero. An attention layer then adds to each position the
  attention-weighted mean of the targets of the positions it attends to. With
  ``targets`` derived from context co-occurrences
  ([`es.adapters.context_bag_weights`][explicit_softmax.adapters.context_bag_weights]), that is
  the count solution's vote of the context tokens for the next one.

  PyTorch: the inputs are read as [`layer_inputs`][explicit_softmax.adapters.torch.layer_inputs]
  does, and the weights written as [`write_linear`][explicit_softmax.adapters.torch.write_linear]
  does. See ``docs/deep_models.md`` for a transformer.

  Args:
    model: the model; ``x`` goes through its own forward.
    x: (B, T) token ids (or any inputs of the model; numpy array or tensor).
    pairs: ``[(value, output), ...]`` of ``nn.Linear`` layers: ``value``
      (N -> inner), ``output`` (inner -> D).
    targets: (B, T, D) array, the residual update each position should carry.
    ridge: relative ridge of the map.
    batch_size: rows of ``x`` per forward batch.

  Returns:
    The written ``(W_V, W_O)`` of each pair, in the ``x @ W`` layout.

  Raises:
    ValueError: no pairs, a pair that is not two dense layers, widths that do not chain
      (value out = output in, output out = target width), targets that do not match the
      value projection's inputs, or non-finite inputs.
  """
  return _common.init_value_output(_TORCH, model, x, pairs, targets, ridge=ridge,
                                   batch_size=batch_size)


class ResidualHead(nn.Module):
  """A dense head ``logits = x W_explicit + x dW + b`` around explicit weights.

  Weights use the ``nn.Linear`` layout (out, in). ``W_explicit`` comes from the
  explicit solver; ``dW`` starts at zero, so the head starts exactly at the
  explicit model, and ``b`` starts at its bias. With ``trainable_explicit=False``
  the explicit weights are a buffer (saved in the ``state_dict``, moved by
  ``.to()``, never returned by ``parameters()``), so only ``dW`` and ``b`` train.

  Under plain Adam or SGD (no weight decay), training ``dW`` with ``W_explicit``
  frozen follows exactly the trajectory of training ``W`` itself from
  ``W_explicit``; the split matters with weight decay on ``dW`` (it then pulls
  towards the explicit solution instead of towards zero), with separate learning
  rates, or to keep and inspect the learned correction.

  Attributes:
    explicit_weight: (M, N) explicit weights (buffer or ``nn.Parameter``).
    weight_delta: (M, N) trainable correction, zero at initialisation.
    bias: (M,) trainable bias.
  """

  def __init__(self, explicit: Source, *, trainable_explicit: bool = False,
               dtype: torch.dtype | None = None, device=None,
               method: str | None = None, smoothing: float = 0.1, ridge: float = 1e-3):
    """Builds the head.

    Args:
      explicit: a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel],
        [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] to solve, or a bigram
        [`NgramModel`][explicit_softmax.ngram.NgramModel] (weights ``log p(j | i)``).
      trainable_explicit: whether ``W_explicit`` is an ``nn.Parameter``.
      dtype: parameter dtype (default: ``torch.get_default_dtype()``).
      device: parameter device.
      method: the solver when ``explicit`` is statistics (default: ``"newton"`` if
        they hold the Gram matrix, else ``"cooccurrence"``).
      smoothing: additive smoothing of the co-occurrence solution.
      ridge: relative ridge of the Newton solution.

    Raises:
      ValueError: ``explicit`` of another type.
    """
    super().__init__()
    model = _fit.as_explicit_model(explicit, method=method, smoothing=smoothing,
                                      ridge=ridge)
    kw = {"dtype": dtype or torch.get_default_dtype(), "device": device}
    self.in_features, self.out_features = model.n_features, model.n_classes
    self.trainable_explicit = trainable_explicit
    weight = torch.tensor(model.weights.T, **kw)
    if trainable_explicit:
      self.explicit_weight = nn.Parameter(weight)
    else:
      self.register_buffer("explicit_weight", weight)
    self.weight_delta = nn.Parameter(torch.zeros_like(weight))
    self.bias = nn.Parameter(torch.tensor(model.bias, **kw))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, self.explicit_weight + self.weight_delta, self.bias)

  def extra_repr(self) -> str:
    return (f"in_features={self.in_features}, out_features={self.out_features}, "
            f"trainable_explicit={self.trainable_explicit}")


def init_embedding(factors: EmbeddingFactors, embed: nn.Embedding, head: nn.Linear) -> None:
  """Writes SVD factors ([`svd_factors`][explicit_softmax.adapters.svd_factors]) into an
  ``nn.Embedding`` and ``nn.Linear``.

  PyTorch: the table and the head are written in place as
  [`write_linear`][explicit_softmax.adapters.torch.write_linear] does (the head's weight
  transposed).

  Args:
    factors: [`EmbeddingFactors`][explicit_softmax.adapters.EmbeddingFactors] of a token
      model.
    embed: ``nn.Embedding(K V, d)``: the table, (K V, d).
    head: ``nn.Linear(d, V)`` with a bias: weight (V, d) receives ``factors.head.T``.

  Raises:
    ValueError: a layer of the wrong kind, mismatched shapes, or a head without bias.
  """
  _common.init_embedding(_TORCH, factors, embed, head)
