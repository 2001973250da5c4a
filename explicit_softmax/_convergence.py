"""The record of a refinement run: per-step loss, gradient norm and time, and why it stopped.

Every loop reports each step to a ``Recorder``, which keeps the
[`History`][explicit_softmax.model.History], runs the user's callback and refuses a
diverged run; the reason a run stopped is one of ``REASONS``, as in scipy's
``OptimizeResult``.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from explicit_softmax import model as model_lib
from explicit_softmax import _objective

REASONS = {
    "tol": "converged: relative gradient norm <= tol",
    "steps": "reached the maximum number of steps",
    "stochastic": "ran the requested steps (minibatch steps have no convergence test)",
    "callback": "stopped by the callback",
    "stalled": "stopped: the line search could not decrease the loss further at this precision",
}


# Logits further apart than this give float64 probabilities of exactly 0 or 1
# (exp(-744.5) is below the smallest subnormal number).
SATURATED_LOGIT = float(-np.log(np.finfo(np.float64).smallest_subnormal))


def explain_stall(model: model_lib.SoftmaxModel, design, targets, w, l2: float) -> str:
  """The reason of a run that stalled before its first step, with the numbers behind it.

  A line search that cannot decrease the loss from the start at all found no
  step that changes the loss at float64 precision. The usual cause is a start
  whose logits on this ``X`` are enormous (a model fitted on features of another
  scale): every probability is then exactly 0 or 1, and the loss, a sum of the
  misclassified rows' margins, is too large for a step to change it visibly.
  """
  theta = np.vstack([model.weights, model.bias]).astype(np.float64)
  loss = _objective.penalised_objective(design, targets, w, theta, l2, need_grad=False)[0]
  text = (f"{REASONS['stalled']}, before the first step: the penalised loss at the start is "
          f"{loss:.3g} nats")
  if design.local:
    with np.errstate(over="ignore", invalid="ignore"):
      top = float(np.abs(design.logits(theta[:-1], np.float64) + theta[-1]).max())
    if not top <= SATURATED_LOGIT:
      text += (f", and the start's logits on X reach {top:.3g}, beyond the "
               f"{SATURATED_LOGIT:.0f} at which float64 probabilities are exactly 0 or 1. Was "
               "the model fitted on features of another scale? Rescale X to that scale, or "
               "start from a model fitted on this X (es.fit)")
  return text + "."


def diverged(what: str, step: int) -> ValueError:
  """The error of a run whose ``what`` became NaN or inf at ``step``."""
  return ValueError(
      f"refinement diverged: {what} NaN or inf at step {step}. Lower the learning rate "
      "(or use method='lbfgs', whose line search never increases the loss).")


def refined(model: model_lib.SoftmaxModel, theta: np.ndarray, step: int,
            **fields) -> model_lib.SoftmaxModel:
  """``model`` with parameters ``theta = [W; b]``; a clear error if they diverged."""
  if not np.isfinite(theta).all():
    raise diverged("the parameters are", step)
  return model.replace(weights=theta[:-1], bias=theta[-1], **fields)


class Clock:
  """Seconds since the call began, less the time spent in callbacks."""

  def __init__(self, entry: float):
    self._entry, self._paused = entry, 0.0

  def now(self) -> float:
    return time.perf_counter() - self._entry - self._paused

  def pause(self, seconds: float) -> None:
    self._paused += seconds


class Recorder:
  """Records each step and calls ``callback`` after every ``every``-th and the last.

  Args:
    model: the starting model (the callback sees it with the current parameters).
    callback: ``callback(step, model, record) -> bool | None``, or None.
    every: steps between callbacks.
    steps: the maximum number of steps (the last one is always called back).
    entry: ``time.perf_counter()`` when the call began (setup is timed too).
  """

  def __init__(self, model: model_lib.SoftmaxModel, callback: Callable | None, every: int,
               steps: int, entry: float):
    self.model, self.callback, self.every, self.steps = model, callback, every, steps
    self.clock = Clock(entry)
    self.losses: list[float] = []
    self.norms: list[float] = []
    self.seconds: list[float] = []

  @property
  def segment(self) -> int | None:
    """Steps between callbacks, which bound a jitted segment; None without a callback."""
    return None if self.callback is None else self.every

  def __call__(self, step: int, theta_fn: Callable[[], np.ndarray] | None, loss: float,
               norm: float, at: float | None = None) -> bool:
    """Records step ``step`` (done at ``at``, default now); True if the callback stops.

    ``theta_fn()`` gives ``[W; b]`` for the callback (None: no callback is due).
    """
    if not np.isfinite(loss):
      # Finite parameters can still overflow the logits: the loss is the first to show it.
      raise diverged("the training loss is", step)
    self.losses.append(float(loss))
    self.norms.append(float(norm))
    self.seconds.append(self.clock.now() if at is None else at)
    if self.callback is None or ((step + 1) % self.every and step + 1 != self.steps):
      return False
    paused = time.perf_counter()
    current = refined(self.model, theta_fn(), step, history=None)
    record = {"loss": self.losses[-1], "grad_norm": self.norms[-1], "seconds": self.seconds[-1]}
    stop = bool(self.callback(step, current, record))
    self.clock.pause(time.perf_counter() - paused)
    return stop

  def history(self) -> model_lib.History:
    """The per-step loss, gradient norm and seconds."""
    return model_lib.History(np.asarray(self.losses), np.asarray(self.norms),
                             np.asarray(self.seconds))
