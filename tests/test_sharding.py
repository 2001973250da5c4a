"""Statistics of data sharded over devices (``explicit_softmax.sharding``).

Several CPU devices need ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
before JAX starts, so the multi-device checks run in one subprocess that prints
its results as JSON; the in-process tests use a one-device mesh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import explicit_softmax as es
from explicit_softmax import sharding
from conftest import dense_data

_EIGHT_DEVICES = textwrap.dedent("""
    import json
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    import sys
    import explicit_softmax as es

    full = sys.argv[1] == "full"
    out = {"devices": jax.device_count()}
    rng = np.random.default_rng(0)
    t, n, m = 8 * 1000 + 8 * 13, 12, 4
    x = rng.gamma(1.0, 1.0, (t, n)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0
    x[:, 0] += 0.1
    y = rng.integers(0, m, t)
    w = rng.random(t)
    mesh = jax.make_mesh((8,), ("data",))
    rows = NamedSharding(mesh, P("data", None))
    xs = jax.device_put(x, rows)
    out["is_sharded"] = es.sharding.is_sharded(xs)

    def rel(a, b):
      return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))

    def compare(name, a, b):
      out[name] = {"cooccurrence": rel(a.cooccurrence, b.cooccurrence),
                   "class_mass": rel(a.class_mass, b.class_mass),
                   "total_weight": rel(np.array(a.total_weight), np.array(b.total_weight)),
                   "mass_sq": rel(np.array(a.mass_sq), np.array(b.mass_sq)),
                   "n_samples": [a.n_samples, b.n_samples],
                   "gram": None if a.gram is None else rel(a.gram, b.gram)}

    compare("plain", es.SoftmaxStats.from_data(xs, y, n_classes=m),
            es.SoftmaxStats.from_data(x, y, n_classes=m))
    mesh2 = jax.make_mesh((4, 2), ("hosts", "chips"))
    compare("two_axes", es.SoftmaxStats.from_data(
        jax.device_put(x, NamedSharding(mesh2, P(("hosts", "chips"), None))),
        jax.numpy.asarray(y)), es.SoftmaxStats.from_data(x, y))
    if full:
      compare("weighted_gram", es.SoftmaxStats.from_data(xs, y, sample_weight=w, gram=True),
              es.SoftmaxStats.from_data(x, y, sample_weight=w, gram=True))
      soft = np.eye(m)[y] * 0.7 + 0.3 / m
      compare("soft", es.SoftmaxStats.from_data(xs, soft), es.SoftmaxStats.from_data(x, soft))
      compare("feature_split", es.SoftmaxStats.from_data(
          jax.device_put(x, NamedSharding(mesh2, P("hosts", "chips"))), y),
          es.SoftmaxStats.from_data(x, y))

    for method in ("cooccurrence", "newton") if full else ("cooccurrence",):
      a, b = es.fit(xs, y, method=method), es.fit(x, y, method=method)
      out["fit_" + method] = float(np.abs(a.weights - b.weights).max() +
                                   np.abs(a.bias - b.bias).max())

    def error(fn):
      try:
        fn()
      except ValueError as err:
        return str(err)
      return None

    def sharded(a):
      return jax.device_put(a, rows)

    bad = x.copy(); bad[4321, 2] = np.nan
    out["err_nan"] = error(lambda: es.fit(sharded(bad), y, method="cooccurrence"))
    bad = x.copy(); bad[7001, 5] = -1.0
    out["err_negative"] = error(lambda: es.fit(sharded(bad), y, method="cooccurrence"))
    bad = x.copy(); bad[1234] = 0; bad[6000] = 0
    zero_rows = (es.SoftmaxStats.from_data(sharded(bad), y), es.SoftmaxStats.from_data(bad, y))
    out["zero_rows"] = rel(zero_rows[0].cooccurrence, zero_rows[1].cooccurrence)
    bad = x.copy(); bad[7001, 5] = -1.0
    out["min_feature"] = [es.SoftmaxStats.from_data(sharded(bad), y).min_feature,
                          es.SoftmaxStats.from_data(bad, y).min_feature]
    out["err_label_range"] = error(lambda: es.fit(xs, y, n_classes=3, method="cooccurrence"))
    neg = y.copy(); neg[5] = -1
    out["err_negative_label"] = error(lambda: es.fit(xs, neg, n_classes=m, method="cooccurrence"))
    out["err_length"] = error(lambda: es.fit(xs, y[:-8], method="cooccurrence"))
    if full:
      out["err_weights"] = error(lambda: es.fit(xs, y, sample_weight=-w, method="cooccurrence"))
    print(json.dumps(out))
""")


def _run_on_eight_devices(mode: str) -> dict:
  """Runs the multi-device checks in a subprocess with 8 forced CPU devices."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES, mode], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def eight_devices():
  return _run_on_eight_devices("fast")


def _check_statistics(results, cases):
  for case in cases:
    res = results[case]
    assert res["n_samples"][0] == res["n_samples"][1]
    for key in ("cooccurrence", "class_mass", "mass_sq", "gram"):
      if res[key] is not None:
        assert res[key] < 1e-6, (case, key, res[key])
    # Weights travel as float32 to the devices: their sum agrees to float32 precision.
    assert res["total_weight"] < 1e-6, (case, res["total_weight"])


def test_eight_devices_give_the_single_device_statistics(eight_devices):
  assert eight_devices["devices"] == 8
  assert eight_devices["is_sharded"]
  _check_statistics(eight_devices, ("plain", "two_axes"))


def test_eight_devices_fit_the_single_device_model(eight_devices):
  assert eight_devices["fit_cooccurrence"] < 1e-5


@pytest.mark.slow
def test_eight_devices_soft_labels_feature_split_and_newton():
  results = _run_on_eight_devices("full")
  _check_statistics(results, ("plain", "weighted_gram", "two_axes", "soft", "feature_split"))
  assert results["fit_cooccurrence"] < 1e-5
  assert results["fit_newton"] < 1e-4
  assert "finite and nonnegative" in results["err_weights"]


def test_eight_devices_raise_the_single_device_errors(eight_devices):
  assert "NaN or inf (first in row 4321)" in eight_devices["err_nan"]
  assert "negative entries in X (smallest -1)" in eight_devices["err_negative"]
  assert eight_devices["min_feature"] == [-1.0, -1.0]
  assert eight_devices["zero_rows"] < 1e-6  # rows of zeros are ordinary samples
  assert "labels must lie in [0, n_classes=3)" in eight_devices["err_label_range"]
  assert "found values in [-1, 3]" in eight_devices["err_negative_label"]
  assert "must have the same length" in eight_devices["err_length"]


# -- one device, in process ----------------------------------------------------------

def _one_device(a):
  mesh = jax.make_mesh((1,), ("data",))
  return jax.device_put(a, NamedSharding(mesh, P("data", *([None] * (np.ndim(a) - 1)))))


def test_host_and_single_device_arrays_are_not_sharded():
  x = np.ones((4, 2), np.float32)
  assert not sharding.is_sharded(x)
  assert not sharding.is_sharded(_one_device(x))


def test_only_accelerator_or_multi_device_arrays_take_the_device_pass():
  """CPU-resident jax.Arrays take the (faster there) host path; accelerators do not."""
  x = np.ones((4, 2), np.float32)
  assert not sharding.computes_on_device(x)
  assert not sharding.computes_on_device(jax.device_put(x, jax.devices("cpu")[0]))
  on_accelerator = jax.devices()[0].platform != "cpu"
  assert sharding.computes_on_device(jax.device_put(x, jax.devices()[0])) == on_accelerator


def test_device_pass_accepts_a_single_device_array():
  """A plain single-device jax.Array (as on a GPU) is reduced by the jitted pass."""
  rng = np.random.default_rng(3)
  x, y = dense_data(rng, 3000, 5, 3)
  a = es.SoftmaxStats.from_sharded(jax.device_put(x, jax.devices()[0]), y)
  b = es.SoftmaxStats.from_data(x, y)
  np.testing.assert_allclose(a.cooccurrence, b.cooccurrence, rtol=1e-6)
  assert a.mass_sq == pytest.approx(b.mass_sq, rel=1e-6)
  negative = es.SoftmaxStats.from_sharded(jax.device_put(-x, jax.devices()[0]), y)
  assert negative.min_feature == pytest.approx(-x.max())
  with pytest.raises(ValueError, match="negative entries.*method='newton'"):
    es.solve(negative, "cooccurrence")


@pytest.mark.parametrize("gram", [False, True])
def test_sharded_path_on_one_device_matches_the_host_path(gram):
  rng = np.random.default_rng(1)
  x, y = dense_data(rng, 5000, 6, 3)  # 2 full chunks and a remainder
  w = rng.random(5000)
  a = es.SoftmaxStats.from_sharded(_one_device(x), y, sample_weight=w, gram=gram)
  b = es.SoftmaxStats.from_data(x, y, sample_weight=w, gram=gram)
  np.testing.assert_allclose(a.cooccurrence, b.cooccurrence, rtol=1e-6)
  np.testing.assert_allclose(a.class_mass, b.class_mass, rtol=1e-6)
  assert a.total_weight == pytest.approx(b.total_weight, rel=1e-6)
  assert a.mass_sq == pytest.approx(b.mass_sq, rel=1e-6)
  assert a.n_samples == b.n_samples
  if gram:
    np.testing.assert_allclose(a.gram, b.gram, rtol=1e-6)


@pytest.mark.slow
def test_counts_stay_exact_beyond_float32_integers():
  """Compensated float32 sums keep one-hot counts exact past 2^24 per cell."""
  t = 2**24 + 2**20
  x = np.ones((t, 1), np.uint8)
  stats = es.SoftmaxStats.from_sharded(_one_device(x), np.zeros(t, np.int32), n_classes=2,
                                      chunk_rows=2**16)
  np.testing.assert_array_equal(stats.cooccurrence, [[t, 0]])
  assert stats.class_mass[0] == t and stats.mass_sq == t


def test_scalar_weight_scales_every_sum():
  rng = np.random.default_rng(2)
  x, y = dense_data(rng, 300, 4, 3)
  a = es.SoftmaxStats.from_sharded(_one_device(x), y, sample_weight=2.5)
  b = es.SoftmaxStats.from_data(x, y, sample_weight=2.5)
  np.testing.assert_allclose(a.cooccurrence, b.cooccurrence, rtol=1e-6)
  assert a.total_weight == pytest.approx(b.total_weight)


@pytest.mark.parametrize("case, match", [
    ("nan", "NaN or inf"),
    ("labels", r"labels must lie in \[0, n_classes=3\)"), ("float_labels", "not integral"),
    ("soft_sum", "must sum to 1"), ("zero_weights", "sums to zero"),
    ("not_2d", "must be 2-D"), ("host", "needs X as a jax.Array"),
    ("label_column", r"1-D array \(y.ravel\(\)\)"),
    ("float_n_classes", "n_classes must be a positive integer")])
def test_invalid_inputs_raise_value_errors(case, match):
  rng = np.random.default_rng(3)
  x, y = dense_data(rng, 50, 4, 3)
  kwargs = {}
  if case == "nan":
    x[7, 1] = np.inf
  elif case == "labels":
    kwargs["n_classes"] = 3
    y = y.copy()
    y[0] = 3
  elif case == "float_labels":
    y = y + 0.25
  elif case == "soft_sum":
    y = np.full((50, 3), 0.5)
  elif case == "zero_weights":
    kwargs["sample_weight"] = np.zeros(50)
  elif case == "label_column":
    y = y[:, None]
  elif case == "float_n_classes":
    kwargs["n_classes"] = 3.0
  arg = x[:, 0] if case == "not_2d" else x
  arg = arg if case == "host" else _one_device(arg)
  with pytest.raises(ValueError, match=match):
    es.SoftmaxStats.from_sharded(arg, y, **kwargs)
