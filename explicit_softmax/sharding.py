"""Sufficient statistics of data sharded over several devices (and hosts).

The statistics of :mod:`explicit_softmax.statistics` are sums over samples, so
data split over devices along the sample axis needs one local pass per device
and one all-reduce:

    F = X^T diag(w) Y = sum_d X_d^T diag(w_d) Y_d,                     (1)

and likewise for ``c = Y^T w``, ``T_w``, ``sum_t w_t m_t^2`` and the Gram
matrix. :func:`sharded_sums` runs that pass with ``jax.shard_map``: each
device reads its rows in chunks of ``CHUNK_ROWS``, forms the chunk products in
float32 (JAX computes in float32 unless x64 mode is on) as sums of 64-row
blocks, accumulates the chunks with compensated (Kahan) summation, and
``jax.lax.psum`` adds the per-device sums (their float32 high and low parts
separately); the host adds the two parts in float64. The result agrees with the
single-device (float64) statistics to ~3e-7 relative, whatever the number of
devices, and one-hot counts stay exact far beyond float32's 2^24.

``SoftmaxStats.from_data`` (hence ``es.fit``) dispatches here whenever ``X`` is
a ``jax.Array`` whose sharding spans more than one device, or that lives on one
accelerator (see :func:`computes_on_device`), e.g.::

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

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from explicit_softmax import _partition
from explicit_softmax import _validation
from explicit_softmax._typing import Features, Labels, SampleWeight

# Rows per chunk (one step of each device's scan). The rounding error depends on
# the 64-row blocks inside a chunk (``_BLOCK_ROWS``), not on this size.
CHUNK_ROWS = 2048

# Full float32 products. On GPUs, JAX's default float32 matmul rounds its inputs
# to TF32 (10-bit mantissa): the sums then drift by ~5e-5 relative (measured on
# an H100), and one-hot counts above 2^11 stop being exact.
_EXACT = jax.lax.Precision.HIGHEST


def is_sharded(X: Features) -> bool:
  """True if ``X`` is a ``jax.Array`` whose sharding spans more than one device.

  Args:
    X: any input accepted by :meth:`SoftmaxStats.from_data`.

  Returns:
    Whether ``X`` is split over several devices.
  """
  return len(_devices(X)) > 1


def computes_on_device(X: Features) -> bool:
  """True if the statistics of ``X`` are computed by the jitted device pass.

  That is the case for a ``jax.Array`` split over several devices, or held by one
  accelerator (GPU, TPU): its rows are reduced where they are, and only the
  (N, M) sums travel to the host. A ``jax.Array`` on the CPU takes the host
  path (numpy and scipy), which is faster there: ``benchmarks/bench_fit.py``
  times both.

  Args:
    X: any input accepted by :meth:`SoftmaxStats.from_data`.

  Returns:
    Whether :meth:`SoftmaxStats.from_data` dispatches to :func:`sharded_sums`.
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

  No process can read such an array whole (``np.asarray`` fails): the
  statistics reduce it with :func:`sharded_sums`, and refinement
  evaluates each process's rows where they are (:class:`ProcessLocalParts`).
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
  """The sums of (1) over data sharded over devices, reduced with ``psum``.

  :meth:`explicit_softmax.SoftmaxStats.from_data` calls this for arrays on
  accelerators or sharded over devices, and
  :meth:`explicit_softmax.SoftmaxStats.from_sharded` on any ``jax.Array``.

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
    The fields of :class:`explicit_softmax.SoftmaxStats` (``cooccurrence``,
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

  y, soft, n_classes = _place_targets(y, t, n_classes, mesh, row_axes)
  _validation.check_dense_size(n, n_classes)
  scale, w = _place_weights(sample_weight, t, mesh, row_axes)
  chunk = CHUNK_ROWS if chunk_rows is None else _validation.check_integer("chunk_rows", chunk_rows)
  n_shards = math.prod(mesh.shape[a] for a in row_axes)
  chunk = min(chunk, t // n_shards)
  kernel = _build_kernel(mesh, row_axes, t // n_shards, n_classes, soft, w is not None,
                         gram, chunk, _groups(chunk, n, n_classes, gram))
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


def _place_targets(y, t: int, n_classes, mesh, row_axes):
  """Checks ``y``'s shape and dtype, places it, and infers M; values are checked on device."""
  if not isinstance(y, jax.Array):
    y = np.asarray(y)
  n_classes = _validation.check_layout(y, t, n_classes)
  soft = y.ndim == 2
  if soft:
    return _place(y, mesh, row_axes), True, int(y.shape[1])
  y = _place(y, mesh, row_axes)
  if n_classes is None:
    top = float(jax.jit(jnp.max)(y))
    _validation.check_integral_labels(math.isfinite(top))
    n_classes = max(int(top) + 1, 1)
  return y, False, int(n_classes)


def _place_weights(sample_weight, t: int, mesh, row_axes):
  """``(scale, w)``: a scalar weight becomes ``scale`` (w None), an array is placed."""
  if sample_weight is None:
    return 1.0, None
  if np.ndim(sample_weight) == 0:
    scale = float(_validation.check_sample_weight(sample_weight, 1)[0])
    return scale, None
  if not isinstance(sample_weight, jax.Array):
    sample_weight = np.asarray(sample_weight)
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


# -- the per-device pass -------------------------------------------------------------

# A chunk's products are formed as sums of blocks of this many rows ...
_BLOCK_ROWS = 64
# ... unless the per-block partial products would exceed this many floats.
_GROUP_ELEMENTS = 2**22


def _groups(chunk: int, n: int, m: int, gram: bool) -> int:
  """How many row blocks a chunk's products are split into (a power of two)."""
  if chunk % _BLOCK_ROWS:
    return 1
  groups = chunk // _BLOCK_ROWS
  size = max(n * m, n * n if gram else 0)
  while groups > 1 and (groups * size > _GROUP_ELEMENTS or (chunk // _BLOCK_ROWS) % groups):
    groups //= 2
  return groups

def _kahan_add(acc, value):
  """Compensated summation: ``acc = (sum, c)`` with the true sum ``~ sum - c``."""
  s, c = acc
  y = value - c
  new = s + y
  return new, (new - s) - y


# How each validation reduction combines over chunks and devices.
_CHECKS = {"x_nonfinite_row": "min", "x_min": "min", "y_finite": "min", "y_min": "min", "y_bad_sum_row": "min",
           "y_integral": "min", "y_max": "max"}
_MERGE = {"min": jnp.minimum, "max": jnp.maximum, "sum": jnp.add}


@functools.lru_cache(maxsize=64)
def _build_kernel(mesh, row_axes: tuple, local_rows: int, m: int, soft: bool,
                  weighted: bool, gram: bool, chunk: int, groups: int):
  """A jitted ``shard_map`` pass: per-device chunked sums, then ``psum`` over ``row_axes``.

  Each device scans its rows in ``ceil(local_rows / chunk)`` chunks of ``chunk``
  rows; the last chunk is shifted back to end at the last row and its rows that
  an earlier chunk already read get weight zero, so one chunk body serves all.
  """
  n_chunks = -(-local_rows // chunk)

  def _grouped_product(a, b):
    """``a^T b`` as a sum of ``groups`` products of ``chunk / groups`` rows each.

    XLA's CPU dot accumulates a long contraction in one float32 sum, whose
    rounding drifts (up to ~1e-5 relative over 2048 near-constant terms); blocks
    of ``_BLOCK_ROWS`` rows, added at the end, keep a chunk's error near 2e-7.
    """
    if groups == 1:
      return jnp.matmul(a.T, b, precision=_EXACT)
    a = a.reshape(groups, -1, a.shape[1])
    b = b.reshape(groups, -1, b.shape[1])
    return jnp.einsum("gra,grb->gab", a, b, precision=_EXACT).sum(axis=0)
  sentinel = np.iinfo(np.int32).max
  reduce = {"sum": jax.lax.psum, "min": jax.lax.pmin, "max": jax.lax.pmax}
  collective = lambda kind, v: reduce[kind](v, row_axes) if row_axes else v
  varying = (lambda v: jax.lax.pcast(v, row_axes, to="varying")) if row_axes else (lambda v: v)

  def chunk_terms(x, y, w, rows):
    """Sums and validation reductions of one chunk; ``rows`` are its global row ids."""
    valid = w != 0
    x = x.astype(jnp.float32)
    if soft:
      target = y.astype(jnp.float32)
    else:
      target = jax.nn.one_hot(y.astype(jnp.int32), m, dtype=jnp.float32)
    mass = x.sum(axis=1)
    weighted_target = target * w[:, None]
    # Vector sums are XLA reductions (accurate to ~1e-8); products are blocked.
    sums = {"cooccurrence": _grouped_product(x, weighted_target),
            "class_mass": weighted_target.sum(axis=0),
            "total_weight": w.sum(),
            "mass_sq": (w * mass * mass).sum()}
    if gram:
      sums["gram"] = _grouped_product(x, x * w[:, None])
    first = lambda bad: jnp.where(bad & valid, rows, sentinel).min()
    finite = jnp.isfinite(x).all(axis=1)
    checks = {"x_nonfinite_row": first(~finite),
              # Padding rows (weight 0) are copies of real rows, so need no masking.
              "x_min": jnp.where(jnp.isfinite(x), x, jnp.inf).min()}
    if soft:
      ok = jnp.isfinite(target)
      checks["y_finite"] = ok.all().astype(jnp.int32)
      checks["y_min"] = jnp.where(ok, target, 0).min()
      checks["y_bad_sum_row"] = first(jnp.abs(target.sum(axis=1) - 1) > _validation.ROW_SUM_ATOL)
    else:
      ok = jnp.isfinite(y) & (y == jnp.round(y))
      checks["y_integral"] = ok.all().astype(jnp.int32)
      y = jnp.where(ok, y, 0)
      checks["y_min"] = y.min().astype(jnp.float32)
      checks["y_max"] = y.max().astype(jnp.float32)
    return sums, checks

  def local(x, y, *maybe_w):
    offset = (jax.lax.axis_index(row_axes) * local_rows).astype(jnp.int32) if row_axes else 0
    w_all = maybe_w[0].astype(jnp.float32) if weighted else None
    if weighted:
      w_ok = jnp.isfinite(w_all)
      w_checks = {"w_finite": collective("min", w_ok.all().astype(jnp.int32)),
                  "w_min": collective("min", jnp.where(w_ok, w_all, 0).min()),
                  "w_sum": collective("sum", jnp.where(w_ok, w_all, 0).sum())}

    def body(carry, i):
      acc, checks = carry
      # dynamic_slice clamps the start, so the last chunk ends at the last row.
      start = jnp.minimum(i * chunk, local_rows - chunk)
      take = lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk, axis=0)
      fresh = start + jnp.arange(chunk) >= i * chunk
      w = fresh.astype(jnp.float32) if w_all is None else jnp.where(fresh, take(w_all), 0)
      sums, new = chunk_terms(take(x), take(y), w, offset + start + jnp.arange(chunk))
      acc = jax.tree.map(_kahan_add, acc, sums, is_leaf=lambda a: isinstance(a, tuple))
      checks = {k: _MERGE[_CHECKS[k]](checks[k], v) for k, v in new.items()}
      return (acc, checks), None

    shapes = jax.eval_shape(
        chunk_terms, x[:chunk], y[:chunk], jnp.ones(chunk, jnp.float32),
        jnp.arange(chunk))
    zeros = lambda s: varying(jnp.zeros(s.shape, s.dtype))
    acc = jax.tree.map(lambda s: (zeros(s), zeros(s)), shapes[0])
    identity = {"sum": 0, "max": -np.inf,
                "min": lambda s: sentinel if s.dtype == jnp.int32 else np.inf}
    checks = {}
    for k, s in shapes[1].items():
      value = identity[_CHECKS[k]]
      checks[k] = varying(jnp.full(s.shape, value(s) if callable(value) else value, s.dtype))
    (acc, checks), _ = jax.lax.scan(body, (acc, checks), jnp.arange(n_chunks))
    # High parts and (negated) compensations are reduced separately.
    sums = jax.tree.map(lambda a: (collective("sum", a[0]), collective("sum", -a[1])), acc,
                        is_leaf=lambda a: isinstance(a, tuple))
    checks = {k: collective(_CHECKS[k], v) for k, v in checks.items()}
    if weighted:
      checks.update(w_checks)
    return sums, checks

  rows = PartitionSpec(row_axes or None)
  in_specs: tuple[PartitionSpec, ...] = (PartitionSpec(row_axes or None, None),
                                         PartitionSpec(row_axes or None, None) if soft else rows)
  if weighted:
    in_specs += (rows,)
  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=in_specs,
                               out_specs=PartitionSpec()))


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
  sums, and a host optimiser (scipy's L-BFGS in :func:`explicit_softmax.refine`)
  takes the same steps on every process. Every process must make the same calls.

  Args:
    X: (T, N) ``jax.Array`` with a ``NamedSharding`` whose rows are split (a
      split feature axis is re-laid out to whole rows first).
    y: (T,) labels or (T, M) soft labels: a global ``jax.Array`` (any sharding)
      or a host array identical on every process.
    sample_weight: None, or (T,) weights as for ``y``.
    n_classes: M; inferred from the labels if None (one all-gather).

  Attributes:
    n_samples, n_features, n_classes: T, N and M.
    parts: this process's :class:`explicit_softmax._partition.Partition` list.
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
      self.parts.append(_partition.Partition(
          start // max(len(x), 1), start, x, pick(ys),
          None if sample_weight is None else pick(ws)))
    if n_classes is None:
      n_classes = int(self.map_reduce(_partition.classes_of, (), max, n_classes=None))
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
        out = _partition.run(fn, part, args, m)
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
