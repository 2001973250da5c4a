"""Explicit initialisation of PyTorch models.

Layout: ``torch.nn.Linear`` stores its weight as (out, in), the transpose of the
explicit weights ``W`` (N, M) of ``x W + b``; weights are written transposed,
with ``Tensor.copy_`` inside ``torch.no_grad()``, so the parameter keeps its
identity, dtype, device and ``requires_grad`` flag, stays a leaf
(``grad_fn is None``) and gets no ``.grad``.

Conventions for finding the head (:func:`init_head`):

* an ``nn.Sequential`` whose last module is an ``nn.Linear``: the features are
  the output of everything before it;
* a module with a dense head (``head=<the nn.Linear>``, or an attribute named
  ``head``): the features are the head's inputs during the model's own forward
  pass (captured with a forward pre-hook, which also stops the forward there);
* an explicit ``features_fn`` plus ``head``;
* an ``nn.Linear`` alone: the data are the features.

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
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np

try:
  import torch
except ImportError as err:
  raise ImportError(
      "explicit_softmax.adapters.torch needs PyTorch, an optional dependency: pip install "
      "'explicit-softmax[torch]'") from err
from torch import nn
from torch.nn import functional as F

from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax import solvers
from explicit_softmax._typing import ArrayLike, Labels
from explicit_softmax.adapters import _common
from explicit_softmax.adapters._common import Inputs

HINT = (
    "End the feature extractor with a nonnegative activation (nn.ReLU, nn.Softplus, "
    "nn.Sigmoid or nn.Softmax) right before the head, or pass a features_fn that "
    "returns nonnegative features; raw inputs must be nonnegative too (e.g. pixels "
    "scaled to [0, 1], not standardised).")


class _Captured(Exception):
  """Raised by the forward pre-hook, carrying the head's input."""

  def __init__(self, value):
    super().__init__("head input captured")
    self.value = value


# -- reading features -----------------------------------------------------------
@contextlib.contextmanager
def _inference_mode(model: nn.Module):
  """Eval mode (no dropout, running statistics) and no autograd; restores the modes."""
  modes = [(module, module.training) for module in model.modules()]
  model.eval()
  try:
    with torch.no_grad():
      yield
  finally:
    for module, training in modes:
      module.training = training


def _reference_parameter(model: nn.Module) -> torch.Tensor | None:
  for tensor in list(model.parameters()) + list(model.buffers()):
    if tensor.is_floating_point():
      return tensor
  return None


def _to_input(x, model: nn.Module) -> torch.Tensor:
  """A batch as a tensor on the model's device; floats in the model's dtype."""
  ref = _reference_parameter(model)
  t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
  if ref is None:
    return t
  if t.is_floating_point() and t.dtype != ref.dtype:
    t = t.to(ref.dtype)
  return t.to(ref.device)


def _to_numpy(t) -> np.ndarray:
  if isinstance(t, torch.Tensor):
    t = t.detach().to("cpu")
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
      t = t.float()
    t = t.numpy()
  return _common.as_float_array(t)


def _labels(y) -> np.ndarray:
  return y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


def _take(x, rows):
  """Rows of an array or tensor by slice or numpy index array."""
  if isinstance(x, torch.Tensor) and isinstance(rows, np.ndarray):
    return x[torch.as_tensor(rows, device=x.device)]
  return x[rows]


def _check_linear(layer, what: str) -> nn.Linear:
  if not isinstance(layer, nn.Linear):
    raise ValueError(
        f"{what} is a {type(layer).__name__}, not a dense nn.Linear; explicit weights can "
        "only be written into a dense (Linear) output layer. Put an nn.Linear last or "
        "pass head=<the nn.Linear>.")
  return layer


def _resolve_head(model: nn.Module, head) -> tuple[nn.Linear, Callable | None]:
  """The dense head of ``model`` and, for Sequential models, the feature function."""
  if isinstance(model, nn.Linear) and head in (None, model, "head"):
    return model, (lambda x: x)
  if isinstance(head, nn.Module):
    return _check_linear(head, "head"), None
  if isinstance(head, str):
    if not hasattr(model, head):
      raise ValueError(f"{type(model).__name__} has no attribute {head!r} to use as head.")
    return _check_linear(getattr(model, head), f"model.{head}"), None
  if isinstance(model, nn.Sequential):
    if len(model) == 0:
      raise ValueError("the nn.Sequential model is empty.")
    return _check_linear(model[-1], "the last module of the nn.Sequential"), model[:-1]
  if isinstance(getattr(model, "head", None), nn.Module):
    return _check_linear(model.head, "model.head"), None
  raise ValueError(
      f"cannot find the dense head of {type(model).__name__}: it is not an nn.Sequential "
      "and has no 'head' attribute. Pass head=<the nn.Linear> (and optionally "
      "features_fn=<a function from inputs to the head's inputs>).")


def _shape_checked(fn: Callable, xb, model: nn.Module):
  """``fn`` on the batch; torch's shape errors ("mat1 and mat2 ...") as ValueErrors."""
  try:
    return fn(_to_input(xb, model))
  except RuntimeError as err:
    raise ValueError(
        f"the forward pass of {type(model).__name__} failed on inputs of shape "
        f"{tuple(np.shape(xb))}: {err}. Pass inputs of the shape the model takes.") from None


def _head_features(model: nn.Module, head: nn.Module, features_fn) -> Callable:
  """A function from a batch of inputs to the (numpy) features entering ``head``
  (any submodule: its first positional input in the model's own forward)."""
  if features_fn is not None:
    return lambda xb: _to_numpy(_shape_checked(features_fn, xb, model))

  def hook(module, args):
    raise _Captured(args[0])

  def captured(xb):
    handle = head.register_forward_pre_hook(hook)
    try:
      _shape_checked(model, xb, model)
    except _Captured as hit:
      return _to_numpy(hit.value)
    finally:
      handle.remove()
    raise ValueError(
        f"the forward pass of {type(model).__name__} never called its "
        f"{type(head).__name__} {'head' if isinstance(head, nn.Linear) else 'layer'}; pass "
        "features_fn=<a function from inputs to the head's inputs>, or a layer of this model.")
  return captured


# -- writing weights ------------------------------------------------------------
def _copy(param: torch.Tensor, value: np.ndarray) -> None:
  """In-place copy keeping dtype, device, identity and ``requires_grad``; no graph."""
  with torch.no_grad():
    param.copy_(torch.from_numpy(np.array(value, order="C")))  # a writable copy


def write_linear(layer: nn.Linear, weights: ArrayLike, bias: ArrayLike | None = None) -> None:
  """Writes (in, out) ``weights`` and (out,) ``bias`` into an ``nn.Linear`` in place.

  Args:
    layer: the dense layer (weight (out, in)).
    weights: (in, out) array in the ``x @ W`` layout; stored transposed.
    bias: (out,) array, or None to leave the bias as it is.

  Raises:
    ValueError: for mismatched shapes, NaN or inf values, or a nonzero bias for a
      layer without one.
  """
  layer = _check_linear(layer, "the layer")
  weights = _validation.check_finite("the weights", weights)
  if weights.shape != (layer.in_features, layer.out_features):
    raise ValueError(
        f"weights of shape {weights.shape} (in, out) do not fit nn.Linear"
        f"({layer.in_features}, {layer.out_features}), whose weight is (out, in) = "
        f"{tuple(layer.weight.shape)}.")
  bias = _common.checked_bias(bias, layer.out_features, layer.bias is not None, "bias")
  # Checked before anything is written: a refused call leaves the layer as it was.
  _copy(layer.weight, weights.T)
  if bias is not None:
    _copy(layer.bias, bias)


def write_explicit(layer: nn.Linear, explicit: model_lib.SoftmaxModel) -> None:
  """Writes a :class:`SoftmaxModel` into an ``nn.Linear`` (checked, in place)."""
  layer = _check_linear(layer, "the layer")
  _common.check_head_shape(explicit, layer.in_features, layer.out_features,
                           layer.bias is not None, "the nn.Linear")
  write_linear(layer, explicit.weights, explicit.bias)


# -- public API -----------------------------------------------------------------
def init_head(model: nn.Module, x: Inputs, y: Labels | None = None, *,
              head: str | nn.Linear | None = None,
              features_fn: Callable | None = None, method: str = _common.DEFAULT_METHOD,
              smoothing: float = solvers.DEFAULT_SMOOTHING,
              ridge: float = solvers.DEFAULT_RIDGE,
              batch_size: int = 1024, calibrate: bool = False) -> model_lib.SoftmaxModel:
  """Fits explicit weights for the dense head of a PyTorch model and writes them in place.

  The features entering the head are computed batch by batch with the model's
  own forward pass (in eval mode under ``torch.no_grad``; the modes are restored
  afterwards), or with ``features_fn``, and accumulated into
  :class:`SoftmaxStats`; the explicit solution is written into the head's
  weight (transposed to (out, in)) and bias.

  Args:
    model: an ``nn.Sequential`` ending in an ``nn.Linear``, a module with a
      dense head, or an ``nn.Linear``.
    x: (T, ...) inputs (numpy or tensor; moved to the model's device and float
      dtype batch by batch); or, with ``y=None``, an iterable of ``(x, y)``
      batches such as a ``DataLoader``.
    y: (T,) integer labels or (T, M) soft labels, M the head's output width.
    head: the ``nn.Linear`` head or its attribute name (default: the last
      module of a Sequential, else ``model.head``).
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
      model, linear, features_fn or seq_features, x, y, linear.out_features, method=method,
      smoothing=smoothing, ridge=ridge, batch_size=batch_size, calibrate=calibrate)
  write_explicit(linear, explicit)
  return explicit


def _fit_on_head_inputs(model, linear: nn.Linear, features_fn, x, y, n_classes: int, *,
                        method, smoothing, ridge, batch_size, calibrate):
  """The explicit model of the features entering ``linear`` (eval mode, no autograd)."""
  get_features = _head_features(model, linear, features_fn)
  with _inference_mode(model):
    return _common.fit_explicit(
        ((get_features(xb), _labels(yb)) for xb, yb in _common.data_batches(x, y, batch_size)),
        n_features=linear.in_features, n_classes=n_classes, method=method,
        smoothing=smoothing, ridge=ridge, hint=HINT, calibrate=calibrate)


def init_layerwise(model: nn.Sequential, x: Inputs, y: Labels, *, method: str = _common.DEFAULT_METHOD,
                   hidden_method: str | None = None,
                   smoothing: float = solvers.DEFAULT_SMOOTHING,
                   ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 1024,
                   rms: float = _common.DEFAULT_HIDDEN_RMS,
                   n_cluster_samples: int = _common.DEFAULT_CLUSTER_SAMPLES,
                   seed: int = 0) -> list[model_lib.SoftmaxModel]:
  """Initialises every ``nn.Linear`` of an ``nn.Sequential`` MLP with explicit weights.

  Layer by layer, each dense layer is fitted on the activations the modules
  before it really produce (in eval mode, without autograd): hidden layers to
  class-conditional pseudo-classes, the last to the labels. See
  :func:`explicit_softmax.adapters.layerwise_init` for the scheme.

  Args:
    model: ``nn.Sequential`` whose last module is an ``nn.Linear``; every dense
      layer's input must be real (nonnegative with ``method="cooccurrence"``).
    x: (T, ...) inputs (numpy or tensor).
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
  if not isinstance(model, nn.Sequential):
    raise ValueError(
        f"init_layerwise needs an nn.Sequential MLP; got {type(model).__name__}. Build the "
        "model as nn.Sequential(nn.Linear(...), nn.ReLU(), ..., nn.Linear(...)).")
  if len(model) == 0:
    raise ValueError("the nn.Sequential model is empty.")
  _check_linear(model[-1], "the last module of the nn.Sequential")
  dense = [i for i, module in enumerate(model) if isinstance(module, nn.Linear)]
  linears = [layer for layer in model if isinstance(layer, nn.Linear)]
  widths = [(layer.in_features, layer.out_features) for layer in linears]

  def features_of(layer, rows):
    return _to_numpy(model[:dense[layer]](_to_input(_take(x, rows), model)))

  def write(layer, w, b):
    write_linear(model[dense[layer]], w, b)

  with _inference_mode(model):
    return _common.layerwise_init(
        features_of, _labels(y), widths, write, method=method,
        hidden_method=hidden_method, smoothing=smoothing, ridge=ridge,
        batch_size=batch_size, rms=rms, n_cluster_samples=n_cluster_samples, seed=seed,
        hint=HINT)


def _replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
  """Puts ``new`` where ``old`` is registered in ``model`` (every place it occurs)."""
  found = False
  for parent in model.modules():
    for name, child in list(parent.named_children()):
      if child is old:
        setattr(parent, name, new)  # Sequential and ModuleList accept their index names too
        found = True
  if not found:
    raise ValueError(
        f"the head {type(old).__name__} is not a submodule of {type(model).__name__}; pass "
        "head=<an nn.Linear inside the model> or its attribute name.")


def new_head(model: nn.Module, x: Inputs, y: Labels | None = None, *, n_classes: int,
             head: str | nn.Linear | None = None, features_fn: Callable | None = None,
             method: str = _common.DEFAULT_METHOD,
             smoothing: float = solvers.DEFAULT_SMOOTHING,
             ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 1024,
             calibrate: bool = False) -> nn.Linear:
  """Replaces the dense head of a (pretrained) model by an explicit head for new classes.

  The transfer setting: a network trained on some classes gets a new output
  layer for other classes (labels ``0 .. n_classes-1``). The features entering
  the old head are read with the model's own forward pass (eval mode, no
  autograd; the modes are restored), a new ``nn.Linear(in_features,
  n_classes)`` of the old head's dtype and device receives the explicit
  solution, and it takes the old head's place. No other parameter or buffer of
  the model is written: fine-tuning starts from the pretrained features and an
  explicit head, as in linear-probe-then-fine-tune (Kumar et al. 2022), with the
  probe in closed form.

  Args:
    model: the pretrained model (see :func:`init_head` for how the head is found).
    x: (T, ...) inputs, or with ``y=None`` an iterable of ``(x, y)`` batches.
    y: (T,) labels in ``[0, n_classes)`` or (T, n_classes) soft labels.
    n_classes: the new head's output width.
    head: the old head or its attribute name (default: as :func:`init_head`).
    features_fn: optional function from inputs to the head's inputs.
    method: as :func:`init_head`.
    smoothing: as :func:`init_head`.
    ridge: as :func:`init_head`.
    batch_size: as :func:`init_head`.
    calibrate: as :func:`init_head`.

  Returns:
    The new ``nn.Linear`` head (already placed in ``model``).

  References:
    Kumar, Raghunathan, Jones, Ma and Liang (2022), "Fine-Tuning can Distort
    Pretrained Features and Underperform Out-of-Distribution", ICLR.
  """
  n_classes = _common.check_new_classes(n_classes)
  old, seq_features = _resolve_head(model, head)
  if old is model:
    raise ValueError(
        "the model is a bare nn.Linear, which has no place to put a new head; fit one with "
        "init_head(nn.Linear(in_features, n_classes), features, y) instead.")
  explicit = _fit_on_head_inputs(
      model, old, features_fn or seq_features, x, y, n_classes, method=method,
      smoothing=smoothing, ridge=ridge, batch_size=batch_size, calibrate=calibrate)
  layer = nn.Linear(old.in_features, n_classes, bias=True, dtype=old.weight.dtype,
                    device=old.weight.device)
  layer.train(old.training)
  write_explicit(layer, explicit)
  _replace_module(model, old, layer)
  return layer


def layer_inputs(model: nn.Module, layer: nn.Module, x: np.ndarray | torch.Tensor, *,
                 batch_size: int = 1024) -> np.ndarray:
  """The inputs that ``model``'s forward feeds to ``layer``, as one numpy array.

  The forward runs batch by batch in eval mode without autograd (modes
  restored) and is stopped at ``layer``, so nothing after it runs.

  Args:
    model: the model.
    layer: a submodule of it (e.g. a block's value projection).
    x: (T, ...) inputs of the model.
    batch_size: rows per forward batch.

  Returns:
    (T, ..., N) array: ``layer``'s first positional input for every row.
  """
  if not isinstance(layer, nn.Module):
    raise ValueError(f"layer must be a submodule of the model; got {type(layer).__name__}.")
  get = _head_features(model, layer, None)
  with _inference_mode(model):
    parts = [get(_take(x, rows)) for rows in _common.iterate_rows(len(x), batch_size)]
  if not parts:
    raise ValueError("x is empty; pass at least one row.")
  return np.concatenate(parts)


def init_value_output(model: nn.Module, x: np.ndarray | torch.Tensor,
                      pairs: Sequence[tuple[nn.Linear, nn.Linear]], targets: ArrayLike, *,
                      ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 256
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
  """Fits the value and output projections of attention layers to carry given targets.

  For each ``(value, output)`` pair in order (earlier blocks first), the inputs
  the value projection really sees on ``x`` are read with the model's forward
  (after the pairs before it were written), and ``value`` / ``output`` receive
  the balanced factors of the ridge map from those inputs to ``targets``
  (:func:`explicit_softmax.adapters._common.value_output_weights`); their biases
  are set to zero. An attention layer then adds to each position the
  attention-weighted mean of the targets of the positions it attends to. With
  ``targets`` derived from context co-occurrences
  (:func:`explicit_softmax.adapters._common.context_bag_weights`), that is the
  count solution's vote of the context tokens for the next one.

  Args:
    model: the model; ``x`` goes through its own forward.
    x: (B, T) token ids (or any inputs of the model).
    pairs: ``[(value, output), ...]`` of ``nn.Linear`` layers: ``value`` (N ->
      inner), ``output`` (inner -> D).
    targets: (B, T, D) array, the residual update each position should carry.
    ridge: relative ridge of the map.
    batch_size: rows of ``x`` per forward batch.

  Returns:
    The written ``(W_V, W_O)`` of each pair, in the ``x @ W`` layout.
  """
  pairs = list(pairs)
  if not pairs:
    raise ValueError("pairs is empty; pass [(value, output), ...] nn.Linear pairs.")
  targets = _common.as_float_array(targets)
  written = []
  for i, pair in enumerate(pairs):
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
      raise ValueError(f"pairs[{i}] must be a (value, output) pair of nn.Linear layers; got "
                       f"{type(pair).__name__}.")
    value = _check_linear(pair[0], f"pairs[{i}][0] (the value projection)")
    output = _check_linear(pair[1], f"pairs[{i}][1] (the output projection)")
    if value.out_features != output.in_features or targets.shape[-1] != output.out_features:
      raise ValueError(
          f"pairs[{i}]: the value projection maps {value.in_features} -> {value.out_features}, "
          f"the output projection {output.in_features} -> {output.out_features}, and the "
          f"targets have width {targets.shape[-1]}; they must chain (value out = output in, "
          "output out = target width).")
    inputs = layer_inputs(model, value, x, batch_size=batch_size)
    feats, tgt = _common.flatten_positions(inputs, targets, value.in_features, 0,
                                           "the value projection's inputs")
    _validation.check_layer_inputs(feats, value.in_features, 0, "the value projection's inputs")
    if len(tgt) != len(feats) or tgt.ndim != 2:
      raise ValueError(
          f"targets of shape {targets.shape} do not match the value projection's inputs "
          f"{inputs.shape}; pass one target row per position, (B, T, D).")
    w_v, w_o = _common.value_output_weights(feats, tgt, value.out_features, ridge=ridge)
    write_linear(value, w_v, None if value.bias is None else np.zeros(value.out_features))
    write_linear(output, w_o, None if output.bias is None else np.zeros(output.out_features))
    written.append((w_v, w_o))
  return written


class ResidualHead(nn.Module):
  """A dense head ``logits = x W_explicit + x dW + b`` around explicit weights.

  Weights use the ``nn.Linear`` layout (out, in). ``W_explicit`` comes from the
  explicit solver; ``dW`` starts at zero, so the head starts exactly at the
  explicit model, and ``b`` starts at its bias. With ``trainable_explicit=False``
  the explicit weights are a buffer (saved in the ``state_dict``, moved by
  ``.to()``, never returned by ``parameters()``), so only ``dW`` and ``b`` train.

  Note: under plain Adam or SGD (no weight decay), training ``dW`` with
  ``W_explicit`` frozen follows exactly the trajectory of training ``W`` itself
  from ``W_explicit`` (the updates depend only on the gradient, which is the
  same). The split matters with weight decay on ``dW`` (it then pulls towards
  the explicit solution instead of towards zero), with separate learning rates,
  or to keep and inspect the learned correction.

  Attributes:
    explicit_weight: (M, N) explicit weights (buffer or ``nn.Parameter``).
    weight_delta: (M, N) trainable correction, zero at initialisation.
    bias: (M,) trainable bias.
  """

  def __init__(self, explicit: _common.Source, *, trainable_explicit: bool = False,
               dtype: torch.dtype | None = None, device=None,
               method: str | None = None,
               smoothing: float = solvers.DEFAULT_SMOOTHING,
               ridge: float = solvers.DEFAULT_RIDGE):
    """Builds the head.

    Args:
      explicit: a :class:`SoftmaxModel`, or :class:`SoftmaxStats` to solve.
      trainable_explicit: whether ``W_explicit`` is an ``nn.Parameter``.
      dtype: parameter dtype (default: ``torch.get_default_dtype()``).
      device: parameter device.
      method: the solver when ``explicit`` is statistics (None: Newton if they
        hold the Gram matrix, else co-occurrence).
      smoothing: the co-occurrence smoothing, when ``explicit`` is statistics.
      ridge: the Newton ridge, when ``explicit`` is statistics.
    """
    super().__init__()
    model = _common.as_explicit_model(explicit, method=method, smoothing=smoothing,
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


def init_embedding(factors: _common.EmbeddingFactors, embed: nn.Embedding,
                   head: nn.Linear) -> None:
  """Writes SVD factors (:func:`svd_factors`) into an ``nn.Embedding`` and ``nn.Linear``.

  Args:
    factors: :class:`EmbeddingFactors` of a token model.
    embed: ``nn.Embedding(K V, d)``.
    head: ``nn.Linear(d, V)`` (weight (V, d) receives ``factors.head.T``).

  Raises:
    ValueError: mismatched shapes, or a head without bias.
  """
  if not isinstance(embed, nn.Embedding):
    raise ValueError(f"embed must be an nn.Embedding; got {type(embed).__name__}.")
  if tuple(embed.weight.shape) != factors.embedding.shape:
    raise ValueError(
        f"the nn.Embedding table is {tuple(embed.weight.shape)} but the factors' embedding "
        f"is {factors.embedding.shape} (K V, d); create nn.Embedding("
        f"{factors.embedding.shape[0]}, {factors.embedding.shape[1]}).")
  head = _check_linear(head, "head")
  if head.bias is None:
    raise ValueError(
        "the head has no bias but the factors carry one; create it with bias=True.")
  write_linear(head, factors.head, factors.bias)
  _copy(embed.weight, factors.embedding)
