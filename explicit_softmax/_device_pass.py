"""The per-device pass of [`es.sharding.sharded_sums`][explicit_softmax.sharding.sharded_sums].

One jitted ``shard_map``: each device scans its rows in chunks, forms a chunk's
sums (``X^T diag(w) Y``, ``Y^T w``, ``sum w``, ``sum w |x|_1^2``, optionally the
Gram matrix) in float32 as sums of row blocks, accumulates the chunks with
compensated (Kahan) summation, and reduces the validation checks of every chunk
(first non-finite row, label range, soft-label sums) alongside; collectives
over the row axes then add the devices' sums and combine their checks. The host
side (placement, errors, float64 totals) is [`es.sharding`][explicit_softmax.sharding].

References:
  W. Kahan, "Further remarks on reducing truncation errors", Communications of
  the ACM 8(1), 1965 (compensated summation).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from explicit_softmax import _validation

# Full float32 products. On GPUs, JAX's default float32 matmul rounds its inputs
# to TF32 (10-bit mantissa): the sums then drift (docs/scaling.md, "One
# accelerator"), and one-hot counts above 2^11 stop being exact.
_EXACT = jax.lax.Precision.HIGHEST

# A chunk's products are formed as sums of blocks of this many rows ...
BLOCK_ROWS = 64
# ... unless the per-block partial products would exceed this many floats.
_GROUP_ELEMENTS = 2**22


def n_groups(chunk: int, n: int, m: int, gram: bool) -> int:
  """How many row blocks a chunk's products are split into (a power of two)."""
  if chunk % BLOCK_ROWS:
    return 1
  groups = chunk // BLOCK_ROWS
  size = max(n * m, n * n if gram else 0)
  while groups > 1 and (groups * size > _GROUP_ELEMENTS or (chunk // BLOCK_ROWS) % groups):
    groups //= 2
  return groups


def _kahan_add(acc, value):
  """Compensated summation: ``acc = (sum, c)`` with the true sum ``~ sum - c``."""
  s, c = acc
  y = value - c
  new = s + y
  return new, (new - s) - y


# How each validation reduction combines over chunks and devices.
_CHECKS = {"x_nonfinite_row": "min", "x_min": "min", "y_finite": "min", "y_min": "min",
           "y_bad_sum_row": "min", "y_integral": "min", "y_max": "max"}
_MERGE = {"min": jnp.minimum, "max": jnp.maximum, "sum": jnp.add}


# A row id larger than any real one: the identity of "first bad row" minima.
_SENTINEL = np.iinfo(np.int32).max
_COLLECTIVES = {"sum": jax.lax.psum, "min": jax.lax.pmin, "max": jax.lax.pmax}


def _grouped_product(a, b, groups: int):
  """``a^T b`` as a sum of ``groups`` products of ``chunk / groups`` rows each.

  XLA's CPU dot accumulates a long contraction in one float32 sum, whose
  rounding drifts (up to ~1e-5 relative over 2048 near-constant terms); blocks
  of ``BLOCK_ROWS`` rows, added at the end, keep a chunk's error near 2e-7.
  """
  if groups == 1:
    return jnp.matmul(a.T, b, precision=_EXACT)
  a = a.reshape(groups, -1, a.shape[1])
  b = b.reshape(groups, -1, b.shape[1])
  return jnp.einsum("gra,grb->gab", a, b, precision=_EXACT).sum(axis=0)


def _chunk_sums(x, target, w, gram: bool, groups: int) -> dict:
  """The additive sums of one chunk: ``X^T diag(w) Y``, ``Y^T w``, ``sum w``,
  ``sum w |x|_1^2`` and optionally the Gram matrix ``X^T diag(w) X``."""
  mass = x.sum(axis=1)
  weighted_target = target * w[:, None]
  # Vector sums are XLA reductions (accurate to ~1e-8); products are blocked.
  sums = {"cooccurrence": _grouped_product(x, weighted_target, groups),
          "class_mass": weighted_target.sum(axis=0),
          "total_weight": w.sum(),
          "mass_sq": (w * mass * mass).sum()}
  if gram:
    sums["gram"] = _grouped_product(x, x * w[:, None], groups)
  return sums


def _chunk_checks(x, y, target, w, rows, soft: bool) -> dict:
  """The validation reductions of one chunk (see ``_CHECKS``); ``rows`` are its
  global row ids, and rows of weight zero are never reported as bad."""
  valid = w != 0
  first = lambda bad: jnp.where(bad & valid, rows, _SENTINEL).min()
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
  return checks


def _chunk_terms(x, y, w, rows, *, m: int, soft: bool, gram: bool, groups: int):
  """``(sums, checks)`` of one chunk; ``rows`` are its global row ids."""
  x = x.astype(jnp.float32)
  if soft:
    target = y.astype(jnp.float32)
  else:
    target = jax.nn.one_hot(y.astype(jnp.int32), m, dtype=jnp.float32)
  return _chunk_sums(x, target, w, gram, groups), _chunk_checks(x, y, target, w, rows, soft)


def _collective(kind: str, v, row_axes: tuple):
  """``psum``/``pmin``/``pmax`` of ``v`` over ``row_axes`` (none: ``v`` itself)."""
  return _COLLECTIVES[kind](v, row_axes) if row_axes else v


def _varying(v, row_axes: tuple):
  """``v`` marked as differing between the devices of ``row_axes``."""
  return jax.lax.pcast(v, row_axes, to="varying") if row_axes else v


def _initial_carry(shapes, row_axes: tuple):
  """Zero (sum, compensation) pairs for the sums, the identity for each check."""
  zeros = lambda s: _varying(jnp.zeros(s.shape, s.dtype), row_axes)
  acc = jax.tree.map(lambda s: (zeros(s), zeros(s)), shapes[0])
  checks = {k: _varying(jnp.full(s.shape, _identity(_CHECKS[k], s.dtype), s.dtype), row_axes)
            for k, s in shapes[1].items()}
  return acc, checks


def _identity(kind: str, dtype) -> float:
  """The neutral start of a ``sum``, ``max`` or ``min`` reduction (a row id: none found)."""
  if kind == "min":
    return _SENTINEL if dtype == jnp.int32 else np.inf
  return 0 if kind == "sum" else -np.inf


def _local_pass(x, y, *maybe_w, terms, row_axes: tuple, local_rows: int, chunk: int):
  """One device's pass: a ``scan`` over its chunks, then collectives over ``row_axes``."""
  offset = (jax.lax.axis_index(row_axes) * local_rows).astype(jnp.int32) if row_axes else 0
  w_all = maybe_w[0].astype(jnp.float32) if maybe_w else None

  def body(carry, i):
    acc, checks = carry
    # dynamic_slice clamps the start, so the last chunk ends at the last row.
    start = jnp.minimum(i * chunk, local_rows - chunk)
    take = lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk, axis=0)
    fresh = start + jnp.arange(chunk) >= i * chunk
    w = fresh.astype(jnp.float32) if w_all is None else jnp.where(fresh, take(w_all), 0)
    sums, new = terms(take(x), take(y), w, offset + start + jnp.arange(chunk))
    acc = jax.tree.map(_kahan_add, acc, sums, is_leaf=lambda a: isinstance(a, tuple))
    checks = {k: _MERGE[_CHECKS[k]](checks[k], v) for k, v in new.items()}
    return (acc, checks), None

  shapes = jax.eval_shape(terms, x[:chunk], y[:chunk], jnp.ones(chunk, jnp.float32),
                          jnp.arange(chunk))
  (acc, checks), _ = jax.lax.scan(body, _initial_carry(shapes, row_axes),
                                  jnp.arange(-(-local_rows // chunk)))
  # High parts and (negated) compensations are reduced separately.
  sums = jax.tree.map(
      lambda a: (_collective("sum", a[0], row_axes), _collective("sum", -a[1], row_axes)),
      acc, is_leaf=lambda a: isinstance(a, tuple))
  checks = {k: _collective(_CHECKS[k], v, row_axes) for k, v in checks.items()}
  if w_all is not None:
    w_ok = jnp.isfinite(w_all)
    checks.update({
        "w_finite": _collective("min", w_ok.all().astype(jnp.int32), row_axes),
        "w_min": _collective("min", jnp.where(w_ok, w_all, 0).min(), row_axes),
        "w_sum": _collective("sum", jnp.where(w_ok, w_all, 0).sum(), row_axes)})
  return sums, checks


@functools.lru_cache(maxsize=64)
def build_kernel(mesh, row_axes: tuple, local_rows: int, m: int, soft: bool,
                  weighted: bool, gram: bool, chunk: int, groups: int):
  """A jitted ``shard_map`` pass: per-device chunked sums, then ``psum`` over ``row_axes``.

  Each device scans its rows in ``ceil(local_rows / chunk)`` chunks of ``chunk``
  rows; the last chunk is shifted back to end at the last row and its rows that
  an earlier chunk already read get weight zero, so one chunk body serves all.
  """
  terms = functools.partial(_chunk_terms, m=m, soft=soft, gram=gram, groups=groups)
  local = functools.partial(_local_pass, terms=terms, row_axes=row_axes,
                            local_rows=local_rows, chunk=chunk)
  rows = PartitionSpec(row_axes or None)
  in_specs: tuple[PartitionSpec, ...] = (PartitionSpec(row_axes or None, None),
                                         PartitionSpec(row_axes or None, None) if soft else rows)
  if weighted:
    in_specs += (rows,)
  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=in_specs,
                               out_specs=PartitionSpec()))
