"""The jitted float32 loop: optax transformations minimising ``J`` (4) on the device.

Any ``optax.GradientTransformation`` takes the steps, full batch or on minibatches drawn without
replacement (one permutation per epoch); the named methods ``"adam"`` and ``"sgd"`` are shortcuts
(``shortcut``) for ``optax.adam`` and ``optax.sgd``. A step's update is
``tx.update(grad J, state, params)`` and the new parameters ``optax.apply_updates`` of it, in the
variables ``(W, b)`` or ``V`` with ``[W; b] = P V`` (``es._preconditioning``). Full-batch L-BFGS on
data too large for the host runs optax's ``lbfgs`` here too.

Steps are module-level jitted functions taking the data as arguments, so their
compilation is cached across calls (per input kind, shape and transformation).

References:
  D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
  D. C. Liu and J. Nocedal, "On the limited memory BFGS method for large
  scale optimization", Mathematical Programming 45 (1989).
  DeepMind et al., "The DeepMind JAX Ecosystem" (optax), 2020,
  https://github.com/google-deepmind/optax.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from explicit_softmax import _design
from explicit_softmax import _targets
from explicit_softmax import _convergence

# The named first-order methods and their default learning rates.
FACTORIES = {"adam": optax.adam, "sgd": optax.sgd}
DEFAULT_LEARNING_RATE = {"adam": 1e-2, "sgd": 0.5}


@functools.cache
def shortcut(method: str) -> optax.GradientTransformationExtraArgs:
  """The transformation of a named method, its learning rate set before each step.

  ``optax.inject_hyperparams`` keeps the rate in the optimiser state, where the
  loop writes the host's checked value at each step: one compilation serves
  every rate and schedule, and a schedule may be any Python function of the
  step. Cached, so that every call reuses that compilation.
  """
  return optax.inject_hyperparams(FACTORIES[method])(learning_rate=0.0)


def _with_rate(state, rate):
  """``state`` with a shortcut's learning rate ``rate`` (None: a user transformation's own)."""
  if rate is None:
    return state
  return state._replace(hyperparams={**state.hyperparams, "learning_rate": rate})


def weighted_cross_entropy(logits, y, w):
  """The weighted cross-entropy sum of (1), ``-sum_t w_t sum_j Y_tj log p_tj``.

  Args:
    logits: (rows, M) ``x W + b``.
    y: (rows,) integer labels or (rows, M) soft labels.
    w: (rows,) sample weights (divide by their total for the mean (1)).

  Returns:
    A scalar; differentiable (its gradient in ``logits`` is ``diag(w)(P - Y)``).
  """
  if y.ndim == 1:
    losses = optax.losses.softmax_cross_entropy_with_integer_labels(logits, y)
  else:
    losses = optax.losses.softmax_cross_entropy(logits, y)
  return jnp.sum(w * losses)


def unpack(params, precond):
  """``(W, b)`` from the optimised variables: themselves, or ``[W; b] = P V`` (jax)."""
  if precond is None:
    return params
  theta = jnp.matmul(precond, params, precision=jax.lax.Precision.HIGHEST)  # not TF32 on GPUs
  return theta[:-1], theta[-1]


def device_objective(params, data, y, w, l2, precond, logits_fn):
  """``J`` (4) in jax: weighted mean cross-entropy (1) plus ``(l2/2)||W||^2``.

  Args:
    params: ``(W, b)``, or ``V`` with ``[W; b] = P V``.
    data: the design's device form; ``logits_fn(data, W)`` gives ``X W``.
    y: (T,) labels or (T, M) soft labels.
    w: (T,) sample weights summing to one.
    l2: the penalty on ``W``.
    precond: ``P`` as a dense array, or None.
    logits_fn: the design's jax product.
  """
  weights, bias = unpack(params, precond)
  logits = logits_fn(data, weights) + bias
  return weighted_cross_entropy(logits, y, w) + 0.5 * l2 * jnp.sum(weights**2)


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["data", "y", "w", "l2", "precond"], meta_fields=["logits_fn"])
@dataclasses.dataclass(frozen=True)
class DeviceObjective:
  """``J`` (4) on device data, as a function of the optimised parameters.

  Attributes:
    data: the design's device form (see ``jax_data``).
    y: (T,) int32 labels or (T, M) float32 soft labels.
    w: (T,) float32 sample weights summing to one.
    l2: the penalty on ``W``.
    precond: ``P`` as a dense float32 array, or None.
    logits_fn: the design's ``X W`` in jax (static: part of the compiled step).
  """

  data: Any
  y: Any
  w: Any
  l2: Any
  precond: Any
  logits_fn: Callable

  def __call__(self, params):
    return device_objective(params, self.data, self.y, self.w, self.l2,
                                      self.precond, self.logits_fn)

  def rows(self, idx) -> "DeviceObjective":
    """``J`` on the rows ``idx``, their weights renormalised to sum to one (see
    ``batch_weights``)."""
    return dataclasses.replace(self, data=self.data[idx], y=self.y[idx],
                               w=batch_weights(self.w[idx]))


def batch_weights(w):
  """A minibatch's weights renormalised to sum to one; all zero if they sum to zero.

  A batch drawn only from rows of weight zero carries no data: its loss term is
  zero (its step is the penalty's alone), not 0/0, which would read as a
  diverged run.
  """
  total = w.sum()
  return w / jnp.where(total > 0, total, 1)


def _device_targets(targets: _targets.Targets):
  if targets.labels is not None:
    return jnp.asarray(targets.labels, jnp.int32)
  return jnp.asarray(targets.probs, jnp.float32)


def _update(params, state, fn: DeviceObjective, rate, tx):
  """One step of ``tx`` on ``fn``: ``(params, state, J before it, ||grad J||)``."""
  value, grad = jax.value_and_grad(fn)(params)
  # The extra arguments serve transformations that take them (optax.lbfgs's
  # line search, optax.polyak_sgd); the others ignore them.
  updates, state = optax.with_extra_args_support(tx).update(
      grad, _with_rate(state, rate), params, value=value, grad=grad, value_fn=fn)
  return optax.apply_updates(params, updates), state, value, optax.tree_utils.tree_norm(grad)


_step = jax.jit(_update, static_argnames="tx")


@functools.partial(jax.jit, static_argnames=("tx", "batch_size"))
def _epoch(params, state, fn, perm, rates, begin, end, *, tx, batch_size):
  """Steps ``begin..end-1`` of one epoch in a single jitted loop.

  Step ``i`` trains on the rows ``perm[i B:(i + 1) B]`` at ``rates[i]`` (None: the
  transformation's own rate). ``begin`` and ``end`` are traced, so every segment
  of an epoch reuses one compilation; one Python call per segment instead of per
  step removes the per-step dispatch and host synchronisation (about 2/3 of a
  batch-128 MNIST step on the CPU).

  Returns:
    ``(params, state, losses, grad_norms)``; the last two are epoch-long arrays
    filled at ``begin..end-1``.
  """
  def body(i, carry):
    params, state, losses, norms = carry
    idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
    params, state, value, norm = _update(params, state, fn.rows(idx),
                                         None if rates is None else rates[i], tx)
    return params, state, losses.at[i].set(value), norms.at[i].set(norm)

  empty = jnp.zeros(perm.shape[0] // batch_size, jnp.float32)
  return jax.lax.fori_loop(begin, end, body, (params, state, empty, empty))


@jax.jit
def _lbfgs_step(params, state, fn: DeviceObjective):
  """One optax L-BFGS step: ``(params, state, J before, J after, ||grad J|| after)``."""
  value, grad = optax.value_and_grad_from_state(fn)(params, state=state)
  updates, state = optax.lbfgs().update(grad, state, params, value=value, grad=grad,
                                        value_fn=fn)
  params = optax.apply_updates(params, updates)
  new_value = optax.tree_utils.tree_get(state, "value")
  new_grad = optax.tree_utils.tree_get(state, "grad")
  return params, state, value, new_value, optax.tree_utils.tree_norm(new_grad)


class _Steps:
  """The optimiser's parameters and state between segments of the loop.

  ``advance(k, limit)`` takes steps ``k, k+1, ...`` (at least one, at most
  ``limit``) and returns their ``(losses, grad_norms)``, or None where L-BFGS
  refuses its next step.
  """

  def __init__(self, tx, fn: DeviceObjective, params):
    self.tx, self.fn, self.params = tx, fn, params
    self.state = tx.init(params)

  def theta(self) -> np.ndarray:
    """``[W; b]`` (float64 host array) of the current parameters."""
    weights, bias = unpack(self.params, self.fn.precond)
    return np.vstack([np.asarray(weights, np.float64), np.asarray(bias, np.float64)])


class _LBFGS(_Steps):
  """optax's L-BFGS, full batch; stops before a step that raises the loss."""

  def __init__(self, fn: DeviceObjective, params):
    super().__init__(optax.lbfgs(), fn, params)

  def advance(self, k: int, limit: int):
    params, state, old_value, value, norm = _lbfgs_step(self.params, self.state, self.fn)
    value = float(value)
    if not np.isfinite(value) or value > float(old_value):
      # The zoom line search accepts approximately-Wolfe points that may raise
      # the loss by float32 round-off near the optimum: stop before such a
      # step, so the training loss never increases.
      return None
    self.params, self.state = params, state
    return [value], [float(norm)]


class _FullBatch(_Steps):
  """A transformation's steps on all rows; ``rate_at(k)`` a shortcut's rate (or None)."""

  def __init__(self, tx, fn: DeviceObjective, params, rate_at):
    super().__init__(tx, fn, params)
    self.rate_at = rate_at

  def rate(self, k: int):
    return None if self.rate_at is None else jnp.float32(self.rate_at(k))

  def advance(self, k: int, limit: int):
    self.params, self.state, value, norm = _step(self.params, self.state, self.fn,
                                                 self.rate(k), tx=self.tx)
    return [float(value)], [float(norm)]


class _Minibatches(_FullBatch):
  """Steps on batches of ``batch_size`` rows, one seeded permutation per epoch.

  On the device the steps up to ``limit`` (within an epoch) run in one jitted
  loop, ``_epoch``. A sparse matrix cannot be row-gathered inside jit: it
  is sliced on the host and densified one batch at a time (``host`` holds its
  design, targets and weights).
  """

  def __init__(self, tx, fn, params, rate_at, *, t: int, batch_size: int, steps: int,
               seed: int, host: tuple | None = None):
    super().__init__(tx, fn, params, rate_at)
    self.t, self.batch_size, self.steps, self.host = t, batch_size, steps, host
    self.per_epoch = t // batch_size
    self.rng = np.random.default_rng(seed)
    # The current epoch's row order (and on the device its rows and rates), drawn at its first step.
    self.order: np.ndarray | None = None
    self.perm: jax.Array | None = None
    self.rates: jax.Array | None = None

  def advance(self, k: int, limit: int):
    pos = k % self.per_epoch
    if pos == 0:
      self.order = self.rng.permutation(self.t)
      if self.host is None:
        self._new_device_epoch(k)
    if self.host is not None:
      batch = self._host_batch(self.order[pos * self.batch_size:(pos + 1) * self.batch_size])
      self.params, self.state, value, norm = _step(self.params, self.state, batch,
                                                   self.rate(k), tx=self.tx)
      return [float(value)], [float(norm)]
    n = min(self.per_epoch - pos, limit)
    self.params, self.state, losses, norms = _epoch(
        self.params, self.state, self.fn, self.perm, self.rates, pos, pos + n, tx=self.tx,
        batch_size=self.batch_size)
    return np.asarray(losses)[pos:pos + n].tolist(), np.asarray(norms)[pos:pos + n].tolist()

  def _new_device_epoch(self, k: int) -> None:
    """The epoch's rows on the device, and its rates (those of its remaining steps)."""
    self.perm = jnp.asarray(self.order[:self.per_epoch * self.batch_size], jnp.int32)
    self.rates = None
    if self.rate_at is not None:
      rates = np.zeros(self.per_epoch, np.float32)
      todo = min(self.per_epoch, self.steps - k)
      rates[:todo] = [self.rate_at(k + i) for i in range(todo)]
      self.rates = jnp.asarray(rates)

  def _host_batch(self, idx) -> DeviceObjective:
    """``J`` on the rows ``idx`` of the host's sparse design, densified on the device."""
    design, targets, w = self.host
    part, part_w = design.take(idx), w[idx]
    return dataclasses.replace(
        self.fn, data=jnp.asarray(part.x.toarray(), jnp.float32),
        y=_device_targets(targets.take(idx)), w=batch_weights(jnp.asarray(part_w, jnp.float32)))


def _drive(steps_of: _LBFGS | _FullBatch, steps: int, threshold: float, reason: str,
           record: _convergence.Recorder) -> str:
  """Runs segments of steps until ``steps``, the callback, or ``||grad J|| <= threshold``.

  Segments end at the steps the callback is due (``record.segment``); the
  steps of one segment share its time evenly.

  Returns:
    The key of ``es._convergence.REASONS`` (``reason`` after
    all ``steps``).
  """
  clock, every, k = record.clock, record.segment, 0
  while k < steps:
    begun = clock.now()
    limit = steps - k if every is None else min(steps - k, every - k % every)
    taken = steps_of.advance(k, limit)
    if taken is None:
      return "stalled"
    losses, norms = taken
    done, n = clock.now(), len(losses)
    for i in range(n - 1):
      record(k + i, None, losses[i], norms[i], begun + (done - begun) * (i + 1) / n)
    k += n
    if record(k - 1, steps_of.theta, losses[-1], norms[-1], done):
      return "callback"
    if norms[-1] <= threshold:
      return "tol"
  return reason


def run(theta0: np.ndarray, precond, design, targets, w, l2: float, *, tx, rate_at,
        batch_size: int | None, steps: int, threshold: float, seed: int,
        record: _convergence.Recorder) -> tuple[np.ndarray, str]:
  """Minimises ``J`` (4) from ``theta0`` with jitted float32 steps.

  Args:
    theta0: (N+1, M) start ``[W; b]`` (or ``V`` with ``[W; b] = P V``).
    precond: ``P`` or None.
    design: the validated design; targets, w: its targets and weights (sum 1).
    l2: the penalty on ``W``.
    tx: ``"lbfgs"`` (optax's, full batch) or an ``optax.GradientTransformation``.
    rate_at: ``step -> learning rate`` of a ``shortcut`` (None: ``tx``'s own).
    batch_size: rows per step (None or at least T: full batch).
    steps: the maximum number of steps.
    threshold: stop once the full-batch gradient norm is at most this.
    seed: seed of the minibatch order.
    record: the run's ``Recorder``.

  Returns:
    ``(theta, reason)`` with ``theta = [W; b]`` (float64 host array).
  """
  t = design.shape[0]
  minibatch = batch_size is not None and batch_size < t
  host_batches = minibatch and type(design) is _design.SparseDesign
  fn = DeviceObjective(
      None if host_batches else design.jax_data(),
      None if host_batches else _device_targets(targets),
      None if host_batches else jnp.asarray(w, jnp.float32), jnp.float32(l2),
      None if precond is None else jnp.asarray(precond.matrix(), jnp.float32),
      type(design).jax_logits)
  params = (jnp.asarray(theta0, jnp.float32) if precond is not None else
            (jnp.asarray(theta0[:-1], jnp.float32), jnp.asarray(theta0[-1], jnp.float32)))
  if isinstance(tx, str):
    steps_of: _LBFGS | _FullBatch = _LBFGS(fn, params)
  elif minibatch:
    steps_of = _Minibatches(tx, fn, params, rate_at, t=t, batch_size=batch_size, steps=steps,
                            seed=seed, host=(design, targets, w) if host_batches else None)
  else:
    steps_of = _FullBatch(tx, fn, params, rate_at)
  reason = _drive(steps_of, steps, threshold, "stochastic" if minibatch else "steps", record)
  return steps_of.theta(), reason
