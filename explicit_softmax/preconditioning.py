"""Deprecated alias: the changes of variables of ``es.refine(precondition=...)``.

Use [`es.refinement.Standardizer`][explicit_softmax.refinement.Standardizer] and
[`es.refinement.gram_preconditioner`][explicit_softmax.refinement.gram_preconditioner]; this module
goes away in the next minor release.
"""

from __future__ import annotations

import warnings

from explicit_softmax._preconditioning import Standardizer, gram_preconditioner

warnings.warn(
    "explicit_softmax.preconditioning is deprecated; use explicit_softmax.refinement."
    "Standardizer and explicit_softmax.refinement.gram_preconditioner.",
    DeprecationWarning, stacklevel=2)

__all__ = ["Standardizer", "gram_preconditioner"]
