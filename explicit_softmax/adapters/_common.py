"""The adapters' logic, written once for PyTorch and Flax NNX.

A framework adapter (``adapters/torch.py``, ``adapters/flax.py``) supplies a
``Framework``: how to run a model in inference mode, how to stop its
forward at a layer and read that layer's input, how to convert arrays, and how
to write, create and replace a dense layer. Everything else lives here, so the
two adapters find heads, check inputs, fit and write in the same way:

* [`init_head`][explicit_softmax.adapters._common.init_head] reads the features that reach a model's
  dense head (with the model's own forward, batch by batch), fits explicit weights on them
  (``es.adapters._fit.fit_explicit``) and writes them in place;
* [`new_head`][explicit_softmax.adapters._common.new_head] does the same into a new head for new
  classes (transfer);
* [`init_layerwise`][explicit_softmax.adapters._common.init_layerwise] fits every dense layer of an
  MLP in turn ([`es.adapters.layerwise_init`][explicit_softmax.adapters.layerwise_init]);
* [`init_embedding`][explicit_softmax.adapters._common.init_embedding] writes SVD factors
  ([`svd_factors`][explicit_softmax.adapters.svd_factors]) into an embedding table and an
  output layer;
* [`layer_inputs`][explicit_softmax.adapters._common.layer_inputs] and
  [`init_value_output`][explicit_softmax.adapters._common.init_value_output] read and fit the value
  and output projections of attention layers.

Layout: explicit weights are ``W`` (N, M) in the ``x W + b`` layout; each
``Framework`` stores them in its own (a ``torch.nn.Linear`` transposed).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from explicit_softmax import _validation
from explicit_softmax import model as model_lib
from explicit_softmax import solvers
from explicit_softmax._typing import ArrayLike, Labels
from explicit_softmax.adapters import _fit
from explicit_softmax.adapters import _layerwise
from explicit_softmax.adapters import _tokens
from explicit_softmax.adapters._fit import DEFAULT_METHOD, Inputs
from explicit_softmax.adapters._framework import Captured, Framework


# -- finding the head and reading its inputs -----------------------------------------
def check_linear(fw: Framework, layer: Any, what: str) -> Any:
  """``layer`` if it is the framework's dense layer, else a ValueError naming ``what``."""
  if not isinstance(layer, fw.linear):
    linear = fw.name(fw.linear)
    raise ValueError(
        f"{what} is a {type(layer).__name__}, not a dense {linear}; explicit weights can "
        f"only be written into a dense (Linear) output layer. Put an {linear} last or pass "
        f"head=<the {linear}>.")
  return layer


def _run(layers: Sequence[Callable]) -> Callable:
  def run(x):
    for layer in layers:
      x = layer(x)
    return x
  return run


def resolve_head(fw: Framework, model: Any, head: Any) -> tuple[Any, Callable | None]:
  """The dense head of ``model`` and, for a sequential model, the feature function.

  In order: a bare dense layer is its own head (the data are the features);
  ``head`` given as a layer, or as the name of an attribute of ``model``; the
  last layer of a sequential model (the features: the layers before it); a
  dense attribute ``model.head``.
  """
  if isinstance(model, fw.linear) and (head is None or head is model or head == "head"):
    return model, (lambda x: x)
  if isinstance(head, fw.module):
    return check_linear(fw, head, "head"), None
  if isinstance(head, str) and hasattr(model, head):
    return check_linear(fw, getattr(model, head), f"model.{head}"), None
  if isinstance(model, fw.sequential) and head in (None, "head"):
    layers = fw.layers(model)
    if not layers:
      raise ValueError(f"the {fw.name(fw.sequential)} model has no layers.")
    last = check_linear(fw, layers[-1], f"the last layer of the {fw.name(fw.sequential)}")
    return last, _run(layers[:-1])
  if head is None and isinstance(getattr(model, "head", None), fw.module):
    return check_linear(fw, model.head, "model.head"), None
  raise ValueError(
      f"cannot find the dense head of {type(model).__name__}: it is not an "
      f"{fw.name(fw.sequential)} and has no {head or 'head'!r} attribute. Pass head=<the "
      f"{fw.name(fw.linear)}> (and optionally features_fn=<a function from inputs to the "
      "head's inputs>).")


def head_features(fw: Framework, model: Any, layer: Any,
                  features_fn: Callable | None) -> Callable[[Any], np.ndarray]:
  """A function from a batch of inputs to the (numpy) features entering ``layer``.

  With ``features_fn`` those are its outputs; otherwise ``layer``'s first
  positional input during ``model``'s own forward, which is stopped there.
  """
  if features_fn is not None:
    return lambda xb: fw.to_numpy(fw.call(features_fn, xb, model))

  def captured(xb):
    with fw.capturing(layer):
      try:
        fw.call(model, xb, model)
      except Captured as hit:
        return fw.to_numpy(hit.value)
    role = "head" if isinstance(layer, fw.linear) else "layer"
    raise ValueError(
        f"the forward pass of {type(model).__name__} never called its "
        f"{type(layer).__name__} {role}; pass features_fn=<a function from inputs to the "
        "head's inputs>, or a layer of this model.")
  return captured


def layer_inputs(fw: Framework, model: Any, layer: Any, x: Any, *,
                 batch_size: int = 1024) -> np.ndarray:
  """The inputs that ``model``'s forward feeds to ``layer``, as one numpy array.

  The forward runs batch by batch in inference mode (modes restored) and is
  stopped at ``layer``, so nothing after it runs.

  Args:
    fw: the framework.
    model: the model.
    layer: a submodule of it (e.g. a block's value projection).
    x: (T, ...) inputs of the model.
    batch_size: rows per forward batch.

  Returns:
    (T, ..., N) array: ``layer``'s first positional input for every row (a
    sequence model's layer sees every position).

  Raises:
    ValueError: ``layer`` not a module, an empty ``x``, or a forward that never calls
      ``layer``.
  """
  if not isinstance(layer, fw.module):
    raise ValueError(f"layer must be a submodule of the model; got {type(layer).__name__}.")
  get = head_features(fw, model, layer, None)
  with fw.inference_mode(model):
    parts = [get(fw.take(x, rows)) for rows in _fit.iterate_rows(len(x), batch_size)]
  if not parts:
    raise ValueError("x is empty; pass at least one row.")
  return np.concatenate(parts)


# -- writing weights ---------------------------------------------------------------
def write_linear(fw: Framework, layer: Any, weights: ArrayLike,
                 bias: ArrayLike | None = None) -> None:
  """Writes (in, out) ``weights`` and (out,) ``bias`` into a dense layer in place.

  Everything is checked before anything is written: a refused call leaves the
  layer as it was.

  Args:
    fw: the framework.
    layer: the dense layer.
    weights: (in, out) array in the ``x @ W`` layout.
    bias: (out,) array, or None to leave the bias as it is.

  Raises:
    ValueError: for mismatched shapes, NaN or inf values, or a nonzero bias for a
      layer without one.
  """
  layer = check_linear(fw, layer, "the layer")
  weights = _validation.check_finite("the weights", weights)
  n, m = fw.dense_shape(layer)
  if weights.shape != (n, m):
    raise ValueError(
        f"weights of shape {weights.shape} (in, out) do not fit {fw.name(fw.linear)}"
        f"({n}, {m}) (in_features, out_features = {(n, m)}); {fw.kernel_layout}.")
  bias = _fit.checked_bias(bias, m, fw.has_bias(layer), fw.bias_flag)
  fw.write_dense(layer, weights, bias)


def write_explicit(fw: Framework, layer: Any, explicit: model_lib.SoftmaxModel) -> None:
  """Writes a [`SoftmaxModel`][explicit_softmax.model.SoftmaxModel] into a dense layer (checked, in
  place).

  Args:
    fw: the framework.
    layer: the dense layer.
    explicit: explicit weights (N, M) and bias (M,) for a layer ``N -> M``.

  Raises:
    ValueError: a layer that is not dense, mismatched shapes, or a nonzero bias for a
      layer without one.
  """
  layer = check_linear(fw, layer, "the layer")
  n, m = fw.dense_shape(layer)
  _fit.check_head_shape(explicit, n, m, fw.has_bias(layer), f"the {fw.name(fw.linear)}")
  write_linear(fw, layer, explicit.weights, explicit.bias)


# -- the operations ----------------------------------------------------------------
def fit_layer_inputs(fw: Framework, model: Any, layer: Any, features_fn: Callable | None,
                     x: Inputs, y: Labels | None, n_classes: int, *, method: str,
                     smoothing: float, ridge: float, batch_size: int,
                     calibrate: bool, max_samples: int | str | None = "auto"
                     ) -> model_lib.SoftmaxModel:
  """The explicit model of the features entering ``layer`` (read in inference mode).

  At most ``max_samples`` samples are read (see
  [`init_head`][explicit_softmax.adapters._common.init_head]); the model's ``info["init"]`` records
  the input rows and samples read, the budget and the seconds the reading and the fit took.
  """
  start = time.perf_counter()
  n_features = fw.dense_shape(layer)[0]
  budget = _fit.sample_budget(max_samples, n_features)
  get_features = head_features(fw, model, layer, features_fn)
  rows_read = 0

  def read(batches):
    nonlocal rows_read
    for xb, yb in batches:
      rows_read += len(xb)
      yield get_features(xb), fw.labels(yb)

  batches = _fit.data_batches(x, y, batch_size, max_samples=budget, take=fw.take,
                              labels=fw.labels)
  with fw.inference_mode(model):
    explicit = _fit.fit_explicit(
        read(batches), n_features=n_features, n_classes=n_classes, method=method,
        smoothing=smoothing, ridge=ridge, hint=fw.hint, calibrate=calibrate,
        max_samples=budget)
  return _fit.with_init_info(explicit, rows=rows_read, max_samples=budget,
                             seconds=time.perf_counter() - start)


def init_head(fw: Framework, model: Any, x: Inputs, y: Labels | None = None, *,
              head: Any = None, features_fn: Callable | None = None,
              method: str = DEFAULT_METHOD, smoothing: float = solvers.DEFAULT_SMOOTHING,
              ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 256,
              calibrate: bool = False,
              max_samples: int | str | None = "auto") -> model_lib.SoftmaxModel:
  """Fits explicit weights for the dense head of a model and writes them in place.

  The features entering the head are computed batch by batch with the model's own forward pass (in
  inference mode; the modes are restored afterwards), or with ``features_fn``, and accumulated into
  [`SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats]; the explicit solution
  (``explicit_softmax.solve``) is written into the head. The head is found as
  [`resolve_head`][explicit_softmax.adapters._common.resolve_head] says. A head applied at every
  position of a sequence sees features (B, T, N); labels (B, T) make each position one sample.

  Only as many samples are read as the solution needs: by default
  ``max(8 (N + 1), 4096)`` for a head with ``N`` inputs
  (``es.adapters._fit.SAMPLES_PER_INPUT`` and
  ``es.adapters._fit.MIN_SAMPLES``; the head's held-out loss
  against samples read is measured in ``docs/deep_models.md``). From arrays, the rows are spread evenly over the
  data (row ``i T / k`` of ``T`` for ``k`` rows, enough rows for the budget); from
  a loader, its first batches, the last one cut at the budget, and no batch after
  it is drawn.

  Args:
    fw: the framework.
    model: a sequential model ending in a dense layer, a module with a dense
      head, or a dense layer (then the data are the features).
    x: (T, ...) inputs of the model (arrays or tensors, batched here); or, with
      ``y=None``, an iterable of ``(x, y)`` batches such as a ``DataLoader``.
    y: (T,) integer labels or (T, M) soft labels, M the head's output width.
    head: the dense head, or its attribute name.
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
  start = time.perf_counter()
  linear, body = resolve_head(fw, model, head)
  explicit = fit_layer_inputs(
      fw, model, linear, features_fn or body, x, y, fw.dense_shape(linear)[1], method=method,
      smoothing=smoothing, ridge=ridge, batch_size=batch_size, calibrate=calibrate,
      max_samples=max_samples)
  write_explicit(fw, linear, explicit)
  return _fit.with_init_info(explicit, seconds=time.perf_counter() - start)


def new_head(fw: Framework, model: Any, x: Inputs, y: Labels | None = None, *,
             n_classes: int, head: Any = None, features_fn: Callable | None = None,
             method: str = DEFAULT_METHOD, smoothing: float = solvers.DEFAULT_SMOOTHING,
             ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 256,
             calibrate: bool = False, max_samples: int | str | None = "auto") -> Any:
  """Replaces the dense head of a (pretrained) model by an explicit head for new classes.

  The transfer setting: a network trained on some classes gets a new output
  layer for other classes (labels ``0 .. n_classes-1``). The features entering
  the old head are read with the model's own forward pass (inference mode,
  restored afterwards), a new dense layer ``in_features -> n_classes`` of the
  old head's dtype and device receives the explicit solution, and it takes the
  old head's place. No other parameter of the model is written: fine-tuning
  starts from the pretrained features and an explicit head, as in
  linear-probe-then-fine-tune (Kumar et al. 2022), with the probe in closed form.

  Args:
    fw: the framework.
    model: the pretrained model (see [`init_head`][explicit_softmax.adapters._common.init_head] for
      how the head is found).
    x: (T, ...) inputs, or with ``y=None`` an iterable of ``(x, y)`` batches.
    y: (T,) integer labels in ``[0, n_classes)`` or (T, n_classes) soft labels.
    n_classes: the new head's output width, the number of new classes.
    head: the old head or its attribute name (default: as
      [`init_head`][explicit_softmax.adapters._common.init_head]).
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
    The new dense head (already placed in ``model``).

  Raises:
    ValueError: a bare dense layer as the model (it has no place for a new head), a
      head that is not a submodule of the model, ``n_classes`` not a positive integer,
      or any error of [`init_head`][explicit_softmax.adapters._common.init_head].

  References:
    Kumar, Raghunathan, Jones, Ma and Liang (2022), "Fine-Tuning can Distort
    Pretrained Features and Underperform Out-of-Distribution", ICLR.
  """
  n_classes = _fit.check_new_classes(n_classes)
  old, body = resolve_head(fw, model, head)
  linear = fw.name(fw.linear)
  if old is model:
    raise ValueError(
        f"the model is a bare {linear}, which has no place to put a new head; fit one with "
        f"init_head({linear}(in_features, n_classes{fw.linear_args}), features, y) instead.")
  explicit = fit_layer_inputs(
      fw, model, old, features_fn or body, x, y, n_classes, method=method,
      smoothing=smoothing, ridge=ridge, batch_size=batch_size, calibrate=calibrate,
      max_samples=max_samples)
  layer = fw.new_dense(old, n_classes)
  write_explicit(fw, layer, explicit)
  if not fw.replace(model, old, layer):
    raise ValueError(
        f"the head {type(old).__name__} is not a submodule of {type(model).__name__}; pass "
        f"head=<an {linear} inside the model> or its attribute name.")
  return layer


def init_layerwise(fw: Framework, model: Any, x: Inputs, y: Labels, *,
                   method: str = DEFAULT_METHOD, hidden_method: str | None = None,
                   smoothing: float = solvers.DEFAULT_SMOOTHING,
                   ridge: float = solvers.DEFAULT_RIDGE, batch_size: int = 256,
                   rms: float = _layerwise.DEFAULT_HIDDEN_RMS,
                   n_cluster_samples: int = _layerwise.DEFAULT_CLUSTER_SAMPLES,
                   seed: int = 0,
                   max_samples: int | str | None = "auto") -> list[model_lib.SoftmaxModel]:
  """Initialises every dense layer of a sequential MLP with explicit weights.

  Layer by layer, each dense layer is fitted on the activations the layers before it really produce
  (in inference mode): hidden layers to class-conditional pseudo-classes, the last to the labels.
  See [`es.adapters.layerwise_init`][explicit_softmax.adapters.layerwise_init] for the
  scheme.

  Args:
    fw: the framework.
    model: a sequential model whose last layer is dense; every dense layer's
      input must be real (nonnegative with ``method="cooccurrence"``).
    x: (T, ...) inputs (arrays or tensors).
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
  sequential, linear = fw.name(fw.sequential), fw.name(fw.linear)
  if not isinstance(model, fw.sequential):
    raise ValueError(
        f"init_layerwise needs an {sequential} MLP; got {type(model).__name__}. Build the "
        f"model as {sequential}({linear}(...), {fw.relu}, ..., {linear}(...)).")
  layers = fw.layers(model)
  if not layers:
    raise ValueError(f"the {sequential} model has no layers.")
  check_linear(fw, layers[-1], f"the last layer of the {sequential}")
  dense = [i for i, layer in enumerate(layers) if isinstance(layer, fw.linear)]

  def features_of(layer, rows):
    return fw.to_numpy(_run(layers[:dense[layer]])(fw.to_input(fw.take(x, rows), model)))

  def write(layer, w, b):
    write_linear(fw, layers[dense[layer]], w, b)

  with fw.inference_mode(model):
    return _layerwise.layerwise_init(
        features_of, fw.labels(y), [fw.dense_shape(layers[i]) for i in dense], write,
        method=method, hidden_method=hidden_method, smoothing=smoothing, ridge=ridge,
        batch_size=batch_size, rms=rms, n_cluster_samples=n_cluster_samples, seed=seed,
        hint=fw.hint, max_samples=max_samples)


def init_embedding(fw: Framework, factors: _tokens.EmbeddingFactors, embed: Any,
                   head: Any) -> None:
  """Writes SVD factors ([`svd_factors`][explicit_softmax.adapters.svd_factors]) into an
  embedding table and a dense head.

  Args:
    fw: the framework.
    factors: [`EmbeddingFactors`][explicit_softmax.adapters.EmbeddingFactors] of a token
      model.
    embed: the embedding, a (K V, d) table.
    head: the dense layer ``d -> V`` with a bias.

  Raises:
    ValueError: a layer of the wrong kind, mismatched shapes, or a head without bias.
  """
  embedding = fw.name(fw.embedding)
  if not isinstance(embed, fw.embedding):
    raise ValueError(f"embed must be an {embedding}; got {type(embed).__name__}.")
  table, want = tuple(fw.table_shape(embed)), factors.embedding.shape
  if table != want:
    raise ValueError(
        f"the {embedding} table is {table} but the factors' embedding is {want} (K V, d); "
        f"create {embedding}({want[0]}, {want[1]}).")
  head = check_linear(fw, head, "head")
  if not fw.has_bias(head):
    raise ValueError(
        f"the head has no bias but the factors carry one; create it with {fw.bias_flag}=True.")
  write_linear(fw, head, factors.head, factors.bias)
  fw.write_table(embed, factors.embedding)


def init_value_output(fw: Framework, model: Any, x: Any, pairs: Sequence[tuple[Any, Any]],
                      targets: ArrayLike, *, ridge: float = solvers.DEFAULT_RIDGE,
                      batch_size: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
  """Fits the value and output projections of attention layers to carry given targets.

  For each ``(value, output)`` pair in order (earlier blocks first), the inputs
  the value projection really sees on ``x`` are read with the model's forward
  (after the pairs before it were written), and ``value`` / ``output`` receive
  the balanced factors of the ridge map from those inputs to ``targets``
  (``es.adapters.value_output_weights``); their biases are set
  to zero. An attention layer then adds to each position the attention-weighted
  mean of the targets of the positions it attends to. With ``targets`` derived
  from context co-occurrences
  (``es.adapters.context_bag_weights``), that is the count
  solution's vote of the context tokens for the next one.

  Args:
    fw: the framework.
    model: the model; ``x`` goes through its own forward.
    x: (B, T) token ids (or any inputs of the model).
    pairs: ``[(value, output), ...]`` of dense layers: ``value`` (N -> inner),
      ``output`` (inner -> D).
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
  pairs = list(pairs)
  if not pairs:
    raise ValueError(f"pairs is empty; pass [(value, output), ...] {fw.name(fw.linear)} pairs.")
  targets = _fit.as_float_array(targets)
  written = []
  for i, pair in enumerate(pairs):
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
      raise ValueError(f"pairs[{i}] must be a (value, output) pair of {fw.name(fw.linear)} "
                       f"layers; got {type(pair).__name__}.")
    value = check_linear(fw, pair[0], f"pairs[{i}][0] (the value projection)")
    output = check_linear(fw, pair[1], f"pairs[{i}][1] (the output projection)")
    (n, inner), (inner_o, d) = fw.dense_shape(value), fw.dense_shape(output)
    if inner != inner_o or targets.shape[-1] != d:
      raise ValueError(
          f"pairs[{i}]: the value projection maps {n} -> {inner}, the output projection "
          f"{inner_o} -> {d}, and the targets have width {targets.shape[-1]}; they must "
          "chain (value out = output in, output out = target width).")
    inputs = layer_inputs(fw, model, value, x, batch_size=batch_size)
    what = "the value projection's inputs"
    feats, tgt = _fit.flatten_positions(inputs, targets, n, 0, what)
    _validation.check_layer_inputs(feats, n, 0, what)
    if len(tgt) != len(feats) or tgt.ndim != 2:
      raise ValueError(
          f"targets of shape {targets.shape} do not match the value projection's inputs "
          f"{inputs.shape}; pass one target row per position, (B, T, D).")
    w_v, w_o = _tokens.value_output_weights(feats, tgt, inner, ridge=ridge)
    for layer, w in ((value, w_v), (output, w_o)):
      width = fw.dense_shape(layer)[1]
      write_linear(fw, layer, w, np.zeros(width) if fw.has_bias(layer) else None)
    written.append((w_v, w_o))
  return written
