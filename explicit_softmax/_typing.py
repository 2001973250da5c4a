"""Type aliases of the public API (for annotations and the API reference).

``X`` is anything the library reads as a design matrix; ``y`` labels or soft
labels; sample weights a scalar or one weight per row. The checks behind these
types live in ``es._validation``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Union

import scipy.sparse as sp
from numpy.typing import ArrayLike

if TYPE_CHECKING:
  from explicit_softmax._design import TokenFeatures

# (T, N) features: a numpy or JAX array (any real dtype), a scipy.sparse matrix or
# array, or TokenFeatures (K context tokens as positional one-hot blocks).
Features = Union[ArrayLike, sp.spmatrix, sp.sparray, "TokenFeatures"]
# (T,) integer labels 0..M-1 or (T, M) soft labels.
Labels = ArrayLike
# A scalar or (T,) nonnegative weights; None means one per sample.
SampleWeight = Union[ArrayLike, None]
# Held-out splits: a number of folds, or (train, validation) row-index pairs.
Splits = Union[int, Iterable[tuple[ArrayLike, ArrayLike]], None]
# A file path.
PathLike = Union[str, os.PathLike]

__all__ = ["ArrayLike", "Features", "Labels", "PathLike", "SampleWeight", "Splits"]
