"""Sufficient statistics of data sharded over several devices (and hosts).

The statistics of ``es.statistics`` are sums over samples, so
data split over devices along the sample axis needs one local pass per device
and one all-reduce, e.g. for the co-occurrences

    F = X^T diag(w) Y = sum_d X_d^T diag(w_d) Y_d,

and likewise for ``c = Y^T w``, ``T_w``, ``sum_t w_t m_t^2`` and the Gram matrix.
[`sharded_sums`][explicit_softmax.sharding.sharded_sums] runs that pass with ``jax.shard_map``: each
device reads its rows in chunks of ``CHUNK_ROWS``, forms the chunk products in float32 (JAX computes
in float32 unless x64 mode is on) as sums of 64-row blocks, accumulates the chunks with compensated
(Kahan) summation, and ``jax.lax.psum`` adds the per-device sums (their float32 high and low parts
separately); the host adds the two parts in float64. The result agrees with the single-device
(float64) statistics to ~3e-7 relative, whatever the number of devices, and one-hot counts stay
exact far beyond float32's 2^24.

``SoftmaxStats.from_data`` (hence ``es.fit``) dispatches here whenever ``X`` is
a ``jax.Array`` whose sharding spans more than one device, or that lives on one
accelerator (see [`computes_on_device`][explicit_softmax.sharding.computes_on_device]), e.g.:

    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    X = jax.device_put(X, NamedSharding(mesh, PartitionSpec("data", None)))
    model = es.fit(X, y)              # the same model as es.fit(np.asarray(X), y)

Several hosts. The same code runs on several hosts (processes), each with its
own devices: call ``jax.distributed.initialize()`` first on every process, build
the mesh over ``jax.devices()`` (all processes' devices), and assemble each
array from the rows this process holds, e.g. with
``jax.make_array_from_process_local_data(sharding, local_rows)`` for ``X``,
the labels and (optionally) the sample weights. Every process then calls
``es.fit(X, y)``; the psum crosses hosts, and every process gets the same
statistics and model. Pass ``y`` (and weights) as global ``jax.Array``s there:
a host numpy array is placed with ``jax.device_put``, which across processes
needs the full, identical array on every process. See ``docs/scaling.md``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from explicit_softmax import _device_pass
from explicit_softmax import _one_partition
from explicit_softmax import _validation
from explicit_softmax._typing import Features, Labels, SampleWeight

# Rows per chunk (one step of each device's scan). The rounding error depends on
# the 64-row blocks inside a chunk (``_device_pass.BLOCK_ROWS``), not on this size.
CHUNK_ROWS = 2048


def is_sharded(X: Features) -> bool:
  """True if ``X`` is a ``jax.Array`` whose sharding spans more than one device.

  Args:
    X: any input accepted by
      [`SoftmaxStats.from_data`][explicit_softmax.statistics.SoftmaxStats.from_data].

  Returns:
    Whether ``X`` is split over several devices.
  """
  return len(_devices(X)) > 1


def computes_on_device(X: Features) -> bool:
  """True if the statistics of ``X`` are computed by the jitted device pass.

  That is the case for a ``jax.Array`` split over several devices, or held by one
  accelerator (GPU, TPU): its rows are reduced where they are, and only the
  (N, M) sums travel to the host. A ``jax.Array`` on the CPU takes the host
  path (numpy and scipy), which is faster there (``explicit-softmax bench fit``
  times both).

  Args:
    X: any input accepted by
      [`SoftmaxStats.from_data`][explicit_softmax.statistics.SoftmaxStats.from_data].

  Returns:
    Whether [`SoftmaxStats.from_data`][explicit_softmax.statistics.SoftmaxStats.from_data]
    dispatches to [`sharded_sums`][explicit_softmax.sharding.sharded_sums].
  """
  devices = _devices(X)
  return len(devices) > 1 or any(d.platform != "cpu" for d in devices)


def _devices(X) -> set:
  """The devices holding ``X``: empty unless it is a concrete ``jax.Array``."""
  if not isinstance(X, jax.Array):
    return set()
  try:
    return set(X.sharding.device_set)
  except Exception:  # tracers and exotic arrays carry no concrete sharding
    return set()


def spans_processes(X) -> bool:
  """True if ``X`` is a ``jax.Array`` whose rows live on several processes (hosts).

  No process can read such an array whole (``np.asarray`` fails): the statistics reduce it with
  [`sharded_sums`][explicit_softmax.sharding.sharded_sums], and refinement evaluates each process's
  rows where they are ([`ProcessLocalParts`][explicit_softmax.sharding.ProcessLocalParts]).
  """
  if not isinstance(X, jax.Array):
    return False
  try:
    return not X.is_fully_addressable
  except Exception:  # tracers carry no concrete sharding
    return False


def sharded_sums(X: Features, y: Labels, *, n_classes: int | None = None,
                 sample_weight: SampleWeight = None, gram: bool = False,
                 chunk_rows: int | None = None) -> dict:
  """The statistics' sums over data sharded over devices, reduced with ``psum``.

  [`es.SoftmaxStats.from_data`][explicit_softmax.statistics.SoftmaxStats.from_data] calls this for
  arrays on accelerators or sharded over devices, and
  [`es.SoftmaxStats.from_sharded`][explicit_softmax.statistics.SoftmaxStats.from_sharded] on any
  ``jax.Array``.

  Args:
    X: (T, N) real ``jax.Array``: on one device, or with a
      ``NamedSharding`` whose first (sample) axis is split over one or more mesh
      axes. A split feature axis is re-laid out to whole rows first (one
      all-to-all).
    y: (T,) integer labels in ``[0, M)`` or (T, M) soft labels: a ``jax.Array``
      (any sharding; it is moved to the rows' sharding) or a host array, placed
      with the sharding of ``X``'s rows.
    n_classes: M; inferred from ``y`` if None (one extra reduction for labels).
    sample_weight: optional (T,) nonnegative weights (array as for ``y``) or a
      scalar.
    gram: also collect ``X^T diag(w) X`` (for ``method="newton"``).
    chunk_rows: rows per chunk of each device's pass (default ``CHUNK_ROWS``;
      accelerators are faster with larger chunks, at a slightly larger float32
      rounding error per chunk).

  Returns:
    The fields of [`es.SoftmaxStats`][explicit_softmax.statistics.SoftmaxStats] (``cooccurrence``,
    ``class_mass``, ``total_weight``, ``mass_sq``, ``n_samples``, ``gram``,
    ``min_feature``), float64 on the host, equal on every process.

  Raises:
    ValueError: for a sharding other than ``NamedSharding``; wrong shapes or
      dtypes; NaN or inf features; labels outside ``[0, M)``; invalid soft
      labels or weights; a Gram matrix too large.
  """
  if not isinstance(X, jax.Array):
    raise ValueError(
        f"sharded_sums needs X as a jax.Array; got {type(X).__name__}. Use "
        "SoftmaxStats.from_data for host arrays.")
  _validation.check_shape_2d(X.shape)
  _validation.check_real_dtype(X.dtype)
  t, n = X.shape
  _validation.check_n_samples(t)
  mesh, row_axes = _row_layout(X)
  rows = NamedSharding(mesh, PartitionSpec(row_axes or None, None))
  if not isinstance(X.sharding, NamedSharding) or tuple(X.sharding.spec)[1:2] not in ((), (None,)):
    X = jax.device_put(X, rows)  # whole rows per device (a one-device array stays put)
  _validation.check_gram_size(n, gram)

  y, soft, n_classes, asked = _place_targets(y, t, n_classes, mesh, row_axes, n)
  scale, w = _place_weights(sample_weight, t, mesh, row_axes)
  chunk = CHUNK_ROWS if chunk_rows is None else _validation.check_integer("chunk_rows", chunk_rows)
  n_shards = math.prod(mesh.shape[a] for a in row_axes)
  chunk = min(chunk, t // n_shards)
  _check_device_memory(mesh, chunk, n, n_classes, gram, asked)
  kernel = _device_pass.build_kernel(
      mesh, row_axes, t // n_shards, n_classes, soft, w is not None, gram, chunk,
      _device_pass.n_groups(chunk, n, n_classes, gram))
  sums, checks = kernel(X, y, *(() if w is None else (w,)))
  checks = {k: v.item() for k, v in jax.device_get(checks).items()}
  _raise_for_invalid(checks, t, n_classes, soft, w is not None)

  sums = {k: np.asarray(hi, np.float64) + np.asarray(lo, np.float64)
          for k, (hi, lo) in jax.device_get(sums).items()}
  total_weight = float(t) if w is None else float(sums["total_weight"])
  return {"cooccurrence": sums["cooccurrence"] * scale,
          "class_mass": sums["class_mass"] * scale,
          "total_weight": total_weight * scale,
          "mass_sq": float(sums["mass_sq"]) * scale,
          "n_samples": t,
          "gram": sums["gram"] * scale if gram else None,
          "min_feature": float(checks["x_min"])}


# -- layout and host-side checks ---------------------------------------------------

def _row_layout(X) -> tuple:
  """``(mesh, row_axes)``: the mesh of ``X`` and the mesh axes its rows are split over."""
  sharding = X.sharding
  if not isinstance(sharding, NamedSharding) and len(sharding.device_set) == 1:
    # One device (e.g. a GPU array): a one-device mesh, no collectives.
    return jax.sharding.Mesh(np.array(list(sharding.device_set)), ("rows",)), ()
  if not isinstance(sharding, NamedSharding):
    raise ValueError(
        f"a multi-device X needs a NamedSharding; got {type(sharding).__name__}. Place "
        "it with jax.device_put(X, NamedSharding(mesh, PartitionSpec('data', None))).")
  spec = tuple(sharding.spec) + (None,) * (2 - len(sharding.spec))
  axes = spec[0]
  row_axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
  return sharding.mesh, row_axes


def _place(a, mesh, row_axes):
  """Puts ``a`` (host or device) on the mesh, split along its first axis like X's rows."""
  spec = PartitionSpec(row_axes or None, *([None] * (np.ndim(a) - 1)))
  return jax.device_put(a, NamedSharding(mesh, spec))


def _place_targets(y, t: int, n_classes, mesh, row_axes, n_features: int):
  """Checks ``y``, infers M, refuses an M too large, and places ``y`` like X's rows.

  Host labels get the host pass's checks before they reach a device, where
  integers have 32 bits (a label 2**64 - 1 or 1e20 would wrap around); a
  device array's values are checked by the device pass, and M inferred from
  its maximum is refused, as on the host, when the labels look like ids.

  Returns:
    ``(y, soft, M, asked)``: the placed targets, whether they are soft labels,
    the number of classes and what set it (for messages).
  """
  given = n_classes
  if not isinstance(y, jax.Array):
    targets = _validation.check_targets(y, t, n_classes)
    m = targets.n_classes
    def asked() -> str:  # counted only to word a refusal
      return _validation.describe_classes(given, m, targets.labels)
    _validation.check_dense_size(n_features, m, copies=3, asked=asked)
    if targets.labels is None:
      return _place(targets.probs, mesh, row_axes), True, m, asked
    return _place(targets.labels, mesh, row_axes), False, m, asked
  n_classes = _validation.check_layout(y, t, n_classes)
  soft = y.ndim == 2
  if soft:
    m = int(y.shape[1])
  elif n_classes is None:
    y = _place(y, mesh, row_axes)
    top = float(jax.jit(jnp.max)(y))
    _validation.check_integral_labels(math.isfinite(top))
    m = max(int(top) + 1, 1)
    if m > _validation.MAX_SPARSE_CODES:  # ids, or codes? count them (sorted, on device)
      distinct = int(jax.jit(lambda v: 1 + jnp.count_nonzero(jnp.diff(jnp.sort(v))))(y))
      _validation.check_label_codes(m - 1, distinct, m)
  else:
    m = n_classes
  said = _validation.describe_classes(given, m)  # no labels on the host to count
  _validation.check_dense_size(n_features, m, copies=3, asked=said)
  return _place(y, mesh, row_axes), soft, m, said


# Device arrays of the pass (float32), estimates: (chunk, M) one-hot targets and
# their weighted copy; (N, M) running sums and compensations, a chunk's sums and
# the Kahan temporaries, besides the row groups' partial products.
_DEVICE_TARGET_COPIES = 2
_DEVICE_SUM_COPIES = 6


def _device_free_bytes(mesh) -> int | None:
  """The least free memory of the mesh's accelerators (None for CPU devices: the
  host's memory, checked by ``_validation.available_memory``)."""
  free = []
  for device in mesh.devices.flat:
    try:
      stats = device.memory_stats()
    except Exception:  # CPU devices and some backends keep no statistics
      stats = None
    if stats and "bytes_limit" in stats:
      free.append(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
  return min(free) if free else None


def _check_device_memory(mesh, chunk: int, n: int, m: int, gram: bool, asked) -> None:
  """Refuses a device pass whose (chunk, M) and (N, M) arrays exceed a device's memory."""
  groups = _device_pass.n_groups(chunk, n, m, gram)
  arrays = [("a chunk's one-hot targets", (chunk, m), 4, _DEVICE_TARGET_COPIES),
            ("the sums X^T diag(w) Y on each device", (n, m), 4, _DEVICE_SUM_COPIES + groups)]
  if gram:
    arrays.append(("the Gram matrix on each device", (n, n), 4, _DEVICE_SUM_COPIES + groups))
  _validation.check_memory(asked, arrays, available=_device_free_bytes(mesh))


def _place_weights(sample_weight, t: int, mesh, row_axes):
  """``(scale, w)``: a scalar weight becomes ``scale`` (w None), an array is placed."""
  if sample_weight is None:
    return 1.0, None
  if np.ndim(sample_weight) == 0:
    scale = float(_validation.check_sample_weight(sample_weight, 1)[0])
    return scale, None
  if not isinstance(sample_weight, jax.Array):
    _validation.check_not_masked("sample_weight", sample_weight)
    sample_weight = np.asarray(sample_weight)
  _validation.check_weight_dtype(sample_weight.dtype, t)
  _validation.check_weight_shape(sample_weight.shape, t)
  return 1.0, _place(sample_weight, mesh, row_axes)


def _raise_for_invalid(checks: dict, t: int, m: int, soft: bool, weighted: bool) -> None:
  """The single-device path's ValueErrors, from the reductions of the device pass."""
  first = lambda row: None if row >= t else int(row)  # noqa: E731 (sentinel t: none)
  _validation.check_finite_summary(first(checks["x_nonfinite_row"]))
  if not soft:
    _validation.check_integral_labels(bool(checks["y_integral"]))
    _validation.check_label_range(int(checks["y_min"]), int(checks["y_max"]), m)
  else:
    _validation.check_soft_label_summary(bool(checks["y_finite"]), float(checks["y_min"]),
                                         first(checks["y_bad_sum_row"]))
  if weighted:
    _validation.check_weight_summary(bool(checks["w_finite"]) and checks["w_min"] >= 0,
                                     float(checks["w_sum"]))


# -- host partitions of a multi-process array -------------------------------------------

# Bytes of an error message shared between processes (longer ones are cut).
_MESSAGE_BYTES = 4096


def _allgather(a: np.ndarray) -> np.ndarray:
  """(processes, ...) array of every process's ``a``, in process order, bit for bit."""
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(a))


class ProcessLocalParts:
  """The rows of a multi-process ``jax.Array`` that this process holds, as host partitions.

  Multi-controller JAX runs one Python process per host; each holds some rows
  (its addressable shards). Every sum over samples is evaluated per process on
  its own rows, in float64 on the host, and the per-process results are
  all-gathered bit for bit (float64 as pairs of uint32 words: JAX computes in
  32 bits unless x64 is on, and a float32 ``psum`` would round the gradient)
  and added in process order. Every process thus gets the very same float64
  sums, and a host optimiser (scipy's L-BFGS in [`es.refine`][explicit_softmax.refinement.refine])
  takes the same steps on every process. Every process must make the same calls.

  Args:
    X: (T, N) ``jax.Array`` with a ``NamedSharding`` whose rows are split (a
      split feature axis is re-laid out to whole rows first).
    y: (T,) labels or (T, M) soft labels: a global ``jax.Array`` (any sharding)
      or a host array identical on every process.
    sample_weight: None, or (T,) weights as for ``y``.
    n_classes: M; inferred from the labels if None (one all-gather).

  Attributes:
    n_samples: T.
    n_features: N.
    n_classes: M.
    parts: this process's partitions, one per addressable shard of rows (its rows of ``X``,
      ``y`` and the weights, and where they start in ``X``).
  """

  def __init__(self, X: jax.Array, y: Labels, sample_weight: SampleWeight = None,
               n_classes: int | None = None):
    if X.ndim != 2:
      raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    mesh, row_axes = _row_layout(X)
    rows = NamedSharding(mesh, PartitionSpec(row_axes or None, None))
    if not isinstance(X.sharding, NamedSharding) or tuple(X.sharding.spec)[1:2] not in ((), (None,)):
      X = jax.device_put(X, rows)  # whole rows per device (a collective)
    t, n = X.shape
    self.n_samples, self.n_features = int(t), int(n)
    if not isinstance(y, jax.Array):
      y = np.asarray(y)
    n_classes = _validation.check_layout(y, t, n_classes)

    def local(a):
      """``start row -> this process's rows of a`` (None: no array)."""
      if a is None:
        return {}
      if isinstance(a, jax.Array):
        a = _place(a, mesh, row_axes)  # like X's rows (a no-op if already)
        return {s.index[0].start or 0: np.asarray(s.data) for s in a.addressable_shards
                if s.replica_id == 0}
      a = np.asarray(a)
      if a.ndim == 0:
        a = np.full(t, a)
      if a.shape[:1] != (t,):
        raise ValueError(f"sample_weight must have shape ({t},) to match X; got {a.shape}.")
      return a

    ys, ws = local(y), local(sample_weight)
    self.parts = []
    shards = sorted((s for s in X.addressable_shards if s.replica_id == 0),
                    key=lambda s: s.index[0].start or 0)
    for shard in shards:
      start = shard.index[0].start or 0
      x = np.asarray(shard.data)
      pick = lambda a: a.get(start) if isinstance(a, dict) else a[start:start + len(x)]
      # Row shards of a NamedSharding are equal in size: the shard's number.
      self.parts.append(_one_partition.Partition(
          start // max(len(x), 1), start, x, pick(ys),
          None if sample_weight is None else pick(ws)))
    if n_classes is None:
      n_classes = int(self.map_reduce(_one_partition.classes_of, (), max, n_classes=None))
    self.n_classes = int(n_classes)

  def map_reduce(self, fn, args=(), combine=None, *, n_classes="default"):
    """``combine`` over every process's partitions of ``fn(partition, *args)``.

    ``fn`` returns a float, an array or a tuple of them; the combined result is
    the same on every process (float64, added in process order).

    Raises:
      ValueError: on every process, the first failing process's error (naming
        its partition and row), so that no process waits for the others.
    """
    m = self.n_classes if n_classes == "default" else n_classes
    local, error = None, ""
    try:
      for part in self.parts:
        out = _one_partition.run(fn, part, args, m)
        local = out if local is None else combine(local, out)
      if local is None:
        error = f"process {jax.process_index()} holds no rows; give every process some."
    except ValueError as err:
      error = f"process {jax.process_index()}: {err}"
    text = np.zeros(_MESSAGE_BYTES, np.uint8)
    raw = error.encode()[:_MESSAGE_BYTES]
    text[:len(raw)] = np.frombuffer(raw, np.uint8)
    for row in _allgather(text):  # every process learns of any error, then raises it
      message = bytes(row).rstrip(b"\0").decode(errors="replace")
      if message:
        raise ValueError(message)
    leaves = local if isinstance(local, tuple) else (local,)
    flat = np.concatenate([np.asarray(v, np.float64).ravel() for v in leaves])
    gathered = _allgather(flat.view(np.uint32)).view(np.float64)
    total = None
    for row in gathered:  # process order: the same additions on every process
      values, at = [], 0
      for v in leaves:
        size = np.size(v)
        piece = row[at:at + size]
        values.append(piece.reshape(np.shape(v)) if np.ndim(v) else float(piece[0]))
        at += size
      value = tuple(values) if isinstance(local, tuple) else values[0]
      total = value if total is None else combine(total, value)
    return total
