"""The per-framework part of the adapters: reading features and writing layers.

``Framework`` is what an adapter (``adapters/torch.py``,
``adapters/flax.py``) implements; [`es.adapters._common`][explicit_softmax.adapters._common]
holds everything else.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ContextManager

import numpy as np

from explicit_softmax import _validation
from explicit_softmax.adapters import _fit


class Captured(Exception):
  """Raised by a layer being watched (``Framework.capturing``), carrying its input."""

  def __init__(self, value: Any):
    super().__init__("layer input captured")
    self.value = value


def hint(activations: str) -> str:
  """The advice for negative features (``method="cooccurrence"``), naming ``activations``."""
  return (
      f"End the feature extractor with a nonnegative activation ({activations}) right "
      "before the head, or pass a features_fn that returns nonnegative features; raw "
      "inputs must be nonnegative too (e.g. pixels scaled to [0, 1], not standardised).")


class Framework(abc.ABC):
  """The per-framework part of the adapters: reading features and writing layers.

  Attributes:
    linear: the dense layer class (``nn.Linear``, ``nnx.Linear``).
    module: the base class of layers.
    sequential: the class of sequential models.
    embedding: the embedding table class.
    prefix: how the framework's classes are named in messages (``nn``, ``nnx``).
    bias_flag: the dense constructor's bias argument (``bias``, ``use_bias``).
    relu: a ReLU as written in a model definition, for messages.
    linear_args: extra constructor arguments of a dense layer, for messages.
    kernel_layout: how the dense layer stores its weights, for messages.
    hint: advice for negative features (see ``hint``).
  """

  linear: type
  module: type
  sequential: type
  embedding: type
  prefix: str
  bias_flag: str
  relu: str
  linear_args: str = ""
  kernel_layout: str = "its kernel is (in, out)"
  hint: str

  def name(self, cls: type) -> str:
    """``cls`` as written in messages, e.g. ``nn.Linear``."""
    return f"{self.prefix}.{cls.__name__}"

  # -- reading features --------------------------------------------------------
  @abc.abstractmethod
  def inference_mode(self, model: Any) -> ContextManager:
    """Runs ``model`` in eval mode (no dropout, running statistics), then restores it."""

  @abc.abstractmethod
  def capturing(self, layer: Any) -> ContextManager:
    """Makes ``layer`` raise ``Captured`` with its first input instead of running."""

  @abc.abstractmethod
  def layers(self, model: Any) -> list:
    """The layers of a sequential ``model``, in order."""

  def to_input(self, x: Any, model: Any) -> Any:
    """A batch of inputs as ``model`` takes it."""
    return x

  def call(self, fn: Callable, xb: Any, model: Any) -> Any:
    """``fn`` (``model`` or a part of it) on a batch of inputs; the framework's own error
    for inputs of the wrong shape (JAX's "dot_general requires contracting dimensions
    ...") as a ValueError that names the model and the inputs' shape."""
    try:
      return fn(self.to_input(xb, model))
    except (TypeError, RuntimeError) as err:
      raise _validation.forward_error(model, xb, err) from err

  def to_numpy(self, value: Any) -> np.ndarray:
    """Features as a numpy array (low-precision floats as float32)."""
    return _fit.as_float_array(value)

  def labels(self, y: Any) -> np.ndarray:
    """Labels as a numpy array."""
    return np.asarray(y)

  def take(self, x: Any, rows: np.ndarray | slice) -> Any:
    """Rows of the inputs by slice or index array."""
    return x[rows]

  # -- describing and writing layers ---------------------------------------------
  @abc.abstractmethod
  def dense_shape(self, layer: Any) -> tuple[int, int]:
    """``(in_features, out_features)`` of a dense layer."""

  @abc.abstractmethod
  def has_bias(self, layer: Any) -> bool:
    """Whether a dense layer has a bias."""

  @abc.abstractmethod
  def write_dense(self, layer: Any, weights: np.ndarray, bias: np.ndarray | None) -> None:
    """Writes checked (in, out) ``weights`` and ``bias`` (None: kept) in place."""

  @abc.abstractmethod
  def new_dense(self, old: Any, n_classes: int) -> Any:
    """A dense layer ``in_features -> n_classes`` with a bias, like ``old`` (dtype, device)."""

  @abc.abstractmethod
  def replace(self, model: Any, old: Any, new: Any) -> bool:
    """Puts ``new`` wherever ``model`` holds ``old``; whether it held it."""

  @abc.abstractmethod
  def table_shape(self, embed: Any) -> tuple[int, ...]:
    """The shape of an embedding table."""

  @abc.abstractmethod
  def write_table(self, embed: Any, table: np.ndarray) -> None:
    """Writes a checked table into an embedding in place."""
