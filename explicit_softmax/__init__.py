"""explicit-softmax: closed-form single-layer softmax models, refinement and benchmarks.

A model ``p(y|x) = softmax(x W + b)`` trained with cross-entropy on nonnegative
features is stationary where ``X^T P = X^T Y``. Explicit solutions of that
condition are computed here from one pass of additive statistics.

Public API (flat, as in optax)::

    import explicit_softmax as es
    model = es.fit(X, y)                                  # one pass, closed form
    stats = es.SoftmaxStats.from_data(X, y, n_classes=M)  # additive statistics
    model = es.solve(stats, method="cooccurrence")
    model = es.calibrate(model, X, y)
    model = es.refine(model, X, y, method="lbfgs", steps=50)
"""

from explicit_softmax import data
from explicit_softmax import diagnostics
from explicit_softmax import sharding
from explicit_softmax._design import TokenFeatures
from explicit_softmax.model import History, SoftmaxModel, load
from explicit_softmax.refinement import calibrate, refine
from explicit_softmax.solvers import cooccurrence_weights, fit, newton_weights, solve
from explicit_softmax.sparse_model import SparseCountModel
from explicit_softmax.statistics import SoftmaxStats

__version__ = "0.1.0"

__all__ = [
    "History",
    "SoftmaxModel",
    "SoftmaxStats",
    "SparseCountModel",
    "TokenFeatures",
    "calibrate",
    "cooccurrence_weights",
    "data",
    "diagnostics",
    "fit",
    "load",
    "newton_weights",
    "refine",
    "sharding",
    "solve",
]
