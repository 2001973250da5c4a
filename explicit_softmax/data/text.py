"""Text corpora as token ids, and the contexts a next-token model reads.

* [`load_text`][explicit_softmax.data.text.load_text]: character- or word-level token ids of a text
  corpus.
* [`context_tokens`][explicit_softmax.data.text.context_tokens] /
  [`context_features`][explicit_softmax.data.text.context_features]: the ``K`` previous tokens of
  each position as ``K`` positional one-hot blocks (next-token prediction).
* [`train_test_split_tokens`][explicit_softmax.data.text.train_test_split_tokens]: a contiguous
  split of a token sequence.

References:
  Y. Bengio, R. Ducharme, P. Vincent and C. Jauvin, "A neural probabilistic
  language model", JMLR 3 (2003): the previous ``K`` tokens as the input of a
  next-token model.
"""

from __future__ import annotations

import codecs
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from explicit_softmax import _design
from explicit_softmax import _validation
from explicit_softmax._typing import ArrayLike, PathLike

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
    encoding: the file's text encoding (for UTF-8, a leading byte-order mark is
      skipped).

  Returns:
    ``(tokens, vocab)``: (T,) int32 ids and the vocabulary as a list of strings,
    so ``"".join(vocab[i] for i in tokens)`` (char level) gives the text back.

  Raises:
    FileNotFoundError: if ``path`` does not exist.
    ValueError: for a path that is a directory, an unknown level, an unknown encoding, a duplicated vocabulary entry, undecodable
      bytes, a corpus without tokens, or unknown tokens without ``"<unk>"``.
  """
  _validation.check_choice("level", level, LEVELS)
  path = _validation.check_file(path, "text corpus", missing=FileNotFoundError)
  # A UTF-8 byte-order mark (as Windows editors write) is not a token.
  try:
    codec = codecs.lookup(encoding).name
  except (LookupError, TypeError):
    raise ValueError(f"encoding={encoding!r} is not a text encoding Python knows "
                     "(e.g. 'utf-8', 'latin-1').") from None
  if codec == "utf-8":
    encoding = "utf-8-sig"
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

def _check_tokens(tokens: ArrayLike, n_context: int, vocab_size: int) -> np.ndarray:
  """``tokens`` as a 1-D integer array, checked against ``n_context`` and ``vocab_size``.

  Raises:
    ValueError: for tokens that are not a 1-D integer sequence, ``n_context`` or
      ``vocab_size`` not a positive integer, no more tokens than ``n_context``, or
      tokens outside ``[0, vocab_size)``.
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(
        f"tokens must be a 1-D integer sequence; got shape {tokens.shape} and dtype "
        f"{tokens.dtype}.")
  n_context = _validation.check_integer("n_context", n_context)
  if len(tokens) <= n_context:
    raise ValueError(
        f"{len(tokens)} tokens give no sample with {n_context} tokens of context; "
        f"pass more than {n_context} tokens.")
  vocab_size = _validation.check_integer("vocab_size", vocab_size)
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
    ``(features, targets)``: a [`TokenFeatures`][explicit_softmax.TokenFeatures] with (T-K, K) int32
    ids and (T-K,) int64 next tokens.

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
  """[`context_tokens`][explicit_softmax.data.text.context_tokens] as a ``scipy.sparse`` CSR matrix
  (T-K, K V) of ones.

  Args:
    tokens: (T,) integer token sequence.
    n_context: K, the number of previous tokens per sample.
    vocab_size: V.

  Returns:
    ``(X, targets)`` with ``X == context_tokens(...)[0].to_csr()``.
  """
  features, targets = context_tokens(tokens, n_context, vocab_size)
  return features.to_csr(), targets


def train_test_split_tokens(tokens: ArrayLike,
                            test_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """Splits a token sequence into a leading training part and a trailing test part.

  The split is contiguous (a sequence is never shuffled), so no test position has been seen in
  training; the first ``n_context`` test tokens serve only as context when the test part goes
  through [`context_tokens`][explicit_softmax.data.text.context_tokens].

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
