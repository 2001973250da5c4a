"""Layer-wise initialisation of an MLP: class-conditional pseudo-classes per layer.

[`layerwise_init`][explicit_softmax.adapters.layerwise_init] fits every dense layer of an
MLP in turn, each on the activations that really reach it (the paper's "local" use of the explicit
solution); ``class_clusters`` places the pseudo-classes and ``hidden_weights`` centres and scales a
hidden layer.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, Iterator, Sequence

import numpy as np

from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax.adapters import _fit
from explicit_softmax.adapters._fit import as_float_array, fit_explicit

# Rows drawn (per layer) to place the class-conditional cluster centres of the
# layer-wise scheme, and Lloyd iterations to refine them.
DEFAULT_CLUSTER_SAMPLES = 10_000
DEFAULT_KMEANS_ITERATIONS = 10
# Root-mean-square of a hidden layer's pre-activations after layer-wise init:
# the same order as the default (fan-in scaled) initializers produce.
DEFAULT_HIDDEN_RMS = 1.0


@dataclasses.dataclass(frozen=True)
class ClassClusters:
  """Pseudo-classes of a hidden layer: each unit stands for part of one class.

  With ``H >= M`` units, class ``c`` owns units ``c, c + M, c + 2M, ...`` and
  each of them a k-means centre of that class's samples; a sample's pseudo-class
  is the nearest centre among its own class's units. With ``H < M`` units,
  classes share units: class ``c`` maps to unit ``c mod H``.

  Attributes:
    unit_class: (H,) the class each unit belongs to (``H >= M``), or None.
    centres: (H, N) float32 cluster centres (``H >= M``), or None.
    n_units: H.
    n_classes: M.
  """

  unit_class: np.ndarray | None
  centres: np.ndarray | None
  n_units: int
  n_classes: int

  def assign(self, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(rows,) pseudo-class in ``[0, H)`` of each sample."""
    labels = np.asarray(labels, np.int64)
    if self.centres is None:
      return labels % self.n_units
    features = np.asarray(features, np.float32)
    dist = (-2.0 * features @ self.centres.T) + (self.centres**2).sum(axis=1)
    dist[self.unit_class[None, :] != labels[:, None]] = np.inf
    return np.argmin(dist, axis=1)


def class_clusters(features: np.ndarray, labels: np.ndarray, n_units: int, n_classes: int,
                   *, seed: int = 0, iterations: int = 10) -> ClassClusters:
  """Places ``n_units`` class-conditional cluster centres (k-means within each class).

  Args:
    features: (T, N) sample of the layer's inputs.
    labels: (T,) integer class labels of the sample.
    n_units: H, the layer's width.
    n_classes: M.
    seed: seed of the k-means initial centres.
    iterations: Lloyd iterations.

  Returns:
    A [`ClassClusters`][explicit_softmax.adapters.ClassClusters].

  Raises:
    ValueError: if a class that owns units has no sample.
  """
  if n_units < n_classes:
    return ClassClusters(None, None, n_units, n_classes)
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels, np.int64)
  rng = np.random.default_rng(seed)
  unit_class = np.arange(n_units) % n_classes
  centres = np.zeros((n_units, features.shape[1]), np.float32)
  for c in range(n_classes):
    units = np.flatnonzero(unit_class == c)
    members = features[labels == c]
    if len(members) == 0:
      raise ValueError(
          f"class {c} has no sample among the {len(labels)} rows used to place the "
          "layer-wise cluster centres; pass data covering every class, or raise "
          "n_cluster_samples.")
    centres[units] = _kmeans(members, len(units), rng, iterations)
  return ClassClusters(unit_class, centres, n_units, n_classes)


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iterations: int) -> np.ndarray:
  """Lloyd's k-means from k distinct random samples; empty clusters are reseeded."""
  centres = x[rng.choice(len(x), size=k, replace=len(x) < k)].copy()
  sq = (x**2).sum(axis=1)
  for _ in range(iterations):
    assign = np.argmin(sq[:, None] - 2.0 * x @ centres.T + (centres**2).sum(axis=1), axis=1)
    counts = np.bincount(assign, minlength=k)
    sums = np.zeros_like(centres)
    np.add.at(sums, assign, x)
    empty = counts == 0
    centres[~empty] = sums[~empty] / counts[~empty, None]
    if empty.any():
      centres[empty] = x[rng.choice(len(x), size=int(empty.sum()))]
  return centres


def hidden_weights(explicit: model_lib.SoftmaxModel, sample: np.ndarray,
                   rms: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """Hidden-layer weights from a pseudo-class softmax: centred, then scaled.

  Subtracting each weight row's mean over the units (and the bias's mean) leaves
  the softmax unchanged but centres every sample's logits, so a ReLU after the
  layer passes exactly the pseudo-classes scored above the sample's average.
  Weights and bias are then scaled so the pre-activations on ``sample`` have
  root-mean-square ``rms``, which keeps the next layer in a trainable range
  (the next explicit fit is invariant to this scale).

  Args:
    explicit: the pseudo-class softmax model, (N, H).
    sample: (T, N) inputs of the layer, to measure the scale.
    rms: target root-mean-square of the pre-activations.

  Returns:
    ``(W, b)``: (N, H) and (H,) float32.
  """
  w = explicit.weights - explicit.weights.mean(axis=1, keepdims=True)
  b = explicit.bias - explicit.bias.mean()
  z = np.asarray(sample, np.float32) @ w + b
  scale = rms / max(float(np.sqrt(np.mean(z.astype(np.float64)**2))), 1e-12)
  return (w * scale).astype(np.float32), (b * scale).astype(np.float32)


def layerwise_init(features_of: Callable[[int, np.ndarray | slice], np.ndarray],
                   labels: np.ndarray, widths: Sequence[tuple[int, int]],
                   write: Callable[[int, np.ndarray, np.ndarray], None], *,
                   method: str = "newton", hidden_method: str | None = None,
                   smoothing: float = 0.1, ridge: float = 1e-3, batch_size: int = 256,
                   rms: float = 1.0, n_cluster_samples: int = 10_000, seed: int = 0,
                   hint: str = "",
                   max_samples: int | str | None = "auto") -> list[model_lib.SoftmaxModel]:
  """Fits the dense layers of an MLP one after another with explicit weights.

  Scheme ("local" explicit solutions with class-conditional pseudo-targets):

  1. Layer ``l`` (width ``H``) sees the activations that the already
     initialised layers ``< l`` really produce (raw inputs for the first layer;
     the previous ReLU's outputs, which are nonnegative, after that).
  2. A hidden layer is fitted as a softmax over ``H`` pseudo-classes: each
     class owns ``~H/M`` units, placed by k-means on that class's inputs
     ([`class_clusters`][explicit_softmax.adapters.class_clusters]); a sample's target is its nearest centre within
     its own class. Every unit thus detects one mode of one class, so the
     pseudo-classes refine the labels and the layer's ReLU outputs keep (and
     split) the class information. With ``H < M``, classes share units.
  3. The hidden weights are row-centred and rescaled
     ([`hidden_weights`][explicit_softmax.adapters.hidden_weights]).
  4. The last layer is fitted to the real class labels.

  Each layer reads only the rows its fit needs: ``max_samples`` (by default
  ``max(8 (N_l + 1), 4096)`` for a layer with ``N_l`` inputs, as for a head in
  [`es.adapters.torch.init_head`][explicit_softmax.adapters.torch.init_head]), spread evenly over
  the data; the cluster centres are placed on (a sample of) those rows.

  Args:
    features_of: ``features_of(l, rows)`` returns the (rows, N_l) inputs of
      dense layer ``l`` for the given data rows (an index array or a slice),
      computed with the layers ``< l`` as they are now.
    labels: (T,) integer class labels of all rows.
    widths: ``(in_features, out_features)`` of each dense layer, in order.
    write: ``write(l, W, b)`` stores (N_l, H_l) weights and (H_l,) bias.
    method: solver of the output layer: ``"newton"`` (default: a ridge regression,
      best for dense activations) or ``"cooccurrence"``.
    hidden_method: solver of the hidden layers (default: ``method``).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    batch_size: rows per forward batch.
    rms: root-mean-square of each hidden layer's pre-activations.
    n_cluster_samples: rows drawn to place the cluster centres of each layer.
    seed: seed of the row sample and of k-means.
    hint: advice appended to the error for negative features.
    max_samples: rows each layer's fit reads: ``"auto"``
      (``max(8 (N_l + 1), 4096)`` for a layer with ``N_l`` inputs), a positive
      integer, or None (every row).

  Returns:
    The explicit [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] of each layer (hidden ones
    before centring and scaling); ``info["init"]`` holds the rows it read, its budget and the
    seconds its layer took.

  Raises:
    ValueError: labels that are not (T,) integers in range, no dense layer, a class
      without a sample among the rows that place the cluster centres, non-finite layer
      inputs (negative ones with ``"cooccurrence"``).
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.dtype.kind not in "iu":
    raise ValueError(
        "layer-wise initialisation needs (T,) integer class labels (pseudo-classes are "
        f"clusters within each class); got shape {labels.shape}, dtype {labels.dtype}.")
  if not widths:
    raise ValueError("the model has no dense layer to initialise.")
  n_classes = widths[-1][1]
  _validation.check_label_range(int(labels.min()), int(labels.max()), n_classes)
  hidden_method = method if hidden_method is None else hidden_method
  t = len(labels)
  fitted = []
  for layer, (n_in, n_out) in enumerate(widths):
    start = time.perf_counter()
    last = layer == len(widths) - 1
    what = f"the inputs of dense layer {layer}" + (" (the head)" if last else "")
    budget = _fit.sample_budget(max_samples, n_in)
    rows = _fit.even_rows(t, budget)
    read = np.arange(t) if rows is None else rows
    clusters = None
    if not last:
      # A fresh generator per layer: with every row read, each layer gets the same sample.
      rng = np.random.default_rng(seed)
      sample_rows = np.sort(rng.choice(read, size=min(len(read), int(n_cluster_samples)),
                                       replace=False))
      sample = as_float_array(features_of(layer, sample_rows))
      _validation.check_layer_inputs(sample, n_in, 0, what)
      clusters = class_clusters(sample, labels[sample_rows], n_out, n_classes,
                                seed=seed + layer)
    targets = functools.partial(_targets, labels, clusters)
    explicit = fit_explicit(_batches(features_of, layer, t, rows, batch_size, targets),
                            n_features=n_in, n_classes=n_out,
                            method=method if last else hidden_method,
                            smoothing=smoothing, ridge=ridge, hint=hint, what=what)
    write(layer, *((explicit.weights, explicit.bias) if last
                   else hidden_weights(explicit, sample, rms)))
    fitted.append(_fit.with_init_info(explicit, rows=len(read), max_samples=budget,
                                      seconds=time.perf_counter() - start))
  return fitted


def _batches(features_of: Callable, layer: int, n_rows: int, rows: np.ndarray | None,
             batch_size: int, targets: Callable) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """``(inputs, targets)`` of dense layer ``layer`` for the given rows (None: all), batch by batch."""
  for chunk in _fit.row_chunks(n_rows, rows, batch_size):
    feats = as_float_array(features_of(layer, chunk))
    yield feats, targets(feats, chunk)


def _targets(labels: np.ndarray, clusters: ClassClusters | None, feats: np.ndarray,
             rows: np.ndarray | slice) -> np.ndarray:
  """A batch's targets: its labels (the head), or its pseudo-classes (a hidden layer)."""
  return labels[rows] if clusters is None else clusters.assign(feats, labels[rows])
