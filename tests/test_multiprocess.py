"""Two JAX processes (multi-controller, gloo collectives on the CPU) fit the model of one.

The test runs ``examples/jax_multiprocess.py`` exactly as ``docs/scaling.md``
shows: two processes on this machine form a JAX cluster, each holding half of
the rows; their statistics, closed-form fits, refinement and optimum are
compared with one process on all the rows.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import explicit_softmax as es
from conftest import centred, max_relative, optimum_distance_bound

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "jax_multiprocess.py"
# Both processes together; a hung collective is killed at this deadline.
TIMEOUT_S = 300


def _example():
  spec = importlib.util.spec_from_file_location("jax_multiprocess", EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The two processes' results (``process_<i>.npz``), after both exited cleanly."""
  out = tmp_path_factory.mktemp("multiprocess")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  coordinator = f"127.0.0.1:{_free_port()}"
  procs, logs = [], []
  try:
    for i in range(2):
      log = open(out / f"log_{i}.txt", "w")
      logs.append(log)
      procs.append(subprocess.Popen(
          [sys.executable, str(EXAMPLE), "--coordinator", coordinator, "--num-processes", "2",
           "--process-id", str(i), "--out", str(out)],
          env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + TIMEOUT_S
    for proc in procs:
      try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        break
  finally:
    for proc in procs:  # no process outlives the test, also on failure
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    for log in logs:
      log.close()
  text = "\n".join((out / f"log_{i}.txt").read_text()[-3000:] for i in range(2))
  assert [p.returncode for p in procs] == [0, 0], text
  return [dict(np.load(out / f"process_{i}.npz")) for i in range(2)]


@pytest.fixture(scope="module")
def data():
  return _example().make_data()


def test_every_process_gets_the_same_results(runs):
  assert runs[0].keys() == runs[1].keys()
  for key in runs[0]:
    np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)


def test_statistics_equal_one_process_on_all_rows(runs, data):
  x, y = data
  ref = es.SoftmaxStats.from_data(x, y, n_classes=3, gram=True)
  got = runs[0]
  assert int(got["n_samples"]) == ref.n_samples
  assert float(got["min_feature"]) == ref.min_feature
  # The device pass sums in float32 with compensation: ~3e-7 relative
  # (sharding's docstring), whatever the number of processes.
  for key in ("cooccurrence", "class_mass", "total_weight", "mass_sq", "gram"):
    assert max_relative(got[key], getattr(ref, key)) < 1e-6, key


def test_closed_forms_equal_one_process_on_all_rows(runs, data):
  x, y = data
  ref = es.SoftmaxStats.from_data(x, y, n_classes=3, gram=True)
  got = runs[0]
  stats = es.SoftmaxStats(got["cooccurrence"], got["class_mass"], float(got["total_weight"]),
                          float(got["mass_sq"]), int(got["n_samples"]), got["gram"],
                          float(got["min_feature"]))
  for method in ("cooccurrence", "newton"):
    # The processes' model is the closed form of their (all-reduced) statistics ...
    own = es.solve(stats, method)
    np.testing.assert_allclose(got[f"{method}_fit_weights"], own.weights, rtol=1e-6, atol=1e-7)
    one = es.fit(x, y, n_classes=3, method=method)
    w_ref = np.vstack([one.weights, one.bias])
    w_got = np.vstack([got[f"{method}_fit_weights"], got[f"{method}_fit_bias"]])
    if method == "cooccurrence":
      # ... whose weights are sums of a few logs of statistics, each moved by
      # at most their relative error (1e-6), plus float32 storage.
      bound = 4e-6 + 4 * 2.0**-24 * np.abs(w_ref).max()
    else:
      # ... whose Newton weights solve a linear system in the Gram matrix of
      # [X, 1]: a relative change e of its entries moves them by <= cond * e.
      f = stats.cooccurrence.sum(1)
      g1 = np.block([[ref.gram, f[:, None]], [f[None, :], np.array([[ref.total_weight]])]])
      bound = 2 * np.linalg.cond(g1) * 1e-6 * np.abs(w_ref).max() + 4 * 2.0**-24 * np.abs(
          w_ref).max()
    assert np.abs(w_got - w_ref).max() <= bound, (method, np.abs(w_got - w_ref).max(), bound)


def test_refinement_reaches_the_one_process_optimum(runs, data):
  x, y = data
  ex = _example()
  zero = es.SoftmaxModel(np.zeros((x.shape[1], 3)), np.zeros(3))
  one = es.refine(zero, x, y, steps=500, l2=ex.L2, precondition="standardize")
  got = runs[0]
  theta = np.vstack([got["refined_weights"], got["refined_bias"] - got["refined_bias"].mean()])
  bound = optimum_distance_bound(x, y, centred(one), ex.L2, 1e-6)
  assert np.linalg.norm(theta - centred(one)) <= bound
  record, ref = json.loads(str(got["refine_record"])), one.info["refine"]
  assert record["converged"] and ref["converged"]
  for key in ("reason", "tol", "l2", "precision", "method", "precondition"):
    assert record[key] == ref[key], key
  # Float64 sums in another order: the step that crosses tol may move by one.
  assert abs(record["steps"] - ref["steps"]) <= 2
  assert record["passes"] >= record["evaluations"] >= record["steps"]


def test_optimum_with_given_l2_matches_one_process(runs, data):
  x, y = data
  ex = _example()
  one = es.fit(x, y, n_classes=3, l2=ex.L2)
  got = runs[0]
  theta = np.vstack([got["optimum_weights"], got["optimum_bias"] - got["optimum_bias"].mean()])
  assert json.loads(str(got["optimum_record"]))["converged"]
  assert np.linalg.norm(theta - centred(one)) <= optimum_distance_bound(
      x, y, centred(one), ex.L2, 1e-6)
