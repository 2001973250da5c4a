"""Shared fixtures and data generators for the test suite."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI must be reproducible);
# HYPOTHESIS_PROFILE=explore draws fresh ones, to look for new counterexamples.
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

# Data shared with developers and CI (never needed by the library itself).
SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _shared_data_env():
  """Points the data loaders at ``../shared/data`` when it exists (CI, developers)."""
  if SHARED_DATA.is_dir() and "EXPLICIT_SOFTMAX_DATA" not in os.environ:
    os.environ["EXPLICIT_SOFTMAX_DATA"] = str(SHARED_DATA)
  yield


def one_hot_data(rng: np.random.Generator, n_features: int, n_classes: int,
                 n_samples: int, all_pairs: bool = True):
  """One-hot features with labels from random conditionals.

  With ``all_pairs`` every feature-class pair is made to occur at least once,
  so the exact optimum ``W_ij = log(F_ij / f_i)`` is finite.
  """
  cond = rng.dirichlet(np.ones(n_classes) * 2.0, size=n_features)
  feats = rng.integers(0, n_features, n_samples)
  labels = np.array([rng.choice(n_classes, p=cond[i]) for i in feats])
  if all_pairs:
    grid_f, grid_c = np.meshgrid(np.arange(n_features), np.arange(n_classes), indexing="ij")
    feats = np.concatenate([feats, grid_f.ravel()])
    labels = np.concatenate([labels, grid_c.ravel()])
  x = np.zeros((len(feats), n_features), np.float32)
  x[np.arange(len(feats)), feats] = 1
  return x, labels


def dense_data(rng: np.random.Generator, n_samples: int, n_features: int, n_classes: int):
  """Nonnegative dense features whose class depends on them (every row nonzero)."""
  x = rng.gamma(1.0, 1.0, size=(n_samples, n_features)).astype(np.float32)
  x[rng.random(x.shape) < 0.3] = 0
  x[:, 0] += 0.1  # no empty rows
  w = rng.normal(size=(n_features, n_classes))
  logits = x @ w
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  y = np.array([rng.choice(n_classes, p=row) for row in p])
  return x, y


def optimum_distance_bound(x, y, theta, l2: float, tol: float) -> float:
  """How far apart two fits of ``J = L + (l2/2)||W||^2`` may be, each stopped at ``tol``.

  Both stop once ``||grad J|| <= tol ||grad J(0)||`` (refine's test). ``J`` is
  strongly convex, modulo a common shift of the biases (compare centred
  biases), with modulus ``mu``, the smallest other eigenvalue of its Hessian;
  so each fit lies within ``||grad J|| / mu`` of the optimum and the two within
  ``2 tol ||grad J(0)|| / mu``. ``mu`` is taken at ``theta`` (near the
  optimum) and halved, since the curvature changes along the way; the models
  store float32 parameters, which adds a few float32 rounding units.

  Args:
    x: (T, N) features; y: (T,) labels; theta: (N+1, M) ``[W; b]`` near the
      optimum; l2, tol: as given to refine.

  Returns:
    A bound on ``||theta_a - theta_b||`` (Frobenius).
  """
  x1 = np.hstack([np.asarray(x, np.float64), np.ones((len(x), 1))])
  t, m = len(x), theta.shape[1]
  w = np.full(t, 1.0 / t)
  z = x1 @ theta
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  a = np.einsum("tj,jl->tjl", p, np.eye(m)) - np.einsum("tj,tl->tjl", p, p)
  n1 = x1.shape[1]
  hess = np.einsum("t,ti,tk,tjl->ijkl", w, x1, x1, a).reshape(n1 * m, n1 * m)
  hess[np.diag_indices((n1 - 1) * m)] += l2
  mu = np.linalg.eigvalsh(hess)[1]  # [0] is the common bias shift (zero curvature)
  y1 = np.eye(m)[y]
  grad0 = x1.T @ ((1.0 / m - y1) * w[:, None])
  return 2 * tol * np.linalg.norm(grad0) / (mu / 2) + 8 * 2.0**-24 * np.linalg.norm(theta)


def centred(model) -> np.ndarray:
  """``[W; b - mean(b)]`` in float64: parameters modulo the softmax's bias shift."""
  bias = model.bias.astype(np.float64)
  return np.vstack([model.weights.astype(np.float64), bias - bias.mean()])


def max_relative(a, b) -> float:
  """The largest entry-wise relative difference of ``a`` from ``b``."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))
