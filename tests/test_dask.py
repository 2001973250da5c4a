"""Dask collections as data, on a ``distributed.LocalCluster`` of two worker processes.

Statistics are computed per partition on the workers and added in a tree; the
models equal those of the same data in memory (to 1e-6 relative: the sums are
float64 in both, in another order). Refinement runs the in-memory float64
L-BFGS with one distributed pass per evaluation.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

import explicit_softmax as es
from conftest import centred, dense_data, max_relative, optimum_distance_bound

da = pytest.importorskip("dask.array", reason="dask is in the test extra")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

T, N, M = 2000, 5, 3
ROWS = 450  # partitions of 450 rows: four full ones and a shorter last one


@pytest.fixture(scope="module")
def client():
  cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None)
  client = distributed.Client(cluster)
  yield client
  client.close()
  cluster.close()


@pytest.fixture(scope="module")
def data():
  x, y = dense_data(np.random.default_rng(0), T, N, M)
  w = np.random.default_rng(1).random(T)
  return x, y, w


def _stats_equal(a, b):
  assert a.n_samples == b.n_samples and a.min_feature == b.min_feature
  for key in ("cooccurrence", "class_mass", "total_weight", "mass_sq", "gram"):
    if getattr(b, key) is not None:
      assert max_relative(getattr(a, key), getattr(b, key)) < 1e-6, key


def test_statistics_of_dense_sparse_and_dataframe_partitions(client, data):
  x, y, w = data
  ref = es.SoftmaxStats.from_data(x, y, n_classes=M, sample_weight=w, gram=True)
  X = da.from_array(x, chunks=(ROWS, 2))  # also split along features: rechunked to rows
  _stats_equal(es.SoftmaxStats.from_data(X, da.from_array(y, chunks=300), sample_weight=w,
                                         gram=True), ref)
  Xs = da.from_array(sp.csr_matrix(x), chunks=(ROWS, -1), asarray=False)
  assert sp.issparse(Xs.blocks[0].compute())
  _stats_equal(es.SoftmaxStats.from_data(Xs, y, n_classes=M, sample_weight=w, gram=True), ref)
  frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(N)]).assign(label=y, weight=w)
  ddf = dd.from_pandas(frame, npartitions=4)
  _stats_equal(es.SoftmaxStats.from_data(ddf, "label", sample_weight="weight", gram=True), ref)


@pytest.mark.parametrize("method", ["cooccurrence", "newton"])
def test_closed_forms_equal_the_in_memory_model(client, data, method):
  x, y, _ = data
  X, Y = da.from_array(x, chunks=(ROWS, -1)), da.from_array(y, chunks=ROWS)
  got, ref = es.fit(X, Y, method=method), es.fit(x, y, method=method)
  assert max_relative(got.weights, ref.weights) < 1e-6
  assert max_relative(got.bias, ref.bias) < 1e-6


def test_refine_reaches_the_in_memory_optimum_with_its_record(client, data):
  x, y, _ = data
  X, Y = da.from_array(x, chunks=(ROWS, -1)), da.from_array(y, chunks=ROWS)
  zero = es.SoftmaxModel(np.zeros((N, M)), np.zeros(M))
  l2 = 1.0 / T
  got = es.refine(zero, X, Y, steps=300, l2=l2, precondition="standardize")
  ref = es.refine(zero, x, y, steps=300, l2=l2, precondition="standardize")
  assert np.linalg.norm(centred(got) - centred(ref)) <= optimum_distance_bound(
      x, y, centred(ref), l2, 1e-6)
  record, expected = got.info["refine"], ref.info["refine"]
  assert record["converged"] and expected["converged"]
  for key in ("method", "reason", "tol", "l2", "precision", "precondition"):
    assert record[key] == expected[key], key
  # Float64 sums in another order: the step that crosses tol may move by one.
  assert abs(record["steps"] - expected["steps"]) <= 2
  assert abs(record["evaluations"] - expected["evaluations"]) <= 4
  # One pass per evaluation, plus the reference norm and the column moments.
  assert record["passes"] == record["evaluations"] + 2
  with pytest.raises(ValueError, match="full-batch L-BFGS"):
    es.refine(zero, X, Y, method="adam", steps=2)


def test_auto_fits_the_optimum_over_partitions(client, data):
  x, y, _ = data
  X, Y = da.from_array(x, chunks=(ROWS, -1)), da.from_array(y, chunks=ROWS)
  l2 = 1.0 / T
  got, ref = es.fit(X, Y, l2=l2, tol=1e-6), es.fit(x, y, l2=l2, tol=1e-6)
  assert got.info["refine"]["converged"]
  assert np.linalg.norm(centred(got) - centred(ref)) <= optimum_distance_bound(
      x, y, centred(ref), l2, 1e-6)
  chosen = es.fit(X, Y)  # l2="auto": the evidence on a row sample (here all 2,000 rows)
  assert chosen.info["l2_path"]["sample_rows"] == T
  assert chosen.info["l2_path"]["method"] == "evidence"
  # The same rows in memory choose the same C (the sample's order differs, and the
  # search's fits stop at a relative gradient norm of 1e-4).
  assert chosen.info["l2_path"]["C"] == pytest.approx(es.fit(x, y).info["l2_path"]["C"],
                                                      rel=1e-2)
  assert chosen.info["refine"]["converged"]


def test_auto_on_one_hot_partitions_is_the_count_solution(client):
  rng = np.random.default_rng(2)
  x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 600)]
  y = rng.integers(0, 3, 600)
  got = es.fit(da.from_array(x, chunks=(200, -1)), y)
  assert got.info["method"] == "cooccurrence"
  np.testing.assert_allclose(got.weights, es.fit(x, y).weights, rtol=1e-6)


def test_estimator_fits_and_predicts_dask_data(client, data):
  from explicit_softmax.sklearn import ExplicitSoftmaxClassifier
  x, y, _ = data
  names = np.array(["ant", "bee", "cat"])[y]
  frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(N)]).assign(label=names)
  ddf = dd.from_pandas(frame, npartitions=4)
  for method in ("newton", "auto"):
    kwargs = {"l2": 1.0 / T, "tol": 1e-8} if method == "auto" else {}
    got = ExplicitSoftmaxClassifier(method=method, **kwargs).fit(ddf, "label")
    ref = ExplicitSoftmaxClassifier(method=method, **kwargs).fit(x, names)
    np.testing.assert_array_equal(got.classes_, ref.classes_)
    assert list(got.feature_names_in_) == [f"x{i}" for i in range(N)]
    proba = got.predict_proba(ddf).compute()
    np.testing.assert_allclose(proba, ref.predict_proba(x), atol=1e-4)
    # Predictions agree wherever the top two classes are not within rounding.
    top = np.sort(proba, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-3
    pred = got.predict(da.from_array(x, chunks=(ROWS, -1))).compute()
    np.testing.assert_array_equal(pred[clear], ref.predict(x)[clear])


def test_bad_data_names_the_partition_and_row(client, data):
  x, y, _ = data
  bad = x.copy()
  bad[1234, 2] = np.nan  # partition 2 (rows 900..1349), its row 334
  with pytest.raises(ValueError, match=r"partition 2, row 334 of the partition \(row 1234 of "
                     r"X\): X contains NaN or inf"):
    es.fit(da.from_array(bad, chunks=(ROWS, -1)), y, method="cooccurrence")
  labels = y.copy()
  labels[1000] = 7  # partition 2, its row 100
  with pytest.raises(ValueError, match=r"partition 2, row 100 of the partition \(row 1000 of "
                     r"X\): labels must lie in \[0, n_classes=3\)"):
    es.fit(da.from_array(x, chunks=(ROWS, -1)), labels, n_classes=3, method="newton")
  frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(N)]).assign(label=y)
  frame.iloc[1600, 0] = np.inf
  ddf = dd.from_pandas(frame, npartitions=4)  # partitions of 500 rows: row 100 of part 3
  with pytest.raises(ValueError, match=r"partition 3, row 100 of the partition: X contains"):
    es.SoftmaxStats.from_data(ddf, "label")
  zero = es.SoftmaxModel(np.zeros((N, M)), np.zeros(M))
  with pytest.raises(ValueError, match=r"partition 2, row 334 of the partition"):
    es.refine(zero, da.from_array(bad, chunks=(ROWS, -1)), y, steps=3)


def test_missing_dask_names_the_extra(monkeypatch):
  from explicit_softmax import _dask
  # sys.modules[name] = None makes "import name" fail, as without the package.
  for name in [n for n in sys.modules if n == "dask" or n.startswith("dask.")]:
    monkeypatch.setitem(sys.modules, name, None)
  monkeypatch.setitem(sys.modules, "dask", None)
  with pytest.raises(ImportError, match=r"pip install 'explicit-softmax\[dask\]'"):
    _dask.require()
  assert not _dask.is_dask(np.zeros(3))  # no dask: nothing is a dask collection
