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
