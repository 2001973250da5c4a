"""Adversarial inputs through the core entry points: each call either returns a
model that predicts finite probabilities or raises a ValueError; never another
exception type, a NaN model or a hang (issue "Nothing silently wrong")."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import explicit_softmax as es

_VALUES = st.sampled_from([0.0, 1.0, -1.0, 0.5, 3.0, 1e30, -1e30, 1e-30, np.nan, np.inf,
                           -np.inf, 255.0])
_NUMBERS = st.sampled_from([0.0, 0.1, 1.0, -1.0, float("nan"), float("inf"), "0.1", None, True,
                            1e300])


@st.composite
def _features(draw):
  t = draw(st.integers(0, 12))
  n = draw(st.integers(1, 4))
  base = np.random.default_rng(draw(st.integers(0, 99))).random((t, n))
  for _ in range(draw(st.integers(0, 3))):
    if t:
      base[draw(st.integers(0, t - 1)), draw(st.integers(0, n - 1))] = draw(_VALUES)
  kind = draw(st.sampled_from(["dense", "float32", "uint8", "sparse", "1d", "3d", "bool",
                               "object"]))
  if kind == "float32":
    with np.errstate(over="ignore"):
      return base.astype(np.float32)
  if kind == "uint8":
    return np.nan_to_num(np.clip(base, 0, 255)).astype(np.uint8)
  if kind == "sparse":
    return sp.csr_matrix(np.nan_to_num(base, nan=0.0, posinf=0.0, neginf=0.0))
  if kind == "1d":
    return base.ravel()
  if kind == "3d":
    return base[:, :, None]
  if kind == "bool":
    return base > 0.5
  if kind == "object":
    return base.astype(object)
  return base


@st.composite
def _labels(draw, t):
  kind = draw(st.sampled_from(["codes", "negative", "float", "strings", "short", "soft",
                               "bad_soft", "huge", "column"]))
  rng = np.random.default_rng(draw(st.integers(0, 99)))
  codes = rng.integers(0, 3, t)
  if kind == "negative":
    return codes - 1
  if kind == "float":
    return codes + 0.5
  if kind == "strings":
    return np.array(["a", "b", "c"])[codes].astype(object)
  if kind == "short":
    return codes[:-1]
  if kind == "soft":
    return np.eye(3)[codes] * 0.8 + 0.2 / 3
  if kind == "bad_soft":
    return np.eye(3)[codes] * 0.5
  if kind == "huge":
    return np.where(codes == 0, 2 * 10**8, codes)
  if kind == "column":
    return codes[:, None]
  return codes


def _check(call):
  try:
    model = call()
  except ValueError:
    return
  assert np.isfinite(model.weights).all() and np.isfinite(model.bias).all()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fit_returns_a_finite_model_or_a_value_error(data):
  x = data.draw(_features())
  t = x.shape[0] if hasattr(x, "shape") and x.ndim else 0
  y = data.draw(_labels(t))
  method = data.draw(st.sampled_from(["auto", "newton", "cooccurrence"]))
  kwargs = {}
  name = data.draw(st.sampled_from([None, "smoothing", "ridge", "l2", "tol", "sample_weight"]))
  if name == "sample_weight":
    kwargs[name] = data.draw(st.sampled_from([np.zeros(t), -np.ones(t), np.full(t, np.nan),
                                              ["w"] * t, np.ones(t + 1), 2.0]))
  elif name is not None:
    kwargs[name] = data.draw(_NUMBERS)
  _check(lambda: es.fit(x, y, method=method, **kwargs))


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_refine_calibrate_and_predict_refuse_or_stay_finite(data):
  rng = np.random.default_rng(0)
  model = es.fit(rng.random((30, 3)), rng.integers(0, 3, 30), method="newton")
  x = data.draw(_features())
  t = x.shape[0] if hasattr(x, "shape") and x.ndim else 0
  y = data.draw(_labels(t))
  call = data.draw(st.sampled_from(["refine", "calibrate", "predict"]))
  if call == "predict":
    try:
      p = model.predict_proba(x)
    except ValueError:
      return
    assert np.isfinite(p).all()
  elif call == "refine":
    steps = data.draw(st.sampled_from([0, 3, 2.5, -1, "3"]))
    _check(lambda: es.refine(model, x, y, steps=steps))
  else:
    _check(lambda: es.calibrate(model, x, y, l2=data.draw(_NUMBERS)))


@pytest.mark.parametrize("path", [None, 3, "", "missing.npz", b"bytes.npz"])
def test_load_of_anything_is_a_model_or_a_value_error(tmp_path, path):
  with pytest.raises(ValueError):
    es.load(path if not isinstance(path, str) or not path else tmp_path / path)
