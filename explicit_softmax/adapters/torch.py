"""Explicit initialisation of PyTorch models.

Layout: ``torch.nn.Linear`` stores its weight as (out, in), the transpose of the
explicit weights ``W`` (N, M) of ``x W + b``; weights are written transposed,
with ``Tensor.copy_`` inside ``torch.no_grad()``, so the parameter keeps its
identity, dtype, device and ``requires_grad`` flag, stays a leaf
(``grad_fn is None``) and gets no ``.grad``.

The head is found as
[`es.adapters._common.resolve_head`][explicit_softmax.adapters._common.resolve_head] says (an
``nn.Sequential``'s last ``nn.Linear``, ``head=``, ``model.head``); its inputs are read during the
model's own forward with a forward pre-hook, which also stops the forward there.

A head applied at every position of a sequence (a transformer's output layer)
sees features (B, T, N); labels (B, T) (the next token at each position) make
each position one sample.

Example::

    from explicit_softmax.adapters import torch as es_torch
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    es_torch.init_head(model, x_train, y_train)       # explicit output layer
    es_torch.init_layerwise(model, x_train, y_train)  # or every layer

    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
    es_torch.init_head(cnn, images, labels, calibrate=True)  # real-valued conv features
    es_torch.new_head(pretrained, x_new, y_new, n_classes=5)  # transfer: a new head

See ``docs/deep_models.md`` for a transformer (embedding, head, value/output
projections).

Every function here is the one of the same name in
[`es.adapters._common`][explicit_softmax.adapters._common], whose docstring describes all its
arguments; the docstrings here add what is particular to this framework.
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
from explicit_softmax import solvers
from explicit_softmax._typing import ArrayLike, Labels
from explicit_softmax.adapters import _common
from explicit_softmax.adapters import _fit
from explicit_softmax.adapters import _framework
from explicit_softmax.adapters import _layerwise
from explicit_softmax.adapters._fit import DEFAULT_METHOD, Inputs, Source
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

  As [`es.adapters._common.write_linear`][explicit_softmax.adapters._common.write_linear]; the
  weights are stored transposed (``nn.Linear.weight`` is (out, in)).

  Args:
    layer: the dense layer.
    weights: (in, out) array in the ``x @ W`` layout.
    bias: (out,) array, or None to leave the bias as it is.
  """
  _common.write_linear(_TORCH, layer, weights, bias)


def write_explicit(layer: nn.Linear, explicit: model_lib.SoftmaxModel) -> None:
  """Writes a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] into an ``nn.Linear`` (checked,
  in place)."""
  _common.write_explicit(_TORCH, layer, explicit)


# -- public API -----------------------------------------------------------------
def init_head(model: nn.Module, x: Inputs, y: Labels | None = None, *,
              head: str | nn.Linear | None = None,
              features_fn: Callable | None = None, method: str = DEFAULT_METHOD,
              smoothing: float = solvers.DEFAULT_SMOOTHING,
              ridge: float = solvers.DEFAULT_RIDGE,
              batch_size: int = 256, calibrate: bool = False,
              max_samples: int | str | None = "auto") -> model_lib.SoftmaxModel:
  """Fits explicit weights for the dense head of a PyTorch model and writes them in place.

  As [`es.adapters._common.init_head`][explicit_softmax.adapters._common.init_head]: the forward
  runs in eval mode under ``torch.no_grad`` (the modes are restored afterwards), inputs move to the
  model's device and float dtype batch by batch, and the solution is written into the head's weight
  (transposed to (out, in)) and bias.

  Args:
    model: an ``nn.Sequential`` ending in an ``nn.Linear``, a module with a
      dense head, or an ``nn.Linear``.
    x: (T, ...) inputs (numpy or tensor), or with ``y=None`` an iterable of
      ``(x, y)`` batches such as a ``DataLoader``.
    y: (T,) integer labels or (T, M) soft labels.
    head: the ``nn.Linear`` head or its attribute name (default: the last
      module of a Sequential, else ``model.head``).

  Returns:
    The fitted [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] (the model itself is updated in
    place).
  """
  return _common.init_head(
      _TORCH, model, x, y, head=head, features_fn=features_fn, method=method,
      smoothing=smoothing, ridge=ridge, batch_size=batch_size, calibrate=calibrate,
      max_samples=max_samples)


def init_layerwise(model: nn.Sequential, x: Inputs, y: Labels, *,
                   method: str = DEFAULT_METHOD, hidden_method: str | None = None,
                   smoothing: float = solvers.DEFAULT_SMOOTHING,
                   ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 256,
                   rms: float = _layerwise.DEFAULT_HIDDEN_RMS,
                   n_cluster_samples: int = _layerwise.DEFAULT_CLUSTER_SAMPLES,
                   seed: int = 0,
                   max_samples: int | str | None = "auto") -> list[model_lib.SoftmaxModel]:
  """Initialises every ``nn.Linear`` of an ``nn.Sequential`` MLP with explicit weights.

  As [`es.adapters._common.init_layerwise`][explicit_softmax.adapters._common.init_layerwise] (in
  eval mode, without autograd); see
  [`es.adapters.layerwise_init`][explicit_softmax.adapters._layerwise.layerwise_init] for the
  scheme.

  Args:
    model: ``nn.Sequential`` whose last module is an ``nn.Linear``.
    x: (T, ...) inputs (numpy or tensor).
    y: (T,) integer labels.

  Returns:
    The explicit [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] of each dense layer.
  """
  return _common.init_layerwise(
      _TORCH, model, x, y, method=method, hidden_method=hidden_method, smoothing=smoothing,
      ridge=ridge, batch_size=batch_size, rms=rms, n_cluster_samples=n_cluster_samples,
      seed=seed, max_samples=max_samples)


def new_head(model: nn.Module, x: Inputs, y: Labels | None = None, *, n_classes: int,
             head: str | nn.Linear | None = None, features_fn: Callable | None = None,
             method: str = DEFAULT_METHOD,
             smoothing: float = solvers.DEFAULT_SMOOTHING,
             ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 256,
             calibrate: bool = False,
             max_samples: int | str | None = "auto") -> nn.Linear:
  """Replaces the dense head of a (pretrained) model by an explicit head for new classes.

  As [`es.adapters._common.new_head`][explicit_softmax.adapters._common.new_head] (the transfer
  setting): a new ``nn.Linear(in_features, n_classes)`` of the old head's dtype, device and training
  mode receives the explicit solution and takes the old head's place; no other parameter or buffer
  of the model is written.

  Args:
    model: the pretrained model (see [`init_head`][explicit_softmax.adapters.torch.init_head] for
      how the head is found).
    head: the old head or its attribute name (default: as
      [`init_head`][explicit_softmax.adapters.torch.init_head]).

  Returns:
    The new ``nn.Linear`` head (already placed in ``model``).
  """
  return _common.new_head(
      _TORCH, model, x, y, n_classes=n_classes, head=head, features_fn=features_fn,
      method=method, smoothing=smoothing, ridge=ridge, batch_size=batch_size,
      calibrate=calibrate, max_samples=max_samples)


def layer_inputs(model: nn.Module, layer: nn.Module, x: np.ndarray | torch.Tensor, *,
                 batch_size: int = 1024) -> np.ndarray:
  """The inputs that ``model``'s forward feeds to ``layer``, as one numpy array.

  As [`es.adapters._common.layer_inputs`][explicit_softmax.adapters._common.layer_inputs] (eval
  mode, no autograd, the forward stopped at ``layer`` by a forward pre-hook).

  Args:
    model: the model.
    layer: a submodule of it (e.g. a block's value projection).
    x: (T, ...) inputs of the model (numpy or tensor).
    batch_size: rows per forward batch.
  """
  return _common.layer_inputs(_TORCH, model, layer, x, batch_size=batch_size)


def init_value_output(model: nn.Module, x: np.ndarray | torch.Tensor,
                      pairs: Sequence[tuple[nn.Linear, nn.Linear]], targets: ArrayLike, *,
                      ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 256
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
  """Fits the value and output projections of attention layers to carry given targets.

  As [`es.adapters._common.init_value_output`][explicit_softmax.adapters._common.init_value_output].

  Args:
    model: the model; ``x`` goes through its own forward.
    x: (B, T) token ids (numpy or tensor).
    pairs: ``[(value, output), ...]`` of ``nn.Linear`` layers.
    targets: (B, T, D) array, the residual update each position should carry.
    ridge: relative ridge of the map.
    batch_size: rows of ``x`` per forward batch.
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

  When the split into ``W_explicit`` and ``dW`` matters (weight decay, separate
  learning rates): see ``es.adapters``.

  Attributes:
    explicit_weight: (M, N) explicit weights (buffer or ``nn.Parameter``).
    weight_delta: (M, N) trainable correction, zero at initialisation.
    bias: (M,) trainable bias.
  """

  def __init__(self, explicit: Source, *, trainable_explicit: bool = False,
               dtype: torch.dtype | None = None, device=None,
               method: str | None = None,
               smoothing: float = solvers.DEFAULT_SMOOTHING,
               ridge: float = solvers.DEFAULT_RIDGE):
    """Builds the head.

    Args:
      explicit: a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel], or
        [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] to solve.
      trainable_explicit: whether ``W_explicit`` is an ``nn.Parameter``.
      dtype: parameter dtype (default: ``torch.get_default_dtype()``).
      device: parameter device.
      method: the solver when ``explicit`` is statistics, with ``smoothing`` and
        ``ridge`` (see ``es.adapters._fit.as_explicit_model``).
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
  """Writes SVD factors ([`svd_factors`][explicit_softmax.adapters._tokens.svd_factors]) into an
  ``nn.Embedding`` and ``nn.Linear``.

  As [`es.adapters._common.init_embedding`][explicit_softmax.adapters._common.init_embedding].

  Args:
    factors: [`EmbeddingFactors`][explicit_softmax.adapters._tokens.EmbeddingFactors] of a token
      model.
    embed: ``nn.Embedding(K V, d)``.
    head: ``nn.Linear(d, V)`` (weight (V, d) receives ``factors.head.T``).
  """
  _common.init_embedding(_TORCH, factors, embed, head)
