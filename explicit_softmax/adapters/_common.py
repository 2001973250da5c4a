"""Framework-free math shared by the Flax and PyTorch adapters.

Everything here works on numpy arrays, so the Flax and PyTorch adapters differ
only in how they read features out of a model and write weights into it:

* :func:`fit_explicit` streams ``(features, labels)`` batches into
  :class:`SoftmaxStats` (checking that the features are finite) and solves
  for explicit weights ``W`` (N, M), ``b`` (M,) in the ``x W + b`` layout.
* :func:`layerwise_init` fits every dense layer of an MLP in turn, each on the
  activations that really reach it (the paper's "local" use of the explicit
  solution; the scheme is described there).
* :func:`svd_factors` factorises the centred explicit weights of a token model
  into an embedding table and an output head, the best rank-``d`` approximation
  of the count solution (Eckart-Young).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Sequence, Union

import numpy as np

from explicit_softmax import _validation
from explicit_softmax import calibration
from explicit_softmax import model as model_lib
from explicit_softmax import solvers
from explicit_softmax import statistics
from explicit_softmax._typing import ArrayLike

# Solver used when fitting a layer from features. The one-step Newton solution
# (a ridge regression of the centred targets) suits dense activations: on the
# ReLU features of a random 784-256 MNIST layer it starts at ~89% test accuracy
# and CE ~0.37, where the co-occurrence solution, a tempered product of experts,
# starts nearly flat (CE ~2.06) and fine-tunes no better than default init
# (benchmarks/bench_init.py). Token (one-hot) models use "cooccurrence", exact there.
DEFAULT_METHOD = "newton"
# Rows drawn (per layer) to place the class-conditional cluster centres of the
# layer-wise scheme, and Lloyd iterations to refine them.
DEFAULT_CLUSTER_SAMPLES = 10_000
DEFAULT_KMEANS_ITERATIONS = 10
# Root-mean-square of a hidden layer's pre-activations after layer-wise init:
# the same order as the default (fan-in scaled) initializers produce.
DEFAULT_HIDDEN_RMS = 1.0
# Largest side of a matrix factorised with a dense SVD; beyond, a truncated
# (ARPACK) SVD computes only the d leading factors.
_DENSE_SVD_MAX = 4096


# -- features -----------------------------------------------------------------
# Model inputs: an array or tensor (with labels y), or an iterable of (x, y)
# batches such as a DataLoader (with y=None).
Inputs = Union[ArrayLike, Iterable]
# What explicit weights come from: a fitted model, or statistics to solve.
Source = Union[model_lib.SoftmaxModel, statistics.SoftmaxStats]


def as_float_array(x) -> np.ndarray:
  """``x`` as a numpy array, low-precision floats (bfloat16, float16) as float32."""
  x = np.asarray(x)
  if x.dtype.kind not in "biuf" or (x.dtype.kind == "f" and x.dtype.itemsize < 4):
    x = x.astype(np.float32)
  return x


def checked_bias(bias, out_features: int, layer_has_bias: bool,
                 flag: str) -> np.ndarray | None:
  """The bias to write into a dense layer, checked before anything is written.

  Args:
    bias: (out,) array, or None to leave the layer's bias as it is.
    out_features: the layer's output width.
    layer_has_bias: whether the layer has a bias parameter.
    flag: the framework's constructor argument for it (``bias`` / ``use_bias``).

  Returns:
    The checked array, or None when there is nothing to write (no bias given,
    or a zero bias for a layer without one).
  """
  if bias is None:
    return None
  bias = _validation.check_finite("the bias", bias)
  if not layer_has_bias:
    if np.any(bias != 0):
      raise ValueError(
          f"the layer has no bias ({flag}=False) but the explicit bias is nonzero; "
          f"create it with {flag}=True or use method='cooccurrence'.")
    return None
  if bias.shape != (out_features,):
    raise ValueError(f"bias of shape {bias.shape} does not fit ({out_features},).")
  return bias


def flatten_positions(features: np.ndarray, labels: np.ndarray, n_features: int, batch: int,
                      what: str = "the features reaching the head"
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Sequence features (batch, time, ..., N) and labels (batch, time, ...) as rows.

  A sequence model (a transformer) applies its head to every position, so each
  position is one sample: features (B, T, N) with labels (B, T) become (B T, N)
  and (B T,). Two-dimensional features pass unchanged.

  Raises:
    ValueError: labels whose shape is not the features' leading shape.
  """
  if features.ndim <= 2:
    return features, labels
  if features.shape[-1] != n_features or labels.shape[:features.ndim - 1] != features.shape[:-1]:
    raise ValueError(
        f"{what} have shape {features.shape} (batch {batch}) but the labels have shape "
        f"{labels.shape}; a head applied at every position needs features (..., "
        f"{n_features}) and labels of the features' leading shape {features.shape[:-1]} "
        "(e.g. the next token at each position).")
  rows = int(np.prod(features.shape[:-1]))
  return (features.reshape(rows, n_features),
          labels.reshape((rows,) + labels.shape[features.ndim - 1:]))


def iterate_rows(n_rows: int, batch_size: int) -> Iterable[slice]:
  """Consecutive row slices of at most ``batch_size`` rows."""
  batch_size = _validation.check_integer("batch_size", batch_size)
  for start in range(0, n_rows, batch_size):
    yield slice(start, min(start + batch_size, n_rows))


def data_batches(x, y, batch_size: int) -> Iterable:
  """``(x, y)`` batches from arrays or tensors, or the caller's iterable (``y`` None)."""
  if y is None:
    if hasattr(x, "shape"):  # an array or tensor, not an iterable of batches
      raise ValueError(
          "y is missing: pass labels (init_head(model, x, y)), or an iterable of (x, y) "
          "batches (such as a DataLoader) as x with y=None.")
    return x
  if isinstance(x, (list, np.ndarray)):  # tensors keep their own type checks
    x = np.asarray(x)
    _validation.check_real_dtype(x.dtype)
  n = len(x)
  _validation.check_same_length(n, len(y))
  return ((x[rows], y[rows]) for rows in iterate_rows(n, batch_size))


def accumulate_statistics(batches: Iterable, *, n_features: int, n_classes: int,
                          gram: bool = False,
                          what: str = "the features reaching the head"
                          ) -> statistics.SoftmaxStats:
  """Streams ``(features, labels)`` batches into :class:`SoftmaxStats`.

  Samples whose features are all zero (e.g. every ReLU unit off) are ordinary
  samples: they inform the bias.

  Args:
    batches: iterable of ``(features, y)``: (rows, N) arrays and (rows,) labels
      or (rows, M) soft labels.
    n_features: N, the head's input width.
    n_classes: M, the head's output width.
    gram: also collect the Gram matrix (for ``method="newton"``).
    what: what the features are, for messages.

  Returns:
    The statistics of all batches.

  Raises:
    ValueError: for bad features (see :func:`explicit_softmax._validation.check_layer_inputs`) or no batches.
  """
  stats = statistics.SoftmaxStats.empty(n_features, n_classes, gram=gram)
  for i, (features, y) in enumerate(batches):
    features, y = flatten_positions(as_float_array(features), np.asarray(y), n_features, i, what)
    _validation.check_layer_inputs(features, n_features, i, what)
    _validation.check_same_length(len(features), len(y), where=f"batch {i}")
    stats = stats.update(features, y)
  if stats.n_samples == 0:
    raise ValueError("no data: the batches were empty. Pass at least one (x, y) batch.")
  return stats


def fit_explicit(batches: Iterable, *, n_features: int, n_classes: int,
                 method: str = DEFAULT_METHOD, smoothing: float = solvers.DEFAULT_SMOOTHING,
                 ridge: float = solvers.DEFAULT_RIDGE, hint: str = "",
                 what: str = "the features reaching the head",
                 calibrate: bool = False) -> model_lib.SoftmaxModel:
  """Explicit weights for a head fed by ``batches`` of ``(features, y)``.

  Args:
    batches: iterable of ``(features, y)`` numpy batches.
    n_features: N, the head's input width.
    n_classes: M, the head's output width.
    method: ``"newton"`` or ``"cooccurrence"`` (see :func:`explicit_softmax.solve`).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    hint: advice appended to the error for negative features (cooccurrence).
    what: what the features are, for messages.
    calibrate: then fit a temperature and class biases to the cross-entropy on
      the same rows (``explicit_softmax.calibrate`` with ``l2 = 1/T``, which
      keeps classes absent from the rows finite). The one-step Newton solution
      is a ridge regression whose scale grows with the number of classes: on the
      128 LayerNorm features of a character transformer (65 classes) it starts
      at a held-out CE of ~7.5 nats, above the uniform 4.17; calibrated, ~2.8
      (benchmarks/bench_deep.py). The rows are kept in memory for this.

  Returns:
    The fitted :class:`SoftmaxModel` (``weights`` (N, M), ``bias`` (M,)).
  """
  _validation.check_choice("method", method, solvers.METHODS)
  calibrate = _validation.check_bool("calibrate", calibrate)
  kept = []
  if calibrate:
    batches = list(batches)
    for i, (features, y) in enumerate(batches):
      kept.append(flatten_positions(as_float_array(features), np.asarray(y), n_features, i,
                                    what))
    batches = kept
  stats = accumulate_statistics(batches, n_features=n_features, n_classes=n_classes,
                                gram=(method == "newton"), what=what)
  if method == "cooccurrence":
    _validation.check_nonnegative_features(
        stats.min_feature, what, f"{hint} Or use method='newton', which takes any real "
        "features.".lstrip())
  explicit = solvers.solve(stats, method, smoothing=smoothing, ridge=ridge)
  if calibrate:
    x = np.concatenate([f for f, _ in kept])
    y = np.concatenate([t for _, t in kept])
    explicit = calibration.calibrate(explicit, x, y, l2=1.0 / len(x))
  return explicit


def as_explicit_model(source, *, method: str | None = None,
                      smoothing: float = solvers.DEFAULT_SMOOTHING,
                      ridge: float = solvers.DEFAULT_RIDGE) -> model_lib.SoftmaxModel:
  """A :class:`SoftmaxModel` from a model (returned as is) or from statistics (solved).

  With ``method=None`` statistics are solved with ``"newton"`` if they hold the
  Gram matrix, else with ``"cooccurrence"``.
  """
  if isinstance(source, model_lib.SoftmaxModel):
    return source
  if isinstance(source, statistics.SoftmaxStats):
    if method is None:
      method = "newton" if source.gram is not None else "cooccurrence"
    return solvers.solve(source, method, smoothing=smoothing, ridge=ridge)
  raise ValueError(
      f"expected a SoftmaxModel or SoftmaxStats; got {type(source).__name__}. Fit one "
      "with explicit_softmax.fit(X, y) or SoftmaxStats.from_data(X, y).")


def check_head_shape(explicit: model_lib.SoftmaxModel, in_features: int,
                     out_features: int, has_bias: bool, what: str) -> None:
  """Checks that explicit weights fit a dense layer ``in_features -> out_features``.

  Raises:
    ValueError: mismatched shapes, or a nonzero explicit bias for a layer
      without bias.
  """
  if (explicit.n_features, explicit.n_classes) != (in_features, out_features):
    raise ValueError(
        f"the explicit weights map {explicit.n_features} features to "
        f"{explicit.n_classes} classes, but {what} maps {in_features} -> {out_features}. "
        "Fit the explicit model on the features that reach this layer, with "
        "n_classes equal to its output width.")
  if not has_bias and np.any(explicit.bias != 0):
    raise ValueError(
        f"the explicit model has a nonzero bias but {what} has no bias. Give the layer "
        "a bias (use_bias=True / bias=True) or use method='cooccurrence', whose bias "
        "is zero.")


# -- layer-wise initialisation -------------------------------------------------
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
                   *, seed: int = 0,
                   iterations: int = DEFAULT_KMEANS_ITERATIONS) -> ClassClusters:
  """Places ``n_units`` class-conditional cluster centres (k-means within each class).

  Args:
    features: (T, N) sample of the layer's inputs.
    labels: (T,) integer class labels of the sample.
    n_units: H, the layer's width.
    n_classes: M.
    seed: seed of the k-means initial centres.
    iterations: Lloyd iterations.

  Returns:
    A :class:`ClassClusters`.

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
                   rms: float = DEFAULT_HIDDEN_RMS) -> tuple[np.ndarray, np.ndarray]:
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
                   method: str = DEFAULT_METHOD, hidden_method: str | None = None,
                   smoothing: float = solvers.DEFAULT_SMOOTHING,
                   ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 1024,
                   rms: float = DEFAULT_HIDDEN_RMS,
                   n_cluster_samples: int = DEFAULT_CLUSTER_SAMPLES, seed: int = 0,
                   hint: str = "") -> list[model_lib.SoftmaxModel]:
  """Fits the dense layers of an MLP one after another with explicit weights.

  Scheme ("local" explicit solutions with class-conditional pseudo-targets):

  1. Layer ``l`` (width ``H``) sees the activations that the already
     initialised layers ``< l`` really produce (raw inputs for the first layer;
     the previous ReLU's outputs, which are nonnegative, after that).
  2. A hidden layer is fitted as a softmax over ``H`` pseudo-classes: each
     class owns ``~H/M`` units, placed by k-means on that class's inputs
     (:func:`class_clusters`); a sample's target is its nearest centre within
     its own class. Every unit thus detects one mode of one class, so the
     pseudo-classes refine the labels and the layer's ReLU outputs keep (and
     split) the class information. With ``H < M``, classes share units.
  3. The hidden weights are row-centred and rescaled (:func:`hidden_weights`).
  4. The last layer is fitted to the real class labels.

  Args:
    features_of: ``features_of(l, rows)`` returns the (rows, N_l) inputs of
      dense layer ``l`` for the given data rows (an index array or a slice),
      computed with the layers ``< l`` as they are now.
    labels: (T,) integer class labels of all rows.
    widths: ``(in_features, out_features)`` of each dense layer, in order.
    write: ``write(l, W, b)`` stores (N_l, H_l) weights and (H_l,) bias.
    method: solver of the output layer.
    hidden_method: solver of the hidden layers (default: ``method``).
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.
    batch_size: rows per forward batch.
    rms: root-mean-square of each hidden layer's pre-activations.
    n_cluster_samples: rows drawn to place the cluster centres of each layer.
    seed: seed of the row sample and of k-means.
    hint: advice appended to the error for negative features.

  Returns:
    The explicit :class:`SoftmaxModel` of each layer (hidden ones before
    centring and scaling).
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
  rng = np.random.default_rng(seed)
  sample_rows = np.sort(rng.choice(t, size=min(t, int(n_cluster_samples)), replace=False))
  fitted = []
  for layer, (n_in, n_out) in enumerate(widths):
    last = layer == len(widths) - 1
    what = f"the inputs of dense layer {layer}" + (" (the head)" if last else "")
    if last:
      targets = lambda feats, rows: labels[rows]
    else:
      sample = as_float_array(features_of(layer, sample_rows))
      _validation.check_layer_inputs(sample, n_in, 0, what)
      clusters = class_clusters(sample, labels[sample_rows], n_out, n_classes,
                                seed=seed + layer)
      def targets(feats, rows, clusters=clusters):
        return clusters.assign(feats, labels[rows])

    def batches(layer=layer, targets=targets):
      for rows in iterate_rows(t, batch_size):
        feats = as_float_array(features_of(layer, rows))
        yield feats, targets(feats, rows)

    explicit = fit_explicit(batches(), n_features=n_in, n_classes=n_out,
                            method=method if last else hidden_method,
                            smoothing=smoothing, ridge=ridge, hint=hint, what=what)
    if last:
      w, b = explicit.weights, explicit.bias
    else:
      w, b = hidden_weights(explicit, sample, rms)
    write(layer, w, b)
    fitted.append(explicit)
  return fitted


# -- embedding factorisation ---------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EmbeddingFactors:
  """Rank-``d`` factors of a token model's explicit weights.

  Logits of a sample with context feature rows ``r_1..r_K`` (``r_k = k V +
  token_k``) are ``(sum_k embedding[r_k]) @ head + bias``.

  Attributes:
    embedding: (K V, d) float32 embedding table (K = 1: (V, d)).
    head: (d, V) float32 output kernel in the ``x @ W`` layout (Flax); a
      ``torch.nn.Linear`` stores its transpose.
    bias: (V,) float32 output bias.
    singular_values: all singular values of the centred weights, float64.
    n_context: K.
  """

  embedding: np.ndarray
  head: np.ndarray
  bias: np.ndarray
  singular_values: np.ndarray
  n_context: int

  @property
  def rank(self) -> int:
    return self.head.shape[0]

  def logits(self, ids) -> np.ndarray:
    """(T, V) logits for (T,) or (T, K) token ids."""
    ids = np.asarray(ids)
    ids = ids[:, None] if ids.ndim == 1 else ids
    vocab = self.head.shape[1]
    rows = ids + vocab * np.arange(ids.shape[1])
    return self.embedding[rows].sum(axis=1) @ self.head + self.bias


def centred_weights(explicit: model_lib.SoftmaxModel, *, n_context: int = 1,
                    center_columns: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The centred weights that :func:`svd_factors` factorises, and the matching bias.

  Row centring (subtracting each row's mean over the V outputs) never changes
  the softmax. Column centring moves each context block's mean row into the
  bias; it leaves the logits unchanged for token contexts, where every sample
  has exactly one active feature per block of ``V`` rows (``TokenFeatures``).

  Args:
    explicit: a token model, ``weights`` (K V, V).
    n_context: K, the number of one-hot blocks in the weight rows.
    center_columns: also move the block means into the bias.

  Returns:
    ``(C, b)``: (K V, V) float64 centred weights and (V,) float64 bias with
    ``softmax(sum_k C[r_k] + b) == softmax(sum_k W[r_k] + b_explicit)``.
  """
  w = explicit.weights.astype(np.float64)
  rows, vocab = w.shape
  if int(n_context) < 1 or rows != int(n_context) * vocab:
    raise ValueError(
        f"the explicit weights are {w.shape}, which is not (n_context * V, V) with "
        f"n_context={n_context}; fit them on TokenFeatures(ids, vocab_size=V) with "
        "n_classes=V and pass the context size used.")
  c = w - w.mean(axis=1, keepdims=True)
  b = explicit.bias.astype(np.float64)
  b = b - b.mean()
  if center_columns:
    blocks = c.reshape(int(n_context), vocab, vocab)
    mean_rows = blocks.mean(axis=1, keepdims=True)
    c = (blocks - mean_rows).reshape(rows, vocab)
    b = b + mean_rows.sum(axis=(0, 1))
  return c, b


def svd_factors(source: Source, d: int, *, n_context: int = 1, center_columns: bool = True,
                method: str = "cooccurrence", smoothing: float = solvers.DEFAULT_SMOOTHING,
                ridge: float = solvers.DEFAULT_RIDGE) -> EmbeddingFactors:
  """Embedding and output head from a truncated SVD of the explicit weights.

  With ``C = U S V^T`` the centred weights (:func:`centred_weights`), the factors
  are ``embedding = U_d S_d^(1/2)`` and ``head = S_d^(1/2) V_d^T`` (singular
  values split evenly, so both factors start on the same scale for gradient
  descent). ``embedding @ head`` is the best rank-``d`` approximation of ``C``
  in Frobenius norm (Eckart-Young): its error is ``sum_{i > d} s_i^2``. At full
  rank the factors reproduce the explicit logits up to the softmax shift.

  Args:
    source: a token :class:`SoftmaxModel` (weights (K V, V)) or the
      :class:`SoftmaxStats` of ``TokenFeatures`` contexts (solved with
      ``method``).
    d: embedding width, at most ``min(K V, V)``.
    n_context: K, the context size the model was fitted with.
    center_columns: move the block means into the bias (exact for token
      contexts, see :func:`centred_weights`).
    method: solver used when ``source`` is statistics.
    smoothing: additive smoothing of the co-occurrence solution.
    ridge: relative ridge of the Newton solution.

  Returns:
    :class:`EmbeddingFactors`.
  """
  explicit = as_explicit_model(source, method=method, smoothing=smoothing, ridge=ridge)
  c, b = centred_weights(explicit, n_context=n_context, center_columns=center_columns)
  max_rank = min(c.shape)
  d = _validation.check_integer("d", d)
  if d > max_rank:
    raise ValueError(
        f"d={d} is not in [1, {max_rank}]: a ({c.shape[0]} x {c.shape[1]}) matrix has at "
        f"most rank {max_rank}. Use an embedding width d <= {max_rank}.")
  if max(c.shape) <= _DENSE_SVD_MAX or d >= max_rank - 1:
    u, s, vt = np.linalg.svd(c, full_matrices=False)
    all_s = s
  else:
    import scipy.sparse.linalg
    u, s, vt = scipy.sparse.linalg.svds(c, k=d)
    order = np.argsort(s)[::-1]
    u, s, vt = u[:, order], s[order], vt[order]
    all_s = s
  root = np.sqrt(s[:d])
  return EmbeddingFactors(
      embedding=(u[:, :d] * root).astype(np.float32),
      head=(root[:, None] * vt[:d]).astype(np.float32),
      bias=b.astype(np.float32),
      singular_values=np.asarray(all_s, np.float64),
      n_context=int(n_context))


# -- inside a transformer: value/output projections from context co-occurrences --
# Evenly spaced positions of the token stream used for the context statistics:
# enough for a (V, V) count table of a character vocabulary, bounded in memory
# (positions x window token indices).
DEFAULT_CONTEXT_POSITIONS = 100_000


def context_bag_weights(tokens, vocab_size: int, window: int, *,
                        smoothing: float = solvers.DEFAULT_SMOOTHING,
                        max_positions: int = DEFAULT_CONTEXT_POSITIONS
                        ) -> tuple[np.ndarray, np.ndarray]:
  """The count solution for the next token given the bag of the last ``window`` tokens.

  Each sampled position ``t`` has the feature vector ``f_t = (1/w) sum_{s=t-w+1}^{t}
  onehot(token_s)`` (the mean of the one-hots an attention head that attends
  evenly over the last ``w`` positions sees) and the label ``token_{t+1}``. The
  co-occurrence solution of these statistics (``explicit_softmax.solve(stats,
  "cooccurrence")``) gives weights ``W`` (V, V) whose logits are ``f_t W + b``:
  a sum over the context tokens of each token's vote for the next one.

  The weights are returned centred: each row's mean over the outputs is removed
  (never changes a softmax), and the mean row is moved into the bias, which is
  exact because every ``f_t`` sums to one.

  Args:
    tokens: (T,) integer token ids in ``[0, vocab_size)``.
    vocab_size: V.
    window: w, the number of previous tokens (including the current one) pooled.
    smoothing: additive smoothing of the co-occurrence solution.
    max_positions: at most this many evenly spaced positions are counted.

  Returns:
    ``(C, b)``: (V, V) centred weights and (V,) bias, in the solver's dtype
    (float32: row and column means are zero to float32 round-off).

  Raises:
    ValueError: tokens that are not integers in ``[0, V)``, a non-positive or
      too long window.
  """
  vocab_size = _validation.check_integer("vocab_size", vocab_size)
  window = _validation.check_integer("window", window)
  max_positions = _validation.check_integer("max_positions", max_positions)
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
    raise ValueError(
        f"tokens must be a 1-D array of integer token ids; got shape {tokens.shape}, dtype "
        f"{tokens.dtype}. Pass the token stream, e.g. data.load_text(path)[0].")
  if len(tokens) <= window:
    raise ValueError(
        f"window={window} needs more than {window} tokens; got {len(tokens)}. Pass a longer "
        "token stream or a smaller window.")
  if tokens.min() < 0 or tokens.max() >= vocab_size:
    raise ValueError(
        f"token ids must lie in [0, vocab_size={vocab_size}); found [{tokens.min()}, "
        f"{tokens.max()}]. Pass vocab_size = the vocabulary's size.")
  # Positions t in [w - 1, T - 2] have a full window and a next token.
  positions = np.unique(np.linspace(window - 1, len(tokens) - 2,
                                    min(max_positions, len(tokens) - window)).astype(np.int64))
  rows = np.repeat(np.arange(len(positions)), window)
  context = tokens[(positions[:, None] - np.arange(window)[None, :]).ravel()]
  counts = np.bincount(rows * vocab_size + context,
                       minlength=len(positions) * vocab_size).reshape(len(positions), vocab_size)
  features = counts.astype(np.float64) / window
  stats = statistics.SoftmaxStats.from_data(features, tokens[positions + 1],
                                            n_classes=vocab_size)
  explicit = solvers.solve(stats, "cooccurrence", smoothing=smoothing)
  w = explicit.weights - explicit.weights.mean(axis=1, keepdims=True)
  mean_row = w.mean(axis=0)
  b = explicit.bias - explicit.bias.mean() + mean_row
  return w - mean_row, b


def ridge_map(inputs: np.ndarray, targets: np.ndarray,
              ridge: float = solvers.DEFAULT_RIDGE) -> np.ndarray:
  """The ridge least-squares map ``A`` minimising ``||X A - Y||^2 + lam ||A||^2``.

  ``A = (X^T X + lam I)^-1 X^T Y`` with ``lam = ridge * trace(X^T X) / N``: the
  ridge is relative to the mean feature energy, as in the Newton solution, so it
  does not depend on the features' scale.

  Args:
    inputs: X, (n, N) real features.
    targets: Y, (n, D) real targets.
    ridge: relative ridge, >= 0.

  Returns:
    (N, D) float64 map.
  """
  ridge = _validation.check_number("ridge", ridge)
  x = np.asarray(inputs, np.float64)
  y = np.asarray(targets, np.float64)
  if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) == 0:
    raise ValueError(
        f"ridge_map needs inputs (n, N) and targets (n, D) with the same n >= 1; got "
        f"{x.shape} and {y.shape}.")
  if not (np.isfinite(x).all() and np.isfinite(y).all()):
    raise ValueError("the inputs or targets of ridge_map contain NaN or inf; check the layers "
                     "that produce them.")
  gram = x.T @ x
  lam = ridge * np.trace(gram) / x.shape[1]
  # A tiny floor keeps the solve defined for ridge=0 with rank-deficient inputs.
  gram[np.diag_indices_from(gram)] += max(lam, 1e-12 * max(np.trace(gram), 1.0))
  return np.linalg.solve(gram, x.T @ y)


def balanced_factors(w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
  """Two factors ``A`` (N, r), ``B`` (r, D) with ``A B`` the best rank-r approximation of ``w``.

  With ``w = U S V^T``: ``A = U_r S_r^(1/2)`` and ``B = S_r^(1/2) V_r^T``, the
  singular values split evenly so both layers start on the same scale
  (Eckart-Young for the approximation, as in :func:`svd_factors`).

  Args:
    w: (N, D) real matrix.
    rank: r, at most ``min(N, D)``.

  Returns:
    ``(A, B)`` as float32.
  """
  w = np.asarray(w, np.float64)
  max_rank = min(w.shape)
  rank = _validation.check_integer("rank", rank)
  if rank > max_rank:
    raise ValueError(f"rank={rank} exceeds min{w.shape} = {max_rank}; pass rank <= {max_rank}.")
  u, s, vt = np.linalg.svd(w, full_matrices=False)
  root = np.sqrt(s[:rank])
  return (u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32)


def value_output_weights(inputs: np.ndarray, targets: np.ndarray, inner: int, *,
                         ridge: float = solvers.DEFAULT_RIDGE
                         ) -> tuple[np.ndarray, np.ndarray]:
  """Value and output projections whose product maps each input to its target.

  An attention layer adds ``sum_j a_tj (x_j W_V) W_O`` to position ``t``: with
  the product ``W_V W_O`` mapping each attended input ``x_j`` to a target
  vector ``y_j``, the layer adds the attention-weighted mean of the targets.
  ``W_V W_O`` is the ridge map from inputs to targets (:func:`ridge_map`), split
  into balanced factors of the value width (:func:`balanced_factors`).

  Args:
    inputs: (n, N) what the value projection sees (e.g. the LayerNorm outputs).
    targets: (n, D) the residual update each input should carry.
    inner: the value projection's output width (all heads together).
    ridge: relative ridge of the map.

  Returns:
    ``(W_V, W_O)``: (N, inner) and (inner, D) float32 in the ``x @ W`` layout
    (padded with zero columns/rows if ``inner`` exceeds the map's rank).
  """
  w = ridge_map(inputs, targets, ridge)
  rank = min(int(inner), *w.shape)
  a, b = balanced_factors(w, rank)
  w_v = np.zeros((w.shape[0], int(inner)), np.float32)
  w_o = np.zeros((int(inner), w.shape[1]), np.float32)
  w_v[:, :rank], w_o[:rank] = a, b
  return w_v, w_o


def check_new_classes(n_classes) -> int:
  """The number of classes of a new head: a positive integer, with advice otherwise."""
  # The new head's output width: the number of new classes, labels 0..n_classes-1.
  return _validation.check_integer("n_classes", n_classes)
