"""explicit-softmax: closed-form single-layer softmax models, refinement and benchmarks.

A model ``p(y|x) = softmax(x W + b)`` trained with cross-entropy is stationary
where ``X^T P = X^T Y``. Explicit solutions of that condition are computed here
from one pass of additive statistics, and refined to the certified optimum.

Public API (flat, as in optax):

    import explicit_softmax as es
    model = es.fit(X, y)                                  # the certified L2 optimum
    model = es.fit(X, y, method="cooccurrence")           # one pass, closed form
    stats = es.SoftmaxStats.from_data(X, y, n_classes=M)  # additive statistics
    model = es.solve(stats, method="cooccurrence")
    model = es.calibrate(model, X, y)
    model = es.refine(model, X, y, method="lbfgs", steps=50)
    lm = es.NgramModel.fit(tokens, order=3, vocab_size=V)  # Kneser-Ney n-gram model
"""

from explicit_softmax import data
from explicit_softmax import diagnostics
from explicit_softmax._design import TokenFeatures
from explicit_softmax.model import History, SoftmaxModel, load
from explicit_softmax.calibration import calibrate
from explicit_softmax.refinement import refine
from explicit_softmax.fitting import fit, fit_optimum
from explicit_softmax.ngram import NgramModel
from explicit_softmax.solvers import cooccurrence_weights, newton_weights, solve
from explicit_softmax.sparse_model import SparseCountModel
from explicit_softmax.statistics import SoftmaxStats

__version__ = "0.1.0"

__all__ = [
    "History",
    "NgramModel",
    "SoftmaxModel",
    "SoftmaxStats",
    "SparseCountModel",
    "TokenFeatures",
    "calibrate",
    "cooccurrence_weights",
    "data",
    "diagnostics",
    "fit",
    "fit_optimum",
    "load",
    "newton_weights",
    "refine",
    "sharding",
    "solve",
]


def __getattr__(name: str):
  # es.sharding imports JAX; load it on first use, so that a fit on host data never does.
  if name == "sharding":
    import importlib
    return importlib.import_module("explicit_softmax.sharding")
  raise AttributeError(f"module 'explicit_softmax' has no attribute {name!r}")
